"""The liveness lease document: ``.progresskit-lease.json`` in a run directory.

A producer (:mod:`progresskit.producer.heartbeat`) writes it when it starts: its pid, the
process's start time (to tell a reused pid from the original), the host name and the interval
within which it promises the next sign of life; at the end, the final state and its cause. The
file's mtime, not a field, is the time of the last renewal. The engine
(:mod:`progresskit.engine.liveness`) reads it. docs/liveness.md describes every field.

The process identity (host, pid, start time) is computed here, for both sides: a reader can
only recognise the writer's process if both derive its start time the same way.
"""

from __future__ import annotations

import math
import os
import sys
from typing import Any

import attrs

from progresskit.errors import FormatError
from progresskit.formats.fileio import read_json
from progresskit.formats.jsonio import dumps
from progresskit.model.core import Cause

__all__ = [
    "LEASE_FILENAME",
    "LEASE_FORMAT",
    "LEASE_STATES",
    "LEASE_VERSION",
    "Lease",
    "dump_lease",
    "load_lease",
    "proc_stat",
    "process_start_time",
    "this_host",
]

#: The lease's name inside the run directory (hidden: it is not one of the run's outputs).
LEASE_FILENAME = ".progresskit-lease.json"
LEASE_FORMAT = "progresskit.lease"
LEASE_VERSION = 1
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
    return dumps(document, indent=2, sort_keys=True) + "\n"


def this_host() -> str:
    """The host name leases record and compare: the kernel's node name (``platform.node()``)."""
    if hasattr(os, "uname"):
        return os.uname().nodename
    import socket  # Windows: no uname; socket is loaded only there

    return socket.gethostname()


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_boot_time: float | None = None


def _read_boot_time() -> float:
    with open("/proc/stat", "rb") as fh:
        for line in fh:
            if line.startswith(b"btime"):
                return float(line.split()[1])
    raise OSError("/proc/stat has no btime line")


def proc_stat(pid: int) -> tuple[bytes, float]:
    """The state letter (``R``, ``S``, ``T``, ``Z``...) and start time of process ``pid``,
    from ``/proc/PID/stat`` (Linux; a fifth of psutil's cost).

    The start time is psutil's ``create_time()``: boot time plus the start in clock ticks.
    Raises ``OSError``: ``FileNotFoundError`` when there is no such process (or no procfs).
    """
    global _boot_time
    with open(f"/proc/{pid}/stat", "rb") as fh:
        raw = fh.read()
    # The command name (field 2) may hold spaces and parentheses: split after the last ")".
    fields = raw[raw.rfind(b")") + 2 :].split()
    try:
        state, ticks = fields[0], int(fields[19])
    except (IndexError, ValueError):
        raise OSError(f"/proc/{pid}/stat: unexpected content") from None
    if _boot_time is None:
        _boot_time = _read_boot_time()
    return state, _boot_time + ticks / _CLOCK_TICKS


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
