"""Liveness, the reader's side of the lease: what a lease says about its run right now.

:func:`observe` (used by :mod:`progresskit.engine.session`) turns a lease
(:mod:`progresskit.formats.lease`) into facts for the status rules
(:mod:`progresskit.engine.rules`): on the same host, whether the recorded process still
exists; anywhere, how long ago the lease was renewed; and what the lease records about the
job's scheduler (:func:`with_lease_details`). docs/liveness.md has the whole story.
"""

from __future__ import annotations

import os
import sys

import attrs

from progresskit.formats.lease import Lease, read_proc_stat, this_host
from progresskit.model.core import ProcessInfo, ProgressInfo

__all__ = [
    "GRACE_SECONDS",
    "PROCESS_STATES",
    "SLURM_DETAILS",
    "START_TIME_TOLERANCE",
    "LeaseCheck",
    "observe",
    "with_lease_details",
]

#: Added by readers to interval + slack: scheduling delay and timestamp granularity.
GRACE_SECONDS = 0.25
#: Two start times of one process differ by less than this (psutil derives them from the
#: boot time, which NTP adjustments move by fractions of a second).
START_TIME_TOLERANCE = 1.0
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


#: The lease's ``slurm`` fields and the ``progress.details`` keys they are copied to.
SLURM_DETAILS = (
    ("job_id", "slurm_job_id"),
    ("array_job_id", "slurm_array_job_id"),
    ("array_task_id", "slurm_array_task_id"),
    ("cluster", "slurm_cluster"),
    ("node", "slurm_node"),
)


def with_lease_details(progress: ProgressInfo, lease: Lease | None) -> ProgressInfo:
    """``progress`` with the Slurm job the lease records in its ``details``
    (``slurm_job_id``, ...), for the plugin that asks Slurm about it; a tracker's own
    value of a key wins."""
    job = None if lease is None else lease.slurm
    if job is None:
        return progress
    recorded = {key: getattr(job, field) for field, key in SLURM_DETAILS}
    details = {k: v for k, v in recorded.items() if v is not None}
    details.update(progress.details)
    return attrs.evolve(progress, details=details)


def _probe_proc(pid: int, start_time: float, start_ticks: int | None) -> str | None:
    """:func:`_probe` from ``/proc/PID/stat`` alone; ``None`` when there is no procfs to read."""
    try:
        stat = read_proc_stat(pid)
    except FileNotFoundError:
        return "gone" if os.path.isdir("/proc/self") else None
    except OSError:
        return None
    if stat.state in (b"Z", b"X"):
        return "gone"
    # The ticks are exact; the time also tells a lease from before a reboot.
    if start_ticks is not None and stat.start_ticks != start_ticks:
        return "reused"
    if abs(stat.start_time - start_time) > START_TIME_TOLERANCE:
        return "reused"
    return "stopped" if stat.state in (b"T", b"t") else "alive"


def _probe(pid: int, start_time: float, start_ticks: int | None = None) -> str:
    if sys.platform.startswith("linux"):
        found = _probe_proc(pid, start_time, start_ticks)
        if found is not None:
            return found
    import psutil  # only without procfs: a status query on Linux does not load it

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
    """Check ``lease`` now: on its own host, whether its process still exists. Another
    host's process (a Slurm job's, say) is never judged by a pid of this host."""
    if lease.state != "running":
        process = "ended"
    elif lease.host != (host or this_host()):
        process = "remote"
    else:
        process = _probe(lease.pid, lease.process_start_time, lease.process_start_ticks)
    return LeaseCheck(lease, renewed_at, process)
