"""The ``notify`` sink: the rules' messages, sent through Apprise from a thread of its own.

Sending is network I/O of unknown speed (an SMTP server, a chat service), so the monitor
only hands changes over: a worker thread sends them, and the held ones when they are due
(:class:`~progresskit_notify.rules.Pacer`). A message that cannot be sent is logged and
counted, never raised: a chat service being down must not stop a watch.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from progresskit import Change, RunStatus, Status
from progresskit_notify.rules import Message, Pacer

if TYPE_CHECKING:
    import apprise

__all__ = ["NotifySink", "message_text"]

log = logging.getLogger(__name__)


def _notify_type(status: Status) -> str:
    if status in (Status.CRASHED, Status.FAILED):
        return "failure"
    if status is Status.STUCK:
        return "warning"
    if status is Status.FINISHED:
        return "success"
    return "info"


def message_text(message: Message) -> tuple[str, str]:
    """The title and body of ``message``: plain text, which every service shows."""
    change = message.change
    run: RunStatus = change.run
    name = os.path.basename(run.work_dir.rstrip(os.sep)) or run.work_dir
    title = f"{name}: {run.status.value}"
    before = change.previous_status
    lines = [
        run.work_dir,
        (f"{before.value} -> " if before is not None else "") + run.status.value
        + (f": {run.reason}" if run.reason else ""),
    ]
    if run.cause is not None:
        lines.append(f"cause: {run.cause.describe()}")
    progress = run.progress
    if progress.progress_percentage is not None:
        done = f"{progress.progress_percentage:.1f}%"
        if progress.total_epochs:
            done += f" (epoch {progress.completed_epochs}/{progress.total_epochs})"
        lines.append(f"progress: {done}")
    if message.held:
        lines.append(f"({message.held} earlier change(s) of this run held back by the rule's pace)")
    seen = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(change.at))
    lines.append(f"seen {seen}")
    return title, "\n".join(lines)


class NotifySink:
    """Sends what ``pacer`` lets through to every URL of ``targets``."""

    def __init__(self, targets: apprise.Apprise, pacer: Pacer, *, flush_timeout: float):
        self._targets = targets
        self._pacer = pacer
        self._flush_timeout = flush_timeout
        self._cond = threading.Condition()
        self._outbox: collections.deque[Message] = collections.deque()
        self._closing = False
        #: Messages Apprise could not deliver to at least one URL, since start.
        self.failed = 0
        #: Messages sent (to every URL), since start.
        self.sent = 0
        self._thread = threading.Thread(target=self._work, name="progresskit-notify", daemon=True)
        self._thread.start()

    def emit(self, statuses: Sequence[RunStatus]) -> None:
        """A query's snapshot (``progresskit status``): no transition, no message."""

    def emit_changes(self, changes: Sequence[Change]) -> None:
        now = time.monotonic()
        with self._cond:
            for change in changes:
                message = self._pacer.offer(change, now)
                if message is not None:
                    self._outbox.append(message)
            self._cond.notify()

    def close(self) -> None:
        """Send what is ready within ``flush_timeout``; held messages are not sent early
        (the pace is a promise), and say so."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join(self._flush_timeout)
        with self._cond:
            unsent, held = len(self._outbox), self._pacer.held
        if unsent:
            log.warning("notify sink: %d message(s) not sent within flush_timeout (%gs)",
                        unsent, self._flush_timeout)
        if held:
            log.warning("notify sink: %d held message(s) dropped at close (their pace had "
                        "not allowed them yet)", held)

    def _work(self) -> None:
        while True:
            with self._cond:
                self._outbox.extend(self._pacer.due(time.monotonic()))
                if not self._outbox:
                    if self._closing:
                        return
                    due = self._pacer.next_due()
                    self._cond.wait(None if due is None else max(0.0, due - time.monotonic()))
                    continue
                message = self._outbox.popleft()
            self._send(message)

    def _send(self, message: Message) -> None:
        title, body = message_text(message)
        try:
            delivered = bool(self._targets.notify(
                body=body, title=title, notify_type=_notify_type(message.change.run.status)
            ))
        except Exception:  # a service plugin's bug must not end the worker
            log.exception("notify sink: sending %r failed", title)
            delivered = False
        if delivered:
            self.sent += 1
        else:
            self.failed += 1
            log.warning("notify sink: %r was not delivered to every URL (Apprise's log says "
                        "why)", title)
