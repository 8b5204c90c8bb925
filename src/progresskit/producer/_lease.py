"""This process's leases and the process hooks that record how its runs end.

Private to :mod:`progresskit.producer.heartbeat`, which imports it with the first lease: it
loads the lease document and the model (attrs), which a training job that only imports
progresskit does not pay for (benchmarks/imports.py). Once a lease has been written,
everything the hooks (signals, ``sys.excepthook``, ``atexit``) need is loaded, so a signal
handler does not import.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import Any

import attrs

from progresskit.formats.fileio import atomic_write_text
from progresskit.formats.lease import (
    LEASE_FILENAME,
    REGISTRATION_NAME,
    Lease,
    dump_lease,
    process_start_ticks,
    process_start_time,
    registration,
    slurm_job,
    this_host,
)
from progresskit.model.core import Cause
from progresskit.producer.heartbeat import MAX_RENEW_SECONDS, Heartbeat, cause_of

log = logging.getLogger(__name__)


class RunLease:
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
        #: The memory file proving this process holds the lease (see :func:`_register`).
        self.registration: int | None = None

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
            # Unknown start time: the host-side check of the pid stays possible.
            started = process_start_time(self.pid) or time.time()
            old = Lease(
                self.pid,
                started,
                this_host(),
                interval,
                started_at=time.time(),
                process_start_ticks=process_start_ticks(self.pid),
                token=os.urandom(16).hex(),
                slurm=slurm_job(os.environ),
            )
            # Registered before the lease names us: a canceller never sees one without it.
            self._register(old.token)
        self.record = attrs.evolve(
            old, interval=interval, slack=slack, producers=producers, state="running",
            ended_at=None, cause=None,
        )
        self._write()

    def _register(self, token: str | None) -> None:
        """Hold a memory file naming this lease's directory and token: what a canceller
        checks through ``/proc/PID/fd`` before it signals us (docs/cancel.md). Only this
        process can hold it, where anyone who can write the run directory can write a lease.
        Linux only; elsewhere (or out of file descriptors) the run cannot be cancelled by
        signal, which must not stop training."""
        if token is None or self.registration is not None or not hasattr(os, "memfd_create"):
            return
        try:
            fd = os.memfd_create(REGISTRATION_NAME, os.MFD_CLOEXEC)
        except OSError as exc:
            log.warning("cannot register lease %s for cancelling: %s", self.path, exc)
            return
        try:
            os.write(fd, registration(self.directory, token))
        except OSError as exc:
            os.close(fd)
            log.warning("cannot register lease %s for cancelling: %s", self.path, exc)
            return
        self.registration = fd

    def unregister(self) -> None:
        """Close the registration: the lease is final (or not this process's any more)."""
        fd, self.registration = self.registration, None
        if fd is not None:
            os.close(fd)

    def _write(self) -> None:
        assert self.record is not None
        if not os.path.isdir(self.directory):
            return  # the run directory was removed: there is nobody left to tell
        try:
            atomic_write_text(self.path, dump_lease(self.record))
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
            self.unregister()
            _forget(self)
            return True

    def reopen(self) -> None:
        """Undo a :meth:`finish` by a signal whose previous handler let the process go on."""
        with self.lock:
            if not self.final or self.record is None:
                return
            self.final = False
            self.record = attrs.evolve(self.record, state="running", ended_at=None, cause=None)
            self._register(self.record.token)
            self._write()
            with _registry_lock:
                _leases.setdefault(self.directory, self)


_registry_lock = threading.RLock()
#: Run directory (real path) -> this process's lease on it, while held.
_leases: dict[str, RunLease] = {}
_hooks_installed = False
_signals_installed = False
_previous_signal: dict[int, Callable[[int, FrameType | None], Any] | int] = {}
_previous_excepthook: Callable[
    [type[BaseException], BaseException, TracebackType | None], Any
] = sys.excepthook


def _forget(lease: RunLease) -> None:
    with _registry_lock:
        if _leases.get(lease.directory) is lease:
            del _leases[lease.directory]


def _finish_all(state: str, cause: Cause | None) -> list[RunLease]:
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
    ended: list[RunLease] = []
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
    # The parent's leases are the parent's: a forked worker must neither renew nor end them,
    # nor hold their registrations.
    for lease in _leases.values():
        lease.unregister()
    _leases.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


def join(work_dir: str, holder: Heartbeat) -> RunLease:
    """Make ``holder`` a holder of this process's lease on ``work_dir``; the lease."""
    directory = os.path.realpath(work_dir)
    _install_process_hooks()
    with _registry_lock:
        lease = _leases.get(directory)
        if lease is None:
            lease = _leases[directory] = RunLease(directory)
    lease.join(holder)
    return lease
