"""The run-status rules: from what a tracker read to one canonical status, with the reason.

Seed 001's rules, in its order, generalised from "log mtime" to "newest sign of life":

Seed 001 asked "recent log write?" before "complete?"; here completion wins unless a
process is still known to work on the run, so a run that just wrote its last epoch reads
finished, not running, while its final log line is still fresh.

1. the source itself says the run failed, crashed or was cancelled -> that status;
2. complete (or the source says finished) and no process still on it -> finished, or
   outdated when its newest output is older than ``outdated_days``;
3. a sign of life within ``sleep_time`` -> running (pending if the source says queued);
4. a process is known to work on it -> stuck (alive, not progressing);
5. otherwise -> failed (silent, incomplete, no process).
"""

from __future__ import annotations

from progresskit.model import ProcessInfo, ProgressInfo, Status

__all__ = ["decide_status", "format_duration"]

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
    """The canonical status of a run and a one-line reason for it."""
    reported = progress.reported_status
    if reported in _TERMINAL_REPORTS:
        said = f" ({progress.source_status})" if progress.source_status else ""
        detail = f": {progress.error_message}" if progress.error_message else ""
        return reported, f"the source reports {reported.value}{said}{detail}"

    finished = complete or reported is Status.FINISHED
    silent_for = None if last_activity is None else now - last_activity
    if finished and process is None:
        newest_output = progress.last_update_time
        limit = outdated_days * 86400
        if newest_output is not None and now - newest_output > limit:
            return Status.OUTDATED, (
                f"complete; newest output is {format_duration(now - newest_output)} old "
                f"(outdated after {outdated_days:g} days)"
            )
        return Status.FINISHED, "complete" + (" (early stopped)" if progress.early_stopped else "")

    if silent_for is not None and silent_for <= sleep_time:
        status = Status.PENDING if reported is Status.PENDING else Status.RUNNING
        return status, f"last sign of life {format_duration(silent_for)} ago"

    quiet = (
        "no sign of life at all"
        if silent_for is None
        else f"no sign of life for {format_duration(silent_for)}"
    )
    problems = "".join(f"; {m}" for m in (progress.error_message, *progress.warnings[:1]) if m)
    if finished and process is not None:
        return Status.STUCK, f"complete, but process {process.pid} is still there and {quiet}"
    if process is not None:
        return (
            Status.STUCK,
            f"process {process.pid} exists but {quiet} (sleep_time {sleep_time:g}s)",
        )
    return Status.FAILED, f"incomplete, {quiet} and no process{problems}"
