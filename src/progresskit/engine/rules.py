"""The run-status rules: from what a tracker read to one canonical status, with the reason.

Seed 001's rules, in its order, generalised from "log mtime" to "newest sign of life":

Seed 001 asked "recent log write?" before "complete?"; here completion wins unless a
process is still known to work on the run, so a run that just wrote its last epoch reads
finished, not running, while its final log line is still fresh.

1. the source itself says the run failed, crashed or was cancelled -> that status;
2. complete (or the source says finished) and no process still on it -> finished, or
   outdated when its newest output is older than ``outdated_days``;
3. a sign of life within the silence limit -> running (pending if the source says
   queued); the limit is ``sleep_time``, or, for a run with enough updates to judge, the
   shorter limit its own rhythm allows (:mod:`progresskit.engine.rhythm`);
4. a process is known to work on it -> stuck (alive, not progressing);
5. otherwise -> failed (silent, incomplete, no process).

A run whose directory holds a liveness lease (docs/liveness.md) is judged by it first:

L1. the lease ended ``failed`` -> failed, ``cancelled`` -> cancelled, with its cause;
L2. then rule 1; a lease that ended ``finished`` counts as the source saying finished;
L3. the lease's process (same host) is gone or its pid reused, and the run is not
    complete -> crashed ("vanished without a word"); a lease that ended ``exited`` (the
    interpreter exited while holding it) on an incomplete run -> failed;
L4. rule 2 (the live lease's process counts as a process still on the run; after a
    clean close, no process does);
L5. with a promised interval: a sign of life (renewal or the tracker's) within
    interval + slack + grace -> running; else, on the same host, the live process is
    stalled (``stuck``); on another host, stalled until ``sleep_time``, then crashed;
L6. without a promise, rules 3-5 with the live lease's process.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from progresskit.engine.liveness import LeaseCheck
from progresskit.engine.rhythm import Rhythm, observe_rhythm
from progresskit.model.core import Cause, ProcessInfo, ProgressInfo, Status
from progresskit.plugin.coreconfig import DEFAULT_OUTDATED_DAYS, DEFAULT_SLEEP_TIME

__all__ = ["Decision", "apply_rules", "decide", "decide_status", "format_duration"]

_VANISHED = "vanished without a word (SIGKILL, OOM killer, power loss?)"
_TERMINAL_REPORTS = (Status.FAILED, Status.CRASHED, Status.CANCELLED)


def format_duration(seconds: float) -> str:
    """``3725`` -> ``"1h 2m"``: short, for reasons and tables."""
    seconds = max(0, int(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


@attrs.frozen
class Decision:
    """The rules' verdict: the status, a one-line reason, and the cause when known."""

    status: Status
    reason: str
    cause: Cause | None = None


def decide_status(
    progress: ProgressInfo,
    *,
    complete: bool,
    last_activity: float | None,
    process: ProcessInfo | None,
    now: float,
    sleep_time: float,
    outdated_days: float,
) -> tuple[Status, str]:
    """The canonical status of a run and a one-line reason for it (no lease)."""
    decision = decide(
        progress,
        complete=complete,
        last_activity=last_activity,
        process=process,
        now=now,
        sleep_time=sleep_time,
        outdated_days=outdated_days,
    )
    return decision.status, decision.reason


def _reported_cause(progress: ProgressInfo, reported: Status) -> Cause:
    if reported is Status.CANCELLED:
        return Cause("cancel", message=progress.error_message)
    if reported is Status.CRASHED:
        return Cause("vanished", message=progress.error_message)
    return Cause("error", message=progress.error_message or progress.source_status)


def decide(
    progress: ProgressInfo,
    *,
    complete: bool,
    last_activity: float | None,
    process: ProcessInfo | None,
    now: float,
    sleep_time: float,
    outdated_days: float,
    lease: LeaseCheck | None = None,
    rhythm: Rhythm | None = None,
) -> Decision:
    """The canonical status of a run, the reason and the cause (see the module's rules).

    ``rhythm``: what the run's update times allow (already capped at ``sleep_time``); a
    lease's promise, when there is one, is judged instead."""
    record = None if lease is None else lease.lease
    if lease is not None and record is not None and record.state in ("failed", "cancelled"):
        status = Status.FAILED if record.state == "failed" else Status.CANCELLED
        cause = record.cause
        what = cause.describe() if cause is not None else record.state
        return Decision(status, f"process {record.pid} ended: {what}", cause)

    reported = progress.reported_status
    if reported in _TERMINAL_REPORTS:
        said = f" ({progress.source_status})" if progress.source_status else ""
        detail = f": {progress.error_message}" if progress.error_message else ""
        return Decision(
            reported,
            f"the source reports {reported.value}{said}{detail}",
            _reported_cause(progress, reported),
        )

    closed_cleanly = record is not None and record.state == "finished"
    finished = complete or reported is Status.FINISHED or closed_cleanly
    if lease is not None and record is not None and not finished:
        where = f"process {record.pid} on {record.host}"
        if lease.process in ("gone", "reused"):
            how = "is gone" if lease.process == "gone" else "is gone (its pid was reused)"
            cause = Cause("vanished", message=_VANISHED)
            return Decision(
                Status.CRASHED, f"{where} {how}, {_VANISHED}; the run was not complete", cause
            )
        if record.state == "exited":
            cause = Cause("exit", message="exited before the run completed")
            return Decision(Status.FAILED, f"{where} exited before the run completed", cause)
    if lease is not None and lease.process in ("alive", "stopped", "remote"):
        process = process or lease.process_info()
        if last_activity is None or lease.renewed_at > last_activity:
            last_activity = lease.renewed_at

    # Clamped: a sign of life stamped a little ahead of this host's clock (another
    # host, mtime granularity) is "just now", never a negative age ("-0.6s ago").
    silent_for = None if last_activity is None else max(0.0, now - last_activity)
    # A producer that closed its lease cleanly said it is done: a process still around (in
    # teardown, or carrying on with something else) does not make the run stuck.
    if finished and (process is None or closed_cleanly):
        newest_output = progress.last_update_time
        limit = outdated_days * 86400
        if newest_output is not None and now - newest_output > limit:
            return Decision(Status.OUTDATED, (
                f"complete; newest output is {format_duration(now - newest_output)} old "
                f"(outdated after {outdated_days:g} days)"
            ))
        if closed_cleanly and not complete and reported is not Status.FINISHED:
            return Decision(Status.FINISHED, "the producer closed cleanly")
        return Decision(
            Status.FINISHED, "complete" + (" (early stopped)" if progress.early_stopped else "")
        )

    quiet = (
        "no sign of life at all"
        if silent_for is None
        else f"no sign of life for {format_duration(silent_for)}"
    )
    promised = None if lease is None or lease.process == "ended" else lease.limit
    if lease is not None and record is not None and promised is not None:
        interval = record.interval or 0.0
        if silent_for is not None and silent_for <= promised:
            status = Status.PENDING if reported is Status.PENDING else Status.RUNNING
            return Decision(status, f"last sign of life {_short(silent_for)} ago")
        promise = f"it promised one every {_short(interval)}"
        if lease.process == "remote":
            if silent_for is not None and silent_for > sleep_time:
                cause = Cause("vanished", message=f"lease from {record.host} expired")
                return Decision(
                    Status.CRASHED,
                    f"lease of process {record.pid} on {record.host}: {quiet}, {promise}, "
                    f"and sleep_time ({sleep_time:g}s) has passed",
                    cause,
                )
            return Decision(
                Status.STUCK,
                f"stalled: lease of process {record.pid} on {record.host}: {quiet}; "
                f"{promise} (cannot see that host's processes from here)",
            )
        stopped = " (stopped: SIGSTOP or Ctrl-Z)" if lease.process == "stopped" else ""
        return Decision(
            Status.STUCK,
            f"stalled: process {record.pid} is alive{stopped} but {quiet}; {promise}",
        )

    limit = sleep_time if rhythm is None else min(sleep_time, rhythm.limit)
    if silent_for is not None and silent_for <= limit:
        status = Status.PENDING if reported is Status.PENDING else Status.RUNNING
        return Decision(status, f"last sign of life {format_duration(silent_for)} ago")

    problems = "".join(f"; {m}" for m in (progress.error_message, *progress.warnings[:1]) if m)
    if finished and process is not None:
        return Decision(
            Status.STUCK, f"complete, but process {process.pid} is still there and {quiet}"
        )
    if rhythm is not None and rhythm.limit < sleep_time:
        pace = f"it updated every ~{_pace(rhythm.typical)}"
        if rhythm.buffered > rhythm.typical:
            pace += f", written out at least every {_short(rhythm.buffered)}"
        if lease is not None and lease.process == "remote" and record is not None:
            # Its process may well be alive: that host's processes cannot be seen from here.
            return Decision(
                Status.STUCK,
                f"stalled: {quiet}; {pace} (limit {_short(rhythm.limit)}); its process "
                f"{record.pid} runs on {record.host}, whose processes cannot be seen from here",
            )
        if process is not None:
            return Decision(
                Status.STUCK,
                f"stalled: process {process.pid} is alive but {quiet}; {pace} "
                f"(limit {_short(rhythm.limit)})",
            )
        return Decision(Status.FAILED, f"{quiet}; {pace}; incomplete and no process{problems}")
    if process is not None:
        return Decision(
            Status.STUCK,
            f"process {process.pid} exists but {quiet} (sleep_time {sleep_time:g}s)",
        )
    return Decision(Status.FAILED, f"incomplete, {quiet} and no process{problems}")


def apply_rules(
    config: Mapping[str, Any],
    progress: ProgressInfo,
    *,
    complete: bool,
    last_activity: float | None,
    process: ProcessInfo | None,
    now: float,
    lease: LeaseCheck | None = None,
    update_times: Iterable[float] = (),
    update_times_recorded: bool = False,
    updates_buffered: float = 0.0,
) -> Decision:
    """:func:`decide` with the limits the run's ``config`` sets: ``sleep_time`` and
    ``outdated_days``, the core's defaults where it sets none, and the silence limit the
    run's ``update_times`` allow (its tracker's ``update_times()``; none: ``sleep_time``
    alone, seed 001's rule; ``update_times_recorded``: they are the source's own records,
    as :attr:`BaseProgressTracker.update_times_recorded` says; ``updates_buffered``: how
    long the source may hold them back, :meth:`BaseProgressTracker.updates_buffered`).
    What a session does for
    every run, and what a plugin that makes its own statuses (``progresskit_resolve_target``)
    calls, so that its runs follow the same rules and limits as every other run."""
    sleep_time = float(config.get("sleep_time") or DEFAULT_SLEEP_TIME)
    return decide(
        progress,
        complete=complete,
        last_activity=last_activity,
        process=process,
        now=now,
        sleep_time=sleep_time,
        outdated_days=float(config.get("outdated_days") or DEFAULT_OUTDATED_DAYS),
        lease=lease,
        # Most runs have no rhythm to judge (no update times): spare building one.
        rhythm=(
            observe_rhythm(
                update_times,
                cap=sleep_time,
                recorded=update_times_recorded,
                buffered=updates_buffered,
            )
            if update_times
            else None
        ),
    )


def _short(seconds: float) -> str:
    """Like :func:`format_duration`, with tenths below a minute: promises are often short."""
    return f"{seconds:.1f}s" if seconds < 60 else format_duration(seconds)


def _pace(seconds: float) -> str:
    """A rhythm's typical gap: milliseconds below a tenth (a script logging a step every
    few milliseconds, whose times are recorded), else :func:`_short`."""
    return f"{seconds * 1000:.0f}ms" if seconds < 0.1 else _short(seconds)
