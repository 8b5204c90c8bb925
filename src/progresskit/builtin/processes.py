"""Local process discovery: which processes work on which run.

A process works on a run when its working directory is the run's work dir (or below it),
or one of its command-line arguments names the work dir or a path inside it. That is a
guess good enough to show; cancelling asks for more (:mod:`progresskit.builtin.local_process`),
and the readers of a process's tree, owner and open files it checks with are here too.

On Linux the processes are read from ``/proc`` directly, with psutil's reading of each
field (name, command line, working directory, user, start time), and only as far as a
process needs reading: most are kernel threads or onlookers, told apart by their command
line and name alone. Importing psutil and asking it for every field of every process would
cost ``progresskit status`` more than reading the run. Elsewhere psutil reads them.
"""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import partial
from typing import TypeVar

from progresskit.formats.lease import CLOCK_TICKS, boot_time, read_proc_stat
from progresskit.model.core import ProcessInfo
from progresskit.plugin.hookspec import hookimpl

_T = TypeVar("_T")
_MAX_PARENTS = 12
#: Programs that sit in or look at a run without working on it: a shell whose cwd is the
#: run, a `tail -f` of its log. Counting them would turn a dead run into a "stuck" one.
_ONLOOKERS = frozenset(
    {
        "bash",
        "sh",
        "zsh",
        "fish",
        "dash",
        "ksh",
        "tmux",
        "screen",
        "tail",
        "less",
        "more",
        "vi",
        "vim",
        "nvim",
        "nano",
        "emacs",
        "watch",
        "progresskit",
        "ls",
        "du",
        "find",
    }
)


def _owner(path: str, dirs: Mapping[str, str]) -> str | None:
    """The run (as given) that ``path`` is, or is inside of."""
    current = path
    for _ in range(_MAX_PARENTS):
        if current in dirs:
            return dirs[current]
        parent = os.path.dirname(current)
        if parent == current:
            return None
        current = parent
    return None


#: (pid, command line, working directory, owner) of a process that may work on a run: one
#: with a command line and not an onlooker. ``owner()`` gives (user, start time), or
#: ``None`` when the process has gone meanwhile.
Candidate = tuple[int, list[str], str | None, Callable[[], tuple[str | None, float] | None]]


@hookimpl
def progresskit_process_info(work_dirs: Sequence[str]) -> dict[str, ProcessInfo]:
    dirs = {os.path.abspath(d): d for d in work_dirs}
    found: dict[str, ProcessInfo] = {}
    # This query's own processes (its ancestors, the readers of its output), found when
    # a candidate first matches a run.
    ours: tuple[set[int], set[tuple[int, int]]] | None = None
    for pid, cmdline, cwd_or_none, owner in candidates():
        cwd = cwd_or_none or "/"
        args = [os.path.abspath(os.path.join(cwd, a)) for a in cmdline[1:] if "/" in a]
        # The cwd counts only when it is the run itself, not somewhere inside it.
        for run in [dirs.get(cwd)] + [_owner(a, dirs) for a in args]:
            if run is not None and run not in found:
                if ours is None:
                    ours = set(ancestors(os.getpid())), _our_pipes()
                if pid in ours[0] or _reads_from(pid, ours[1]):
                    break  # `cd run; progresskit status . | jq`: jq works on nothing
                known = owner()
                if known is None:
                    break  # it has exited: it works on nothing
                found[run] = ProcessInfo(
                    pid=pid,
                    user=known[0],
                    cmd=" ".join(cmdline),
                    start_time=known[1],
                    host=os.uname().nodename,
                )
                break
    return found


def _our_pipes() -> set[tuple[int, int]]:
    """(st_dev, st_ino) of the pipes this process's standard output and error write to."""
    pipes = set()
    for fd in (1, 2):
        try:
            st = os.fstat(fd)
        except OSError:
            continue
        if stat.S_ISFIFO(st.st_mode):
            pipes.add((st.st_dev, st.st_ino))
    return pipes


def _reads_from(pid: int, pipes: set[tuple[int, int]]) -> bool:
    """Whether process ``pid`` reads one of ``pipes`` (:func:`_our_pipes`): the rest of the
    caller's own pipeline (``| head``, ``| jq``), which sits in the run's directory when the
    caller does, and works on nothing. Linux only."""
    if _PROC is None or not pipes:
        return False
    try:
        st = os.stat(f"{_PROC}/{pid}/fd/0")
    except OSError:  # gone, or not ours to look at (then not our pipeline's either)
        return False
    return (st.st_dev, st.st_ino) in pipes


def candidates() -> Iterator[Candidate]:
    """Every process but this one that has a command line and is no onlooker, by pid."""
    if _PROC is not None:
        return _proc_candidates(_PROC)
    return _psutil_candidates()


def _psutil_candidates() -> Iterator[Candidate]:
    import psutil

    me = os.getpid()
    fields = ["pid", "name", "username", "cmdline", "create_time", "cwd"]
    for proc in psutil.process_iter(fields):
        info = proc.info
        if info["pid"] == me or not info["cmdline"] or info["name"] in _ONLOOKERS:
            continue
        yield info["pid"], info["cmdline"], info["cwd"], partial(
            _known, info["username"], info["create_time"]
        )


def _known(user: str | None, started: float) -> tuple[str | None, float]:
    return user, started


#: Where Linux shows its processes; ``None`` elsewhere (psutil reads them there).
_PROC = "/proc" if sys.platform.startswith("linux") and os.path.isdir("/proc/self") else None
#: The kernel truncates a process name to this many characters (TASK_COMM_LEN - 1).
_COMM_LENGTH = 15
_ENCODING = sys.getfilesystemencoding()
_ERRORS = sys.getfilesystemencodeerrors()


class _Gone(Exception):
    """The process exited while it was being read."""


def _proc_candidates(proc: str) -> Iterator[Candidate]:
    me = os.getpid()
    for pid in sorted(int(name) for name in os.listdir(proc) if name.isdigit()):
        if pid == me:
            continue
        base = f"{proc}/{pid}"
        try:
            cmdline = _cmdline(base)
            if not cmdline or _name(base, cmdline) in _ONLOOKERS:
                continue
            cwd = _cwd(base)
        except (_Gone, PermissionError):
            # psutil: a vanished process is skipped; an unreadable command line is None,
            # so the process is skipped too.
            continue
        yield pid, cmdline, cwd, partial(_user_and_start, base)


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except (FileNotFoundError, ProcessLookupError):
        raise _Gone(path) from None


def _cmdline(base: str) -> list[str]:
    """psutil's ``cmdline()``: NUL-separated, or space-separated for a process that
    rewrote its own (setproctitle); empty for a kernel thread or a zombie."""
    data = _read(f"{base}/cmdline").decode(_ENCODING, _ERRORS)
    if not data:
        return []
    separator = "\x00" if data.endswith("\x00") else " "
    if data.endswith(separator):
        data = data[:-1]
    cmdline = data.split(separator)
    if separator == "\x00" and len(cmdline) == 1 and " " in data:
        cmdline = data.split(" ")
    return cmdline


def _stat_fields(base: str) -> tuple[str, list[bytes]]:
    """The name and the fields after it of ``/proc/PID/stat`` (the name may hold spaces
    and parentheses: it runs from the first ``(`` to the last ``)``)."""
    data = _read(f"{base}/stat")
    end = data.rfind(b")")
    return data[data.find(b"(") + 1 : end].decode(_ENCODING, _ERRORS), data[end + 2 :].split()


def _name(base: str, cmdline: list[str]) -> str:
    """psutil's ``name()``: the kernel's name, or the program's file name when the kernel's
    is its truncation ("gnome-keyring-d" for "gnome-keyring-daemon")."""
    name = _stat_fields(base)[0]
    if len(name) >= _COMM_LENGTH and cmdline:
        extended = os.path.basename(cmdline[0])
        if extended.startswith(name):
            return extended
    return name


def _cwd(base: str) -> str | None:
    """psutil's ``cwd()``: ``None`` when not ours to read, ``""`` when the kernel has none."""
    try:
        path = os.readlink(f"{base}/cwd")
    except PermissionError:
        return None
    except (FileNotFoundError, ProcessLookupError):
        if not os.path.lexists(base):
            raise _Gone(base) from None
        return ""
    # What follows a NUL is garbage; " (deleted)" is the kernel's note on a removed dir.
    path = path.split("\x00")[0]
    if path.endswith(" (deleted)") and not os.path.exists(path):
        path = path[: -len(" (deleted)")]
    return path


def _uid(base: str) -> int:
    """The real uid of the process (``/proc/PID/status``)."""
    status = _read(f"{base}/status")
    line = status[status.index(b"\nUid:") + 1 :].split(b"\n", 1)[0]
    return int(line.split()[1])


def _user_and_start(base: str) -> tuple[str | None, float] | None:
    """psutil's ``username()`` (of the real uid) and ``create_time()``; ``None`` when
    the process has exited."""
    import pwd

    try:
        fields = _stat_fields(base)[1]
        try:
            uid = _uid(base)
        except PermissionError:
            user = None
        else:
            try:
                user = pwd.getpwuid(uid).pw_name
            except KeyError:
                user = str(uid)  # a uid the system cannot name
    except _Gone:
        return None
    # The boot time of every start time this process computes (leases' too): two readings
    # of one process's start then agree to the tick, which cancelling relies on.
    started = float(fields[19]) / CLOCK_TICKS + boot_time()
    return user, started


# -- what cancelling checks (Linux: /proc) ------------------------------------------------
#
# Each raises ``ProcessLookupError`` when the process has gone, ``PermissionError`` when its
# details are not ours to read.


def _gone_as_lookup(what: Callable[[str], _T], pid: int) -> _T:
    try:
        return what(f"/proc/{pid}")
    except _Gone:
        raise ProcessLookupError(f"no process {pid}") from None


def real_uid(pid: int) -> int:
    """The real uid of process ``pid``."""
    return _gone_as_lookup(_uid, pid)


def is_onlooker(pid: int) -> bool:
    """Whether process ``pid`` is a program that looks at runs without working on them (a
    shell, ``tail``, an editor), or has no command line (a kernel thread, a zombie)."""

    def check(base: str) -> bool:
        cmdline = _cmdline(base)
        return not cmdline or _name(base, cmdline) in _ONLOOKERS

    return _gone_as_lookup(check, pid)


def working_directory(pid: int) -> str | None:
    """Process ``pid``'s working directory; ``None`` when not ours to read."""

    def cwd(base: str) -> str | None:
        return _cwd(base) or None

    return _gone_as_lookup(cwd, pid)


#: Access modes of an open file (``/proc/PID/fdinfo/N`` ``flags``) that write.
_WRITING = (os.O_WRONLY, os.O_RDWR)


def open_files(pid: int) -> list[tuple[int, str, bool]]:
    """(fd, what it links to, whether open for writing) of every file process ``pid``
    holds open; a descriptor closed while it is read is left out."""
    base = f"/proc/{pid}"
    try:
        names = os.listdir(f"{base}/fd")
    except FileNotFoundError:
        raise ProcessLookupError(f"no process {pid}") from None
    found = []
    for name in names:
        try:
            target = os.readlink(f"{base}/fd/{name}")
            with open(f"{base}/fdinfo/{name}", "rb") as fh:
                info = fh.read()
        except FileNotFoundError:
            continue
        flags = next(
            (int(line.split()[1], 8) for line in info.splitlines() if line.startswith(b"flags:")),
            0,
        )
        found.append((int(name), target, (flags & os.O_ACCMODE) in _WRITING))
    return found


def _parents() -> dict[int, int]:
    """Every process's parent, by pid."""
    parents = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                parents[int(name)] = read_proc_stat(int(name)).ppid
            except OSError:
                continue  # exited meanwhile
    return parents


def descendants(pid: int) -> list[int]:
    """The processes ``pid`` started and the ones they started, in breadth-first order
    (children found by their parent pid: one read of ``/proc/*/stat``). A process that was
    reparented (its parent exited first) is no longer anyone's descendant."""
    children: dict[int, list[int]] = {}
    for child, parent in _parents().items():
        children.setdefault(parent, []).append(child)
    found: dict[int, None] = {}  # ordered, and a pid met twice is taken once
    todo = list(children.get(pid, ()))
    while todo:
        child = todo.pop(0)
        if child not in found and child != pid:
            found[child] = None
            todo += children.get(child, ())
    return list(found)


def ancestors(pid: int) -> list[int]:
    """The parent of ``pid``, its parent, and so on up to pid 1."""
    found: list[int] = []
    current = pid
    while current > 1 and len(found) < 4096:
        try:
            current = read_proc_stat(current).ppid
        except OSError:
            break
        if current <= 0 or current in found:
            break
        found.append(current)
    return found
