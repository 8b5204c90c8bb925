"""The progresskit plugin: Slurm as the source of truth for runs that are Slurm jobs.

* ``progresskit status slurm:`` (``slurm:?user=U&partition=P``, ``--slurm-user``): every
  job Slurm holds (and the ones it was asked about before) is a run, through
  ``progresskit_resolve_target``; progress from its output file; arrays grouped;
* a run whose lease recorded ``SLURM_JOB_ID`` (``progress.details["slurm_job_id"]``) is
  judged by Slurm (``progresskit_judge_run``), not by a pid check from another host;
* ``progresskit_cancel``: ``scancel`` of exactly the run's job id (or array).
"""

from __future__ import annotations

import argparse
import getpass
import os
import threading
import time
from collections.abc import Mapping
from typing import Any

import attrs

from progresskit import (
    Config,
    ConfigSchema,
    RunnerDetectionError,
    RunStatus,
    ensure,
    hookimpl,
)
from progresskit_slurm.client import (
    DEFAULT_POLL_SECONDS,
    MIN_POLL_SECONDS,
    SlurmError,
    view_for,
)
from progresskit_slurm.jobs import Job
from progresskit_slurm.output import OutputReader
from progresskit_slurm.runs import group_runs, job_run, parse_target, verdict

_OUTPUT = OutputReader()
#: What the command in force configured (``progresskit_configure``): ``--slurm-user``, and
#: the config keys for ``progresskit_judge_run``, which is handed a run, not its config.
_SETTINGS: dict[str, Any] = {"user": None, "slurm_poll_seconds": DEFAULT_POLL_SECONDS,
                             "slurm_link_workdirs": False}
_SETTINGS_LOCK = threading.Lock()


@hookimpl
def progresskit_addconfig(schema: ConfigSchema) -> None:
    schema.add("slurm_poll_seconds", float, default=DEFAULT_POLL_SECONDS,
               help="How often Slurm is asked at most: one squeue and at most one sacct "
               f"per interval for all runs together (at least {MIN_POLL_SECONDS:g}s).",
               check=lambda v: ensure(v >= MIN_POLL_SECONDS,
                                      f"must be at least {MIN_POLL_SECONDS:g} seconds: a "
                                      "shorter poll loads a shared cluster's controller"))
    schema.add("slurm_link_workdirs", bool, default=False,
               help="Also link a run to the Slurm job whose WorkDir or output file is in "
               "its directory (asks squeue for every run; for login nodes).")


@hookimpl
def progresskit_addoption(parser: argparse._ArgumentGroup) -> None:
    parser.add_argument("--slurm-user", metavar="USER", default=None,
                        help="jobs of USER for a 'slurm:' target (default: you)")


@hookimpl
def progresskit_configure(config: Config) -> None:
    user = getattr(config.options, "slurm_user", None) if config.options is not None else None
    with _SETTINGS_LOCK:
        _SETTINGS["user"] = user
        for key in ("slurm_poll_seconds", "slurm_link_workdirs"):
            _SETTINGS[key] = config.get(key, _SETTINGS[key])


def _current_user() -> str | None:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return None


@hookimpl
def progresskit_resolve_target(target: str, config: Mapping[str, Any]) -> list[RunStatus] | None:
    try:
        query = parse_target(target, _SETTINGS["user"] or _current_user())
    except ValueError as exc:
        raise RunnerDetectionError(str(exc)) from None
    if query is None:
        return None
    view = view_for(config)
    try:
        jobs = view.jobs()
    except SlurmError as exc:
        raise RunnerDetectionError(f"{target}: cannot ask Slurm: {exc}") from exc
    if view.problem is not None and not jobs:
        raise RunnerDetectionError(f"{target}: cannot ask Slurm: {view.problem}")
    now = time.time()
    chosen = sorted((j for j in jobs.values() if query.matches(j)), key=_order)
    rows = [(job, job_run(job, _OUTPUT, config, now)) for job in chosen]
    return group_runs(rows)


def _order(job: Job) -> tuple[int, str]:
    return (int(job.array_job_id or job.job_id), job.display_id)


def _linked_job(run: RunStatus, jobs: Mapping[str, Job]) -> Job | None:
    """The job behind a run's work dir: its WorkDir, or the directory of its output file;
    the newest such job when several are."""
    here = os.path.abspath(run.work_dir)
    found = [j for j in jobs.values()
             if j.work_dir == here or (j.stdout and os.path.dirname(j.stdout) == here)]
    return max(found, key=lambda j: (j.submit_time or 0.0, int(j.job_id))) if found else None


@hookimpl
def progresskit_judge_run(run: RunStatus, now: float) -> RunStatus | None:
    details = run.progress.details
    job_id = details.get("slurm_job_id")
    config = _SETTINGS
    if job_id is None and not config.get("slurm_link_workdirs"):
        return None
    if job_id is not None and not job_id.isdigit():
        return None  # not SLURM_JOB_ID's shape: not a job of this plugin's
    view = view_for(config)
    try:
        job = view.job(job_id) if job_id else _linked_job(run, view.jobs())
    except SlurmError as exc:
        return _unreachable(run, job_id, str(exc))
    if job is None:
        if job_id is None:
            return None
        why = view.problem or (
            f"neither squeue nor sacct knows it yet (sacct is asked at most once per "
            f"{view.interval:g}s)" if job_id in view.pending_history()
            else "neither squeue nor sacct knows it")
        return _unreachable(run, job_id, why)
    return verdict(run, job, _OUTPUT, now, config)


def _unreachable(run: RunStatus, job_id: str | None, why: str) -> RunStatus:
    return attrs.evolve(run, reason=f"{run.reason}; Slurm job {job_id}: {why}")


@hookimpl
def progresskit_cancel(run: RunStatus, grace_seconds: float) -> bool | None:
    """``scancel`` of exactly the run's job: its own id (an array task's too), or the
    array's id for an array's row. Slurm signals the job and escalates after its own
    ``KillWait``, so ``grace_seconds`` is not used."""
    target = cancel_id(run.progress.details)
    if target is None:
        return None
    view_for(_SETTINGS).scancel(target)
    return True


@hookimpl
def progresskit_can_cancel(run: RunStatus) -> bool | None:
    """A run linked to a Slurm job can be stopped by ``scancel`` (answered from its details)."""
    return True if cancel_id(run.progress.details) is not None else None


def cancel_id(details: Mapping[str, str]) -> str | None:
    """What ``scancel`` must be given to stop exactly the run's job: ``A_T`` for an array
    task (its own id may be the array's, which would cancel every task), ``A_[2-3]`` for an
    array's tasks not started yet, the job id, or the array's id for the array's row."""
    array, task = details.get("slurm_array_job_id"), details.get("slurm_array_task_id")
    if array and task:
        return f"{array}_{task}" if task.isdigit() else f"{array}_[{task}]"
    return details.get("slurm_job_id") or array
