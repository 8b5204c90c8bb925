"""The status table people read: ``progresskit status`` and ``watch`` on a terminal, and the
``stdout`` sink's ``table`` format.

rich lays the table out. Its import costs ``progresskit status`` more than reading a run,
so :func:`plain_table` gives, without rich, the very text rich prints to a pipe when the
table is plain (no markup, no wide characters, no cell to fold); any other table is rich's.
"""

from __future__ import annotations

import re
import time
import unicodedata
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

from progresskit.engine.rules import format_duration
from progresskit.model.core import RunStatus, Status

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

__all__ = [
    "STATUS_STYLE",
    "escape_text",
    "plain_table",
    "render_table",
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


_COLUMNS = ("run", "type", "status", "progress", "done", "ETA", "last update", "reason")
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


def _cells(run: RunStatus, now: float) -> tuple[str, ...]:
    """A run's row: the text of each of :data:`_COLUMNS`."""
    _, symbol = STATUS_STYLE[run.status]
    last = "-" if run.last_activity is None else f"{format_duration(now - run.last_activity)} ago"
    pct = run.progress.progress_percentage
    # Unknown progress is "-", never an empty bar at 0%.
    shown = "-" if pct is None else f"{_bar(pct)} {pct:5.1f}%"
    return (
        escape_text(run.config),
        escape_text(run.progress.runner_type),
        f"{symbol} {run.status.value}",
        shown,
        _amount(run),
        _eta(run, now),
        last,
        escape_text(run.reason or ""),
    )


def plain_table(runs: Sequence[RunStatus], now: float, width: int) -> str | None:
    """What :func:`render_table` prints, summary included, on a console of ``width``
    columns that is no terminal (no colour: a pipe, a file), computed without rich; ``None``
    when only rich can say (a cell with markup, an emoji code or a character other than
    plain ASCII and the table's symbols, or a table wider than ``width``)."""
    rows = [_cells(run, now) for run in runs]
    summary = status_summary(runs)
    texts = [*_COLUMNS, *(cell for row in rows for cell in row), summary]
    if (
        not all(_PLAIN.issuperset(text) and _RICH_SYNTAX.search(text) is None for text in texts)
        or len(summary) > width
    ):
        return None
    widths = [max(len(row[i]) for row in (_COLUMNS, *rows)) for i in range(len(_COLUMNS))]
    last = len(widths) - 1
    # rich's table without its edge: one space of padding each side of a cell but the
    # outer ones, a one-character rule between columns.
    padded = [w + (i > 0) + (i < last) for i, w in enumerate(widths)]
    if sum(padded) + last > width:
        return None  # rich would shrink and fold columns

    def line(cells: Sequence[str], rule: str) -> str:
        return rule.join(
            " " * (i > 0) + cell.ljust(widths[i]) + " " * (i < last)
            for i, cell in enumerate(cells)
        )

    lines = [line(_COLUMNS, "┃"), "╇".join("━" * w for w in padded)]
    lines += [line(row, "│") for row in rows]
    return "\n".join([*lines, summary, ""])


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
    from rich.table import Table
    from rich.text import Text

    now = now or time.time()
    table = Table(show_edge=False, pad_edge=False)
    for column in _COLUMNS:
        table.add_column(column, overflow="fold")
    for run in runs:
        cells = [Text(cell) for cell in _cells(run, now)]  # Text: never read as markup
        style, _ = STATUS_STYLE[run.status]
        cells[2].stylize(style)
        table.add_row(*cells)
    return table
