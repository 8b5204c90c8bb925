"""The status table people read: ``progresskit status`` and ``watch`` on a terminal, and the
``stdout`` sink's ``table`` format.

rich lays the table out. Its import costs ``progresskit status`` more than reading a run,
so :func:`plain_table` gives, without rich, the very text rich prints to a pipe when the
table is plain (no markup, no wide characters); any other table is rich's. Both fit the
table to the width the same way (:mod:`progresskit.builtin.tablefit`): a cell is cut with an
ellipsis, never folded, and columns give way in a documented order.
"""

from __future__ import annotations

import re
import time
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from progresskit.builtin.runorder import display_name, summary_text
from progresskit.builtin.tablefit import Column, Fitted, fit
from progresskit.engine.rules import format_duration
from progresskit.model.core import RunStatus, Status

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

__all__ = [
    "COLUMNS",
    "STATUS_STYLE",
    "escape_text",
    "one_line",
    "plain_table",
    "render_table",
    "row_cells",
    "status_summary",
    "status_table",
]

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
    unit = p.details.get("items_unit")
    if unit and (p.items_total is not None or p.items_completed is not None):
        # Items of a named kind (a ComfyUI job's nodes), with the running one's steps.
        total = "?" if p.items_total is None else str(p.items_total)
        text = f"{p.items_completed or 0}/{total} {unit}"
        if p.total_steps:
            text += f", step {p.completed_steps or 0}/{p.total_steps}"
        return text
    if p.total_steps is not None or p.completed_steps is not None:
        total = "?" if p.total_steps is None else str(p.total_steps)
        return f"{p.completed_steps or 0}/{total} steps"
    if p.items_total is not None or p.items_completed is not None:
        total = "?" if p.items_total is None else str(p.items_total)
        return f"{p.items_completed or 0}/{total} items"
    if p.completed_epochs is None and p.total_epochs is None:
        return "-"
    done = "?" if p.completed_epochs is None else str(p.completed_epochs)
    total = "?" if p.total_epochs is None else str(p.total_epochs)
    return f"{done}/{total} ep"


def _short(seconds: float, fine: bool = False) -> str:
    """``750`` -> ``"12m"``: the largest unit or two, for the ETA column's band; ``fine``
    keeps the seconds below an hour (``"12m30s"``)."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        if fine:
            minutes, secs = divmod(seconds, 60)
            return f"{minutes}m{secs:02d}s"
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
        text = "overdue"
    elif p.eta_low_seconds is not None and p.eta_high_seconds is not None:
        low = max(0.0, p.eta_low_seconds - since)
        high = p.eta_high_seconds - since
        # A band rounded to one point ("2m (2m-2m)") would read as certainty it does not
        # have: shown to the second when the coarse units cannot tell its ends apart.
        fine = len({_short(low), _short(remaining), _short(high)}) < 3
        text = f"{_short(remaining, fine)} ({_short(low, fine)}-{_short(high, fine)})"
    else:
        text = _short(remaining)
    source = p.source_eta_seconds
    if source is not None and source != p.eta_seconds:
        # The source's own figure next to ours (docs/eta.md), counted down the same way.
        text += f" src {_short(max(0.0, source - since))}"
    return text


#: Unicode categories a terminal acts on rather than shows: control characters (ESC
#: starts colour, cursor and OSC 8 hyperlink sequences; newlines draw fake rows), format
#: characters (U+202E turns the text around), surrogates, private use, unassigned, and
#: the line and paragraph separators.
_UNSHOWN = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def _escape_char(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def escape_text(text: str) -> str:
    """``text`` (a directory name, a reason: anything a run's files decide) safe to print
    on a terminal: every character a terminal would act on instead of showing, as a
    Python-style escape (``ESC`` -> ``\\x1b``, U+202E -> ``\\u202e``, a newline ->
    ``\\x0a``). Everything else is kept; ``--json`` keeps the original."""
    if text.isprintable():  # the usual case: nothing to escape, one C-level pass
        return text
    return "".join(
        _escape_char(c) if unicodedata.category(c) in _UNSHOWN else c for c in text
    )


COLUMNS = ("run", "type", "status", "progress", "done", "ETA", "last update", "reason")
#: The characters whose width rich counts as one cell: printable ASCII and the table's own
#: symbols and bar.
_PLAIN = frozenset(
    [chr(c) for c in range(0x20, 0x7F)]
    + [symbol for _, symbol in STATUS_STYLE.values()]
    + ["█", "░"]
)
#: What rich's markup and emoji codes could change in such a text, so that only rich may print
#: it: what could open a tag (rich's tags start ``[`` and one of ``a-z#/@``), an escaped
#: bracket (``\[``, which rich prints as ``[``), and two colons with no space between
#: (rich's ``:name:`` emoji codes; a colon in a path or a reason, ``C:\runs``, ``error: x``,
#: is left alone). Wider than rich's own patterns: a text it matches goes to rich, which is
#: always right.
_RICH_SYNTAX = re.compile(r"\[[a-z#/@]|\\\[|:\S*:")


def one_line(text: str) -> str:
    """A reason in the table: its first line, and how many more there are (the full text
    is in ``--json`` and ``--verbose``)."""
    lines = [line.strip() for line in text.strip().splitlines()]
    lines = [line for line in lines if line]
    if len(lines) <= 1:
        return lines[0] if lines else ""
    return f"{lines[0]} (+{len(lines) - 1} lines)"


def row_cells(run: RunStatus, now: float, name: str | None = None) -> tuple[str, ...]:
    """A run's row: the text of each of :data:`COLUMNS`; ``name`` the run's name to show
    (its path relative to the root given), else its config."""
    _, symbol = STATUS_STYLE[run.status]
    last = "-" if run.last_activity is None else f"{format_duration(now - run.last_activity)} ago"
    pct = run.progress.progress_percentage
    # Unknown progress is "-", never an empty bar at 0%.
    shown = "-" if pct is None else f"{_bar(pct)} {pct:5.1f}%"
    return (
        escape_text(run.config if name is None else name),
        escape_text(run.progress.runner_type),
        f"{symbol} {run.status.value}",
        shown,
        _amount(run),
        _eta(run, now),
        last,
        escape_text(one_line(run.reason or "")),
    )


def _percent_only(cell: str) -> str:
    """The progress column without its bar: ``50.0%``."""
    return cell if cell == "-" else cell[_BAR_WIDTH:].strip()


#: Each column's rules at a narrow width (docs/cli.md, "Width"): the run's name is cut in
#: the middle (both ends of a path tell runs apart), the reason at its end; every other
#: column keeps its texts whole.
_FIT = (
    Column("run", cut="middle", minimum=16),
    Column("type"),
    Column("status"),
    Column("progress", compact=_percent_only),
    Column("done"),
    Column("ETA"),
    Column("last update"),
    Column("reason", cut="end", minimum=16),
)
#: What gives way first when the table is too wide, in this order: the type, the amount
#: done, the last update, the bar (the percentage stays), the reason, the ETA. The run's
#: name and its status always stay.
_NARROWING = ((1, "drop"), (4, "drop"), (6, "drop"), (3, "compact"), (7, "drop"), (5, "drop"))


def _fitted(
    runs: Sequence[RunStatus],
    now: float,
    width: int,
    names: Mapping[str, str] | None,
    measure: Callable[[str], int],
) -> Fitted:
    rows = [row_cells(run, now, display_name(run, names)) for run in runs]
    return fit(_FIT, rows, width, _NARROWING, measure)


def plain_table(
    runs: Sequence[RunStatus],
    now: float,
    width: int,
    names: Mapping[str, str] | None = None,
    summary: str | None = None,
) -> str | None:
    """What :func:`render_table` prints, summary included, on a console of ``width``
    columns that is no terminal (no colour: a pipe, a file), computed without rich; ``None``
    when only rich can say (a cell with markup, an emoji code or a character other than
    plain ASCII and the table's symbols, or a table that does not fit ``width`` even with
    every narrowing step taken)."""
    fitted = _fitted(runs, now, width, names, len)
    summary = status_summary(runs) if summary is None else summary
    texts = [*fitted.headers, *(cell for row in fitted.rows for cell in row), summary]
    if (
        not all(_PLAIN.issuperset(text) and _RICH_SYNTAX.search(text) is None for text in texts)
        or len(summary) > width
    ):
        return None
    columns = range(len(fitted.kept))
    widths = [max(len(row[i]) for row in (fitted.headers, *fitted.rows)) for i in columns]
    last = len(widths) - 1
    # rich's table without its edge: one space of padding each side of a cell but the
    # outer ones, a one-character rule between columns.
    padded = [w + (i > 0) + (i < last) for i, w in enumerate(widths)]
    if sum(padded) + last > width:
        return None  # rich would shrink the columns

    def line(cells: Sequence[str], rule: str) -> str:
        return rule.join(
            " " * (i > 0) + cell.ljust(widths[i]) + " " * (i < last)
            for i, cell in enumerate(cells)
        )

    lines = [line(fitted.headers, "┃"), "╇".join("━" * w for w in padded)]
    lines += [line(row, "│") for row in fitted.rows]
    return "\n".join([*lines, summary, ""])


def render_table(
    runs: Sequence[RunStatus],
    console: Console,
    now: float | None = None,
    names: Mapping[str, str] | None = None,
    summary: str | None = None,
) -> None:
    """One row per run: status word (with colour and symbol), bar, amount, ETA, last update,
    fitted to the console's width; then the summary (:func:`status_summary` of ``runs``
    unless given)."""
    console.print(status_table(runs, now, names, width=console.width))
    console.print(status_summary(runs) if summary is None else summary, markup=False)


def status_summary(runs: Sequence[RunStatus], unrecognised: int = 0) -> str:
    """``"3 runs: 1 stuck, 2 running"``: how many runs are in each status, in urgency
    order, and how many run-like directories no tracker claims."""
    return summary_text(runs, unrecognised)


def status_table(
    runs: Sequence[RunStatus],
    now: float | None = None,
    names: Mapping[str, str] | None = None,
    width: int | None = None,
) -> Table:
    """The table :func:`render_table` prints, for callers that lay it out themselves;
    fitted to ``width`` when given (texts cut, columns dropped: never a folded cell)."""
    from rich.cells import cell_len
    from rich.table import Table
    from rich.text import Text

    now = now or time.time()
    table = Table(show_edge=False, pad_edge=False)
    if width is None:
        headers: Sequence[str] = COLUMNS
        rows: Sequence[Sequence[str]] = [
            row_cells(run, now, display_name(run, names)) for run in runs
        ]
        status_at: int | None = 2
    else:
        fitted = _fitted(runs, now, width, names, cell_len)
        headers, rows = fitted.headers, fitted.rows
        status_at = fitted.kept.index(2) if 2 in fitted.kept else None
    for header in headers:
        if width is None:
            table.add_column(header, overflow="fold")
        else:
            table.add_column(header, no_wrap=True, overflow="ellipsis")
    for run, row in zip(runs, rows, strict=True):
        cells = [Text(cell) for cell in row]  # Text: never read as markup
        if status_at is not None:
            style, _ = STATUS_STYLE[run.status]
            cells[status_at].stylize(style)
        table.add_row(*cells)
    return table
