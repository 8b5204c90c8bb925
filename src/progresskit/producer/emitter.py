"""The producer side of multi-stage runs: emit FoxML training events (seed 002) as JSONL.

The code being tracked creates an :class:`EventEmitter` and reports what it does::

    from progresskit.producer.emitter import EventEmitter

    events = EventEmitter("run-42", event_file="work/run-42/events.jsonl")
    events.stage_change(None, "ranking")
    events.progress("ranking", 40.0, targets_total=12)
    events.target_complete("ret_5m", "success", models_trained=3, best_auc=0.65)
    events.run_complete("success")

Wire format: :mod:`progresskit.formats.events` (docs/multistage.md), exactly as the seed's
``TrainingEventEmitter`` writes it, so logs written by either are read by the same tracker.
The seed's module-level functions (``init_training_events``, ``emit_progress``, ...) are in
:mod:`progresskit.compat.foxml`.

Destinations: a Unix socket when one listens (``progresskit listen`` is the receiver), else
an append to the event file. The emitter never raises into the training loop: a failed
delivery is logged once per streak of failures and counted in :attr:`EventEmitter.failures`.

An event is counted sent only once it is written somewhere. A line the kernel took for the
socket is not yet the listener's: a listener killed before reading it loses it. The emitter
therefore keeps the lines the listener has not read yet (the socket's unread bytes,
``SIOCOUTQ``, tell when it caught up) and appends them to the event file when the listener
goes away without reading them. A send never blocks longer than
:data:`SOCKET_SEND_TIMEOUT`: a listener that stops reading gets no more lines until it
catches up, they go to the file instead, without waiting. The event file is opened without
blocking and only when it is a regular file: a FIFO put in its place cannot hang training.
"""

from __future__ import annotations

import collections
import errno
import os
import select
import socket
import stat
import threading
import time
from collections.abc import Mapping

from progresskit.formats import events as wire
from progresskit.producer import logger
from progresskit.producer.heartbeat import Heartbeat, producer_heartbeat

TYPE_CHECKING = False  # typing's, without importing typing: see progresskit/__init__.py
if TYPE_CHECKING:
    from typing import Any

    from progresskit.model.core import Cause

__all__ = ["EventEmitter", "append_bytes"]

#: A socket that refused us is tried again after this many seconds, not on every event: a
#: refused connect is cheap, but a training loop may emit thousands of events a second.
SOCKET_RETRY_SECONDS = 5.0
#: How long a send may wait before the event goes to the file instead: a stalled listener
#: must not stall training.
SOCKET_SEND_TIMEOUT = 1.0
#: ``ioctl`` request for a socket's bytes not yet read by its peer (Linux ``SIOCOUTQ``).
_SIOCOUTQ = 0x5411


def append_bytes(path: str, data: bytes) -> None:
    """Append ``data`` (whole lines) to ``path`` so that concurrent appenders never interleave.

    The file is opened with ``O_APPEND`` and ``data`` goes out in one ``write(2)``. For a
    regular file POSIX makes "seek to end, then write" one step for ``O_APPEND``
    descriptors, and Linux holds the inode lock for the whole write, so two processes'
    writes land one after the other, each contiguous, whatever their size. (``PIPE_BUF``,
    4096 bytes, is the atomicity bound for pipes and FIFOs, not for regular files; it does
    not apply here.) A short write happens only when the disk fills up or a file size limit
    is hit; the rest is then written as well and the reader's tolerance of a malformed line
    confines the damage to that line. Not atomic on NFS, whose clients emulate ``O_APPEND``.

    :raises OSError: also when ``path`` is not a regular file (a FIFO, a device), which is
        never opened for blocking.
    """
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    # O_NONBLOCK: opening a FIFO with no reader would block forever (and fails ENXIO
    # instead); no effect on a regular file's writes.
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # a FIFO nobody reads
            raise OSError(exc.errno, "not a regular file (a FIFO or a device)", path) from None
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file (a FIFO or a device)", path)
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
    finally:
        os.close(fd)


class EventEmitter:
    """Emits one run's training events (seed 002's ``TrainingEventEmitter``, hardened).

    :param run_id: the run identifier written into every event.
    :param event_file: the JSONL file to append to; default ``$PROGRESSKIT_EVENT_FILE``,
        then ``$FOXML_TRAINING_EVENT_FILE``.
    :param socket_path: a Unix socket to send to while something listens there; default
        ``$PROGRESSKIT_EVENT_SOCKET``, then ``$FOXML_TRAINING_EVENT_SOCKET``.

    :param work_dir: the run directory whose liveness lease the emitter holds
        (docs/liveness.md); default: the event file's directory. Every event renews it.
    :param expect_every: seconds within which the next event is promised; ``None``
        promises nothing (stall detection then uses the run's ``sleep_time``).

    :meth:`run_complete` and the end of a ``with`` block record the end in the lease.
    With neither destination the emitter is disabled: that is logged once and every event
    is counted as a failure, so a job started without monitoring still runs.
    Safe to use from several threads; a forked child opens its own socket connection.
    """

    def __init__(
        self,
        run_id: str,
        event_file: str | os.PathLike[str] | None = None,
        socket_path: str | os.PathLike[str] | None = None,
        *,
        work_dir: str | os.PathLike[str] | None = None,
        expect_every: float | None = None,
    ) -> None:
        self.run_id = str(run_id)
        if event_file is None:
            event_file = _env(wire.ENV_EVENT_FILE, wire.SEED_ENV_EVENT_FILE)
        if socket_path is None:
            socket_path = _env(wire.ENV_EVENT_SOCKET, wire.SEED_ENV_EVENT_SOCKET)
        self.event_file: str | None = os.fspath(event_file) if event_file else None
        self.socket_path: str | None = os.fspath(socket_path) if socket_path else None
        #: Events that reached no destination.
        self.failures = 0
        #: Events delivered (to the socket or the file).
        self.sent = 0
        #: The most recent delivery error, as text.
        self.last_error: str | None = None
        self._lock = threading.Lock()
        self._socket: socket.socket | None = None
        self._socket_pid = 0
        #: Lines sent on the current connection that the listener may not have read yet.
        self._unread: collections.deque[bytes] = collections.deque()
        #: The listener stopped reading: lines go to the file until it has caught up.
        self._congested = False
        self._next_connect = 0.0
        self._failing = False
        lease_dir = os.fspath(work_dir) if work_dir is not None else None
        if lease_dir is None and self.event_file is not None:
            lease_dir = os.path.dirname(os.path.abspath(self.event_file))
        self._heartbeat: Heartbeat | None = producer_heartbeat(
            lease_dir, expect_every=expect_every, slack=0.0, producer="events"
        )
        if self.event_file is None and self.socket_path is None:
            self._fail(
                f"no event destination: pass event_file= or set {wire.ENV_EVENT_FILE} "
                f"(or {wire.ENV_EVENT_SOCKET}); events of run {self.run_id!r} are dropped",
                count=False,
            )

    # -- the events (seed 002's fields: progresskit.formats.events) ------------------------

    def progress(
        self,
        stage: str,
        progress_pct: float,
        current_target: str | None = None,
        targets_complete: int = 0,
        targets_total: int = 0,
    ) -> None:
        """Report progress within ``stage``: ``progress_pct`` in [0, 100] of that stage."""
        self._emit(
            wire.progress_event(
                stage, progress_pct, current_target, targets_complete, targets_total
            )
        )

    def stage_change(self, previous_stage: str | None, new_stage: str) -> None:
        """Report leaving ``previous_stage`` (done) for ``new_stage``."""
        self._emit(wire.stage_change_event(previous_stage, new_stage))

    def target_complete(
        self,
        target: str,
        status: str,
        models_trained: int = 0,
        best_auc: float | None = None,
        metrics: Mapping[str, float] | None = None,
    ) -> None:
        """Report a finished target (``status``: success, failed, skipped).

        ``metrics`` is an extension of the seed's event: more numbers about the target,
        written as a ``metrics`` object (readers of the seed's shape ignore it).
        """
        self._emit(wire.target_complete_event(target, status, models_trained, best_auc, metrics))

    def run_complete(self, status: str = "success") -> None:
        """Report the end of the run (``status``: success, failed, cancelled)."""
        self._emit(wire.run_complete_event(status))
        if self._heartbeat is not None and status in wire.RUN_OUTCOMES:
            self._heartbeat.close(*_lease_ending(status))

    def error(
        self, error_message: str, error_type: str = "unknown", recoverable: bool = True
    ) -> None:
        """Report an error; ``recoverable=False`` means the run cannot go on."""
        self._emit(wire.error_event(error_message, error_type, recoverable))

    # The seed's method names, so code written against TrainingEventEmitter runs unchanged.
    emit_progress = progress
    emit_stage_change = stage_change
    emit_target_complete = target_complete
    emit_run_complete = run_complete
    emit_error = error

    def close(self) -> None:
        """Close the socket connection, if any, once the listener has read what was sent
        (waiting up to :data:`SOCKET_SEND_TIMEOUT`; what it has not read by then is appended
        to the event file). Events emitted later reopen it."""
        with self._lock:
            deadline = time.monotonic() + SOCKET_SEND_TIMEOUT
            while self._socket is not None and self._unread and time.monotonic() < deadline:
                self._settle()
                if self._unread:
                    time.sleep(0.01)
            self._to_file_unread()
            self._drop_socket()
            self._next_connect = 0.0

    def __enter__(self) -> EventEmitter:
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        if self._heartbeat is not None:
            self._heartbeat.close_with(exc)
        self.close()

    # -- delivery ---------------------------------------------------------------------------

    def _emit(self, fields: dict[str, Any]) -> None:
        if self._heartbeat is not None:
            self._heartbeat.beat()
        with self._lock:
            try:
                wire.stamp(fields, self.run_id)
                data = wire.encode_event(fields)
                if self._send(data):
                    self._delivered()
                elif self.event_file is None:
                    self._fail(self.last_error or "no event file to fall back to")
                else:
                    append_bytes(self.event_file, data)
                    self._delivered()
            except Exception as exc:  # the training loop must never see monitoring fail
                where = f" to {self.event_file}" if self.event_file else ""
                self._fail(f"cannot emit {fields.get('event_type')} event{where}: {exc}")

    def _send(self, data: bytes) -> bool:
        """Send ``data`` over the socket; ``False`` when the socket cannot take it now (the
        caller appends it to the file)."""
        if self.socket_path is None:
            return False
        if self._socket is not None and self._socket_pid != os.getpid():
            # Inherited through fork: the parent's connection and its lines are not ours.
            self._socket = None
            self._unread.clear()
            self._congested = False
        if self._socket is None and not self._connect():
            return False
        self._settle()
        if self._socket is None or self._congested:
            return False
        sent = self._send_bounded(self._socket, data)
        if sent == len(data):
            self._unread.append(data)
            return True
        if sent:
            # Part of a line is queued: closing makes the listener drop it at EOF, so the
            # event ends up once, in the file. What it has not read goes there too.
            self._to_file_unread()
            self._drop_socket()
        else:
            self._congested = True
            logger(__name__).debug("%s; using the event file until it catches up", self.last_error)
        return False

    def _send_bounded(self, sock: socket.socket, data: bytes) -> int:
        """Bytes of ``data`` sent without blocking, waiting at most SOCKET_SEND_TIMEOUT
        for room; fewer than all when the listener does not read or went away."""
        view = memoryview(data)
        sent = 0
        deadline = time.monotonic() + SOCKET_SEND_TIMEOUT
        while sent < len(data):
            try:
                sent += sock.send(view[sent:])
                continue
            except BlockingIOError:
                pass
            except OSError as exc:
                self.last_error = f"event socket {self.socket_path}: {exc}"
                return sent
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([], [sock], [], left)[1]:
                self.last_error = (
                    f"event socket {self.socket_path}: the listener took no data for "
                    f"{SOCKET_SEND_TIMEOUT:g}s"
                )
                return sent
        return sent

    def _settle(self) -> None:
        """Forget the lines the listener has read; when it went away without reading
        some, append those to the file and drop the connection."""
        sock = self._socket
        if sock is None:
            return
        poller = select.poll()
        poller.register(sock, select.POLLOUT)
        ready = poller.poll(0)
        events = ready[0][1] if ready else 0
        if events & (select.POLLERR | select.POLLHUP):
            # The listener closed. With lines unread in its queue the kernel discarded them
            # and flags the error (ECONNRESET): those lines exist nowhere but here.
            discarded = bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))
            discarded = discarded or bool(events & select.POLLERR)
            if not discarded:
                self._unread.clear()
            self.last_error = f"event socket {self.socket_path}: the listener went away"
            self._to_file_unread()
            self._drop_socket()
            return
        if _unread_bytes(sock) in (0, None):  # None: the system cannot tell; trust the send
            self._unread.clear()
            self._congested = False

    def _to_file_unread(self) -> None:
        """Append the lines the listener may not have read to the file (none is lost; one
        it read just before going away may then be there twice)."""
        if not self._unread:
            return
        lines, count = b"".join(self._unread), len(self._unread)
        self._unread.clear()
        try:
            if self.event_file is None:
                raise OSError("no event file to fall back to")
            append_bytes(self.event_file, lines)
        except OSError as exc:
            self.sent -= count
            for _ in range(count):
                self._fail(f"{count} event(s) sent to {self.socket_path} were never read: {exc}")

    def _connect(self) -> bool:
        now = time.monotonic()
        if self.socket_path is None or now < self._next_connect:
            return False
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(SOCKET_SEND_TIMEOUT)
        try:
            sock.connect(self.socket_path)
        except OSError as exc:
            sock.close()
            self.last_error = f"event socket {self.socket_path}: {exc.strerror or exc}"
            self._next_connect = now + SOCKET_RETRY_SECONDS
            logger(__name__).debug("%s; using the event file", self.last_error)
            return False
        sock.setblocking(False)
        self._socket, self._socket_pid = sock, os.getpid()
        self._congested = False
        return True

    def _drop_socket(self) -> None:
        if self._socket is not None:
            if self._socket_pid == os.getpid():
                self._socket.close()
            self._socket = None
        self._next_connect = time.monotonic() + SOCKET_RETRY_SECONDS

    def _delivered(self) -> None:
        self.sent += 1
        self._failing = False

    def _fail(self, message: str, *, count: bool = True) -> None:
        if count:
            self.failures += 1
        self.last_error = message
        if not self._failing:
            # Once per streak: a full disk must not flood the training log with one warning
            # per event. A later success re-arms the warning.
            self._failing = True
            logger(__name__).warning("%s (further failures are counted, not logged)", message)


def _unread_bytes(sock: socket.socket) -> int | None:
    """Bytes sent on ``sock`` that its peer has not read yet (kernel accounting, not exact
    bytes, but 0 exactly when all was read); ``None`` where the system cannot say."""
    import fcntl
    import struct

    try:
        raw = fcntl.ioctl(sock.fileno(), _SIOCOUTQ, b"\0\0\0\0")
    except OSError:
        return None
    return int(struct.unpack("i", raw)[0])


def _lease_ending(outcome: str) -> tuple[str, Cause | None]:
    """How the lease ends on ``run_complete(outcome)``, ``outcome`` one of ``RUN_OUTCOMES``."""
    from progresskit.model.core import Cause  # loaded with the lease: see producer.heartbeat

    if outcome == "failed":
        return "failed", Cause("error", message="run_complete reported failed")
    if outcome == "cancelled":
        return "cancelled", Cause("cancel", message="run_complete reported cancelled")
    return "finished", None


def _env(*names: str) -> str | None:
    for name in names:
        value = os.environ.get(name)
        if value:
            return value
    return None
