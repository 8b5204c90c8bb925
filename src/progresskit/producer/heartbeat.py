"""The liveness lease: a producer's promise to show a sign of life, and how it ended.

A producer (:class:`~progresskit.producer.statusfile.StatusFileWriter`,
:class:`~progresskit.producer.emitter.EventEmitter`, or :func:`heartbeat` for code that uses
neither) writes ``.progresskit-lease.json`` into its run directory when it starts: its pid,
the process's start time (to tell a reused pid from the original), the host name and the
interval within which it promises the next sign of life. A sign of life renews the lease
by touching the file's mtime (one ``utime``, at most every :data:`MAX_RENEW_SECONDS`); the
content is rewritten (atomically) only when it changes: at the start, when the promise
changes, and at the end, with the final state and its cause.

The tracker side (:func:`observe`, used by :mod:`progresskit.engine.session`) turns a lease into
facts for the status rules: on the same host, whether the recorded process still exists;
anywhere, how long ago the lease was renewed. docs/liveness.md has the whole story.
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import platform
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import Any

import attrs
import psutil

from progresskit.errors import FormatError
from progresskit.formats.fileio import atomic_write_text, read_json
from progresskit.model.core import Cause, ProcessInfo

__all__ = [
    "GRACE_SECONDS",
    "LEASE_FILENAME",
    "LEASE_STATES",
    "MAX_RENEW_SECONDS",
    "Heartbeat",
    "Lease",
    "LeaseCheck",
    "cause_of",
    "heartbeat",
    "load_lease",
    "observe",
]

log = logging.getLogger(__name__)

#: The lease's name inside the run directory (hidden: it is not one of the run's outputs).
LEASE_FILENAME = ".progresskit-lease.json"
LEASE_FORMAT = "progresskit.lease"
LEASE_VERSION = 1
#: ``running``: the producer is at work; ``finished``: it closed cleanly; ``failed``:
#: an exception or a non-zero ``sys.exit``; ``cancelled``: SIGTERM/SIGINT or a cancelled
#: run; ``exited``: the interpreter exited with the lease still held (exit code unknown).
LEASE_STATES = ("running", "finished", "failed", "cancelled", "exited")
#: Renewals closer together than this are skipped: a training loop may call ``beat()``
#: every step. Readers add it (as the lease's ``slack``) to the promised interval.
MAX_RENEW_SECONDS = 0.5
#: Added by readers to interval + slack: scheduling delay and timestamp granularity.
GRACE_SECONDS = 0.25
#: Two start times of one process differ by less than this (psutil derives them from the
#: boot time, which NTP adjustments move by fractions of a second).
START_TIME_TOLERANCE = 1.0
#: Exception messages longer than this are cut: a CUDA error can be kilobytes long.
_MAX_MESSAGE = 2000


def _positive_or_none(_inst: object, attribute: attrs.Attribute[Any], value: float | None) -> None:
    if value is not None and not (math.isfinite(value) and value > 0):
        raise ValueError(f"{attribute.name} must be a finite number > 0 or null, got {value!r}")


def _non_negative(_inst: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{attribute.name} must be a finite number >= 0, got {value!r}")


def _pid(_inst: object, attribute: attrs.Attribute[Any], value: int) -> None:
    if isinstance(value, bool) or value <= 0:
        raise ValueError(f"{attribute.name} must be a positive integer, got {value!r}")


@attrs.frozen
class Lease:
    """The content of a lease file (its mtime, not a field, is the last renewal)."""

    pid: int = attrs.field(validator=_pid)
    #: ``psutil.Process(pid).create_time()`` of the producer.
    process_start_time: float
    host: str
    #: Seconds within which the producer promises the next sign of life; ``None``: no
    #: promise (readers then use the run's ``sleep_time``).
    interval: float | None = attrs.field(validator=_positive_or_none)
    #: Seconds a renewal may lag behind the sign of life it records (renewal throttling,
    #: a status file written once per second).
    slack: float = attrs.field(default=0.0, validator=_non_negative)
    started_at: float = 0.0
    state: str = attrs.field(default="running", validator=attrs.validators.in_(LEASE_STATES))
    ended_at: float | None = None
    cause: Cause | None = None
    #: Which producers hold it: ``heartbeat``, ``statusfile``, ``events``.
    producers: tuple[str, ...] = ()


def load_lease(path: str) -> Lease:
    """Read a lease file. Raises ``OSError`` or :class:`FormatError` naming the file."""
    from progresskit.model.converter import structure

    try:
        data = read_json(path)
    except ValueError as exc:
        raise FormatError(str(exc)) from exc
    if not isinstance(data, dict) or data.get("format") != LEASE_FORMAT:
        raise FormatError(f'{path}: not a progresskit lease (expected "format": "{LEASE_FORMAT}")')
    return structure(data, Lease, where=path)


def _dump(lease: Lease) -> str:
    from progresskit.model.converter import to_json, unstructure

    document = {"format": LEASE_FORMAT, "version": LEASE_VERSION, **unstructure(lease)}
    return to_json(document, indent=2) + "\n"


def this_host() -> str:
    """The host name leases record and compare (the kernel's node name)."""
    return platform.node()


def _type_name(exc_type: type[BaseException]) -> str:
    module = exc_type.__module__
    return exc_type.__qualname__ if module == "builtins" else f"{module}.{exc_type.__qualname__}"


def cause_of(exc: BaseException) -> tuple[str, Cause | None]:
    """The lease state and cause of a run ended by ``exc`` propagating out of it."""
    if isinstance(exc, SystemExit):
        code = exc.code
        if code is None or code == 0:
            return "finished", None
        if isinstance(code, int):
            return "failed", Cause("exit", message="sys.exit", exit_code=code)
        return "failed", Cause("exit", message=str(code)[:_MAX_MESSAGE], exit_code=1)
    if isinstance(exc, KeyboardInterrupt):
        # Python's default SIGINT handler raises it; Ctrl-C is a request to stop.
        return "cancelled", Cause("signal", signal="SIGINT")
    message = str(exc)
    return "failed", Cause(
        "exception",
        exception_type=_type_name(type(exc)),
        message=message[:_MAX_MESSAGE] if message else None,
    )


# -- the producer side -----------------------------------------------------------------------


class _RunLease:
    """This process's lease on one run directory, shared by all its holders there."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.path = os.path.join(directory, LEASE_FILENAME)
        self.holders: list[Heartbeat] = []
        self.lock = threading.RLock()
        self.pid = os.getpid()
        self.final = False
        self.next_renew = 0.0
        self.renew_every = MAX_RENEW_SECONDS
        self.record: Lease | None = None
        self.write_failed = False

    def _promise(self) -> tuple[float | None, float, tuple[str, ...]]:
        # Any holder's sign of life renews the lease, so the tightest promise binds, and a
        # renewal may lag by the largest slack of any holder.
        promises = [h.expect_every for h in self.holders if h.expect_every is not None]
        interval = min(promises) if promises else None
        self.renew_every = min(MAX_RENEW_SECONDS, interval / 10) if interval else MAX_RENEW_SECONDS
        slack = max([self.renew_every, *(h.slack for h in self.holders)])
        return interval, slack, tuple(sorted({h.producer for h in self.holders}))

    def join(self, holder: Heartbeat) -> None:
        with self.lock:
            self.holders.append(holder)
            self._publish()

    def _publish(self) -> None:
        """Write the running record if the promise changed (or nothing was written yet)."""
        interval, slack, producers = self._promise()
        old = self.record
        if old is not None and (old.interval, old.slack, old.producers) == (
            interval,
            slack,
            producers,
        ):
            return
        if old is None:
            try:
                started = psutil.Process(self.pid).create_time()
            except psutil.Error:  # /proc not mounted, say: the host-side check stays possible
                started = time.time()
            old = Lease(self.pid, started, this_host(), interval, started_at=time.time())
        self.record = attrs.evolve(
            old, interval=interval, slack=slack, producers=producers, state="running",
            ended_at=None, cause=None,
        )
        self._write()

    def _write(self) -> None:
        assert self.record is not None
        if not os.path.isdir(self.directory):
            return  # the run directory was removed: there is nobody left to tell
        try:
            atomic_write_text(self.path, _dump(self.record))
        except OSError as exc:
            # Losing the lease must not stop training; say so once per lease.
            if not self.write_failed:
                log.warning("cannot write lease %s: %s", self.path, exc.strerror or exc)
            self.write_failed = True
            return
        self.write_failed = False

    def renew(self) -> None:
        now = time.monotonic()
        if now < self.next_renew:
            return
        self.next_renew = now + self.renew_every
        with self.lock:
            if self.final or os.getpid() != self.pid:
                return
            try:
                os.utime(self.path)
            except FileNotFoundError:
                self._write()  # removed under us (a cleanup script): put it back
            except OSError as exc:
                if not self.write_failed:
                    log.warning("cannot renew lease %s: %s", self.path, exc.strerror or exc)
                self.write_failed = True

    def leave(self, holder: Heartbeat, state: str, cause: Cause | None) -> None:
        with self.lock:
            if holder in self.holders:
                self.holders.remove(holder)
            if self.final or os.getpid() != self.pid:
                return
            if self.holders:
                self._publish()
            else:
                self.finish(state, cause)

    def finish(self, state: str, cause: Cause | None) -> bool:
        """Record the end (once); whether this call recorded it."""
        with self.lock:
            if self.final or os.getpid() != self.pid or self.record is None:
                return False
            self.final = True
            self.record = attrs.evolve(self.record, state=state, ended_at=time.time(), cause=cause)
            self._write()
            _forget(self)
            return True

    def reopen(self) -> None:
        """Undo a :meth:`finish` by a signal whose previous handler let the process go on."""
        with self.lock:
            if not self.final or self.record is None:
                return
            self.final = False
            self.record = attrs.evolve(self.record, state="running", ended_at=None, cause=None)
            self._write()
            with _registry_lock:
                _leases.setdefault(self.directory, self)


_registry_lock = threading.RLock()
#: Run directory (real path) -> this process's lease on it, while held.
_leases: dict[str, _RunLease] = {}
_hooks_installed = False
_signals_installed = False
_previous_signal: dict[int, Callable[[int, FrameType | None], Any] | int] = {}
_previous_excepthook: Callable[
    [type[BaseException], BaseException, TracebackType | None], Any
] = sys.excepthook


def _forget(lease: _RunLease) -> None:
    with _registry_lock:
        if _leases.get(lease.directory) is lease:
            del _leases[lease.directory]


def _finish_all(state: str, cause: Cause | None) -> list[_RunLease]:
    """End every lease this process holds; the ones this call ended."""
    with _registry_lock:
        held = [lease for lease in _leases.values() if lease.pid == os.getpid()]
    return [lease for lease in held if lease.finish(state, cause)]


def _at_exit() -> None:
    # The exit code is not known here (sys.exit(3) and a normal end look the same); the
    # status rules judge an "exited" run by whether its work was complete.
    _finish_all("exited", Cause("exit", message="the process exited"))


def _excepthook(
    exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None
) -> None:
    # Only the main thread's uncaught exceptions come here, and they end the process.
    # A SIGINT/SIGTERM already recorded by _on_signal stays: finish() is once only.
    try:
        _finish_all(*cause_of(exc))
    except Exception:  # recording the end must never cost the user their traceback
        log.exception("cannot record the end of the run in its lease")
    _previous_excepthook(exc_type, exc, tb)


def _on_signal(signum: int, frame: FrameType | None) -> None:
    ended: list[_RunLease] = []
    try:
        ended = _finish_all("cancelled", Cause("signal", signal=signal.Signals(signum).name))
    except Exception:  # recording must never swallow the signal
        log.exception("cannot record the signal in the run's lease")
    previous = _previous_signal.get(signum, signal.SIG_DFL)
    if callable(previous):
        previous(signum, frame)  # may raise (KeyboardInterrupt, SystemExit): the run ends
        # The previous handler returned: the program chose to carry on.
        for lease in ended:
            lease.reopen()
        return
    # SIG_DFL: die of the signal, so that the parent sees "killed by SIGTERM" as it would
    # have without us.
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _install_process_hooks() -> None:
    """atexit, sys.excepthook and (from the main thread only) SIGTERM/SIGINT handlers."""
    global _hooks_installed, _signals_installed, _previous_excepthook
    with _registry_lock:
        if not _hooks_installed:
            atexit.register(_at_exit)
            _previous_excepthook = sys.excepthook
            sys.excepthook = _excepthook
            _hooks_installed = True
        if _signals_installed or threading.current_thread() is not threading.main_thread():
            return  # signal.signal() works only in the main thread; tried again on next join
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous = signal.getsignal(signum)
            # SIG_IGN: the signal does not end the process (nohup, background jobs), so it
            # ends no run. None: a handler installed outside Python, which we cannot chain.
            if previous is signal.SIG_IGN or previous is None or previous is _on_signal:
                continue
            _previous_signal[signum] = previous
            signal.signal(signum, _on_signal)
        _signals_installed = True


def _after_fork_in_child() -> None:
    # The parent's leases are the parent's: a forked worker must neither renew nor end them.
    _leases.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _join(work_dir: str, holder: Heartbeat) -> _RunLease:
    directory = os.path.realpath(work_dir)
    _install_process_hooks()
    with _registry_lock:
        lease = _leases.get(directory)
        if lease is None:
            lease = _leases[directory] = _RunLease(directory)
    lease.join(holder)
    return lease


class Heartbeat:
    """A holder of the lease on one run directory; see :func:`heartbeat`."""

    def __init__(
        self,
        work_dir: str | os.PathLike[str],
        *,
        expect_every: float | None,
        slack: float = 0.0,
        producer: str = "heartbeat",
    ) -> None:
        if expect_every is not None:
            if isinstance(expect_every, bool) or not isinstance(expect_every, (int, float)):
                raise ValueError(f"expect_every must be a number of seconds, got {expect_every!r}")
            if not (math.isfinite(expect_every) and expect_every > 0):
                raise ValueError(f"expect_every must be a finite number > 0, got {expect_every!r}")
        self.work_dir = os.fspath(work_dir)
        self.expect_every = None if expect_every is None else float(expect_every)
        self.slack = float(slack)
        self.producer = producer
        self._closed = False
        self._lease = _join(self.work_dir, self)

    @property
    def path(self) -> str:
        """The lease file."""
        return self._lease.path

    def beat(self) -> None:
        """A sign of life. Cheap enough for every step: at most one ``utime`` per 0.5 s."""
        self._lease.renew()

    def close(self, state: str = "finished", cause: Cause | None = None) -> None:
        """Let go of the lease; the last holder records ``state`` and ``cause``. Idempotent."""
        if state not in LEASE_STATES or state == "running":
            raise ValueError(
                f"state must be one of finished, failed, cancelled, exited; got {state!r}"
            )
        if self._closed:
            return
        self._closed = True
        self._lease.leave(self, state, cause)

    def close_with(self, exc: BaseException | None) -> None:
        """Close as a ``with`` block ending with ``exc`` (``None``: cleanly) would."""
        if exc is None:
            self.close()
        else:
            self.close(*cause_of(exc))

    def __enter__(self) -> Heartbeat:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close_with(exc)


def heartbeat(work_dir: str | os.PathLike[str], *, expect_every: float) -> Heartbeat:
    """Hold the liveness lease of the run in ``work_dir``, promising a sign of life (a
    :meth:`Heartbeat.beat`) at least every ``expect_every`` seconds::

        with progresskit.heartbeat("runs/cifar", expect_every=60) as hb:
            for batch in data:
                train(batch)
                hb.beat()

    A clean end of the ``with`` block records ``finished``; an exception records
    ``failed`` with its type and message; SIGTERM/SIGINT record ``cancelled`` with the
    signal. Without ``with``, call :meth:`Heartbeat.close`, or the interpreter's exit
    records ``exited``. ``work_dir`` must exist.
    """
    if not os.path.isdir(work_dir):
        what = "does not exist" if not os.path.exists(work_dir) else "is not a directory"
        raise ValueError(f"heartbeat: work_dir {os.fspath(work_dir)} {what}")
    return Heartbeat(work_dir, expect_every=expect_every)


def producer_heartbeat(
    work_dir: str | None, *, expect_every: float | None, slack: float, producer: str
) -> Heartbeat | None:
    """The lease holder of a producer writing into ``work_dir``, or ``None`` when that
    directory does not exist (a lease is a bonus; the producer must work without one)."""
    if work_dir is None:
        return None
    try:
        return Heartbeat(work_dir, expect_every=expect_every, slack=slack, producer=producer)
    except OSError as exc:
        log.warning("no liveness lease for %s: %s", work_dir, exc)
        return None


# -- the reader side ---------------------------------------------------------------------------


#: What :func:`observe` found out about the lease's process.
PROCESS_STATES = ("alive", "stopped", "gone", "reused", "remote", "ended")


@attrs.frozen
class LeaseCheck:
    """A lease as the status rules see it at one moment."""

    lease: Lease
    #: Unix time of the newest renewal (the file's mtime).
    renewed_at: float
    #: ``alive``/``stopped`` (SIGSTOP, Ctrl-Z): the recorded process exists; ``gone``: it
    #: does not (or is a zombie); ``reused``: its pid now belongs to another process;
    #: ``remote``: it runs on another host, not checkable; ``ended``: the lease is final.
    process: str = attrs.field(validator=attrs.validators.in_(PROCESS_STATES))

    @property
    def limit(self) -> float | None:
        """Seconds of silence the promise allows, slack and grace included."""
        interval = self.lease.interval
        return None if interval is None else interval + self.lease.slack + GRACE_SECONDS

    def process_info(self) -> ProcessInfo | None:
        """The recorded process, when it is known to exist."""
        if self.process not in ("alive", "stopped"):
            return None
        lease = self.lease
        return ProcessInfo(pid=lease.pid, start_time=lease.process_start_time, host=lease.host)


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_boot_time: float | None = None


def _probe_proc(pid: int, start_time: float) -> str | None:
    """:func:`_probe` from ``/proc/PID/stat`` alone (a fifth of psutil's cost); ``None``
    when there is no procfs to read."""
    global _boot_time
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read()
    except FileNotFoundError:
        return "gone" if os.path.isdir("/proc/self") else None
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ")".
    fields = raw[raw.rfind(b")") + 2 :].split()
    state, ticks = fields[0], int(fields[19])
    if _boot_time is None:
        _boot_time = psutil.boot_time()
    if state in (b"Z", b"X"):
        return "gone"
    if abs(_boot_time + ticks / _CLOCK_TICKS - start_time) > START_TIME_TOLERANCE:
        return "reused"
    return "stopped" if state in (b"T", b"t") else "alive"


def _probe(pid: int, start_time: float) -> str:
    if sys.platform.startswith("linux"):
        found = _probe_proc(pid, start_time)
        if found is not None:
            return found
    try:
        proc = psutil.Process(pid)
        with proc.oneshot():
            created = proc.create_time()
            state = proc.status()
    except psutil.NoSuchProcess:
        return "gone"
    except psutil.AccessDenied:
        return "alive"  # it exists; another user's process hides its details
    if state == psutil.STATUS_ZOMBIE:
        return "gone"  # dead, only waiting for its parent to read the exit status
    if abs(created - start_time) > START_TIME_TOLERANCE:
        return "reused"
    return "stopped" if state == psutil.STATUS_STOPPED else "alive"


def observe(lease: Lease, renewed_at: float, host: str | None = None) -> LeaseCheck:
    """Check ``lease`` now: on its own host, whether its process still exists."""
    if lease.state != "running":
        process = "ended"
    elif lease.host != (host or this_host()):
        process = "remote"
    else:
        process = _probe(lease.pid, lease.process_start_time)
    return LeaseCheck(lease, renewed_at, process)
