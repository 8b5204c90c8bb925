"""``progresskit status --format tsv``: one line per run, tab-separated, for ``cut``,
``awk`` and spreadsheets (docs/cli.md).

Nothing is cut to a width and nothing is decorated: numbers are numbers (seconds, a
percentage), an unknown value is an empty field, and a text from a run's files (a name, a
reason) has its control characters escaped (a tab is ``\\x09``, a newline ``\\x0a``), so
that a line is always one run and a field never holds a tab.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from progresskit.builtin.runorder import display_name, remaining_seconds
from progresskit.builtin.table import escape_text
from progresskit.model.core import RunStatus

__all__ = ["TSV_COLUMNS", "tsv_table"]

#: The header line's fields, in order.
TSV_COLUMNS = (
    "run",
    "type",
    "status",
    "percent",
    "epochs_done",
    "epochs_total",
    "steps_done",
    "steps_total",
    "eta_seconds",
    "eta_low_seconds",
    "eta_high_seconds",
    "last_activity",
    "reason",
)


def _number(value: float | None, digits: int = 0) -> str:
    if value is None:
        return ""
    return f"{value:.{digits}f}"


def _count(value: int | None) -> str:
    return "" if value is None else str(value)


def _row(run: RunStatus, now: float, name: str) -> tuple[str, ...]:
    p = run.progress
    left = remaining_seconds(run, now)
    since = left - p.eta_seconds if left is not None and p.eta_seconds is not None else 0.0
    low = None if left is None or p.eta_low_seconds is None else p.eta_low_seconds + since
    high = None if left is None or p.eta_high_seconds is None else p.eta_high_seconds + since
    return (
        escape_text(name),
        escape_text(p.runner_type),
        run.status.value,
        _number(p.progress_percentage, 1),
        _count(p.completed_epochs),
        _count(p.total_epochs),
        _count(p.completed_steps),
        _count(p.total_steps),
        _number(left),
        _number(low),
        _number(high),
        _number(run.last_activity, 3),
        escape_text(run.reason or ""),
    )


def tsv_table(
    runs: Sequence[RunStatus], now: float, names: Mapping[str, str] | None = None
) -> str:
    """The header line and one line per run of ``runs``, each ending in a newline; ETAs
    are counted down to ``now``, ``last_activity`` is Unix seconds."""
    lines = ["\t".join(TSV_COLUMNS)]
    lines += ["\t".join(_row(run, now, display_name(run, names))) for run in runs]
    return "\n".join(lines) + "\n"
