"""Asking Slurm, gently: one ``squeue`` and at most one ``sacct`` per poll interval.

Every question about every run goes through one :class:`SlurmView` per process (and
``PATH``): the first question of an interval runs ``squeue --json`` once for all jobs (it
ignores ``-j`` and ``-t`` anyway, and returns the finished jobs the controller still
holds); jobs it no longer holds (after ``MinJobAge``) and cancelled jobs (for the uid that
cancelled them) are asked of ``sacct`` together, by their ids (``sacct`` without ``-j``
misses jobs that were never eligible), at most once per interval. A job's final record is
kept for good: it never changes.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
import time
from collections.abc import Iterable
from typing import Any

import attrs

from progresskit import ProgresskitError
from progresskit_slurm.jobs import (
    SACCT_FIELDS,
    Job,
    SlurmFormatError,
    parse_sacct,
    parse_squeue_json,
)
from progresskit_slurm.states import canonical

__all__ = ["DEFAULT_POLL_SECONDS", "MIN_POLL_SECONDS", "SlurmError", "SlurmView", "view_for"]

#: How often Slurm is asked at most, by default; ``slurm_poll_seconds`` changes it.
DEFAULT_POLL_SECONDS = 5.0
#: The least interval allowed: below it a monitor becomes the ``watch squeue`` storm that
#: shared clusters' admins ask users not to run.
MIN_POLL_SECONDS = 1.0
#: Seconds a Slurm command may take before it is given up.
COMMAND_TIMEOUT = 30.0


#: What scancel is given: a job id, an array task, or an array's task range.
_JOB_ID = re.compile(r"^\d+(?:_(?:\d+|\[[\d,\-:%]+\]))?$")
#: Final records kept (oldest forgotten first): a long-running serve stays bounded; a job
#: forgotten and asked for again is read from sacct again.
MAX_FINAL = 20_000


class SlurmError(ProgresskitError):
    """Slurm could not be asked, or said something this plugin cannot read."""


def _terminal(job: Job) -> bool:
    return canonical(job.state).value in ("finished", "failed", "crashed", "cancelled")


@attrs.define
class _Snapshot:
    taken_at: float = -1e18
    jobs: dict[str, Job] = attrs.field(factory=dict)
    problem: str | None = None


class SlurmView:
    """What Slurm says about jobs, read at most once per ``interval`` seconds."""

    def __init__(self, interval: float = DEFAULT_POLL_SECONDS, path: str | None = None) -> None:
        self.interval = max(float(interval), MIN_POLL_SECONDS)
        self.path = path
        #: Subprocesses run, by command: what the load on the controller is.
        self.calls: dict[str, int] = {"squeue": 0, "sacct": 0, "scancel": 0}
        self._lock = threading.RLock()
        self._squeue = _Snapshot()
        self._sacct_at = -1e18
        self._sacct_problem: str | None = None
        #: Job id -> its final record (a terminal state, complete with sacct's details).
        self._final: dict[str, Job] = {}
        #: Job id -> sacct's latest answer for a job squeue no longer holds.
        self._history: dict[str, Job] = {}
        #: Job ids asked about that sacct still has to answer for.
        self._wanted: set[str] = set()

    # -- the commands -----------------------------------------------------------------------

    def _run(self, command: str, *args: str) -> str:
        import subprocess  # loads signal: not at `progresskit status` start-up of a plain run

        exe = shutil.which(command, path=self.path)
        if exe is None:
            raise SlurmError(f"{command}: not found on PATH; is the Slurm client installed?")
        self.calls[command] = self.calls.get(command, 0) + 1
        try:
            done = subprocess.run(
                [exe, *args], capture_output=True, text=True, timeout=COMMAND_TIMEOUT,
                stdin=subprocess.DEVNULL, check=False,
            )
        except subprocess.TimeoutExpired:
            raise SlurmError(
                f"{command} {' '.join(args)}: no answer in {COMMAND_TIMEOUT:g}s "
                f"(is slurmctld up?)"
            ) from None
        except OSError as exc:
            raise SlurmError(f"{command}: cannot run {exe}: {exc}") from None
        if done.returncode != 0:
            said = (done.stderr or done.stdout).strip().splitlines()
            raise SlurmError(
                f"{command} {' '.join(args)} exited with {done.returncode}: "
                f"{said[-1] if said else 'no message'}"
            )
        return done.stdout

    def scancel(self, job_id: str) -> None:
        """Cancel exactly ``job_id``: a job, an array task (``16_3``), an array's tasks
        (``16_[2-3]``), or a whole array."""
        if _JOB_ID.match(job_id) is None:
            raise SlurmError(
                f"scancel: {job_id!r} is not a Slurm job id (N, N_M or N_[M-K]); not cancelled"
            )
        with self._lock:
            self._run("scancel", job_id)
            self._squeue.taken_at = -1e18  # the next question must see the change

    # -- the snapshot ---------------------------------------------------------------------

    def _refresh(self, now: float) -> None:
        snap = _Snapshot(taken_at=now)
        try:
            snap.jobs = {j.job_id: j for j in parse_squeue_json(self._run("squeue", "--json"))}
        except (SlurmError, SlurmFormatError) as exc:
            snap.problem = str(exc)
            snap.jobs = self._squeue.jobs  # the last answer, said to be stale
        if snap.problem is None:
            # Gone from squeue (MinJobAge passed) before its end was seen: ask sacct.
            self._wanted.update(j for j in self._squeue.jobs
                                if j not in snap.jobs and j not in self._final)
        self._squeue = snap
        for job in snap.jobs.values():
            if _terminal(job) and job.job_id not in self._final:
                if job.state == "CANCELLED":
                    self._wanted.add(job.job_id)  # only sacct says who cancelled it
                else:
                    self._keep(job)

    def _ask_sacct(self, now: float) -> None:
        ids = sorted(self._wanted, key=lambda i: (len(i), i))
        if not ids or now - self._sacct_at < self.interval:
            return
        self._sacct_at = now
        try:
            text = self._run(
                "sacct", "-P", "-D", "-o", ",".join(SACCT_FIELDS), "-j", ",".join(ids)
            )
            found = parse_sacct(text)
        except (SlurmError, SlurmFormatError) as exc:
            self._sacct_problem = str(exc)
            return
        self._sacct_problem = None
        for job in found:
            if job.job_id not in self._wanted:
                continue
            live = self._squeue.jobs.get(job.job_id)
            if live is not None:  # squeue's record, with what only sacct says
                job = attrs.evolve(live, cancelled_by=job.cancelled_by)
            self._history[job.job_id] = job
            if _terminal(job):
                self._keep(job)
                self._wanted.discard(job.job_id)
        # Jobs sacct does not know either keep being asked for, with the next interval's.

    def _keep(self, job: Job) -> None:
        self._final[job.job_id] = job
        self._history.pop(job.job_id, None)
        while len(self._final) > MAX_FINAL:
            del self._final[next(iter(self._final))]

    def jobs(self, wanted: Iterable[str] = (), now: float | None = None) -> dict[str, Job]:
        """Every job Slurm holds or that was asked for, by job id, at most ``interval``
        old; ``wanted``: ids to look up in accounting when the controller no longer holds
        them."""
        now = time.monotonic() if now is None else now
        with self._lock:
            if now - self._squeue.taken_at >= self.interval:
                self._refresh(now)
            for job_id in wanted:
                if job_id not in self._squeue.jobs and job_id not in self._final:
                    self._wanted.add(job_id)
            self._ask_sacct(now)
            merged = dict(self._history)
            merged.update(self._squeue.jobs)
            merged.update(self._final)
            return merged

    def job(self, job_id: str, now: float | None = None) -> Job | None:
        """What Slurm says about one job (from the interval's snapshot: a run's question
        costs a dictionary lookup, not a command)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            if now - self._squeue.taken_at >= self.interval:
                self._refresh(now)
            final = self._final.get(job_id)
            if final is not None:
                return final
            live = self._squeue.jobs.get(job_id)
            if live is None or live.state == "CANCELLED":
                self._wanted.add(job_id)
                self._ask_sacct(now)
            return self._final.get(job_id) or live or self._history.get(job_id)

    @property
    def problem(self) -> str | None:
        """Why the latest answer may be stale or incomplete (a command that failed)."""
        return self._squeue.problem or self._sacct_problem

    def pending_history(self) -> set[str]:
        """Job ids sacct has yet to answer for."""
        return set(self._wanted)


_VIEWS: dict[tuple[float, str | None], SlurmView] = {}
_VIEWS_LOCK = threading.Lock()


def view_for(config: dict[str, Any] | Any) -> SlurmView:
    """The process's one view of Slurm for this poll interval and ``PATH``."""
    interval = max(float(config.get("slurm_poll_seconds") or DEFAULT_POLL_SECONDS),
                   MIN_POLL_SECONDS)
    key = (interval, os.environ.get("PATH"))
    with _VIEWS_LOCK:
        view = _VIEWS.get(key)
        if view is None:
            view = _VIEWS[key] = SlurmView(interval, key[1])
        return view
