"""Seed 002's bridge stream: changes told as FoxML training events.

Seed 002's dashboard subscribes to ``/ws/training`` and reads events shaped like its
emitter's lines (``event_type`` progress / stage_change / target_complete / run_complete,
``run_id``, ISO-8601 ``timestamp``), a buffer of recent ones on connect, and
``{"type": "ping"}`` when idle. This module turns one run's change into those events.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from progresskit.model.core import RunStatus, Status

__all__ = ["RECENT_EVENTS", "training_events"]

#: Seed 002's ``MAX_RECENT_TRAINING_EVENTS``: what a late joiner is sent on connect.
RECENT_EVENTS = 50

_OUTCOMES = {
    Status.FINISHED: "success",
    Status.OUTDATED: "success",
    Status.FAILED: "failed",
    Status.CRASHED: "failed",
    Status.CANCELLED: "cancelled",
}


def training_events(
    previous: RunStatus | None, run: RunStatus, name: str, at: float
) -> list[dict[str, Any]]:
    """The seed-002 events that tell how ``run`` moved on from ``previous``.

    A progress event always; before it a stage change and the targets completed since; after
    it the run's completion, the first time it is seen ended.
    """
    stamp = datetime.fromtimestamp(at, timezone.utc).isoformat()
    progress = run.progress
    before = previous.progress if previous is not None else None
    events: list[dict[str, Any]] = []
    if progress.current_stage and (
        before is None or before.current_stage != progress.current_stage
    ):
        events.append(
            {
                "event_type": "stage_change",
                "previous_stage": before.current_stage if before is not None else None,
                "new_stage": progress.current_stage,
            }
        )
    already = len(before.completed_items) if before is not None else 0
    for item in progress.completed_items[already:]:
        events.append(
            {
                "event_type": "target_complete",
                "target": item.name,
                "status": item.status,
                "models_trained": int(item.metrics.get("models_trained", 0)),
                "best_auc": item.metrics.get("best_auc"),
            }
        )
    events.append(
        {
            "event_type": "progress",
            "stage": progress.current_stage,
            "progress_pct": progress.progress_percentage,
            "current_target": progress.current_item,
            "targets_complete": progress.items_completed or 0,
            "targets_total": progress.items_total or 0,
        }
    )
    outcome = _OUTCOMES.get(run.status)
    ended_before = previous is not None and previous.status in _OUTCOMES
    if outcome is not None and not ended_before:
        events.append({"event_type": "run_complete", "status": outcome})
    for event in events:
        event["run_id"] = name
        event["timestamp"] = stamp
    return events
