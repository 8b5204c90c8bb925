"""Slurm's job states in progresskit's words: the canonical status, the cause, the reason."""

from __future__ import annotations

from progresskit import Cause, Status
from progresskit_slurm.jobs import Job

__all__ = ["SLURM_STATES", "canonical", "cause_of", "describe"]

S = Status

#: Every job state of Slurm 22.05 (``squeue --help`` / ``sacct -s`` states), mapped.
SLURM_STATES: dict[str, Status] = {
    "PENDING": S.PENDING,
    # The node is booting for the job: not started yet.
    "CONFIGURING": S.PENDING,
    # Requeued, waiting to run again: the new attempt has not started.
    "REQUEUED": S.PENDING,
    "REQUEUE_HOLD": S.PENDING,
    "REQUEUE_FED": S.PENDING,
    "RESV_DEL_HOLD": S.PENDING,
    "RUNNING": S.RUNNING,
    # The job's processes are ending (or being signalled): the job is still on its node.
    "COMPLETING": S.RUNNING,
    "STAGE_OUT": S.RUNNING,
    "SIGNALING": S.RUNNING,
    "RESIZING": S.RUNNING,
    # Its processes are there, stopped by the scheduler: alive, not progressing.
    "SUSPENDED": S.STUCK,
    "STOPPED": S.STUCK,
    "COMPLETED": S.FINISHED,
    "FAILED": S.FAILED,
    "OUT_OF_MEMORY": S.FAILED,
    "TIMEOUT": S.FAILED,
    "DEADLINE": S.FAILED,
    "SPECIAL_EXIT": S.FAILED,
    # The node died under the job, which had no say: gone without a word.
    "NODE_FAIL": S.CRASHED,
    "BOOT_FAIL": S.CRASHED,
    "CANCELLED": S.CANCELLED,
    # Stopped by the scheduler for a job of a higher priority tier, not by its own fault.
    "PREEMPTED": S.CANCELLED,
    "REVOKED": S.CANCELLED,
}


def canonical(state: str) -> Status:
    """The canonical status of Slurm's ``state`` (``unknown`` for a word it never says)."""
    return SLURM_STATES.get(state, S.UNKNOWN)


def _signal_name(number: int) -> str:
    import signal  # not at start-up: only a job that a signal ended needs a name

    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def cause_of(job: Job) -> Cause | None:
    """Why the job ended (or its last attempt did), as Slurm says; ``None`` while active
    or after a clean end."""
    state = job.state
    if state == "OUT_OF_MEMORY":
        limit = f" (limit {job.mem_limit})" if job.mem_limit else ""
        return Cause("error", message=f"out of memory{limit}")
    if state == "TIMEOUT":
        limit = f"time limit {job.time_limit}" if job.time_limit else "time limit"
        return Cause("error", message=f"{limit} reached")
    if state == "DEADLINE":
        return Cause("error", message="deadline reached")
    if state == "CANCELLED":
        by = f" by uid {job.cancelled_by}" if job.cancelled_by is not None else ""
        return Cause("cancel", message=f"cancelled{by}")
    if state == "PREEMPTED":
        return Cause("cancel", message="preempted by a job of a higher priority tier")
    if state == "REVOKED":
        return Cause("cancel", message="revoked (it runs on another cluster of the federation)")
    if state in ("NODE_FAIL", "BOOT_FAIL"):
        where = f" ({job.node})" if job.node else ""
        what = "node failure" if state == "NODE_FAIL" else "node boot failure"
        return Cause("vanished", message=f"{what}{where}")
    if state in ("FAILED", "SPECIAL_EXIT"):
        why = f" ({job.reason})" if job.reason and job.reason != "NonZeroExitCode" else ""
        if job.exit_code:
            return Cause("exit", message=f"the batch script exited{why}",
                         exit_code=job.exit_code)
        if job.signal:
            return Cause("signal", signal=_signal_name(job.signal),
                         message=f"killed by {_signal_name(job.signal)}{why}")
        return Cause("error", message=f"FAILED{why}")
    return None


def describe(job: Job) -> str:
    """The reason line of a job's status: Slurm's state and what it adds."""
    said = f"Slurm job {job.display_id}: {job.state}"
    status = canonical(job.state)
    if status is S.PENDING and job.reason:
        said += f" ({job.reason})"
    cause = cause_of(job)
    if cause is not None:
        said += f": {cause.describe()}"
    elif status is S.RUNNING and job.reason and job.state == "COMPLETING":
        said += f" ({job.reason})"
    if job.restarts:
        again = "1 time" if job.restarts == 1 else f"{job.restarts} times"
        after = f" after {job.previous_state}" if job.previous_state else ""
        said += f"; requeued {again}{after}, attempt {job.restarts + 1}"
    if status is S.UNKNOWN:
        said += " (a state this plugin does not know)"
    return said
