"""Seed 002's bridge: changes told as FoxML training events (docs/serve.md).

Seed 002's dashboard subscribes to ``/ws/training`` and reads events shaped like its
emitter's lines (``event_type`` progress / stage_change / target_complete / run_complete,
``run_id``, ISO-8601 ``timestamp``), one per frame, a buffer of recent ones on connect, and
``{"type": "ping"}`` when idle; it polls ``GET /api/training/status`` for the newest run.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from progresskit.formats.events import (
    progress_event,
    run_complete_event,
    stage_change_event,
    stamp,
    target_complete_event,
)
from progresskit.model.core import RunStatus, Status
from progresskit.server.channels import Channel
from progresskit.server.hub import Hub, News
from progresskit.server.settings import ServeSettings
from progresskit.server.streams import Client
from progresskit.server.views import dumps

__all__ = ["RECENT_EVENTS", "TrainingChannel", "training_events"]

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
    progress = run.progress
    before = previous.progress if previous is not None else None
    events: list[dict[str, Any]] = []
    if progress.current_stage and (
        before is None or before.current_stage != progress.current_stage
    ):
        events.append(
            stage_change_event(
                before.current_stage if before is not None else None, progress.current_stage
            )
        )
    already = len(before.completed_items) if before is not None else 0
    for item in progress.completed_items[already:]:
        events.append(
            target_complete_event(
                item.name,
                item.status,
                int(item.metrics.get("models_trained", 0)),
                item.metrics.get("best_auc"),
            )
        )
    events.append(
        progress_event(
            progress.current_stage,
            # Seed 004's protocol carries a number: unknown progress is its 0 there (docs/serve.md).
            progress.progress_percentage or 0.0,
            progress.current_item,
            progress.items_completed or 0,
            progress.items_total or 0,
        )
    )
    outcome = _OUTCOMES.get(run.status)
    ended_before = previous is not None and previous.status in _OUTCOMES
    if outcome is not None and not ended_before:
        events.append(run_complete_event(outcome))
    for event in events:
        stamp(event, name, at)
    return events


class TrainingChannel(Channel):
    """Seed 002's ``/ws/training`` stream and ``/api/training/status``."""

    path = "/ws/training"

    def __init__(self, hub: Hub, settings: ServeSettings):
        super().__init__(hub, settings, catch_up=RECENT_EVENTS)
        #: The run of the newest announced change.
        self._latest: str | None = None

    def routes(self) -> list[BaseRoute]:
        return [*super().routes(), Route("/api/training/status", self.status)]

    def publish(self, news: News) -> None:
        if news.change.kind == "removed":
            return
        self._latest = news.rid
        change = news.change
        for event in training_events(news.previous, change.run, news.view["name"], change.at):
            self.clients.broadcast(dumps(event))

    def connect(self) -> tuple[Client, Sequence[str]]:
        return self.clients.add(), list(self.clients.recent)

    async def status(self, _request: Request) -> Response:
        """``GET /api/training/status``: the newest run's stage and progress, and the last
        10 events."""
        events = [json.loads(text) for text in list(self.clients.recent)[-10:]]
        entry = self.hub.get(self._latest) if self._latest else None
        if entry is None:
            return JSONResponse({"running": False, "events": events})
        progress = entry.run.progress
        document = {
            "running": entry.run.status.is_active,
            "run_id": entry.view["id"],
            "stage": progress.current_stage,
            "progress_pct": progress.progress_percentage or 0.0,  # seed 004: a number
            "current_target": progress.current_item,
            "events": events,
        }
        return Response(dumps(document), media_type="application/json")
