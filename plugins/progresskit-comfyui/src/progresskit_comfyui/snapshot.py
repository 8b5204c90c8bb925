"""One look at a server, for the command line: its jobs now, without a running monitor."""

from __future__ import annotations

import time
from collections.abc import Sequence

import attrs

from progresskit_comfyui.deleted import was_deleted
from progresskit_comfyui.job import Detail, ProgressStatus, ProgressUpdate
from progresskit_comfyui.monitor import StatusMonitor
from progresskit_comfyui.protocol import ComfyUIError, Workflow

__all__ = ["ServerSnapshot", "snapshot_server"]


@attrs.frozen
class ServerSnapshot:
    url: str
    version: str
    #: Running, then pending (in queue order), then finished (newest first); or the jobs
    #: asked for, in the order asked.
    updates: tuple[ProgressUpdate, ...]
    taken_at: float


async def snapshot_server(
    url: str,
    *,
    prompt_ids: Sequence[str] | None = None,
    job_type: str | None = None,
    history_items: int = 20,
    listen_seconds: float = 0.5,
    timeout: float = 10.0,
) -> ServerSnapshot:
    """The jobs of the server at ``url``: every queued and running prompt and the newest
    ``history_items`` finished ones, or exactly ``prompt_ids``.

    Past prompts of the same workflow (same node classes, or ``job_type``) give the ETA.
    When a prompt is running, ``/ws`` is followed for up to ``listen_seconds``: ComfyUI
    shows other clients node-level progress only of prompts submitted without a client id.
    Raises :class:`ComfyUIError` when the server is unreachable or is not ComfyUI, and
    when a requested prompt is in neither its queue nor its history.
    """
    # One look is part of a status query: the query's session decides what is recorded.
    monitor = StatusMonitor(url, http_timeout=timeout, use_websocket=False, record_history=False)
    try:
        client = monitor.client(url)
        version = await client.system_stats()
        queue = await client.queue()
        recent = await client.recent_history(history_items) if history_items > 0 else []
        known = {e.prompt_id: e.workflow for e in queue.entries()}
        known.update({e.prompt_id: e.workflow for e in recent})

        def type_of(workflow: Workflow) -> str:
            return job_type or workflow.kind

        monitor.learn(recent, type_of)
        if prompt_ids is None:
            order = [e.prompt_id for e in queue.entries()]
            queued = set(order)
            order += [e.prompt_id for e in reversed(recent) if e.prompt_id not in queued]
        else:
            order = list(dict.fromkeys(prompt_ids))
        for prompt_id in order:
            workflow = known.get(prompt_id)
            monitor.monitor_job(prompt_id, prompt_id, type_of(workflow) if workflow else
                                (job_type or "default"))
        monitor.apply_history(recent)
        await monitor.refresh({monitor.servers[0]: queue})
        if listen_seconds > 0 and any(
            (u := monitor.progress_now(p)) is not None and u.status is ProgressStatus.PROCESSING
            for p in order
        ):
            await monitor.listen(listen_seconds)
        updates = []
        missing = []
        for prompt_id in order:
            update = monitor.progress_now(prompt_id)
            if update is None:
                continue
            if update.status is ProgressStatus.INITIALIZING:
                if was_deleted(monitor.servers[0], prompt_id):
                    # This process deleted it from the queue: ComfyUI keeps no trace of it.
                    update = attrs.evolve(update, status=ProgressStatus.CANCELLED,
                                          detail=Detail.DELETED)
                else:
                    missing.append(prompt_id)
            updates.append(update)
        if missing:
            raise ComfyUIError(
                f"{monitor.servers[0]}: {Detail.UNKNOWN_PROMPT} {', '.join(missing)}: in neither "
                f"the queue nor the history of the server (a wrong id or server, deleted by "
                f"another client, or the server restarted)"
            )
        return ServerSnapshot(monitor.servers[0], version, tuple(updates), time.time())
    finally:
        await monitor.stop_monitoring()
