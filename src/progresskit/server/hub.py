"""The server's state, fed by the monitoring engine, and its fan-out to the channels.

A :class:`~progresskit.engine.monitor.Monitor` thread reports each change; the hub applies it
on the event loop (every read and write of the state happens there, so request handlers see
a consistent picture without locks), keeps a bounded history per run, and tells each
announced change once to every channel (:mod:`progresskit.server.channels`), which tells
its clients in its protocol.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs

from progresskit.engine.monitor import Monitor
from progresskit.formats.change import Change
from progresskit.model.core import RunStatus
from progresskit.server.metrics import Transitions
from progresskit.server.views import RUN_ID_PATTERN, history_point, run_id, run_view

if TYPE_CHECKING:
    from progresskit.server.channels import Channel

__all__ = ["STATUS_HISTORY_SIZE", "Entry", "Hub", "News"]

log = logging.getLogger(__name__)

#: Status changes kept per run (the run page's status history).
STATUS_HISTORY_SIZE = 200


@attrs.define
class Entry:
    """What the hub knows about one run."""

    run: RunStatus
    view: dict[str, Any]
    history: collections.deque[dict[str, Any]]
    cancel_requested_at: float | None = None
    #: The run's status changes seen since the server started, the newest
    #: ``status_history_size``: ``{"t", "status", "previous", "reason"}``.
    statuses: collections.deque[dict[str, Any]] = attrs.field(
        factory=lambda: collections.deque(maxlen=STATUS_HISTORY_SIZE)
    )
    #: ``view`` is older than ``run`` (a heartbeat): the hub makes it again when asked.
    stale: bool = False

    def document(self) -> dict[str, Any]:
        """The run's view with its history: ``GET /api/runs/{id}``'s ``run``."""
        return {**self.view, "history": list(self.history)}


class _Inbox:
    """Changes handed from the monitor's thread to the event loop in batches: one wake-up
    of the loop per burst, not per change, and at most ``BATCH`` applied per turn of the
    loop. A heartbeat restating 10,000 runs was 10,000 wake-ups, holding the streams back
    for most of a second (docs/watch.md, "What watching costs")."""

    BATCH = 500

    def __init__(self, apply: Callable[[Change], None], loop: asyncio.AbstractEventLoop):
        self._apply = apply
        self._loop = loop
        self._pending: collections.deque[Change] = collections.deque()
        self._lock = threading.Lock()
        self._scheduled = False

    def deliver(self, change: Change) -> None:
        """From the monitor's thread."""
        with self._lock:
            self._pending.append(change)
            if self._scheduled:
                return
            self._scheduled = True
        with contextlib.suppress(RuntimeError):  # the loop closed: shutting down
            self._loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        for _ in range(self.BATCH):
            with self._lock:
                if not self._pending:
                    self._scheduled = False
                    return
                change = self._pending.popleft()
            try:
                self._apply(change)
            except Exception:  # one bad change must not stop the ones after it
                log.exception("the hub could not apply a change of %s", change.run.work_dir)
        self._loop.call_soon(self._drain)  # the rest after what else the loop has to do


@attrs.frozen
class News:
    """One announced change of the hub's state, as every channel is told it: a run new,
    changed or removed (heartbeats refresh the state but are not news)."""

    change: Change
    #: The run's id.
    rid: str
    #: The run's view after the change (a removed run: as it was last seen).
    view: dict[str, Any]
    #: The run's new history point; ``None`` for a removed run.
    point: dict[str, Any] | None
    #: The run's status before the change, if the hub knew the run.
    previous: RunStatus | None


class Hub:
    """The runs as last reported by the monitor, their history, and the channels told of
    every change."""

    def __init__(
        self,
        root: str,
        *,
        history_size: int = 100,
        can_cancel: Callable[[RunStatus], bool] | None = None,
    ):
        self.root = root
        self._history_size = history_size
        #: Whether a plugin could cancel an active run (``can_cancel`` in its view).
        self._can_cancel = can_cancel or (lambda _run: False)
        self._entries: dict[str, Entry] = {}
        #: Work dir -> its run id, made once.
        self._ids: dict[str, str] = {}
        #: Counts every change of the state (channels key their caches on it).
        self.version = 0
        self.started_at = time.time()
        #: The channels told of each change, in this order.
        self.channels: list[Channel] = []
        #: Sink spool -> its drop record (what the sink lost), refreshed by the app.
        self.sink_drops: dict[str, dict[str, Any]] = {}
        #: The runs' status changes, per (from, to), for ``/metrics``.
        self.transitions = Transitions()

    # -- fed by the monitor -------------------------------------------------------------

    def attach(self, monitor: Monitor, loop: asyncio.AbstractEventLoop) -> Callable[[], None]:
        """Subscribe to ``monitor``'s changes; returns the unsubscribe function."""

        return monitor.subscribe(_Inbox(self.apply, loop).deliver)

    def apply(self, change: Change) -> None:
        """Take one change into the state and tell the channels (event loop only)."""
        run = change.run
        rid = self._ids.get(run.work_dir)
        if rid is None:  # a hash per change was most of what a heartbeat cost here
            rid = self._ids[run.work_dir] = run_id(run.work_dir)
        entry = self._entries.get(rid)
        previous = entry.run if entry is not None else None
        self.version += 1
        if change.kind == "removed":
            self._entries.pop(rid, None)
            self._ids.pop(run.work_dir, None)
            self._tell(News(change, rid, run_view(run, self.root), None, previous))
            return
        if previous is not None:
            self.transitions.observe(previous.status, run.status)
        if (
            change.kind == "heartbeat"
            and entry is not None
            and previous is not None
            and previous.status is run.status
        ):
            # A restatement (fresher clocks and ETA) for queries, not news: its view is
            # made when one asks. A view per run per heartbeat, for nobody, was most of
            # what an idle server spent on 10,000 runs (docs/watch.md).
            entry.run, entry.stale = run, True
            return
        cancel_at = entry.cancel_requested_at if entry is not None else None
        view = self._view(run, cancel_at)
        if entry is None:
            entry = Entry(run, view, collections.deque(maxlen=self._history_size), cancel_at)
            self._entries[rid] = entry
        if previous is None or previous.status is not run.status:
            entry.statuses.append(
                {
                    "t": change.at,
                    "status": run.status.value,
                    "previous": None if previous is None else previous.status.value,
                    "reason": run.reason,
                }
            )
        entry.run, entry.view, entry.stale = run, view, False
        if change.kind == "heartbeat":
            return  # a restatement: fresher clocks and ETA for queries, nothing to announce
        point = history_point(run, change.at)
        entry.history.append(point)
        self._tell(News(change, rid, view, point, previous))

    def mark_cancel_requested(self, rid: str, at: float) -> None:
        """Record that a cancel of run ``rid`` was requested at ``at``, and tell it."""
        entry = self._entries.get(rid)
        if entry is None:
            return
        entry.cancel_requested_at = at
        entry.view = {**self._fresh(entry).view, "cancel_requested_at": at}
        self.version += 1
        for channel in self.channels:
            channel.cancel_requested(rid, at)

    def _view(self, run: RunStatus, cancel_at: float | None) -> dict[str, Any]:
        can_cancel = run.status.is_active and self._can_cancel(run)
        return run_view(run, self.root, cancel_at, can_cancel=can_cancel)

    def _fresh(self, entry: Entry) -> Entry:
        """``entry`` with its view made again if a heartbeat left it stale."""
        if entry.stale:
            entry.view, entry.stale = self._view(entry.run, entry.cancel_requested_at), False
        return entry

    def _tell(self, news: News) -> None:
        for channel in self.channels:
            channel.publish(news)

    # -- queries (event loop only) ---------------------------------------------------------

    def entries(self) -> list[Entry]:
        """Every run, by display name."""
        return sorted(map(self._fresh, self._entries.values()), key=lambda e: e.view["name"])

    def get(self, rid: str) -> Entry | None:
        """The run with id ``rid``, if the monitor discovered one; never touches the disk."""
        if not RUN_ID_PATTERN.fullmatch(rid):
            return None
        entry = self._entries.get(rid)
        return None if entry is None else self._fresh(entry)

    @property
    def dropped_clients(self) -> int:
        """Clients of every channel dropped for being too slow, since start."""
        return sum(channel.clients.dropped for channel in self.channels)
