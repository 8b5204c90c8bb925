"""The progresskit plugin: ComfyUI servers and jobs as runs.

Two ways in:

* ``progresskit status http://host:8188``: every job of the server (running, pending, the
  newest finished) is one run, claimed through ``progresskit_resolve_target``;
* a work dir whose config has ``comfyui_url`` and ``comfyui_prompt_ids``: one run made of
  those jobs, detected and tracked through the usual detect/make_tracker hooks.
"""

from __future__ import annotations

import contextvars
import os
import statistics
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from progresskit import (
    BaseProgressTracker,
    CompletedItem,
    ConfigSchema,
    ProgressInfo,
    RunnerDetectionError,
    RunStatus,
    Status,
    Target,
    TrackerSpec,
    apply_rules,
    ensure,
    hookimpl,
)
from progresskit_comfyui import RUNNER_TYPE

if TYPE_CHECKING:
    from progresskit_comfyui.job import ProgressUpdate

# The job model and the protocol (attrs classes, a fifth of what loading every plugin costs)
# are imported where a ComfyUI run or URL is met, not by every command that loads plugins.

T = TypeVar("T")


def _run_sync(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` to its end from synchronous code, even code that an event loop
    called (the tracker API is synchronous): then on a thread of its own."""
    # Imported when a server is asked, not by every command that loads the plugins.
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with ThreadPoolExecutor(1, thread_name_prefix="comfyui") as pool:
        # In this context: the query's ETA-history block must see the jobs that finished.
        return pool.submit(contextvars.copy_context().run, asyncio.run, coroutine).result()


#: The defaults of this plugin's config keys, declared with them (progresskit_addconfig).
DEFAULT_HISTORY_ITEMS = 20
DEFAULT_LISTEN_SECONDS = 0.5
DEFAULT_TIMEOUT = 10.0


def _options(config: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "history_items": int(config.get("comfyui_history_items", DEFAULT_HISTORY_ITEMS)),
        "listen_seconds": float(config.get("comfyui_listen_seconds", DEFAULT_LISTEN_SECONDS)),
        "timeout": float(config.get("comfyui_timeout", DEFAULT_TIMEOUT)),
    }


# -- ProgressUpdate -> the progresskit model ----------------------------------------------------


def run_name(update: ProgressUpdate) -> str:
    """A job's name: its job type when someone named it, else its workflow's."""
    named = update.job_type not in ("default", "") and "+" not in update.job_type
    return update.job_type if named or not update.workflow_name else update.workflow_name


def progress_info(update: ProgressUpdate, observed_at: float) -> ProgressInfo:
    """One job as a :class:`ProgressInfo`. ``observed_at``: when the server was asked."""
    active = not update.status.is_terminal
    node = None
    if update.current_node is not None:
        node = f"node {update.current_node}"
        if update.current_node_class:
            node += f" ({update.current_node_class})"
    details = {"prompt_id": update.comfyui_prompt_id, "server": update.server,
               "job_type": update.job_type, "items_unit": "nodes",
               "run_name": run_name(update)}
    if update.queue_position is not None:
        details["queue_position"] = str(update.queue_position)
    if update.detail:
        details["detail"] = update.detail
    started = update.started_at
    end = update.ended_at if update.ended_at is not None else observed_at
    metrics = {}
    if update.generation_time is not None:
        metrics["generation_seconds"] = update.generation_time
    return ProgressInfo(
        progress_percentage=update.progress_percent,
        runner_type=RUNNER_TYPE,
        start_time=started,
        # The server said, just now, that an active job is there: that is a sign of life.
        last_update_time=observed_at if active else (update.ended_at or update.updated_at),
        error_message=update.error_message,
        completed_steps=update.current_step if update.total_steps else None,
        total_steps=update.total_steps or None,
        current_stage=update.status.value,
        stage_progress_percentage=(100.0 * update.current_step / update.total_steps
                                   if update.total_steps else None),
        current_item=node,
        items_completed=update.nodes_completed if update.nodes_total is not None else None,
        items_total=update.nodes_total,
        elapsed_seconds=update.generation_time if update.generation_time is not None else (
            max(0.0, end - started) if started is not None else None),
        eta_seconds=update.eta_seconds,
        source_status=update.status.value,
        reported_status=update.status.canonical,
        metrics=metrics,
        details=details,
    )


def run_status(key: str, work_dir: str, progress: ProgressInfo, config: Mapping[str, Any],
               now: float, update_times: Sequence[float] = ()) -> RunStatus:
    """The core's status rules, with the limits ``config`` sets, applied to one ComfyUI job
    (``update_times``: when the server reported its progress, its rhythm)."""
    if progress.reported_status is Status.UNKNOWN:
        return RunStatus(key, work_dir, progress, Status.UNKNOWN, None,
                         progress.details.get("detail") or "the server reports no status",
                         progress.last_update_time)
    decision = apply_rules(
        config,
        progress,
        complete=progress.reported_status is Status.FINISHED,
        last_activity=progress.last_update_time,
        process=None,
        now=now,
        update_times=update_times,
        update_times_recorded=True,
    )
    return RunStatus(key, work_dir, progress, decision.status, None, decision.reason,
                     progress.last_update_time)


# -- a work dir's jobs ------------------------------------------------------------------------


def combine(updates: Sequence[ProgressUpdate], observed_at: float) -> ProgressInfo:
    """Several jobs of one run as one :class:`ProgressInfo`.

    The run is as far as its jobs on average; it is active while any job is, and otherwise
    takes the worst ending (failed, timeout, cancelled, then completed).
    """
    if len(updates) == 1:
        return progress_info(updates[0], observed_at)
    from progresskit_comfyui.job import ProgressStatus

    active_order = (ProgressStatus.PROCESSING, ProgressStatus.COMPLETING,
                    ProgressStatus.QUEUED, ProgressStatus.INITIALIZING)
    ended_order = (ProgressStatus.FAILED, ProgressStatus.TIMEOUT, ProgressStatus.CANCELLED,
                   ProgressStatus.UNKNOWN, ProgressStatus.COMPLETED)
    infos = [progress_info(u, observed_at) for u in updates]
    statuses = {u.status for u in updates}
    order = active_order if statuses - set(ended_order) else ended_order
    overall = next(s for s in order if s in statuses)
    running = next((u for u in updates if u.status is ProgressStatus.PROCESSING), None)
    errors = [f"{u.comfyui_prompt_id}: {u.error_message or u.detail or u.status.value}"
              for u in updates if u.status in (ProgressStatus.FAILED, ProgressStatus.TIMEOUT)]
    etas = [u.eta_seconds for u in updates
            if u.eta_seconds is not None and not u.status.is_terminal]
    starts = [i.start_time for i in infos if i.start_time is not None]
    heartbeats = [i.last_update_time for i in infos if i.last_update_time is not None]
    lead = progress_info(running, observed_at) if running else None
    return ProgressInfo(
        progress_percentage=statistics.fmean(u.progress_percent for u in updates),
        runner_type=RUNNER_TYPE,
        start_time=min(starts) if starts else None,
        last_update_time=max(heartbeats) if heartbeats else None,
        error_message="; ".join(errors) or None,
        completed_steps=lead.completed_steps if lead else None,
        total_steps=lead.total_steps if lead else None,
        current_stage=overall.value,
        stage_progress_percentage=lead.stage_progress_percentage if lead else None,
        current_item=f"{running.comfyui_prompt_id} {lead.current_item or ''}".strip()
        if running and lead else None,
        items_completed=sum(1 for u in updates if u.status is ProgressStatus.COMPLETED),
        items_total=len(updates),
        completed_items=tuple(
            CompletedItem(u.comfyui_prompt_id, u.status.value,
                          {"generation_seconds": u.generation_time}
                          if u.generation_time is not None else {})
            for u in updates if u.status.is_terminal
        ),
        # Jobs run one after another on a server, and a queued job's ETA already counts
        # the jobs ahead of it: the run ends with its latest job.
        eta_seconds=max(etas) if etas else None,
        source_status=overall.value,
        reported_status=overall.canonical,
        details={"server": updates[0].server, "items_unit": "prompts",
                 "prompt_ids": ",".join(u.comfyui_prompt_id for u in updates)},
    )


class ComfyUIJobsTracker(BaseProgressTracker):
    """A work dir standing for jobs on a ComfyUI server (``comfyui_url``,
    ``comfyui_prompt_ids``)."""

    runner_type = RUNNER_TYPE
    expected_files = ()  # completion is the server's word, not a file
    # The times are the server's own timestamps and when its events arrived, never files'
    # modification times: steps a tenth of a second apart are a fast job.
    update_times_recorded = True
    log_pattern = "comfyui*.log"
    # Nothing on disk changes when the server's jobs do, so the file fingerprint cannot
    # tell when to look again. One status query asks for progress, completion and activity
    # in turn, and that must be one look at the server, not three.
    reuse_seconds = 1.0

    def __init__(self, work_dir: str | os.PathLike[str], config: Mapping[str, Any] | None = None):
        super().__init__(work_dir, config)
        if not self.config.get("comfyui_url") or not self.config.get("comfyui_prompt_ids"):
            # Only a pinned runner_type gets here: detection claims on these two keys.
            raise RunnerDetectionError(
                f"{self.work_dir}: runner type 'comfyui' needs 'comfyui_url' and "
                f"'comfyui_prompt_ids' in its config"
            )
        from progresskit_comfyui.protocol import normalise_url

        self.url = normalise_url(str(self.config["comfyui_url"]))
        self.prompt_ids = [str(p) for p in self.config["comfyui_prompt_ids"]]
        #: When the server reported progress of the jobs, over every look (a watching
        #: session keeps the tracker): the newest UPDATE_TIMES.
        self._update_times: tuple[float, ...] = ()

    def update_times(self) -> Sequence[float]:
        """When the server reported progress of the run's jobs (their events, the start and
        end its history holds), oldest first."""
        return self._update_times

    def is_complete(self) -> bool:
        return self.get_progress().reported_status is Status.FINISHED

    def calculate_progress(self) -> ProgressInfo:
        """Raises :class:`ComfyUIError` when the server cannot say: the run is then shown as
        ``unknown`` with the reason, never as failed."""
        options = _options(self.config)
        from progresskit_comfyui.snapshot import snapshot_server

        snapshot = _run_sync(snapshot_server(
            self.url, prompt_ids=self.prompt_ids, job_type=self.config.get("comfyui_job_type"),
            **options,
        ))
        from progresskit_comfyui.job import UPDATE_TIMES

        seen = {t for u in snapshot.updates for t in u.update_times}
        self._update_times = tuple(sorted(seen.union(self._update_times)))[-UPDATE_TIMES:]
        return combine(snapshot.updates, snapshot.taken_at)


async def cancel_prompts(
    server: str, prompt_ids: Sequence[str], timeout: float = DEFAULT_TIMEOUT
) -> int:
    """Interrupt the running and delete the pending prompts among ``prompt_ids``; how many.

    Raises :class:`ComfyUIError` when the server cannot be asked or none of the prompts is
    queued or running (nothing left to stop).
    """
    from progresskit_comfyui.monitor import StatusMonitor
    from progresskit_comfyui.protocol import ComfyUIError

    monitor = StatusMonitor(server, http_timeout=timeout, use_websocket=False)
    try:
        for prompt_id in prompt_ids:
            monitor.monitor_job(prompt_id, prompt_id)
        stopped = 0
        for prompt_id in prompt_ids:
            stopped += await monitor.cancel_job(prompt_id)
    finally:
        await monitor.stop_monitoring()
    if not stopped:
        raise ComfyUIError(f"{monitor.servers[0]}: none of {', '.join(prompt_ids)} is queued or "
                           f"running, nothing to cancel")
    return stopped


# -- plugin hooks ---------------------------------------------------------------------------


def _check_url(value: Any) -> None:
    from progresskit_comfyui.protocol import normalise_url

    try:
        normalise_url(value)
    except ValueError as exc:
        raise ValueError(str(exc)) from None


@hookimpl
def progresskit_addconfig(schema: ConfigSchema) -> None:
    schema.add("comfyui_url", (str, type(None)), check=_check_url,
               help="Base URL of the ComfyUI server whose jobs this work dir tracks "
               "(with comfyui_prompt_ids).")
    schema.add("comfyui_prompt_ids", (list, type(None)),
               help="Prompt ids (from POST /prompt) of the jobs this work dir tracks.",
               check=lambda v: ensure(bool(v) and all(isinstance(p, str) and p.strip() for p in v),
                                      "expects a non-empty list of prompt id strings"))
    schema.add("comfyui_job_type", (str, type(None)),
               help="Job type for ETA statistics (default: the workflow's node classes).")
    schema.add("comfyui_history_items", int, default=DEFAULT_HISTORY_ITEMS,
               help="Finished prompts read from /history: listed for a server URL target, and "
               "the past completion times the ETA is based on.",
               check=lambda v: ensure(0 <= v <= 10000, "must be between 0 and 10000"))
    schema.add("comfyui_listen_seconds", float, default=DEFAULT_LISTEN_SECONDS,
               help="How long to follow /ws for node-level progress of a running prompt.",
               check=lambda v: ensure(0 <= v <= 60, "must be between 0 and 60 seconds"))
    schema.add("comfyui_timeout", float, default=DEFAULT_TIMEOUT,
               help="Seconds to wait for a ComfyUI reply before giving up.",
               check=lambda v: ensure(v > 0, "must be > 0"))


#: The config file's name (progresskit's ``CONFIG_FILENAME``, not in its public API).
_CONFIG_FILE = "progresskit.yaml"


def _claims(target: Target) -> bool:
    """The config names a server and prompts, and either the directory is the explicit
    target or the config is its own file: a work dir of ComfyUI jobs has no other files,
    so in a scan of a tree its own config is its file evidence."""
    config = target.config
    evidence = target.use_config or target.has_file(_CONFIG_FILE)
    return bool(evidence and config.get("comfyui_url") and config.get("comfyui_prompt_ids"))


tracker = TrackerSpec(
    ComfyUIJobsTracker,
    claim=_claims,
    expects="'comfyui_url' and 'comfyui_prompt_ids' in config; or an http(s):// URL of a "
    "ComfyUI server as the target",
)
progresskit_detect_runner, progresskit_make_tracker, progresskit_describe_runner = tracker.hooks


def _cancel_target(run: RunStatus) -> tuple[str, list[str]] | None:
    """The server and prompt ids a ComfyUI run stands for, if it records them."""
    details = run.progress.details
    server = details.get("server")
    prompt_ids = details.get("prompt_ids") or details.get("prompt_id")
    return (server, prompt_ids.split(",")) if server and prompt_ids else None


@hookimpl
def progresskit_can_cancel(run: RunStatus) -> bool | None:
    if run.progress.runner_type != RUNNER_TYPE:
        return None
    return _cancel_target(run) is not None


@hookimpl
def progresskit_cancel(run: RunStatus, grace_seconds: float) -> bool | None:
    """Interrupt or dequeue the run's prompts. ComfyUI stops a prompt at its next step or
    node boundary by itself, so there is nothing to escalate after ``grace_seconds``."""
    if run.progress.runner_type != RUNNER_TYPE:
        return None
    target = _cancel_target(run)
    if target is None:
        from progresskit_comfyui.protocol import ComfyUIError

        raise ComfyUIError(
            f"{run.config}: no ComfyUI server and prompt id recorded for this run; cannot cancel"
        )
    _run_sync(cancel_prompts(*target))
    return True


@hookimpl
def progresskit_resolve_target(target: str, config: Mapping[str, Any]) -> list[RunStatus] | None:
    """``http(s)://HOST:PORT``: every job of the server; ``http(s)://HOST:PORT#PROMPT_ID``
    (a run's ``work_dir``): that one job."""
    if not target.startswith(("http://", "https://")):
        return None
    from progresskit_comfyui.live import follower_of
    from progresskit_comfyui.protocol import ComfyUIError, normalise_url
    from progresskit_comfyui.snapshot import snapshot_server

    base, _, prompt_id = target.partition("#")
    live = follower_of(target)
    try:
        if live is not None:
            # A watcher follows the server: answer from what its event stream and polls
            # told, without asking again.
            url, updates, taken_at = live.url, live.updates(), time.time()
        else:
            snapshot = _run_sync(snapshot_server(
                normalise_url(base), prompt_ids=[prompt_id] if prompt_id else None,
                job_type=config.get("comfyui_job_type"), **_options(config)))
            url, updates, taken_at = snapshot.url, snapshot.updates, snapshot.taken_at
    except (ValueError, ComfyUIError) as exc:
        raise RunnerDetectionError(f"{target}: not a usable ComfyUI server: {exc}") from exc
    return [
        # The work dir is the job's identity (the dashboard's run id, a cancel's target);
        # the config, what the table shows first, names it.
        run_status(f"{run_name(u)} {u.comfyui_prompt_id[:8]}", f"{url}#{u.comfyui_prompt_id}",
                   progress_info(u, taken_at), config, taken_at, u.update_times)
        for u in updates
    ]


@hookimpl
def progresskit_follow_target(
    target: str, config: Mapping[str, Any], changed: Callable[[], None]
) -> Callable[[], None] | None:
    """A watcher of a server URL (``watch``, ``serve``, ``Monitor``): follow the server
    live (its event stream, and its queue and history asked again as soon as the stream
    announces a change), so that an ending shows within a fraction of a second. A single
    job's target (``URL#PROMPT_ID``) is polled."""
    if not target.startswith(("http://", "https://")) or "#" in target:
        return None
    from progresskit_comfyui.live import LiveServer, follow
    from progresskit_comfyui.protocol import ComfyUIError, normalise_url

    options = _options(config)
    try:
        server = LiveServer(normalise_url(target), job_type=config.get("comfyui_job_type"),
                            history_items=options["history_items"], timeout=options["timeout"],
                            changed=changed)
    except (ValueError, ComfyUIError) as exc:
        raise RunnerDetectionError(f"{target}: not a usable ComfyUI server: {exc}") from exc
    return follow(target, server)
