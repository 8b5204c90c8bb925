"""Slurm jobs as progresskit runs: one row per job or array task, one per array."""

from __future__ import annotations

import statistics
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from progresskit import Cause, CompletedItem, ProgressInfo, RunStatus, Status
from progresskit_slurm import RUNNER_TYPE
from progresskit_slurm.jobs import Job
from progresskit_slurm.output import OutputReader
from progresskit_slurm.states import canonical, cause_of, describe

__all__ = ["TARGET_PREFIX", "JobQuery", "details_of", "group_runs", "job_run", "parse_target",
           "verdict"]

#: ``slurm:`` or ``slurm:?user=U&partition=P``.
TARGET_PREFIX = "slurm:"
_TARGET_KEYS = ("user", "partition", "state", "name")

#: Seconds without output after which a RUNNING job whose output shows a bar is stalled
#: (``sleep_time`` of the config when it sets one).
DEFAULT_SILENCE = 300.0


@attrs.frozen
class JobQuery:
    """Which jobs a ``slurm:`` target stands for (every key optional)."""

    user: str | None = None
    partition: str | None = None
    state: str | None = None
    name: str | None = None

    def matches(self, job: Job) -> bool:
        return (
            (self.user is None or job.user == self.user)
            and (self.partition is None or job.partition == self.partition)
            and (self.state is None or job.state == self.state.upper())
            and (self.name is None or job.name == self.name)
        )


def parse_target(target: str, default_user: str | None) -> JobQuery | None:
    """The jobs a ``slurm:`` target asks for; ``None`` when ``target`` is not one.

    :raises ValueError: for an unknown key, a key given twice or an empty value.
    """
    if not target.startswith(TARGET_PREFIX):
        return None
    rest = target[len(TARGET_PREFIX):]
    if rest and not rest.startswith("?"):
        raise ValueError(f"{target}: expected 'slurm:' or 'slurm:?user=U&partition=P'")
    pairs = urllib.parse.parse_qsl(rest[1:], keep_blank_values=True) if rest else []
    values: dict[str, str] = {}
    for key, value in pairs:
        if key not in _TARGET_KEYS:
            raise ValueError(f"{target}: unknown key {key!r}; expected one of {_TARGET_KEYS}")
        if key in values:
            raise ValueError(f"{target}: {key!r} given twice")
        if not value:
            raise ValueError(f"{target}: {key!r} has no value")
        values[key] = value
    if default_user and "user" not in values:
        values["user"] = default_user
    return JobQuery(**values)


def details_of(job: Job) -> dict[str, str]:
    """The run's ``details``: the names the engine copies from a lease, and Slurm's facts."""
    found = {
        "slurm_job_id": job.job_id,
        "slurm_display_id": job.display_id,
        "slurm_array_job_id": job.array_job_id,
        "slurm_array_task_id": job.array_task_id,
        "slurm_cluster": job.cluster,
        "slurm_node": job.node,
        "slurm_partition": job.partition,
        "slurm_user": job.user,
        "slurm_reason": job.reason,
        "slurm_restarts": str(job.restarts) if job.restarts else None,
        # Slurm's ExitCode notation (code:signal), once the job has ended.
        "slurm_exit_code": None if job.exit_code is None or job.end_time is None
        else f"{job.exit_code}:{job.signal or 0}",
        "slurm_output": job.stdout,
    }
    return {k: v for k, v in found.items() if v is not None}


def _key(job: Job) -> str:
    return f"{TARGET_PREFIX}{job.cluster + ':' if job.cluster else ''}{job.display_id}"


def job_run(job: Job, output: OutputReader | None, config: Mapping[str, Any],
            now: float) -> RunStatus:
    """One job as a run: Slurm's state decides, the output file says how far it is."""
    status = canonical(job.state)
    started = job.start_time is not None
    log = output.progress(job.stdout) if output is not None and started else None
    base = log if log is not None else ProgressInfo(
        runner_type=RUNNER_TYPE, completed_epochs=None, progress_percentage=None)
    cause = cause_of(job)
    reason = describe(job)
    last = base.last_update_time
    if status is Status.RUNNING:
        silence = float(config.get("sleep_time") or DEFAULT_SILENCE)
        heard = last if last is not None else job.start_time
        # Slurm says the job is on its node; a bar that stopped moving is a stalled job.
        if log is not None and log.last_update_time is not None and heard is not None \
                and now - heard > silence:
            status = Status.STUCK
            reason += f"; no output for {now - heard:.0f}s (sleep_time {silence:g}s)"
    if status is Status.FINISHED and log is not None and log.reported_status is Status.FAILED:
        reason += f"; its output ends in an error: {log.error_message}"
    progress = attrs.evolve(
        base,
        runner_type=RUNNER_TYPE,
        start_time=job.start_time if job.start_time is not None else base.start_time,
        last_update_time=job.end_time if job.end_time is not None and last is None else last,
        progress_percentage=100.0 if status is Status.FINISHED else base.progress_percentage,
        error_message=cause.describe() if cause is not None and cause.kind != "cancel"
        else base.error_message,
        elapsed_seconds=(job.end_time or now) - job.start_time
        if job.start_time is not None and base.elapsed_seconds is None else base.elapsed_seconds,
        eta_seconds=base.eta_seconds if base.eta_seconds is not None
        else base.source_eta_seconds if status is Status.RUNNING else None,
        current_stage=base.current_stage or job.state,
        source_status=job.state,
        reported_status=status,
        details={**base.details, **details_of(job)},
    )
    activity = progress.last_update_time
    if canonical(job.state) is Status.RUNNING and activity is None:
        activity = now  # Slurm just said it runs: a sign of life for a job that prints none
    return RunStatus(_key(job), job.work_dir or "", progress, status, None, reason, activity,
                     cause)


_ENDINGS = (Status.FAILED, Status.CRASHED, Status.CANCELLED, Status.UNKNOWN, Status.FINISHED)
_ACTIVE = (Status.RUNNING, Status.STUCK, Status.PENDING)


def _group(array_id: str, rows: Sequence[tuple[Job, RunStatus]]) -> RunStatus:
    jobs = [j for j, _ in rows]
    runs = [r for _, r in rows]
    total = sum(j.array_size for j in jobs)
    statuses = {r.status for r in runs}
    order = _ACTIVE if statuses & set(_ACTIVE) else _ENDINGS
    overall = next(s for s in order if s in statuses)
    done = [(j, r) for j, r in rows if r.status in _ENDINGS and not j.is_array_remainder]
    percents = [r.progress.progress_percentage or 0.0 for j, r in rows
                for _ in range(j.array_size)]
    ended = [r for r in runs if r.status in (Status.FAILED, Status.CRASHED)]
    first = jobs[0]
    words = sorted({r.progress.source_status or "" for r in runs})
    reason = f"Slurm array {array_id}: {len(done)} of {total} tasks ended ({', '.join(words)})"
    cause: Cause | None = None
    if overall not in _ACTIVE and ended:
        cause = Cause("error", message="; ".join(
            f"task {r.progress.details.get('slurm_array_task_id')}: {r.cause.describe()}"
            for r in ended if r.cause is not None))
    starts = [r.progress.start_time for r in runs if r.progress.start_time is not None]
    updates = [r.last_activity for r in runs if r.last_activity is not None]
    progress = ProgressInfo(
        runner_type=RUNNER_TYPE,
        completed_epochs=None,
        progress_percentage=statistics.fmean(percents) if percents else None,
        start_time=min(starts) if starts else None,
        last_update_time=max(updates) if updates else None,
        items_completed=len(done),
        items_total=total,
        completed_items=tuple(
            CompletedItem(j.display_id, j.state) for j, _ in done
        ),
        current_stage=overall.value,
        source_status=",".join(words),
        reported_status=overall,
        error_message=cause.message if cause is not None else None,
        details={k: v for k, v in {
            "slurm_array_job_id": array_id, "slurm_cluster": first.cluster,
            "slurm_partition": first.partition, "slurm_user": first.user,
            "slurm_tasks": ",".join(j.display_id for j in jobs),
        }.items() if v is not None},
    )
    key = f"{TARGET_PREFIX}{first.cluster + ':' if first.cluster else ''}{array_id}"
    return RunStatus(key, first.work_dir or "", progress, overall, None, reason,
                     progress.last_update_time, cause)


def group_runs(rows: Iterable[tuple[Job, RunStatus]]) -> list[RunStatus]:
    """Per-job rows, each array's tasks preceded by one row for the whole array."""
    out: list[RunStatus] = []
    arrays: dict[str, list[tuple[Job, RunStatus]]] = {}
    order: list[tuple[str, str]] = []
    for job, run in rows:
        if job.array_job_id is None:
            order.append(("job", str(len(out))))
            out.append(run)
            continue
        if job.array_job_id not in arrays:
            arrays[job.array_job_id] = []
            order.append(("array", job.array_job_id))
        arrays[job.array_job_id].append((job, run))
    result: list[RunStatus] = []
    for kind, ref in order:
        if kind == "job":
            result.append(out[int(ref)])
            continue
        tasks = sorted(arrays[ref], key=lambda p: (p[0].is_array_remainder,
                                                   int(p[0].array_task_id or 0)
                                                   if (p[0].array_task_id or "").isdigit()
                                                   else 0))
        result.append(_group(ref, tasks))
        result.extend(r for _, r in tasks)
    return result


def verdict(run: RunStatus, job: Job, output: OutputReader | None, now: float,
            config: Mapping[str, Any]) -> RunStatus:
    """A run of the engine's (linked to ``job`` by its lease or work dir) as Slurm judges
    it: an ended job's state and cause win; a live job keeps the engine's judgement of its
    files, except that Slurm's word beats a pid check that cannot see the job's host."""
    status = canonical(job.state)
    details = {**run.progress.details, **details_of(job)}
    progress = attrs.evolve(run.progress, source_status=job.state, details=details)
    reason = describe(job)
    if status is Status.FINISHED:
        if run.status in (Status.FINISHED, Status.OUTDATED):
            return attrs.evolve(run, progress=progress, reason=f"{run.reason}; {reason}")
        # Exit 0 from a job whose run never completed: the job gave up on it.
        cause = Cause("exit", message="the Slurm job ended before the run completed",
                      exit_code=0)
        return attrs.evolve(run, progress=progress, status=Status.FAILED, cause=cause,
                            reason=f"{reason}, but the run was not complete")
    if status in _ENDINGS:
        said = cause_of(job)
        progress = attrs.evolve(progress, reported_status=status, error_message=(
            said.describe() if said is not None and said.kind != "cancel"
            else progress.error_message))
        return attrs.evolve(run, progress=progress, status=status, cause=said, reason=reason)
    if status is Status.PENDING:
        return attrs.evolve(run, progress=attrs.evolve(progress, reported_status=status),
                            status=status, cause=None, reason=reason)
    if status is Status.STUCK:
        return attrs.evolve(run, progress=progress, status=status, cause=None, reason=reason)
    # Slurm says it runs: a lease that cannot be checked from here (or a pid it names on
    # this host that is another process's) does not make it crashed or failed.
    if run.status in (Status.CRASHED, Status.FAILED, Status.UNKNOWN):
        if run.progress.reported_status in (Status.FAILED, Status.CANCELLED):
            return attrs.evolve(run, progress=progress, reason=f"{run.reason}; {reason}")
        return attrs.evolve(run, progress=progress, status=Status.STUCK, cause=None,
                            reason=f"{reason}; but {run.reason}")
    return attrs.evolve(run, progress=progress, reason=f"{run.reason}; {reason}")
