"""A run's page on the watch screen: everything known about it, in words, and the tail of
its console log.

The page is text (each piece of it from a run's files escaped, as in the table): what the
status table cuts to one line is here in full.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Sequence

from progresskit.builtin.runorder import remaining_seconds
from progresskit.builtin.table import STATUS_STYLE, escape_text
from progresskit.engine.logs import DEFAULT_LOG_FILES, read_tail
from progresskit.engine.rules import format_duration
from progresskit.model.core import RunStatus

__all__ = ["LOG_LINES", "detail_lines", "log_tail"]

#: How many of the log's last lines the page shows.
LOG_LINES = 20
_TAIL_BYTES = 16 * 1024


def log_tail(
    work_dir: str, globs: Sequence[str] = DEFAULT_LOG_FILES
) -> tuple[str, list[str]] | None:
    """(name, last lines) of the run's most recently written log (``*.log``, ``*.out``,
    ``slurm-*.out`` in its directory), each line as the terminal last showed it (a progress
    bar's redraws after ``\\r`` collapsed to the last one); ``None`` without a log."""
    try:
        entries = list(os.scandir(work_dir))
    except OSError:
        return None
    logs = []
    for entry in entries:
        if any(fnmatch.fnmatchcase(entry.name, g) for g in globs):
            try:
                if entry.is_file():
                    logs.append((entry.stat().st_mtime, entry.name))
            except OSError:
                continue
    if not logs:
        return None
    _mtime, name = max(logs)
    try:
        data, _end, _appended = read_tail(os.path.join(work_dir, name), _TAIL_BYTES)
    except OSError as exc:
        return name, [f"(cannot read: {exc.strerror or exc})"]
    text = data.decode("utf-8", "replace")
    lines = [line.rsplit("\r", 1)[-1] for line in text.split("\n")]
    while lines and not lines[-1].strip():
        lines.pop()
    return name, [escape_text(line) for line in lines[-LOG_LINES:]]


def _seconds(value: float | None) -> str:
    return "-" if value is None else format_duration(value)


def detail_lines(run: RunStatus, name: str, now: float) -> list[str]:
    """The page of ``run``, line by line."""
    p = run.progress
    _, symbol = STATUS_STYLE[run.status]
    source = f" (source says {escape_text(p.source_status)!r})" if p.source_status else ""
    lines = [
        f"run       {escape_text(name)}",
        f"directory {escape_text(run.work_dir)}",
        f"type      {escape_text(p.runner_type)}",
        f"status    {symbol} {run.status.value}{source}",
    ]
    reason = (run.reason or "").strip().splitlines() or ["-"]
    lines.append(f"reason    {escape_text(reason[0])}")
    lines += [f"          {escape_text(line)}" for line in reason[1:]]
    if run.cause is not None:
        lines.append(f"cause     {run.cause.kind}: {escape_text(run.cause.describe())}")
    if p.error_message:
        lines.append(f"error     {escape_text(p.error_message)}")
    lines += [f"warning   {escape_text(w)}" for w in p.warnings]

    pct = "-" if p.progress_percentage is None else f"{p.progress_percentage:.1f}%"
    done = []
    if p.completed_epochs is not None or p.total_epochs is not None:
        done.append(f"epochs {p.completed_epochs or 0}/{p.total_epochs or '?'}")
    if p.completed_steps is not None or p.total_steps is not None:
        done.append(f"steps {p.completed_steps or 0}/{p.total_steps or '?'}")
    if p.items_completed is not None or p.items_total is not None:
        done.append(f"items {p.items_completed or 0}/{p.items_total or '?'}")
    lines.append(f"progress  {pct}" + (f" · {', '.join(done)}" if done else ""))
    if p.current_stage:
        lines.append(f"stage     {escape_text(p.current_stage)}")
    if p.current_item:
        lines.append(f"item      {escape_text(p.current_item)}")

    left = remaining_seconds(run, now)
    if left is None:
        eta = "-"
    else:
        eta = "overdue" if left <= 0 else format_duration(left)
        since = left - (p.eta_seconds or 0.0)
        if p.eta_low_seconds is not None and p.eta_high_seconds is not None:
            low = max(0.0, p.eta_low_seconds + since)
            eta += f" (p10-p90 {format_duration(low)} to {_seconds(p.eta_high_seconds + since)})"
        if p.source_eta_seconds is not None:
            eta += f" · the source says {_seconds(max(0.0, p.source_eta_seconds + since))}"
    lines.append(f"ETA       {eta}")
    lines.append(f"elapsed   {_seconds(p.elapsed_seconds)}")
    last = "-" if run.last_activity is None else f"{format_duration(now - run.last_activity)} ago"
    lines.append(f"last sign {last}")

    metrics = {**(p.latest_score or {}), **p.metrics}
    if metrics:
        shown = ", ".join(f"{escape_text(k)} {v:.4g}" for k, v in sorted(metrics.items()))
        lines.append(f"metrics   {shown}")
    if p.best_score:
        best = ", ".join(f"{escape_text(k)} {v:.4g}" for k, v in sorted(p.best_score.items()))
        lines.append(f"best      {best}")
    info = run.process_info
    if info is not None:
        host = f" on {escape_text(info.host)}" if info.host else ""
        user = f" ({escape_text(info.user)})" if info.user else ""
        lines.append(f"process   {info.pid}{host}{user}")
        if info.cmd:
            lines.append(f"command   {escape_text(info.cmd)}")

    tail = log_tail(run.work_dir) if os.path.isdir(run.work_dir) else None
    if tail is None:
        lines += ["", "log       (no log file: *.log, *.out)"]
    else:
        log_name, log_lines = tail
        lines += ["", f"log       {escape_text(log_name)}, last {len(log_lines)} lines:"]
        lines += [f"  {line}" for line in log_lines]
    return lines
