"""Seed 003's WebSocket: changes told as StatusMonitor ``progress_update`` messages.

Seed 003's front end connects to the bare ``ws://HOST:8329`` and reads
``{"type": "progress_update", "data": {job_id, status, progress_percent, ...}}``; it may send
``{"type": "get_job_progress", "job_id": ...}``. This module builds those messages from a run.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from progresskit.model.core import RunStatus, Status

__all__ = ["progress_update"]

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
            "progress_percent": progress.progress_percentage,
            "current_step": progress.completed_steps or 0,
            "total_steps": progress.total_steps or 0,
            "estimated_completion": estimated,
            "generation_time": progress.elapsed_seconds if not run.status.is_active else None,
            "error_message": progress.error_message,
        },
    }
