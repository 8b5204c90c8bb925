"""The status table people read: ``progresskit status`` and ``watch`` on a terminal, and the
``stdout`` sink's ``table`` format. Imports rich: loaded only where a table is printed.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence

from rich.console import Console
from rich.table import Table
from rich.text import Text

from progresskit.engine.rules import format_duration
from progresskit.model.core import RunStatus, Status

__all__ = ["STATUS_STYLE", "render_table", "status_summary", "status_table"]

#: Colour and a symbol per status: the word is always printed, colour is never the only cue.
STATUS_STYLE: dict[Status, tuple[str, str]] = {
    Status.PENDING: ("cyan", "…"),
    Status.RUNNING: ("blue", "▶"),
    Status.STUCK: ("yellow", "⏸"),
    Status.CRASHED: ("bold red", "✖"),
    Status.FAILED: ("red", "✖"),
    Status.CANCELLED: ("magenta", "■"),
    Status.FINISHED: ("green", "✔"),
    Status.OUTDATED: ("dim green", "✔"),
    Status.UNKNOWN: ("bold red", "?"),
}

_BAR_WIDTH = 12


def _bar(percentage: float) -> str:
    filled = round(percentage / 100 * _BAR_WIDTH)
    return "█" * filled + "░" * (_BAR_WIDTH - filled)


def _amount(run: RunStatus) -> str:
    p = run.progress
    if p.total_steps is not None or p.completed_steps is not None:
        total = "?" if p.total_steps is None else str(p.total_steps)
        return f"{p.completed_steps or 0}/{total} steps"
    if p.items_total is not None or p.items_completed is not None:
        total = "?" if p.items_total is None else str(p.items_total)
        return f"{p.items_completed or 0}/{total} items"
    total = "?" if p.total_epochs is None else str(p.total_epochs)
    return f"{p.completed_epochs}/{total} ep"


def _short(seconds: float) -> str:
    """``750`` -> ``"12m"``: the largest unit or two, for the ETA column's band."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{round(seconds / 60)}m"
    if seconds < 86400:
        hours, minutes = divmod(round(seconds / 60), 60)
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(round(seconds / 3600), 24)
    return f"{days}d{hours:02d}h"


def _eta(run: RunStatus, now: float) -> str:
    """Remaining time and its p10-p90 band, e.g. ``12m (9m-16m)``; ``-`` when unknown."""
    p = run.progress
    if p.eta_seconds is None or not run.status.is_active:
        return "-"
    # ETAs are remaining time as of the last update; count down from then.
    since = now - p.last_update_time if p.last_update_time else 0.0
    remaining = p.eta_seconds - since
    if remaining <= 0:
        return "overdue"
    text = _short(remaining)
    if p.eta_low_seconds is not None and p.eta_high_seconds is not None:
        low = max(0.0, p.eta_low_seconds - since)
        high = p.eta_high_seconds - since
        text += f" ({_short(low)}-{_short(high)})"
    return text


def render_table(runs: Sequence[RunStatus], console: Console, now: float | None = None) -> None:
    """One row per run: status word (with colour and symbol), bar, amount, ETA, last update."""
    console.print(status_table(runs, now))
    console.print(status_summary(runs))


def status_summary(runs: Sequence[RunStatus]) -> str:
    """``"2 running, 1 stuck"``: how many runs are in each status."""
    counts = Counter(run.status.value for run in runs)
    return ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no runs"


def status_table(runs: Sequence[RunStatus], now: float | None = None) -> Table:
    """The table :func:`render_table` prints, for callers that lay it out themselves."""
    now = now or time.time()
    table = Table(show_edge=False, pad_edge=False)
    for column in ("run", "type", "status", "progress", "done", "ETA", "last update", "reason"):
        table.add_column(column, overflow="fold")
    for run in runs:
        style, symbol = STATUS_STYLE[run.status]
        last = (
            "-" if run.last_activity is None else f"{format_duration(now - run.last_activity)} ago"
        )
        pct = run.progress.progress_percentage
        table.add_row(
            run.config,
            run.progress.runner_type,
            Text(f"{symbol} {run.status.value}", style=style),
            f"{_bar(pct)} {pct:5.1f}%",
            _amount(run),
            _eta(run, now),
            last,
            run.reason or "",
        )
    return table
