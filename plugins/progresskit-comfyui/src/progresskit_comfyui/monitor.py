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
from progresskit_comfyui.deleted import remember_deleted
from progresskit_comfyui.job import Detail, JobState, ProgressStatus, ProgressUpdate
from progresskit_comfyui.protocol import (
    ComfyUIError,
    HistoryEntry,
    ProtocolError,
    QueueEntry,
    QueueSnapshot,
    ServerSlow,
    ServerUnavailable,
    Workflow,
    loads,
    normalise_url,
    workflow_from,
)
from progresskit_comfyui.statistics import GenerationStatistics, NodeTimes, record_node
from progresskit_comfyui.statstore import StatisticsFile, statistics_path

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
#: Reconnection delays: capped so that a server back on its port is reached within 2 s
#: (a delay is at most the cap, 1.5 s, plus the connection itself).
DEFAULT_BACKOFF = Backoff(base=1.0, factor=2.0, cap=1.5)
#: After an interrupt, the history and queue are asked this often until the server confirms
#: (the event stream may lag seconds behind a server busy with previews).
CONFIRM_INTERVAL = 0.1
#: ...for at most this long (ComfyUI stops at the next step or node boundary).
CONFIRM_SECONDS = 120.0
#: How fast a job's own pace (its finished nodes against their typical times) takes over
#: its ETA: fully once 1/PACE_TRUST of the expected work is done. Runs of one workflow
#: differ mostly by a factor over all their nodes (inputs, load): the two captured runs of
#: the same workflow, 25% apart, were so in every node. benchmarks/comfyui.py --eta: at 25%
#: of a job, 17% median error trusting in proportion to the work done, 2-4% with this.
PACE_TRUST = 4.0
#: Events of prompts not followed (yet) are kept this long, for at most EARLY_PROMPTS
#: prompts and EARLY_EVENTS events each: ComfyUI starts a prompt as soon as it is posted,
#: so its first events can arrive before the poster's ``monitor_job`` (seen: the whole
#: first node of a prompt posted to an idle server, which its ETA then missed).
EARLY_SECONDS = 10.0
EARLY_PROMPTS = 64
EARLY_EVENTS = 256
#: Text frames longer than this are no ComfyUI event (a progress message is about 150).
MAX_EVENT_CHARS = 4 * 1024 * 1024
#: What identifies the server process in ``/system_stats``: a change is another server.
_IDENTITY_KEYS = ("comfyui_version", "python_version", "pytorch_version", "argv")


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
        #: Monotonic time of the newest reply (any request); ``None`` before the first.
        self.answered_at: float | None = None
        #: The connection broke (refused, reset, the event stream dropped) since the last
        #: good poll: followed jobs gone from queue and history then mean a restart.
        self.lost_contact = False
        self.identity: str | None = None
        self.restarts = 0
        #: Seconds without a reply after which the server is ``stalled`` (set by the monitor).
        self.stall_after = 10.0

    def reached(self, now: float) -> None:
        self.answered_at = now
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
        if isinstance(exc, ServerUnavailable):
            self.lost_contact = True

    def silent_for(self, now: float) -> float | None:
        """Seconds the server has not answered while it is thought up (``None``: it answers,
        or is known down)."""
        if self.up is not True or self.answered_at is None:
            return None
        silent = now - self.answered_at
        return silent if silent > self.stall_after else None

    def describe(self, now: float) -> dict[str, Any]:
        state = {None: "not contacted", True: "up", False: "down"}[self.up]
        if self.silent_for(now) is not None:
            state = "stalled"
        return {
            "state": state,
            "restarts": self.restarts,
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
    :param adopt: follow every prompt the servers' queues show as well, each as job id =
        its prompt id, of job type ``adopt(workflow)`` (a watcher of a whole server).
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
        unknown_timeout: float = 5.0,
        stall_after: float = 10.0,
        adopt: Callable[[Workflow], str] | None = None,
    ):
        for name, value in (
            ("poll_interval", poll_interval),
            ("vanish_timeout", vanish_timeout),
            ("http_timeout", http_timeout),
            ("unknown_timeout", unknown_timeout),
            ("stall_after", stall_after),
        ):
            if not value > 0:
                raise ValueError(f"{name} must be > 0, got {value!r}")
        if retention < 0 or max_retained < 0 or min_poll_gap < 0:
            raise ValueError("retention, max_retained and min_poll_gap must be >= 0")
        self.poll_interval = poll_interval
        self.min_poll_gap = min(min_poll_gap, poll_interval)
        self.vanish_timeout = vanish_timeout
        self.unknown_timeout = unknown_timeout
        # Polls come every poll_interval: a silence shorter than two of them is no stall.
        self.stall_after = max(stall_after, 2 * poll_interval)
        self.retention = retention
        self.max_retained = max_retained
        self.http_timeout = http_timeout
        self.use_websocket = use_websocket
        self.record_history = record_history
        self.adopt = adopt
        self.client_id = client_id or f"progresskit-{uuid.uuid4().hex[:12]}"
        self.backoff = backoff or DEFAULT_BACKOFF
        self._clock, self._wall, self._sleep = clock, wall_clock, sleep
        self.statistics = GenerationStatistics(statistics_window)
        # What earlier processes learned (docs/comfyui.md, "Statistics"); a monitor that
        # records adds its own to it.
        where = statistics_path()
        self._statistics_file = None if where is None else StatisticsFile(where)
        if self._statistics_file is not None:
            self._statistics_file.load(self.statistics)
        self.node_times = NodeTimes()
        #: Bumped whenever node times are learned: cached weights are then recomputed.
        self._times_version = 0
        self._weights: dict[Hashable, tuple[tuple[int, int, int], dict[str, float] | None]] = {}
        #: Job type -> typical total seconds the history store holds (asked once per type).
        self._stored_totals: dict[str, float | None] = {}
        self._confirming: set[asyncio.Task[None]] = set()
        self._links: dict[str, _ServerLink] = {}
        self._jobs: dict[Hashable, JobState] = {}
        self._finished: OrderedDict[Hashable, None] = OrderedDict()
        #: (wall time, fraction done) of each executing job: progresskit's estimator's
        #: observations for its ETA, and what a completed job leaves in the run history.
        self._marks: dict[Hashable, deque[tuple[float, float]]] = {}
        #: The last estimate per job, with the observation it was made at: a job's many
        #: updates between two observations (node changes, previews) reuse it.
        self._estimates: dict[Hashable, tuple[tuple[float, float], float | None]] = {}
        #: (server, prompt id) -> the newest events of a prompt not followed yet, as
        #: (kind, data, monotonic, wall) (see EARLY_SECONDS).
        self._early: OrderedDict[tuple[str, str], deque[tuple[str, dict[str, Any], float, float]]]
        self._early = OrderedDict()
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
            link.stall_after = self.stall_after
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
        self._save_statistics(force=True)
        for task in list(self._confirming):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
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
        link.wake.set()
        if not self._register(link, job):
            self._notify(job)
        return True

    def _register(self, link: _ServerLink, job: JobState) -> bool:
        """Follow ``job``, starting with the events of it that arrived before; whether
        they changed it (its callbacks were then called)."""
        self._jobs[job.job_id] = job
        link.jobs[job.prompt_id] = job
        was, changed = job.status, False
        for kind, data, mono, wall in self._early.pop((link.url, job.prompt_id), ()):
            applied, step_seconds = job.on_event(kind, data, mono, wall)
            changed |= applied
            if step_seconds is not None:
                self.statistics.record_step(step_seconds)
        if changed:
            self._changed(job, was)
        return changed

    def forget_job(self, job_id: Hashable) -> bool:
        """Stop following ``job_id``; whether it was followed."""
        job = self._jobs.pop(job_id, None)
        if job is None:
            return False
        self._links[job.server].jobs.pop(job.prompt_id, None)
        self._finished.pop(job_id, None)
        self._marks.pop(job_id, None)
        self._estimates.pop(job_id, None)
        self._weights.pop(job_id, None)
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
        eta = self._eta(job, self._clock())
        return None if eta is None else datetime.fromtimestamp(self._wall() + eta, timezone.utc)

    def server_jobs(self, server: str, finished: int) -> list[ProgressUpdate]:
        """The jobs followed on ``server``: running and pending as its queue last showed them
        (in queue order), then the newest ``finished`` ended ones, newest first."""
        link = self._links[normalise_url(server)]
        order = [e.prompt_id for e in link.queue.entries()] if link.queue else []
        active = [link.jobs[p] for p in order if p in link.jobs]
        ended = [self._jobs[j] for j in reversed(self._finished)
                 if self._jobs[j].server == link.url][:max(0, finished)]
        return [self._update(job) for job in (*active, *ended)]

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
            "servers": {url: self.server_health(url) for url in self._links},
        }

    def server_health(self, server: str) -> dict[str, Any]:
        """``get_queue_statistics()["servers"][server]``, without the statistics."""
        return self._links[normalise_url(server)].describe(self._clock())

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
        # again and interrupt it then, saying so.
        deleting = False
        for _ in range(3):
            found = (await link.client.queue()).find(job.prompt_id)
            if found is None:
                entry = await link.client.history(job.prompt_id)
                if entry is not None:  # it ran to its end in between
                    self._apply_history(job, entry)
                elif deleting:
                    remember_deleted(link.url, job.prompt_id)
                    self._finish(job, ProgressStatus.CANCELLED, Detail.DELETED)
                    return True
                return False
            if found[0] == "running":
                job.cancel_requested = True
                if deleting:
                    job.cancel_detail = Detail.INTERRUPTED_AFTER_DELETE
                await link.client.interrupt(job.prompt_id)
                self._confirm(link, job)
                return True
            await link.client.delete_pending([job.prompt_id])
            deleting = True
        return False

    def _finish(self, job: JobState, status: ProgressStatus, detail: str) -> None:
        was = job.status
        if job.finish(status, self._clock(), self._wall(), detail):
            self._changed(job, was)

    def _confirm(self, link: _ServerLink, job: JobState) -> None:
        """Ask the history (and queue) until the interrupted job's end is confirmed."""

        async def confirm() -> None:
            deadline = self._clock() + CONFIRM_SECONDS
            while not job.status.is_terminal and self._clock() < deadline:
                await asyncio.sleep(CONFIRM_INTERVAL)
                with contextlib.suppress(ComfyUIError):
                    entry = await link.client.history(job.prompt_id)
                    if entry is not None:
                        self._apply_history(job, entry)

        task = asyncio.ensure_future(confirm())
        self._confirming.add(task)
        task.add_done_callback(self._confirming.discard)

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
        server = self.servers[0]
        for entry in entries:
            seconds = entry.generation_seconds
            if entry.outcome == "success" and seconds is not None:
                self.statistics.record_completion(job_type(entry.workflow), seconds,
                                                  f"{server}#{entry.prompt_id}")

    # -- internals: polling -----------------------------------------------------------------

    async def _poll_loop(self, link: _ServerLink) -> None:
        while self._running:
            self._evict()
            self._save_statistics()
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
        link.reached(self._clock())
        link.queue = queue
        restarted = link.lost_contact and await self._identity_changed(link)
        lost_contact, link.lost_contact = link.lost_contact, False
        where: dict[str, tuple[str, int]] = {}
        entries: dict[str, QueueEntry] = {}
        for i, entry in enumerate(queue.running):
            where[entry.prompt_id], entries[entry.prompt_id] = ("running", i), entry
        for i, entry in enumerate(sorted(queue.pending, key=lambda e: e.number)):
            where[entry.prompt_id], entries[entry.prompt_id] = ("pending", i), entry
        if self.adopt is not None:
            for entry in queue.entries():
                if entry.prompt_id not in link.jobs and entry.prompt_id not in self._jobs:
                    self._adopt(link, entry)
        absent: list[JobState] = []
        wall = self._wall()
        for job in list(link.jobs.values()):
            if job.status.is_terminal:
                continue
            if job.news_at > asked:
                # Older news than the event stream's about its status; its graph (the node
                # classes) is still the graph.
                if job.workflow is None and job.prompt_id in entries:
                    job.workflow = entries[job.prompt_id].workflow
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
                elif (lost_contact or restarted) and job.seen:
                    # Followed, then contact broke, and now the server has it in neither
                    # its queue nor its history (both live in its memory): it restarted.
                    restarted = True
                    self._finish(job, ProgressStatus.FAILED, Detail.SERVER_RESTARTED)
                elif job.news_at <= asked:
                    was = job.status
                    if job.on_absent(self._clock(), self._wall(), self.vanish_timeout,
                                     self.unknown_timeout):
                        self._changed(job, was)
        if restarted:
            link.restarts += 1
            logger.warning("ComfyUI %s restarted (restart %d): its lost jobs are failed",
                           link.url, link.restarts)

    def _adopt(self, link: _ServerLink, entry: QueueEntry) -> None:
        """Follow a prompt first met in the queue; the snapshot it came in applies to it."""
        assert self.adopt is not None
        job = JobState(entry.prompt_id, entry.prompt_id, self.adopt(entry.workflow), link.url,
                       self._clock())
        job.workflow = entry.workflow
        self._register(link, job)

    async def _identity_changed(self, link: _ServerLink) -> bool:
        """Whether ``/system_stats`` names another server process than before."""
        try:
            body = await link.client.system_identity()
        except ComfyUIError:
            return False
        identity = json.dumps({k: body.get(k) for k in _IDENTITY_KEYS}, sort_keys=True)
        changed = link.identity is not None and identity != link.identity
        link.identity = identity
        return changed

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
                    if link.websocket_error is not None:
                        # The stream broke: a restart may have happened meanwhile.
                        link.lost_contact = True
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
        if len(text) > MAX_EVENT_CHARS:
            logger.debug("ComfyUI %s: ignored a text frame of %d characters", link.url, len(text))
            return
        try:
            message = loads(text, f"{link.url}/ws")
        except ProtocolError as exc:
            logger.debug("ComfyUI %s: ignored a text frame: %s", link.url, exc)
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
        if not isinstance(prompt_id, str):
            return
        job = link.jobs.get(prompt_id)
        if job is None:
            self._keep_early(link, prompt_id, kind, data)
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

    def _keep_early(self, link: _ServerLink, prompt_id: str, kind: str,
                    data: dict[str, Any]) -> None:
        mono = self._clock()
        while self._early:
            oldest = next(iter(self._early.values()))
            if len(self._early) < EARLY_PROMPTS and mono - oldest[-1][2] < EARLY_SECONDS:
                break
            self._early.popitem(last=False)
        key = (link.url, prompt_id)
        events = self._early.get(key)
        if events is None:
            events = self._early[key] = deque(maxlen=EARLY_EVENTS)
        self._early.move_to_end(key)
        events.append((kind, data, mono, self._wall()))

    # -- internals: updates -----------------------------------------------------------------

    def _changed(self, job: JobState, was: ProgressStatus) -> None:
        self._mark(job)
        if job.status.is_terminal and not was.is_terminal:
            self._finished[job.job_id] = None
            self._learn_nodes(job)
            marks = self._marks.pop(job.job_id, None)
            self._estimates.pop(job.job_id, None)
            self._weights.pop(job.job_id, None)
            key = f"{job.server}#{job.prompt_id}"
            if job.status is ProgressStatus.COMPLETED and job.generation_time is not None:
                self.statistics.record_completion(job.job_type, job.generation_time, key)
                self._record_history(job, marks)
            elif job.status is ProgressStatus.FAILED:
                summary = job.error.summary if job.error else (job.detail or "error")
                self.statistics.record_failure(job.job_type, summary, key)
            elif job.status is ProgressStatus.TIMEOUT:
                self.statistics.record_failure(job.job_type, "timeout", key)
        self._notify(job)

    def _save_statistics(self, force: bool = False) -> None:
        store = self._statistics_file
        if store is None or not self.record_history:
            return
        if force:
            store.save(self.statistics)
        else:
            store.save_due(self.statistics, self._clock())

    def _learn_nodes(self, job: JobState) -> None:
        """Keep how long each node of the ended job took (only nodes that ran to their end)."""
        if not job.node_seconds:
            return
        if job.workflow is None:
            # Ended before a poll saw its graph: the history has it.
            self._learn_later(job)
            return
        # Timed by the arrival of their events, as the running job is followed: a server
        # busy with previews delays its events alike for both.
        with record_finished_runs() if self.record_history else contextlib.nullcontext():
            for node, seconds in job.node_seconds.items():
                node_class = job.workflow.class_of(node)
                if node_class is None:
                    continue
                self.node_times.record(job.job_type, node_class, seconds)
                start = job.started_wall if job.started_wall is not None else self._wall()
                record_node(job.job_type, node_class, f"{job.server}/{job.prompt_id}/{node}",
                            start, seconds)
        self._times_version += 1

    def _learn_later(self, job: JobState) -> None:
        link = self._links[job.server]

        async def learn() -> None:
            with contextlib.suppress(ComfyUIError):
                entry = await link.client.history(job.prompt_id)
                if entry is not None and job.workflow is None:
                    job.workflow = entry.workflow
                    self._learn_nodes(job)

        if self._running:
            task = asyncio.ensure_future(learn())
            self._confirming.add(task)
            task.add_done_callback(self._confirming.discard)

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
        mono, wall = self._clock(), self._wall()
        eta = self._eta(job, mono)
        estimated = None if eta is None else datetime.fromtimestamp(wall + eta, timezone.utc)
        update = job.snapshot(eta, estimated, self._fraction(job, mono), wall)
        if job.status.is_terminal:
            return update
        link = self._links[job.server]
        if link.up is False:
            return _with_detail(update, f"server unreachable: {link.last_error}")
        silent = link.silent_for(mono)
        if silent is not None:
            return _with_detail(update, f"server stalled: no answer for {silent:.0f}s")
        return update

    def _weights_of(self, job: JobState) -> dict[str, float] | None:
        """Expected seconds of each node the job runs, when every one is known."""
        # Valid while nothing new is learned and the job's graph and cache stay as they were.
        key = (self._times_version, id(job.workflow), len(job.cached))
        known = self._weights.get(job.job_id)
        if known is not None and known[0] == key:
            return known[1]
        weights: dict[str, float] | None = None
        nodes = job.to_run()
        if job.workflow is not None and nodes:
            weights = {}
            for node in nodes:
                node_class = job.workflow.class_of(node)
                seconds = None if node_class is None else self.node_times.expected(
                    job.job_type, node_class)
                if seconds is None:
                    weights = None
                    break
                weights[node] = seconds
        self._weights[job.job_id] = (key, weights)
        return weights

    def _fraction(self, job: JobState, mono: float) -> float:
        return job.fraction(self._weights_of(job), mono)

    def _mark(self, job: JobState) -> None:
        if job.status is not ProgressStatus.PROCESSING or job.started_wall is None:
            return
        marks = self._marks.get(job.job_id)
        if marks is None:
            marks = self._marks[job.job_id] = deque([(job.started_wall, 0.0)], maxlen=MAX_MARKS)
        fraction = self._fraction(job, self._clock())
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

    def _eta(self, job: JobState, mono: float) -> float | None:
        """Remaining seconds, as of now.

        With every node's expected time known (learned per node class and job type from
        earlier jobs, across processes through the history store): the expected time of
        what is left, counted down while the running node runs, scaled by this job's own
        pace on the nodes it finished. Otherwise progresskit's estimator over the job's own
        pace with the run history of its job type as prior; then seed 003's way, the
        typical time of the job type scaled by the progress made; with neither, the job's
        own pace once it is 5% done. A queued job waits for what runs before it.
        """
        status = job.status
        if status not in _ESTIMABLE:
            return None
        if status is ProgressStatus.QUEUED:
            return self._queued_eta(job, mono)
        weights = self._weights_of(job)
        if weights:
            return self._weighted_eta(job, weights, mono)
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
        fraction = self._fraction(job, mono)
        total = self._expected_total(job)
        if total is not None:
            if job.current_node is None and not job.finished_nodes and job.started_wall:
                # Nothing seen of its nodes (another client's prompt): count down from the
                # start the queue showed.
                return max(0.0, total - max(0.0, self._wall() - job.started_wall))
            return total * (1.0 - fraction)
        if fraction >= 0.05 and job.started_wall is not None:
            elapsed = max(0.0, self._wall() - job.started_wall)
            return elapsed * (1.0 - fraction) / fraction
        return None

    def _weighted_eta(self, job: JobState, weights: Mapping[str, float], mono: float) -> float:
        """The typical time of what is left, at this job's own pace: its finished nodes'
        times against their typical ones, trusted as it is measured (fully once a quarter
        of the expected work is done). The pace scales the nodes' expected times, not the
        time the running node has already run, so the ETA counts down second by second
        while no event arrives."""
        expected_done = actual_done = 0.0
        for node in job.finished_nodes:
            if node in weights and node in job.node_seconds:
                expected_done += weights[node]
                actual_done += job.node_seconds[node]
        total = sum(weights.values())
        pace = 1.0
        if expected_done > 0 and actual_done > 0 and total > 0:
            pace = (actual_done / expected_done) ** min(1.0, PACE_TRUST * expected_done / total)
        left = 0.0
        for node, seconds in weights.items():
            if node in job.finished_nodes:
                continue
            if node == job.current_node:
                left += job.node_left(seconds * pace, mono)
            else:
                left += seconds * pace
        return left

    def _expected_total(self, job: JobState) -> float | None:
        """Typical seconds of a whole job of the job's type: this process's completions,
        else the sum of its nodes' typical times, else the history store's record."""
        median = self.statistics.median(job.job_type)
        if median is not None:
            return median
        weights = self._weights_of(job)
        if weights:
            return sum(weights.values())
        if job.job_type not in self._stored_totals:
            found = estimate_run([], 1.0, runner_type=RUNNER_TYPE, work_dir=job.server,
                                 group=job.job_type).seconds
            self._stored_totals[job.job_type] = (
                found if found is not None and math.isfinite(found) else None)
        return self._stored_totals[job.job_type]

    def _queued_eta(self, job: JobState, mono: float) -> float | None:
        """What runs before it (the running prompt's remaining time, one typical job per
        prompt ahead), then its own typical time."""
        own = self._expected_total(job)
        if own is None:
            return None
        link = self._links[job.server]
        queue = link.queue
        ahead = 0.0
        if queue is not None:
            for entry in queue.running:
                other = link.jobs.get(entry.prompt_id)
                eta = None if other is None or other is job else self._eta(other, mono)
                ahead += own if eta is None else eta
        ahead += own * (job.queue_position or 0)
        return ahead + own


def _with_detail(update: ProgressUpdate, detail: str) -> ProgressUpdate:
    return attrs.evolve(update, detail=detail)
