"""The job monitor (seed 003's StatusMonitor): follows jobs on one or more ComfyUI servers.

Per server it keeps a ``/ws`` connection (node-level progress, instantly) and polls
``/queue`` and ``/history`` (the ground truth, and all there is for prompts submitted by
another client: ComfyUI sends a client only the events of its own prompts). Everything runs
on one asyncio event loop; :class:`~progresskit_comfyui.sync.SyncStatusMonitor` wraps it
for threaded code.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import math
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Hashable, Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

import attrs
from websockets.exceptions import WebSocketException

from progresskit import Estimate, estimate_run, record_finished_runs
from progresskit_comfyui import RUNNER_TYPE
from progresskit_comfyui.backoff import Backoff
from progresskit_comfyui.client import ComfyUIClient
from progresskit_comfyui.job import JobState, ProgressStatus, ProgressUpdate
from progresskit_comfyui.protocol import (
    ComfyUIError,
    HistoryEntry,
    ProtocolError,
    QueueEntry,
    QueueSnapshot,
    ServerSlow,
    ServerUnavailable,
    Workflow,
    normalise_url,
    workflow_from,
)
from progresskit_comfyui.statistics import GenerationStatistics

__all__ = ["ProgressCallback", "StatusMonitor"]

logger = logging.getLogger("progresskit_comfyui.monitor")

ProgressCallback = Callable[[ProgressUpdate], "Awaitable[None] | None"]

#: Progress observations kept per executing job (the newest): bounded, however long it runs,
#: since estimating costs time linear in them (about 2 us per point here).
MAX_MARKS = 64
#: A new observation only once the job advanced this much (1%): a sampler's 16 steps are 16
#: observations, a 1000-step video's are 100, not 1000.
MARK_STEP = 0.01
_ESTIMABLE = (ProgressStatus.QUEUED, ProgressStatus.PROCESSING, ProgressStatus.COMPLETING)
#: History requests in flight at once per server, when many jobs left the queue together.
_HISTORY_CONCURRENCY = 8


class _ServerLink:
    """One server: its client, the jobs on it and the health of the connection."""

    def __init__(self, url: str, timeout: float):
        self.client = ComfyUIClient(url, timeout=timeout)
        self.url = self.client.url
        self.jobs: dict[str, JobState] = {}
        self.queue: QueueSnapshot | None = None
        self.up: bool | None = None
        self.failures = 0
        self.last_error: str | None = None
        self.websocket = False
        self.websocket_error: str | None = None
        self.wake = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []

    def reached(self) -> None:
        if self.up is False:
            logger.warning(
                "ComfyUI %s is reachable again (after %d failed attempts)", self.url, self.failures
            )
        self.up, self.failures, self.last_error = True, 0, None

    def failed(self, exc: ComfyUIError, retry_in: float) -> None:
        if self.up is not False:
            logger.warning(
                "ComfyUI %s: %s; retrying with backoff (next in %.1fs)", self.url, exc, retry_in
            )
        else:
            logger.debug(
                "ComfyUI %s still failing (%d): %s; next try in %.1fs",
                self.url,
                self.failures + 1,
                exc,
                retry_in,
            )
        self.up, self.last_error = False, str(exc)
        self.failures += 1

    def describe(self) -> dict[str, Any]:
        return {
            "state": {None: "not contacted", True: "up", False: "down"}[self.up],
            "websocket": self.websocket,
            "failures": self.failures,
            "last_error": self.last_error or self.websocket_error,
            "running_jobs": len(self.queue.running) if self.queue else None,
            "pending_jobs": len(self.queue.pending) if self.queue else None,
        }


class StatusMonitor:
    """Follow ComfyUI jobs: status, node-level progress, ETA, statistics, cancel.

    :param servers: base URL(s) of the ComfyUI server(s); the first is the default for
        :meth:`monitor_job`.
    :param poll_interval: seconds between ``/queue`` polls of a server.
    :param min_poll_gap: the least time between polls when queue changes announced on
        ``/ws`` ask for an early one (a busy queue announces several a second).
    :param vanish_timeout: seconds a job may be in neither queue nor history before it is
        ``timeout``.
    :param retention: seconds a finished job stays queryable; ``max_retained`` bounds their
        number as well.
    :param http_timeout: seconds to wait for a reply (a slow reply is not a dead server).
    :param use_websocket: follow ``/ws`` (node-level progress) besides polling.
    :param client_id: the ``clientId`` of this monitor's ``/ws`` connections. ComfyUI sends
        execution events only to the client that submitted a prompt, so submit with
        ``client_id=monitor.client_id`` for node-level progress. Never reuse another
        application's id: ComfyUI would hand it this monitor's socket instead of theirs.
    :param backoff: reconnection delays; ``sleep`` waits them (both injectable for tests),
        ``clock`` (monotonic) and ``wall_clock`` (Unix time) are injectable too.
    :param record_history: record each completed job's pace into progresskit's ETA history
        as it completes (the default: a long-running monitor is where the history learns
        from). ``False`` leaves the records to the caller: a status query of progresskit's
        engine commits them when its session records (the command line), a library query
        drops them.
    """

    def __init__(
        self,
        servers: str | Iterable[str] = "http://127.0.0.1:8188",
        *,
        poll_interval: float = 2.0,
        min_poll_gap: float = 0.5,
        vanish_timeout: float = 60.0,
        retention: float = 3600.0,
        max_retained: int = 1000,
        http_timeout: float = 30.0,
        use_websocket: bool = True,
        client_id: str | None = None,
        backoff: Backoff | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        statistics_window: int = 1000,
        record_history: bool = True,
    ):
        for name, value in (
            ("poll_interval", poll_interval),
            ("vanish_timeout", vanish_timeout),
            ("http_timeout", http_timeout),
        ):
            if not value > 0:
                raise ValueError(f"{name} must be > 0, got {value!r}")
        if retention < 0 or max_retained < 0 or min_poll_gap < 0:
            raise ValueError("retention, max_retained and min_poll_gap must be >= 0")
        self.poll_interval = poll_interval
        self.min_poll_gap = min(min_poll_gap, poll_interval)
        self.vanish_timeout = vanish_timeout
        self.retention = retention
        self.max_retained = max_retained
        self.http_timeout = http_timeout
        self.use_websocket = use_websocket
        self.record_history = record_history
        self.client_id = client_id or f"progresskit-{uuid.uuid4().hex[:12]}"
        self.backoff = backoff or Backoff()
        self._clock, self._wall, self._sleep = clock, wall_clock, sleep
        self.statistics = GenerationStatistics(statistics_window)
        self._links: dict[str, _ServerLink] = {}
        self._jobs: dict[Hashable, JobState] = {}
        self._finished: OrderedDict[Hashable, None] = OrderedDict()
        #: (wall time, fraction done) of each executing job: progresskit's estimator's
        #: observations for its ETA, and what a completed job leaves in the run history.
        self._marks: dict[Hashable, deque[tuple[float, float]]] = {}
        #: The last estimate per job, with the observation it was made at: a job's many
        #: updates between two observations (node changes, previews) reuse it.
        self._estimates: dict[Hashable, tuple[tuple[float, float], float | None]] = {}
        self._callbacks: list[ProgressCallback] = []
        self._callback_tasks: set[asyncio.Future[Any]] = set()
        self._running = False
        for url in [servers] if isinstance(servers, str) else servers:
            self.add_server(url)
        if not self._links:
            raise ValueError("StatusMonitor needs at least one ComfyUI server URL")

    # -- servers --------------------------------------------------------------------------

    def add_server(self, url: str) -> str:
        """Follow another server (started at once if the monitor runs); its normalised URL."""
        key = normalise_url(url)
        if key not in self._links:
            link = self._links[key] = _ServerLink(key, self.http_timeout)
            if self._running:
                self._start(link)
        return key

    @property
    def servers(self) -> list[str]:
        return list(self._links)

    # -- lifecycle ------------------------------------------------------------------------

    async def start_monitoring(self) -> None:
        """Start polling (and listening to) every server; returns at once."""
        if self._running:
            return
        self._running = True
        for link in self._links.values():
            self._start(link)

    def _start(self, link: _ServerLink) -> None:
        link.tasks.append(asyncio.create_task(self._poll_loop(link), name=f"poll {link.url}"))
        if self.use_websocket:
            link.tasks.append(asyncio.create_task(self._ws_loop(link), name=f"ws {link.url}"))

    async def stop_monitoring(self) -> None:
        """Stop every task and close the connections."""
        self._running = False
        for link in self._links.values():
            for task in link.tasks:
                task.cancel()
            for task in link.tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            link.tasks.clear()
            await link.client.aclose()

    async def __aenter__(self) -> StatusMonitor:
        await self.start_monitoring()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop_monitoring()

    # -- jobs -----------------------------------------------------------------------------

    def monitor_job(
        self,
        job_id: Hashable,
        prompt_id: str,
        job_type: str = "default",
        *,
        server: str | None = None,
        prompt: Mapping[str, Any] | None = None,
    ) -> bool:
        """Start following ``prompt_id`` as ``job_id``; ``True`` when newly registered.

        ``prompt`` (the submitted API-format graph) gives node class names before the job
        is seen in the queue. Registering the same job again is a no-op (``False``).
        """
        if not isinstance(prompt_id, str) or not prompt_id.strip():
            raise ValueError(
                f"job {job_id!r}: prompt_id must be a non-empty string, got {prompt_id!r}"
            )
        if not isinstance(job_type, str) or not job_type:
            raise ValueError(
                f"job {job_id!r}: job_type must be a non-empty string, got {job_type!r}"
            )
        link = self._links[self.add_server(server)] if server else next(iter(self._links.values()))
        known = self._jobs.get(job_id)
        if known is not None:
            if known.prompt_id == prompt_id and known.server == link.url:
                return False
            raise ValueError(
                f"job {job_id!r} is already monitored as prompt {known.prompt_id} on {known.server}"
            )
        other = link.jobs.get(prompt_id)
        if other is not None:
            raise ValueError(
                f"prompt {prompt_id} on {link.url} is already monitored as job {other.job_id!r}"
            )
        now = self._clock()
        job = JobState(job_id, prompt_id, job_type, link.url, now, news_at=now)
        if prompt is not None:
            job.workflow = workflow_from(prompt)
        self._jobs[job_id] = job
        link.jobs[prompt_id] = job
        link.wake.set()
        self._notify(job)
        return True

    def forget_job(self, job_id: Hashable) -> bool:
        """Stop following ``job_id``; whether it was followed."""
        job = self._jobs.pop(job_id, None)
        if job is None:
            return False
        self._links[job.server].jobs.pop(job.prompt_id, None)
        self._finished.pop(job_id, None)
        self._marks.pop(job_id, None)
        self._estimates.pop(job_id, None)
        return True

    def add_progress_callback(self, callback: ProgressCallback) -> None:
        """Call ``callback(update)`` on every change of a job (sync or async callable).

        A callback that raises is logged and skipped; it never stops the monitor.
        """
        self._callbacks.append(callback)

    def remove_progress_callback(self, callback: ProgressCallback) -> None:
        self._callbacks.remove(callback)

    async def get_progress(self, job_id: Hashable) -> ProgressUpdate | None:
        """The job's progress now, or ``None`` for a job not (or no longer) monitored."""
        return self.progress_now(job_id)

    def progress_now(self, job_id: Hashable) -> ProgressUpdate | None:
        job = self._jobs.get(job_id)
        return None if job is None else self._update(job)

    async def estimate_completion(self, job_id: Hashable) -> datetime | None:
        """When the job should finish (UTC), or ``None`` when there is no basis for a guess."""
        job = self._jobs.get(job_id)
        if job is None:
            return None
        eta = self._eta(job)
        return None if eta is None else datetime.fromtimestamp(self._wall() + eta, timezone.utc)

    @property
    def job_ids(self) -> list[Hashable]:
        return list(self._jobs)

    async def get_queue_statistics(self) -> dict[str, Any]:
        """Seed 003's statistics, plus the health of each server under ``servers``."""
        if not self._running:
            for link in self._links.values():
                with contextlib.suppress(ComfyUIError):
                    link.queue = await link.client.queue()
        queues = [link.queue for link in self._links.values() if link.queue is not None]
        return {
            "running_jobs": sum(len(q.running) for q in queues),
            "pending_jobs": sum(len(q.pending) for q in queues),
            "monitored_jobs": sum(1 for j in self._jobs.values() if not j.status.is_terminal),
            "retained_jobs": len(self._finished),
            "generation_stats": self.statistics.as_dict(),
            "servers": {url: link.describe() for url, link in self._links.items()},
        }

    # -- cancel ---------------------------------------------------------------------------

    async def cancel_job(self, job_id: Hashable) -> bool:
        """Cancel a job: interrupt it if running, delete it from the queue if pending.

        ``True`` when a cancel was sent. A deleted job is ``cancelled`` at once; an
        interrupted one when the server confirms (ComfyUI stops at the next step or node
        boundary; a job that completes first stays ``completed``). ``False`` for a job that
        is not monitored, already over, or in neither the queue nor running. Raises
        :class:`ComfyUIError` when the server cannot be asked.
        """
        job = self._jobs.get(job_id)
        if job is None or job.status.is_terminal:
            return False
        link = self._links[job.server]
        # A pending prompt can start between our look at the queue and the deletion: look
        # again and interrupt it then.
        for _ in range(3):
            found = (await link.client.queue()).find(job.prompt_id)
            if found is None:
                return False
            if found[0] == "running":
                job.cancel_requested = True
                await link.client.interrupt(job.prompt_id)
                link.wake.set()
                return True
            await link.client.delete_pending([job.prompt_id])
            if (await link.client.queue()).find(job.prompt_id) is None:
                entry = await link.client.history(job.prompt_id)
                if entry is not None:  # it ran to its end in between
                    self._apply_history(job, entry)
                    return False
                was = job.status
                job.finish(
                    ProgressStatus.CANCELLED, self._clock(), self._wall(), "deleted from the queue"
                )
                self._changed(job, was)
                return True
        return False

    # -- one-shot use (CLI) ---------------------------------------------------------------

    async def refresh(self, queues: Mapping[str, QueueSnapshot] | None = None) -> None:
        """Poll every server once; connection and protocol errors propagate.

        ``queues``: server URL -> a ``/queue`` snapshot to use instead of asking, taken
        after anything the monitor heard about its jobs (it is applied to every job).
        """
        for url, link in self._links.items():
            await self._poll(link, (queues or {}).get(url))

    async def listen(self, seconds: float) -> None:
        """Apply ``/ws`` events of every server for ``seconds`` (best effort)."""

        async def one(link: _ServerLink) -> None:
            with contextlib.suppress(OSError, WebSocketException, asyncio.TimeoutError):
                async with link.client.events(self.client_id) as ws:
                    async for message in ws:
                        if isinstance(message, str):
                            self._on_message(link, message)

        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(
                asyncio.gather(*(one(link) for link in self._links.values())), seconds
            )

    def client(self, server: str) -> ComfyUIClient:
        """The client of ``server`` (added if new), for requests of your own."""
        return self._links[self.add_server(server)].client

    def apply_history(self, entries: Iterable[HistoryEntry], server: str | None = None) -> None:
        """Finish the monitored jobs among ``entries`` (already fetched ``/history`` items)."""
        link = self._links[normalise_url(server)] if server else next(iter(self._links.values()))
        for entry in entries:
            job = link.jobs.get(entry.prompt_id)
            if job is not None:
                self._apply_history(job, entry)

    def learn(self, entries: Iterable[HistoryEntry], job_type: Callable[[Workflow], str]) -> None:
        """Feed finished prompts (e.g. ``/history``) into the statistics, typed by ``job_type``."""
        for entry in entries:
            seconds = entry.generation_seconds
            if entry.outcome == "success" and seconds is not None:
                self.statistics.record_completion(job_type(entry.workflow), seconds)

    # -- internals: polling -----------------------------------------------------------------

    async def _poll_loop(self, link: _ServerLink) -> None:
        while self._running:
            self._evict()
            try:
                await self._poll(link)
            except ServerSlow as exc:
                logger.info("ComfyUI %s: %s", link.url, exc)
            except (ServerUnavailable, ProtocolError) as exc:
                delay = self.backoff.delay(link.failures)
                link.failed(exc, delay)
                await self._sleep(delay)
                continue
            except Exception:
                # A bug in handling one reply must not end the monitoring of a server.
                delay = self.backoff.delay(link.failures)
                logger.exception("ComfyUI %s: unexpected error while polling", link.url)
                link.failures += 1
                await self._sleep(delay)
                continue
            await asyncio.sleep(self.min_poll_gap)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(link.wake.wait(), self.poll_interval - self.min_poll_gap)
            link.wake.clear()

    async def _poll(self, link: _ServerLink, queue: QueueSnapshot | None = None) -> None:
        link.wake.clear()
        if queue is None:
            asked = self._clock()
            queue = await link.client.queue()
        else:
            asked = math.inf  # the caller vouches that the snapshot is the newest news
        link.reached()
        link.queue = queue
        where: dict[str, tuple[str, int]] = {}
        entries: dict[str, QueueEntry] = {}
        for i, entry in enumerate(queue.running):
            where[entry.prompt_id], entries[entry.prompt_id] = ("running", i), entry
        for i, entry in enumerate(sorted(queue.pending, key=lambda e: e.number)):
            where[entry.prompt_id], entries[entry.prompt_id] = ("pending", i), entry
        absent: list[JobState] = []
        wall = self._wall()
        for job in list(link.jobs.values()):
            if job.status.is_terminal or job.news_at > asked:
                continue
            found = where.get(job.prompt_id)
            if found is None:
                absent.append(job)
                continue
            was = job.status
            if job.on_queue(entries[job.prompt_id], found[0], found[1], wall):
                self._changed(job, was)
        if absent:
            limit = asyncio.Semaphore(_HISTORY_CONCURRENCY)

            async def fetch(job: JobState) -> tuple[JobState, HistoryEntry | None]:
                async with limit:
                    return job, await link.client.history(job.prompt_id)

            for job, found_entry in await asyncio.gather(*(fetch(j) for j in absent)):
                if job.status.is_terminal or self._jobs.get(job.job_id) is not job:
                    continue
                if found_entry is not None:
                    self._apply_history(job, found_entry)
                elif job.news_at <= asked:
                    was = job.status
                    if job.on_absent(self._clock(), self._wall(), self.vanish_timeout):
                        self._changed(job, was)

    def _apply_history(self, job: JobState, entry: HistoryEntry) -> None:
        was = job.status
        if job.on_history(entry, self._clock(), self._wall()):
            self._changed(job, was)

    def _evict(self) -> None:
        now = self._clock()
        while self._finished:
            job_id = next(iter(self._finished))
            job = self._jobs[job_id]
            expired = job.finished_mono is not None and now - job.finished_mono >= self.retention
            if not expired and len(self._finished) <= self.max_retained:
                break
            self.forget_job(job_id)

    # -- internals: events --------------------------------------------------------------------

    async def _ws_loop(self, link: _ServerLink) -> None:
        attempt = 0
        while self._running:
            try:
                async with link.client.events(self.client_id) as ws:
                    link.websocket, link.websocket_error = True, None
                    # Anything may have happened while disconnected: poll now.
                    link.wake.set()
                    async for message in ws:
                        # The first message proves the server talks; only then forget
                        # earlier failures (a server that accepts and hangs up must back off).
                        attempt = 0
                        if isinstance(message, str):
                            self._on_message(link, message)
            except (OSError, WebSocketException, asyncio.TimeoutError) as exc:
                if link.websocket_error is None:
                    logger.info(
                        "ComfyUI %s: event stream unavailable (%s: %s); polling meanwhile",
                        link.url,
                        type(exc).__name__,
                        exc,
                    )
                link.websocket_error = f"/ws: {type(exc).__name__}: {exc}"
            except Exception as exc:
                # A bug in handling one event must not end the event stream for good.
                logger.exception("ComfyUI %s: unexpected error on the event stream", link.url)
                link.websocket_error = f"/ws: {type(exc).__name__}: {exc}"
            finally:
                link.websocket = False
            delay = self.backoff.delay(attempt)
            attempt += 1
            await self._sleep(delay)

    def _on_message(self, link: _ServerLink, text: str) -> None:
        try:
            message = json.loads(text)
        except ValueError:
            logger.debug("ComfyUI %s: ignored a non-JSON text frame", link.url)
            return
        if not isinstance(message, dict):
            return
        kind, data = message.get("type"), message.get("data")
        if not isinstance(kind, str) or not isinstance(data, dict):
            return
        if kind == "status":
            link.wake.set()  # the queue changed: poll soon rather than at the next interval
            return
        prompt_id = data.get("prompt_id")
        job = link.jobs.get(prompt_id) if isinstance(prompt_id, str) else None
        if job is None:
            return
        was = job.status
        changed, step_seconds = job.on_event(kind, data, self._clock(), self._wall())
        if step_seconds is not None:
            self.statistics.record_step(step_seconds)
        # Poll soon: for the history of an ended prompt, or for the graph (node classes)
        # of one that started before a poll saw it queued.
        if job.needs_history or job.workflow is None:
            link.wake.set()
        if changed:
            self._changed(job, was)

    # -- internals: updates -----------------------------------------------------------------

    def _changed(self, job: JobState, was: ProgressStatus) -> None:
        self._mark(job)
        if job.status.is_terminal and not was.is_terminal:
            self._finished[job.job_id] = None
            marks = self._marks.pop(job.job_id, None)
            self._estimates.pop(job.job_id, None)
            if job.status is ProgressStatus.COMPLETED and job.generation_time is not None:
                self.statistics.record_completion(job.job_type, job.generation_time)
                self._record_history(job, marks)
            elif job.status is ProgressStatus.FAILED:
                summary = job.error.summary if job.error else (job.detail or "error")
                self.statistics.record_failure(job.job_type, summary)
            elif job.status is ProgressStatus.TIMEOUT:
                self.statistics.record_failure(job.job_type, "timeout")
        self._notify(job)

    def _notify(self, job: JobState) -> None:
        if not self._callbacks:
            return
        update = self._update(job)
        for callback in list(self._callbacks):
            try:
                result = callback(update)
                if inspect.isawaitable(result):
                    # Held until done: the event loop keeps only weak references to tasks.
                    future = asyncio.ensure_future(result)
                    self._callback_tasks.add(future)
                    future.add_done_callback(self._callback_done)
            except Exception:
                logger.exception("progress callback %r failed for job %r", callback, job.job_id)

    def _callback_done(self, future: asyncio.Future[Any]) -> None:
        self._callback_tasks.discard(future)
        if not future.cancelled() and future.exception() is not None:
            logger.error("async progress callback failed", exc_info=future.exception())

    def _update(self, job: JobState) -> ProgressUpdate:
        eta = self._eta(job)
        wall = self._wall()
        estimated = None if eta is None else datetime.fromtimestamp(wall + eta, timezone.utc)
        update = job.snapshot(eta, estimated)
        link = self._links[job.server]
        if link.up is False and not job.status.is_terminal:
            return _with_detail(update, f"server unreachable: {link.last_error}")
        return update

    def _mark(self, job: JobState) -> None:
        if job.status is not ProgressStatus.PROCESSING or job.started_wall is None:
            return
        marks = self._marks.get(job.job_id)
        if marks is None:
            marks = self._marks[job.job_id] = deque([(job.started_wall, 0.0)], maxlen=MAX_MARKS)
        fraction = job.fraction()
        if fraction >= marks[-1][1] + MARK_STEP or (fraction >= 1.0 > marks[-1][1]):
            marks.append((self._wall(), fraction))

    def _record_history(self, job: JobState, marks: deque[tuple[float, float]] | None) -> None:
        """Leave a completed job's pace in progresskit's run history, for later jobs' ETA."""
        if job.started_wall is None or job.generation_time is None:
            return
        points = list(marks or [(job.started_wall, 0.0)])
        points.append((job.started_wall + job.generation_time, 1.0))
        with record_finished_runs() if self.record_history else contextlib.nullcontext():
            self._estimate(job, points, finished=True)

    @staticmethod
    def _estimate(
        job: JobState, points: Iterable[tuple[float, float]], *, finished: bool = False
    ) -> Estimate:
        # History is kept per runner type and group: the job type is the group, as seed 003
        # kept its statistics per type; a prompt id on its server identifies the job.
        return estimate_run(
            points,
            1.0,
            runner_type=RUNNER_TYPE,
            work_dir=job.server,
            group=job.job_type,
            run_id=f"{job.server}/{job.prompt_id}",
            finished=finished,
        )

    def _eta(self, job: JobState) -> float | None:
        """Remaining seconds. An executing job: progresskit's estimator over its own pace,
        with the run history of its job type as the prior. Otherwise, or while that cannot
        tell yet, seed 003's way: the median completion time of the job's type, scaled by
        the progress made (queued: one median per job ahead of it as well); with no history
        for the type, the job's own pace once it is 5% done."""
        status = job.status
        if status not in _ESTIMABLE:
            return None
        marks = self._marks.get(job.job_id)
        if status is ProgressStatus.PROCESSING and marks is not None:
            known = self._estimates.get(job.job_id)
            if known is not None and known[0] == marks[-1]:
                seconds = known[1]
            else:
                seconds = self._estimate(job, marks).seconds
                self._estimates[job.job_id] = (marks[-1], seconds)
            if seconds is not None:
                return seconds
        median = self.statistics.median(job.job_type)
        if status is ProgressStatus.QUEUED:
            if median is None:
                return None
            queue = self._links[job.server].queue
            ahead = (job.queue_position or 0) + (len(queue.running) if queue else 0)
            return median * (ahead + 1)
        fraction = job.fraction()
        if median is not None:
            return median * (1.0 - fraction)
        if fraction >= 0.05 and job.started_wall is not None:
            elapsed = max(0.0, self._wall() - job.started_wall)
            return elapsed * (1.0 - fraction) / fraction
        return None


def _with_detail(update: ProgressUpdate, detail: str) -> ProgressUpdate:
    return attrs.evolve(update, detail=detail)
