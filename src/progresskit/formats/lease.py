"""The liveness lease document: ``.progresskit-lease.json`` in a run directory.

A producer (:mod:`progresskit.producer.heartbeat`) writes it when it starts: its pid, the
process's start time (to tell a reused pid from the original), the host name and the interval
within which it promises the next sign of life; at the end, the final state and its cause. The
file's mtime, not a field, is the time of the last renewal. The engine
(:mod:`progresskit.engine.liveness`) reads it. docs/liveness.md describes every field.

The process identity (host, pid, start time) is computed here, for both sides: a reader can
only recognise the writer's process if both derive its start time the same way. So is the
lease's *registration*: anyone who can write the run directory can write a lease naming any
process, so the lease alone never proves whose it is. The producer also keeps a memory file
(``memfd``) open, named :data:`REGISTRATION_NAME`, holding the run directory and the
lease's token; only the process itself can hold such a file, and a canceller of the same
user reads it through ``/proc/PID/fd`` (docs/cancel.md).
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Mapping
from typing import Any

import attrs

from progresskit.errors import FormatError
from progresskit.formats.fileio import read_json
from progresskit.formats.jsonio import dumps
from progresskit.model.core import Cause

__all__ = [
    "CLOCK_TICKS",
    "LEASE_FILENAME",
    "LEASE_FORMAT",
    "LEASE_STATES",
    "LEASE_VERSION",
    "REGISTRATION_FORMAT",
    "REGISTRATION_NAME",
    "SLURM_ENVIRONMENT",
    "Lease",
    "ProcStat",
    "SlurmJob",
    "boot_time",
    "dump_lease",
    "load_lease",
    "proc_stat",
    "process_start_ticks",
    "process_start_time",
    "read_proc_stat",
    "read_registration",
    "registration",
    "slurm_job",
    "this_host",
]

#: The lease's name inside the run directory (hidden: it is not one of the run's outputs).
LEASE_FILENAME = ".progresskit-lease.json"
LEASE_FORMAT = "progresskit.lease"
#: Still 1: ``process_start_ticks``, ``token`` and ``slurm`` were added without changing the
#: meaning of any field, and readers ignore the fields they do not know.
LEASE_VERSION = 1
#: The name of the memory file a producer registers its leases in (``/proc/PID/fd/N`` links
#: to ``/memfd:progresskit-lease (deleted)``).
REGISTRATION_NAME = "progresskit-lease"
REGISTRATION_FORMAT = "progresskit.lease-registration"
#: Longest accepted token: a lease is untrusted input.
_MAX_TOKEN = 256
#: The lease's ``slurm`` keys and the environment variables Slurm sets in a job's processes.
SLURM_ENVIRONMENT = (
    ("job_id", "SLURM_JOB_ID"),
    ("array_job_id", "SLURM_ARRAY_JOB_ID"),
    ("array_task_id", "SLURM_ARRAY_TASK_ID"),
    ("cluster", "SLURM_CLUSTER_NAME"),
    ("node", "SLURMD_NODENAME"),
)
#: ``running``: the producer is at work; ``finished``: it closed cleanly; ``failed``:
#: an exception or a non-zero ``sys.exit``; ``cancelled``: SIGTERM/SIGINT or a cancelled
#: run; ``exited``: the interpreter exited with the lease still held (exit code unknown).
LEASE_STATES = ("running", "finished", "failed", "cancelled", "exited")


def _positive_or_none(_inst: object, attribute: attrs.Attribute[Any], value: float | None) -> None:
    if value is not None and not (math.isfinite(value) and value > 0):
        raise ValueError(f"{attribute.name} must be a finite number > 0 or null, got {value!r}")


def _non_negative(_inst: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{attribute.name} must be a finite number >= 0, got {value!r}")


def _pid(_inst: object, attribute: attrs.Attribute[Any], value: int) -> None:
    if isinstance(value, bool) or value <= 0:
        raise ValueError(f"{attribute.name} must be a positive integer, got {value!r}")


def _ticks_or_none(_inst: object, attribute: attrs.Attribute[Any], value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or value < 0):
        raise ValueError(f"{attribute.name} must be an integer >= 0 or null, got {value!r}")


def _token_or_none(_inst: object, attribute: attrs.Attribute[Any], value: str | None) -> None:
    if value is not None and not (0 < len(value) <= _MAX_TOKEN):
        raise ValueError(
            f"{attribute.name} must be 1 to {_MAX_TOKEN} characters or null, "
            f"got {len(value)} characters"
        )


@attrs.frozen
class SlurmJob:
    """The Slurm job a lease's process runs in, from the variables Slurm sets in it."""

    job_id: str
    array_job_id: str | None = None
    array_task_id: str | None = None
    cluster: str | None = None
    node: str | None = None


def slurm_job(environ: Mapping[str, str]) -> SlurmJob | None:
    """The Slurm job named by ``environ`` (the producer's ``os.environ``); ``None`` outside
    a Slurm job (no ``SLURM_JOB_ID``)."""
    if not environ.get("SLURM_JOB_ID"):
        return None
    known = {key: environ[name] for key, name in SLURM_ENVIRONMENT if environ.get(name)}
    return SlurmJob(**known)


@attrs.frozen
class Lease:
    """The content of a lease file (its mtime, not a field, is the last renewal)."""

    pid: int = attrs.field(validator=_pid)
    #: When the producer process started (:func:`process_start_time`).
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
    #: Which producers hold it: ``heartbeat``, ``statusfile``, ``events``, ``progress``.
    producers: tuple[str, ...] = ()
    #: The process's start in clock ticks since boot (``/proc/PID/stat`` field 22): exact,
    #: where ``process_start_time`` may be off by the boot time's drift. ``None``: not Linux,
    #: or written by an older progresskit.
    process_start_ticks: int | None = attrs.field(default=None, validator=_ticks_or_none)
    #: A random nonce, also in the process's registration (:func:`registration`). ``None``:
    #: written by an older progresskit, whose process cannot be proven to be the run's.
    token: str | None = attrs.field(default=None, validator=_token_or_none)
    #: The Slurm job the process runs in; ``None`` outside Slurm.
    slurm: SlurmJob | None = None


def load_lease(path: str) -> Lease:
    """Read a lease file. Raises ``OSError`` or :class:`FormatError` naming the file."""
    # The converter (cattrs) is the readers' business: the producer side never loads it.
    from progresskit.model.converter import structure

    try:
        data = read_json(path)
    except ValueError as exc:
        raise FormatError(str(exc)) from exc
    if not isinstance(data, dict) or data.get("format") != LEASE_FORMAT:
        raise FormatError(f'{path}: not a progresskit lease (expected "format": "{LEASE_FORMAT}")')
    return structure(data, Lease, where=path)


def dump_lease(lease: Lease) -> str:
    """The text of a lease file holding ``lease``: indented JSON, keys sorted, one final
    newline (the bytes the converter's ``to_json(..., indent=2)`` writes, without cattrs)."""
    document = {"format": LEASE_FORMAT, "version": LEASE_VERSION, **attrs.asdict(lease)}
    # Keys of ``slurm`` only for the variables that were set; no ``slurm`` outside Slurm.
    slurm = document.pop("slurm")
    if slurm is not None:
        document["slurm"] = {key: value for key, value in slurm.items() if value is not None}
    return dumps(document, indent=2, sort_keys=True) + "\n"


def registration(directory: str, token: str) -> bytes:
    """The content of the memory file registering the lease on ``directory`` (a real path)
    with ``token``."""
    document = {"format": REGISTRATION_FORMAT, "work_dir": directory, "token": token}
    return dumps(document, sort_keys=True).encode("utf-8")


def read_registration(data: bytes) -> tuple[str, str] | None:
    """(run directory, token) of a registration's content; ``None`` for anything else."""
    try:
        document = json.loads(data)
    except ValueError:
        return None
    if not isinstance(document, dict) or document.get("format") != REGISTRATION_FORMAT:
        return None
    directory, token = document.get("work_dir"), document.get("token")
    if not isinstance(directory, str) or not isinstance(token, str):
        return None
    return directory, token


def this_host() -> str:
    """The host name leases record and compare: the kernel's node name (``platform.node()``)."""
    if hasattr(os, "uname"):
        return os.uname().nodename
    import socket  # Windows: no uname; socket is loaded only there

    return socket.gethostname()


#: Clock ticks per second of ``/proc`` start times.
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_boot_time: float | None = None


def boot_time() -> float:
    """The boot time (``/proc/stat`` ``btime``), read once per process as psutil does: the
    kernel's figure moves by whole seconds with clock adjustments, and start times computed
    from it must agree within one process to the tick. Raises ``OSError`` without procfs."""
    global _boot_time
    if _boot_time is None:
        with open("/proc/stat", "rb") as fh:
            for line in fh:
                if line.startswith(b"btime"):
                    _boot_time = float(line.split()[1])
                    break
            else:
                raise OSError("/proc/stat has no btime line")
    return _boot_time


@attrs.frozen
class ProcStat:
    """What ``/proc/PID/stat`` says about a process's identity."""

    #: ``R``, ``S``, ``D``, ``T``, ``t``, ``Z``, ``X``...
    state: bytes
    #: The parent's pid (0 for pid 1 and kernel threads' parent).
    ppid: int
    #: The start in clock ticks since boot (field 22): exact, unlike :attr:`start_time`.
    start_ticks: int
    #: The start as Unix time: psutil's ``create_time()``, boot time plus the ticks.
    start_time: float


def read_proc_stat(pid: int) -> ProcStat:
    """Process ``pid``'s state, parent and start, from ``/proc/PID/stat`` (Linux; a fifth of
    psutil's cost). Raises ``OSError``: ``FileNotFoundError`` when there is no such process
    (or no procfs)."""
    with open(f"/proc/{pid}/stat", "rb") as fh:
        raw = fh.read()
    # The command name (field 2) may hold spaces and parentheses: split after the last ")".
    fields = raw[raw.rfind(b")") + 2 :].split()
    try:
        state, ppid, ticks = fields[0], int(fields[1]), int(fields[19])
    except (IndexError, ValueError):
        raise OSError(f"/proc/{pid}/stat: unexpected content") from None
    return ProcStat(state, ppid, ticks, boot_time() + ticks / CLOCK_TICKS)


def proc_stat(pid: int) -> tuple[bytes, float]:
    """The state letter and start time of process ``pid`` (:func:`read_proc_stat`)."""
    stat = read_proc_stat(pid)
    return stat.state, stat.start_time


def process_start_ticks(pid: int) -> int | None:
    """When process ``pid`` started, in clock ticks since boot; ``None`` without procfs."""
    try:
        return read_proc_stat(pid).start_ticks
    except OSError:
        return None


def process_start_time(pid: int) -> float | None:
    """When process ``pid`` started, as Unix time, as leases record it (psutil's
    ``create_time()``); ``None`` when it cannot be found out."""
    if sys.platform.startswith("linux"):
        try:
            return proc_stat(pid)[1]
        except OSError:
            pass  # no procfs mounted, say: psutil may know other ways
    import psutil  # elsewhere only: on Linux a training job never loads it

    try:
        return float(psutil.Process(pid).create_time())
    except psutil.Error:
        return None
