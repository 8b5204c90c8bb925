"""The server's state and its WebSocket fan-out, fed by the monitoring engine.

A :class:`~progresskit.engine.monitor.Monitor` thread reports each change; the hub applies it on
the event loop (every read and write of the state happens there, so request handlers see
a consistent picture without locks), keeps a bounded history per run and a bounded buffer
of recent events for late joiners, and puts the serialised event, once, into every
connected client's bounded queue. A client whose queue is full is too slow to follow: it
is dropped (it reconnects and gets the current state), so it can neither stall the others
nor make the server's memory grow.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import attrs

from progresskit.engine.monitor import Monitor
from progresskit.formats.change import Change
from progresskit.model.core import RunStatus
from progresskit.server.jobs import progress_update
from progresskit.server.training import RECENT_EVENTS, training_events
from progresskit.server.views import RUN_ID_PATTERN, dumps, history_point, run_id, run_view

__all__ = ["PROTOCOL_VERSION", "Client", "Entry", "Hub"]

log = logging.getLogger(__name__)

#: The ``version`` of the stream's ``hello`` message (docs/serve.md).
PROTOCOL_VERSION = 1
#: Request types of seed 003's StatusMonitor, accepted as aliases.
_PROGRESS_REQUESTS = ("get_run_progress", "get_job_progress")


@attrs.define
class Entry:
    """What the hub knows about one run."""

    run: RunStatus
    view: dict[str, Any]
    history: collections.deque[dict[str, Any]]
    cancel_requested_at: float | None = None

    def document(self) -> dict[str, Any]:
        return {**self.view, "history": list(self.history)}


class Client:
    """One WebSocket connection's outbox and wishes."""

    def __init__(self, queue_size: int):
        self.queue: asyncio.Queue[str] = asyncio.Queue(maxsize=queue_size)
        #: Run ids this client follows; ``None``: every run.
        self.only: set[str] | None = None
        #: Set when the client fell too far behind and must be disconnected.
        self.overflowed = asyncio.Event()


class Hub:
    """The runs as last reported by the monitor, their history, and the connected clients."""

    def __init__(
        self,
        root: str,
        *,
        buffer_size: int = 100,
        history_size: int = 100,
        client_queue: int = 512,
    ):
        self.root = root
        self._history_size = history_size
        self._client_queue = client_queue
        self._entries: dict[str, Entry] = {}
        self._events: collections.deque[str] = collections.deque(maxlen=buffer_size)
        self._clients: set[Client] = set()
        #: Seed 002's ``/ws/training`` listeners, and the recent events they catch up from.
        self._training_clients: set[Client] = set()
        self._training: collections.deque[str] = collections.deque(maxlen=RECENT_EVENTS)
        #: Seed 003's WebSocket listeners (``progress_update`` messages).
        self._job_clients: set[Client] = set()
        self._hello: tuple[int, str] | None = None
        self._version = 0
        #: Clients dropped for being too slow, since start (``/api/stats``).
        self.dropped_clients = 0
        #: The run of the newest announced change (seed 002's ``/api/training/status``).
        self.latest: str | None = None
        self.started_at = time.time()

    # -- fed by the monitor -------------------------------------------------------------

    def attach(self, monitor: Monitor, loop: asyncio.AbstractEventLoop) -> Callable[[], None]:
        """Subscribe to ``monitor``'s changes; returns the unsubscribe function."""

        def deliver(change: Change) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed: shutting down
                loop.call_soon_threadsafe(self.apply, change)

        return monitor.subscribe(deliver)

    def apply(self, change: Change) -> None:
        """Take one change into the state and send it to the clients (event loop only)."""
        run = change.run
        rid = run_id(run.work_dir)
        entry = self._entries.get(rid)
        if change.kind == "removed":
            if entry is not None:
                del self._entries[rid]
            self._version += 1
            self._broadcast(rid, self._event(change, run_view(run, self.root), None))
            return
        cancel_at = entry.cancel_requested_at if entry is not None else None
        previous = entry.run if entry is not None else None
        view = run_view(run, self.root, cancel_at)
        if entry is None:
            entry = Entry(run, view, collections.deque(maxlen=self._history_size), cancel_at)
            self._entries[rid] = entry
        entry.run, entry.view = run, view
        self._version += 1
        if change.kind == "heartbeat":
            return  # a restatement: fresher clocks and ETA for queries, nothing to announce
        point = history_point(run, change.at)
        entry.history.append(point)
        self.latest = rid
        self._broadcast(rid, self._event(change, view, point))
        for event in training_events(previous, run, view["name"], change.at):
            text = dumps(event)
            self._training.append(text)
            for client in list(self._training_clients):
                self.send(client, text)
        if self._job_clients:
            text = dumps(progress_update(rid, run, change.at))
            for client in list(self._job_clients):
                self.send(client, text)

    def mark_cancel_requested(self, rid: str, at: float) -> None:
        entry = self._entries.get(rid)
        if entry is None:
            return
        entry.cancel_requested_at = at
        entry.view = {**entry.view, "cancel_requested_at": at}
        self._version += 1
        message = {"type": "cancel_requested", "run_id": rid, "at": at}
        self._broadcast(rid, dumps(message))

    @staticmethod
    def _event(change: Change, view: dict[str, Any], point: dict[str, Any] | None) -> str:
        return dumps(
            {
                "type": "change",
                "event_id": change.id,
                "kind": change.kind,
                "at": change.at,
                "previous_status": change.previous_status and change.previous_status.value,
                "run_id": view["id"],
                "run": view,
                "point": point,
            }
        )

    def _broadcast(self, rid: str, text: str) -> None:
        self._events.append(text)
        for client in list(self._clients):
            if client.only is None or rid in client.only:
                self.send(client, text)

    def send(self, client: Client, text: str) -> None:
        """Queue ``text`` for ``client``; a client with a full queue is dropped."""
        try:
            client.queue.put_nowait(text)
        except asyncio.QueueFull:
            self._drop(client)

    def _drop(self, client: Client) -> None:
        if client in self._clients | self._training_clients | self._job_clients:
            self.disconnect(client)
            self.dropped_clients += 1
            client.overflowed.set()
            log.warning("a WebSocket client fell %d messages behind: dropped", client.queue.qsize())

    # -- queries (event loop only) ---------------------------------------------------------

    def entries(self) -> list[Entry]:
        return sorted(self._entries.values(), key=lambda e: e.view["name"])

    def get(self, rid: str) -> Entry | None:
        """The run with id ``rid``, if the monitor discovered one; never touches the disk."""
        if not RUN_ID_PATTERN.fullmatch(rid):
            return None
        return self._entries.get(rid)

    def recent_events(self) -> Iterator[str]:
        return iter(self._events)

    def recent_training_events(self) -> list[str]:
        """Seed 002's recent events (oldest first), as ``/ws/training`` sends them."""
        return list(self._training)

    @property
    def client_count(self) -> int:
        return len(self._clients)

    # -- clients ----------------------------------------------------------------------------

    def connect(self) -> tuple[Client, str]:
        """Register a client; returns it and its ``hello`` (the current state and the recent
        events). Both happen in one step of the loop, so no change falls between them."""
        client = Client(self._client_queue)
        self._clients.add(client)
        return client, self._hello_text()

    def connect_training(self) -> tuple[Client, list[str]]:
        """Register a seed-002 ``/ws/training`` listener; returns it and the recent events,
        in one step of the loop, so no event falls between them."""
        client = Client(self._client_queue)
        self._training_clients.add(client)
        return client, self.recent_training_events()

    def connect_jobs(self) -> Client:
        """Register a seed-003 listener: ``progress_update`` for every change from now on."""
        client = Client(self._client_queue)
        self._job_clients.add(client)
        return client

    def job_request(self, text: str) -> str:
        """Answer a seed-003 client's ``{"type": "get_job_progress", "job_id": ...}``."""
        try:
            message = json.loads(text)
        except ValueError:
            message = None
        if not isinstance(message, dict) or message.get("type") != "get_job_progress":
            return _error('expected {"type": "get_job_progress", "job_id": ID}')
        job_id = message.get("job_id")
        entry = self.get(job_id) if isinstance(job_id, str) else None
        if entry is None:
            return _error(
                f"get_job_progress: no job with id {job_id!r}; ids come from GET /api/runs"
            )
        return dumps(progress_update(entry.view["id"], entry.run, time.time()))

    def disconnect(self, client: Client) -> None:
        self._clients.discard(client)
        self._training_clients.discard(client)
        self._job_clients.discard(client)

    def _hello_text(self) -> str:
        # Clients often connect together (a reload of many tabs, a benchmark): they share it.
        if self._hello is None or self._hello[0] != self._version:
            head = dumps(
                {
                    "type": "hello",
                    "version": PROTOCOL_VERSION,
                    "root": self.root,
                    "server_time": time.time(),
                    "runs": [e.document() for e in self.entries()],
                }
            )
            events = ",".join(self._events)
            self._hello = (self._version, f'{head[:-1]},"recent_events":[{events}]}}')
        return self._hello[1]

    def request(self, client: Client, text: str) -> str | None:
        """Answer one message from a client (the reply, or ``None`` when none is due)."""
        try:
            message = json.loads(text)
        except ValueError:
            return _error('not JSON: send an object such as {"type": "get_run_progress"}')
        if not isinstance(message, dict):
            return _error("expected a JSON object with a 'type'")
        kind = message.get("type")
        if kind == "pong":
            return None
        if kind in _PROGRESS_REQUESTS:
            rid = message.get("run_id", message.get("job_id"))
            entry = self.get(rid) if isinstance(rid, str) else None
            if entry is None:
                return _error(f"{kind}: no run with id {rid!r}; ids come from GET /api/runs")
            return dumps({"type": "run_progress", "run": entry.document()})
        if kind == "subscribe":
            ids = message.get("run_ids")
            if ids is None:
                client.only = None
            elif isinstance(ids, list) and all(isinstance(i, str) for i in ids):
                client.only = set(ids)
            else:
                return _error("subscribe: 'run_ids' must be a list of run ids, or null for all")
            return dumps({"type": "subscribed", "run_ids": ids})
        return _error(
            f"unknown message type {kind!r}; expected one of "
            f"{', '.join((*_PROGRESS_REQUESTS, 'subscribe', 'pong'))}"
        )


def _error(message: str) -> str:
    return dumps({"type": "error", "message": message})
