"""Seed 003's WebSocket: changes told as StatusMonitor ``progress_update`` messages.

Seed 003's front end connects to the bare ``ws://HOST:8329`` and reads
``{"type": "progress_update", "data": {job_id, status, progress_percent, ...}}`` for every
change from then on; it may send ``{"type": "get_job_progress", "job_id": ...}``.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from typing import Any

from progresskit.model.core import RunStatus, Status
from progresskit.server.channels import Channel
from progresskit.server.hub import News
from progresskit.server.streams import Client
from progresskit.server.views import dumps

__all__ = ["JobsChannel", "progress_update"]

#: The canonical statuses in seed 003's ProgressStatus words. Seed 003 has no word for a
#: cancelled job; the ComfyUI plugin added "cancelled", used here too.
_SEED_003_STATUS = {
    Status.PENDING: "queued",
    Status.RUNNING: "processing",
    Status.STUCK: "processing",
    Status.CRASHED: "timeout",
    Status.FAILED: "failed",
    Status.CANCELLED: "cancelled",
    Status.FINISHED: "completed",
    Status.OUTDATED: "completed",
    Status.UNKNOWN: "unknown",
}


def progress_update(job_id: str, run: RunStatus, at: float) -> dict[str, Any]:
    """Seed 003's ``progress_update`` message for ``run``, known to clients as ``job_id``."""
    progress = run.progress
    remaining = progress.eta_seconds
    estimated = None
    if remaining is not None and run.status.is_active:
        since = progress.last_update_time if progress.last_update_time is not None else at
        estimated = datetime.fromtimestamp(since + remaining, timezone.utc).isoformat()
    return {
        "type": "progress_update",
        "data": {
            "job_id": job_id,
            "comfyui_prompt_id": progress.details.get("prompt_id"),
            "status": _SEED_003_STATUS[run.status],
            "canonical_status": run.status.value,
            # Seed 003's protocol carries a number: unknown progress is its 0 (docs/serve.md).
            "progress_percent": progress.progress_percentage or 0.0,
            "current_step": progress.completed_steps or 0,
            "total_steps": progress.total_steps or 0,
            "estimated_completion": estimated,
            "generation_time": progress.elapsed_seconds if not run.status.is_active else None,
            "error_message": progress.error_message,
        },
    }


class JobsChannel(Channel):
    """Seed 003's StatusMonitor socket, at the bare address its clients open."""

    path = "/"

    def publish(self, news: News) -> None:
        if news.change.kind == "removed" or not self.clients:
            return
        self.clients.broadcast(dumps(progress_update(news.rid, news.change.run, news.change.at)))

    def answer(self, client: Client, text: str | None) -> str:
        try:
            message = json.loads(text or "")
        except ValueError:
            message = None
        if not isinstance(message, dict) or message.get("type") != "get_job_progress":
            return self.error('expected {"type": "get_job_progress", "job_id": ID}')
        job_id = message.get("job_id")
        entry = self.hub.get(job_id) if isinstance(job_id, str) else None
        if entry is None:
            return self.error(
                f"get_job_progress: no job with id {job_id!r}; ids come from GET /api/runs"
            )
        return dumps(progress_update(entry.view["id"], entry.run, time.time()))
