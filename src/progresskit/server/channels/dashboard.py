"""``/ws``: progresskit's own stream (docs/serve.md "The stream").

A ``hello`` with the current state and the recent events on connect, then every change and
cancel request as it happens, several waiting messages in one ``batch`` frame, and a
``ping`` when idle. A client may ask for one run's progress and follow only some runs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from progresskit.server.channels import Channel
from progresskit.server.hub import Hub, News
from progresskit.server.settings import ServeSettings
from progresskit.server.streams import Client
from progresskit.server.views import dumps

__all__ = ["PROTOCOL_VERSION", "DashboardChannel"]

#: The ``version`` of the ``hello`` message.
PROTOCOL_VERSION = 1
#: Requests for one run's progress; ``get_job_progress`` is seed 003's name, accepted too.
_PROGRESS_REQUESTS = ("get_run_progress", "get_job_progress")


class DashboardChannel(Channel):
    """The dashboard's stream: progresskit's own protocol."""

    path = "/ws"
    # One evaluation of the root reports its changes together: a frame per client for all
    # of them, not one per change, keeps the fan-out cheap.
    batch_max = 256

    def __init__(self, hub: Hub, settings: ServeSettings):
        super().__init__(hub, settings, catch_up=settings.buffer_size)
        #: Run ids each subscribed client follows (absent: every run).
        self._only: dict[Client, set[str]] = {}
        self._hello: tuple[int, str] | None = None

    # -- told by the hub ---------------------------------------------------------------------

    def publish(self, news: News) -> None:
        change = news.change
        event = {
            "type": "change",
            "event_id": change.id,
            "kind": change.kind,
            "at": change.at,
            "previous_status": change.previous_status and change.previous_status.value,
            "run_id": news.rid,
            "run": news.view,
            "point": news.point,
        }
        self._broadcast(news.rid, dumps(event))

    def cancel_requested(self, rid: str, at: float) -> None:
        self._broadcast(rid, dumps({"type": "cancel_requested", "run_id": rid, "at": at}))

    def _broadcast(self, rid: str, text: str) -> None:
        def follows(client: Client) -> bool:
            only = self._only.get(client)
            return only is None or rid in only

        self.clients.broadcast(text, follows)

    # -- a client's life ---------------------------------------------------------------------

    def connect(self) -> tuple[Client, Sequence[str]]:
        return self.clients.add(), [self._hello_text()]

    def disconnect(self, client: Client) -> None:
        super().disconnect(client)
        self._only.pop(client, None)

    def _hello_text(self) -> str:
        # Clients often connect together (a reload of many tabs, a benchmark): they share it.
        if self._hello is None or self._hello[0] != self.hub.version:
            head = dumps(
                {
                    "type": "hello",
                    "version": PROTOCOL_VERSION,
                    "root": self.hub.root,
                    "server_time": time.time(),
                    "runs": [e.document() for e in self.hub.entries()],
                }
            )
            events = ",".join(self.clients.recent)
            self._hello = (self.hub.version, f'{head[:-1]},"recent_events":[{events}]}}')
        return self._hello[1]

    def frame(self, texts: Sequence[str]) -> str:
        if len(texts) == 1:
            return texts[0]
        return '{"type":"batch","messages":[' + ",".join(texts) + "]}"

    def ping(self) -> str:
        return dumps({"type": "ping", "server_time": time.time()})

    def answer(self, client: Client, text: str | None) -> str | None:
        if text is None:
            return self.error("send text frames (JSON)")
        try:
            message = json.loads(text)
        except ValueError:
            return self.error('not JSON: send an object such as {"type": "get_run_progress"}')
        if not isinstance(message, dict):
            return self.error("expected a JSON object with a 'type'")
        kind = message.get("type")
        if kind == "pong":
            return None
        if kind in _PROGRESS_REQUESTS:
            rid = message.get("run_id", message.get("job_id"))
            entry = self.hub.get(rid) if isinstance(rid, str) else None
            if entry is None:
                return self.error(f"{kind}: no run with id {rid!r}; ids come from GET /api/runs")
            return dumps({"type": "run_progress", "run": entry.document()})
        if kind == "subscribe":
            return self._subscribe(client, message.get("run_ids"))
        return self.error(
            f"unknown message type {kind!r}; expected one of "
            f"{', '.join((*_PROGRESS_REQUESTS, 'subscribe', 'pong'))}"
        )

    def _subscribe(self, client: Client, ids: Any) -> str:
        if ids is None:
            self._only.pop(client, None)
        elif isinstance(ids, list) and all(isinstance(i, str) for i in ids):
            self._only[client] = set(ids)
        else:
            return self.error("subscribe: 'run_ids' must be a list of run ids, or null for all")
        return dumps({"type": "subscribed", "run_ids": ids})
