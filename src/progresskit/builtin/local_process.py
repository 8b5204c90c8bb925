"""Cancelling a run whose job is a local process: SIGTERM to it and to the processes it
started, SIGKILL to what is left after the grace period, and only once the process is proven
to be the run's (docs/cancel.md).

The default :func:`progresskit_cancel` for every runner type; it runs last so that a
plugin knowing a better way to stop its system (an HTTP interrupt, a scheduler command)
answers first. Linux only: every proof is read from ``/proc``.

What a run directory says (its lease, the process the ``psutil`` plugin guessed from command
lines) is written by anyone who can write that directory, so it only names a candidate. The
candidate is signalled when the process itself shows it is the run's:

- the lease's process holds the lease's registration, a memory file only it can hold
  (:func:`progresskit.formats.lease.registration`), naming this run and the lease's token,
  and its start in clock ticks is the lease's; or, for a run without a lease, the process
  found working on it has the run directory as its working directory, or holds a file of
  the run open for writing (naming the run's files on its command line is not enough), and
  is no onlooker (a shell, ``tail``, an editor);
- it belongs to the user who cancels (or to one of :data:`ALLOWED_USERS_ENV`), is not pid 1,
  and is neither the canceller nor one of its ancestors.

Never a process group: a launcher that started several runs' jobs in its own group would
lose all of them. The process and its descendants are signalled one by one, each re-checked
(same pid, same start in clock ticks) right before each signal, so a pid reused meanwhile is
never hit.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import TYPE_CHECKING

import attrs

from progresskit.builtin import processes
from progresskit.engine.liveness import START_TIME_TOLERANCE
from progresskit.errors import ProgresskitError
from progresskit.formats.lease import (
    CLOCK_TICKS,
    LEASE_FILENAME,
    REGISTRATION_NAME,
    Lease,
    ProcStat,
    load_lease,
    read_proc_stat,
    read_registration,
    this_host,
)
from progresskit.model.core import ProcessInfo, RunStatus
from progresskit.plugin.hookspec import hookimpl

if TYPE_CHECKING:
    # Imported by the functions that cancel: every command loads this plugin, few cancel.
    import signal

__all__ = ["ALLOWED_USERS_ENV", "Member", "Stop", "progresskit_cancel", "prove", "wait_for_stops"]

log = logging.getLogger(__name__)

#: Users besides the canceller's own whose processes may be signalled (names or uids,
#: comma-separated): set by whoever runs the canceller, never read from a run directory.
ALLOWED_USERS_ENV = "PROGRESSKIT_CANCEL_USERS"
#: How often the grace period checks whether the job is gone: a cancel is not a hot path.
_POLL_SECONDS = 0.05
#: How long processes get to disappear after SIGKILL before they count as survivors.
_KILL_WAIT = 5.0
#: A registration is a short JSON document; anything longer is not one.
_MAX_REGISTRATION = 64 * 1024
#: Whether this system shows its processes in ``/proc`` (every proof is read there).
_PROC = os.path.isdir("/proc/self/fd")


@attrs.frozen
class Member:
    """A process to signal, as it was when it was proven: a pid and its start in ticks."""

    pid: int
    start_ticks: int

    def current(self) -> bool:
        """Whether ``pid`` is still this process, alive (not a zombie)."""
        try:
            stat = read_proc_stat(self.pid)
        except OSError:
            return False
        return stat.start_ticks == self.start_ticks and stat.state not in (b"Z", b"X")


def _refuse(what: str, why: str) -> ProgresskitError:
    return ProgresskitError(f"{what}: not signalled: {why}")


def _allowed_uids() -> set[int]:
    import pwd

    uids = {os.getuid()}
    for name in os.environ.get(ALLOWED_USERS_ENV, "").split(","):
        name = name.strip()
        if not name:
            continue
        if name.isdigit():
            uids.add(int(name))
            continue
        try:
            uids.add(pwd.getpwnam(name).pw_uid)
        except KeyError:
            raise ProgresskitError(
                f"${ALLOWED_USERS_ENV}: no user named {name!r} (expected user names or uids, "
                "comma-separated)"
            ) from None
    return uids


def _check(pid: int, what: str, uids: set[int]) -> ProcStat:
    """What ``/proc`` says of ``pid`` once it passed the checks every signalled process
    must pass; raises :class:`ProgresskitError` saying which failed."""
    if pid <= 1:
        raise _refuse(what, "pid 1 (init) is never signalled")
    me = os.getpid()
    if pid == me or pid in processes.ancestors(me):
        raise _refuse(what, "it is this canceller or one of its parent processes")
    try:
        stat = read_proc_stat(pid)
        uid = processes.real_uid(pid)
    except (FileNotFoundError, ProcessLookupError):
        raise ProgresskitError(f"{what} has already exited") from None
    except OSError as exc:
        raise _refuse(what, f"its details cannot be read ({exc})") from None
    if stat.state in (b"Z", b"X"):
        raise ProgresskitError(f"{what} has already exited")
    if uid not in uids:
        raise _refuse(
            what,
            f"it belongs to uid {uid}, not to uid {os.getuid()} who cancels (allow other "
            f"users' processes with ${ALLOWED_USERS_ENV})",
        )
    return stat


def _registrations(pid: int) -> list[tuple[str, str]]:
    """(run directory, token) of every lease registration process ``pid`` holds."""
    found = []
    for fd, target, _writing in processes.open_files(pid):
        if not target.startswith(f"/memfd:{REGISTRATION_NAME} "):
            continue
        try:
            with open(f"/proc/{pid}/fd/{fd}", "rb") as fh:
                data = fh.read(_MAX_REGISTRATION + 1)
        except OSError:
            continue  # closed meanwhile
        entry = read_registration(data) if len(data) <= _MAX_REGISTRATION else None
        if entry is not None:
            found.append(entry)
    return found


def _prove_lease(lease: Lease, directory: str, what: str, uids: set[int]) -> Member:
    """The lease's process, when it proves the lease is its own."""
    import hmac

    if lease.token is None:
        raise _refuse(
            what,
            "cannot prove the process is the run's: its lease has no token (written by an "
            "older progresskit); stop it yourself, or restart it with this version",
        )
    ticks = _check(lease.pid, what, uids).start_ticks
    if lease.process_start_ticks is None:
        raise _refuse(what, "cannot prove the process is the run's: its lease records no "
                            "exact start time")
    if ticks != lease.process_start_ticks:
        raise _refuse(
            what,
            f"that pid now belongs to another process (started at tick {ticks}, the lease "
            f"says {lease.process_start_ticks})",
        )
    try:
        held = _registrations(lease.pid)
    except PermissionError:
        raise _refuse(what, "cannot read its open files to prove it is the run's") from None
    except ProcessLookupError:
        raise ProgresskitError(f"{what} has already exited") from None
    token = lease.token.encode()
    if not any(
        path == directory and hmac.compare_digest(given.encode(), token) for path, given in held
    ):
        raise _refuse(
            what,
            "cannot prove the process is the run's: it holds no registration of this run's "
            "lease (a lease names a process, but only the process can prove it wrote it)",
        )
    return Member(lease.pid, ticks)


def _prove_found(info: ProcessInfo, directory: str, what: str, uids: set[int]) -> Member:
    """A process found working on a run without a lease, when it shows it works there."""
    pid = info.process_id
    stat = _check(pid, what, uids)
    # A start time this process computed from /proc (the psutil plugin's) is exact to the
    # tick; one that ``ps -o lstart`` printed (seed 001's system monitor) to the second.
    tolerance = START_TIME_TOLERANCE if isinstance(info.start_time, str) else 0.5 / CLOCK_TICKS
    began = info.started_at
    if began is not None and abs(stat.start_time - began) > tolerance:
        raise _refuse(
            what,
            f"that pid now belongs to another process (started {stat.start_time:.2f}, "
            f"expected {began:.2f})",
        )
    try:
        if processes.is_onlooker(pid):
            raise _refuse(what, "it is an onlooker (a shell, a pager, an editor), not the job")
        cwd = processes.working_directory(pid)
        writing = [t for _fd, t, w in processes.open_files(pid) if w]
    except PermissionError:
        raise _refuse(what, "cannot read its working directory and open files") from None
    except ProcessLookupError:
        raise ProgresskitError(f"{what} has already exited") from None
    inside = directory.rstrip("/") + "/"
    if (cwd is not None and os.path.realpath(cwd) == directory) or any(
        t.startswith(inside) for t in writing
    ):
        return Member(pid, stat.start_ticks)
    raise _refuse(
        what,
        f"cannot prove the process is the run's: its working directory is {cwd or 'unknown'} "
        "and it writes no file of the run (naming the run's files on its command line is "
        "not enough)",
    )


def _running_lease(directory: str) -> Lease | None:
    try:
        lease = load_lease(os.path.join(directory, LEASE_FILENAME))
    except (OSError, ProgresskitError):
        return None  # none, or unreadable: the engine ignores it too
    return lease if lease.state == "running" else None


def prove(run: RunStatus) -> Member | None:
    """The process of ``run`` to signal, proven to be the run's; ``None`` when the run has
    no process on this host. Raises :class:`ProgresskitError` when the candidate fails a
    check: the message says which."""
    directory = os.path.realpath(run.work_dir)
    lease = _running_lease(directory)
    host = this_host()
    if lease is not None:
        if lease.host != host:
            return None  # another host's process (a Slurm job's: its plugin stops it)
        what = f"process {lease.pid} of run {run.work_dir}"
        if not _PROC:
            raise _refuse(what, "proving a process is the run's needs /proc (Linux)")
        return _prove_lease(lease, directory, what, _allowed_uids())
    info = run.process_info
    if info is None or (info.host is not None and info.host != host):
        return None
    what = f"process {info.pid} of run {run.work_dir}"
    if not _PROC:
        raise _refuse(what, "proving a process is the run's needs /proc (Linux)")
    return _prove_found(info, directory, what, _allowed_uids())


def _family(main: Member, uids: set[int]) -> list[Member]:
    """``main`` and the processes it started (theirs too), as they are now."""
    family = [main]
    for pid in processes.descendants(main.pid):
        try:
            stat = read_proc_stat(pid)
            uid = processes.real_uid(pid)
        except OSError:
            continue  # exited meanwhile
        if uid in uids:
            family.append(Member(pid, stat.start_ticks))
        else:
            log.warning("process %d (started by %d) belongs to uid %d: not signalled",
                        pid, main.pid, uid)
    return family


def _signal(members: list[Member], sig: signal.Signals) -> None:
    """Send ``sig`` to each member that is still the process it was (re-checked first)."""
    for member in members:
        if not member.current():
            continue  # gone, or its pid reused since: never signalled
        try:
            os.kill(member.pid, sig)
        except ProcessLookupError:
            pass
        except PermissionError:
            log.warning("process %d: permission denied to send %s", member.pid, sig.name)


def _still_alive(members: list[Member], timeout: float) -> list[Member]:
    """The members still alive after ``timeout`` seconds.

    Polls instead of waiting: when the caller is the job's parent (an agent that launched
    it), its ``Popen.wait()`` must still get the exit status, not find it reaped here.
    """
    deadline = time.monotonic() + timeout
    while True:
        alive = [m for m in members if m.current()]
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(_POLL_SECONDS)


class Stop:
    """One cancel under way: the wait for the processes to exit, and SIGKILL after ``grace``."""

    def __init__(self, members: list[Member], grace: float, what: str, uids: set[int]):
        self.members = members
        self.grace = grace
        self.what = what
        self._uids = uids
        #: ``None`` while under way; then ``terminated`` (gone after SIGTERM), ``killed``
        #: (SIGKILL was needed) or ``survived`` (alive 5 s after SIGKILL: stuck in the kernel).
        self.outcome: str | None = None
        self.survivors: list[Member] = []
        self.thread = threading.Thread(
            target=self._escalate, name=f"progresskit-cancel-{members[0].pid}", daemon=True
        )

    def described(self) -> tuple[bool, str]:
        """Whether the stop (once over) ended its processes, and the line that says how."""
        started = len(self.members) - 1
        family = f" and {started} process(es) it started" if started else ""
        if self.outcome == "terminated":
            return True, f"{self.what}{family}: exited after SIGTERM"
        if self.outcome == "killed":
            return True, f"{self.what}{family}: killed with SIGKILL after {self.grace:g}s"
        alive = ", ".join(str(m.pid) for m in self.survivors) or "?"
        return False, f"{self.what}: still alive after SIGKILL ({alive})"

    def _escalate(self) -> None:
        alive = _still_alive(self.members, self.grace)
        if not alive:
            self.outcome = "terminated"
            return
        # Children started during the grace period are the job's too.
        known = set(alive)
        for member in list(alive):
            known.update(_family(member, self._uids)[1:])
        alive = sorted(known, key=lambda m: m.pid)
        log.warning("%s did not exit within %gs of SIGTERM: sending SIGKILL", self.what,
                    self.grace)
        import signal

        _signal(alive, signal.SIGKILL)
        self.survivors = _still_alive(alive, _KILL_WAIT)
        self.outcome = "survived" if self.survivors else "killed"
        if self.survivors:
            log.error("%s: %s still alive after SIGKILL", self.what,
                      ", ".join(str(m.pid) for m in self.survivors))


_stops_lock = threading.Lock()
#: The cancels started and not yet collected by :func:`wait_for_stops`.
_stops: list[Stop] = []
#: Finished cancels nobody collects (the server's) are dropped beyond this many.
_KEEP_FINISHED = 64


def wait_for_stops(timeout: float | None = None) -> list[Stop]:
    """Wait for the cancels this process started to finish (the command line waits; the
    server does not); those cancels, collected: the next call does not return them."""
    with _stops_lock:
        started, _stops[:] = list(_stops), []
    deadline = None if timeout is None else time.monotonic() + timeout
    for stop in started:
        stop.thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
    return started


@hookimpl(trylast=True)
def progresskit_cancel(run: RunStatus, grace_seconds: float) -> bool | None:
    main = prove(run)
    if main is None:
        return None
    import signal

    what = f"process {main.pid} of run {run.work_dir}"
    uids = _allowed_uids()
    members = _family(main, uids)
    if not main.current():
        raise ProgresskitError(f"{what} has already exited")
    try:
        os.kill(main.pid, signal.SIGTERM)
    except ProcessLookupError:
        raise ProgresskitError(f"{what} has already exited") from None
    except PermissionError:
        raise ProgresskitError(f"{what}: permission denied to signal it") from None
    _signal(members[1:], signal.SIGTERM)
    log.info("sent SIGTERM to %s and %d process(es) it started", what, len(members) - 1)
    # The caller (an HTTP request) must not wait out the grace period.
    stop = Stop(members, grace_seconds, what, uids)
    with _stops_lock:
        if len(_stops) >= _KEEP_FINISHED:
            _stops[:] = [s for s in _stops if s.thread.is_alive()]
        _stops.append(stop)
    stop.thread.start()
    return True


@hookimpl(trylast=True)
def progresskit_can_cancel(run: RunStatus) -> bool | None:
    # What progresskit_cancel needs before it can try: a process known on this host (the
    # proof that it is the run's reads /proc, so it waits for the cancel itself).
    info = run.process_info
    if info is None or (info.host is not None and info.host != this_host()):
        return None
    return True
