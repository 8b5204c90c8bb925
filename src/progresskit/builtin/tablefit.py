"""How a table fits a width: which columns stay, and where long texts are cut.

A cell is never folded onto a second line (``br/ush_garden``): a text too long for its
column is cut with an ellipsis, and when even that cannot make the table fit, the
narrowing steps are taken in their order (a column dropped, a column made compact) until it
does. The same decisions serve the plain renderer and rich, so both print the same table.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import attrs

__all__ = ["ELLIPSIS", "Column", "Fitted", "cut_end", "cut_middle", "fit"]

ELLIPSIS = "…"
#: What separates two columns: a space of padding each side and a one-character rule.
SEPARATOR = 3

Measure = Callable[[str], int]


@attrs.frozen
class Column:
    """A column's rules: whether its texts may be cut (``"end"``: ``abc…``; ``"middle"``:
    ``ab…yz``, for paths whose both ends matter; ``None``: never) and how narrow a cut
    column may get before the next narrowing step is taken."""

    header: str
    cut: str | None = None
    minimum: int = 0
    #: The column's shorter form, for a ``compact`` step.
    compact: Callable[[str], str] | None = None


@attrs.frozen
class Fitted:
    """The kept columns (their indices), their headers and the rows' texts, cut to fit;
    ``widths``: each kept cut column's width (``None`` for a column never cut)."""

    kept: tuple[int, ...]
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    widths: tuple[int | None, ...] = ()

    def cut(
        self, columns: Sequence[Column], row: Sequence[str], measure: Measure = len
    ) -> tuple[str, ...]:
        """Another row (all of ``columns``' texts) cut as these rows were: a row whose
        texts moved on (a clock) without the whole table being fitted again."""
        return tuple(
            _cut(columns[i], row[i], width, measure)
            for i, width in zip(self.kept, self.widths, strict=True)
        )


def _cut(column: Column, text: str, width: int | None, measure: Measure) -> str:
    if column.cut is None or width is None:
        return text
    cut = cut_middle if column.cut == "middle" else cut_end
    return cut(text, width, measure)


def _chars_width(measure: Measure) -> Callable[[str], list[int]]:
    return lambda text: [measure(c) for c in text]


def _one_cell_each(text: str, measure: Measure) -> bool:
    """Whether every character of ``text`` is one cell wide (printable ASCII: the usual
    case, cut by slicing instead of measuring character by character)."""
    return text.isascii() and text.isprintable() and measure(text) == len(text)


def cut_end(text: str, width: int, measure: Measure = len) -> str:
    """``text`` in at most ``width`` cells: its start and an ellipsis when it is longer."""
    if measure(text) <= width:
        return text
    if width <= 0:
        return ""
    if _one_cell_each(text, measure):
        return text[: width - 1] + ELLIPSIS
    budget, kept = width - 1, []
    for char in text:
        budget -= measure(char)
        if budget < 0:
            break
        kept.append(char)
    return "".join(kept) + ELLIPSIS


def cut_middle(text: str, width: int, measure: Measure = len) -> str:
    """``text`` in at most ``width`` cells: its start, an ellipsis, its end."""
    if measure(text) <= width:
        return text
    if width <= 2:
        return cut_end(text, width, measure)
    if _one_cell_each(text, measure):
        head = (width - 1) // 2
        return text[:head] + ELLIPSIS + text[len(text) - (width - 1 - head) :]
    widths = _chars_width(measure)(text)
    head_budget = (width - 1) // 2
    tail_budget = width - 1 - head_budget
    head = 0
    while head < len(text) and widths[head] <= head_budget:
        head_budget -= widths[head]
        head += 1
    tail = len(text)
    tail_budget += head_budget  # what the head could not use (a wide character)
    while tail > head and widths[tail - 1] <= tail_budget:
        tail_budget -= widths[tail - 1]
        tail -= 1
    return text[:head] + ELLIPSIS + text[tail:]


def fit(
    columns: Sequence[Column],
    rows: Sequence[Sequence[str]],
    width: int,
    steps: Sequence[tuple[int, str]],
    measure: Measure = len,
) -> Fitted:
    """The table of ``columns`` and ``rows`` laid out in ``width`` cells.

    Each uncut column is as wide as its widest text (header included). The cut columns
    share what is left, in column order, each first up to its own widest text while the
    later ones keep their ``minimum``. While even the minimums do not fit, the next of
    ``steps`` is taken: ``(index, "drop")`` removes a column, ``(index, "compact")`` puts
    its texts in their short form. A table that does not fit after every step has its cut
    columns at their minimums (the caller decides what to do with it).
    """
    kept = list(range(len(columns)))
    texts = [list(row) for row in rows]
    widest: dict[int, int] = {}  # each column's widest text, measured once

    def natural(i: int) -> int:
        if i not in widest:
            widest[i] = max([measure(columns[i].header), *(measure(row[i]) for row in texts)])
        return widest[i]

    def needed() -> int:
        total = SEPARATOR * (len(kept) - 1)
        for i in kept:
            column = columns[i]
            total += natural(i) if column.cut is None else min(natural(i), column.minimum)
        return total

    for index, action in steps:
        if needed() <= width:
            break
        if index not in kept:
            continue
        if action == "drop":
            kept.remove(index)
        elif action == "compact":
            shorten = columns[index].compact
            if shorten is not None:
                for row in texts:
                    row[index] = shorten(row[index])
                widest.pop(index, None)
        else:
            raise ValueError(f"narrowing step {action!r}: expected 'drop' or 'compact'")

    flexible = [i for i in kept if columns[i].cut is not None]
    left = width - SEPARATOR * (len(kept) - 1)
    left -= sum(natural(i) for i in kept if columns[i].cut is None)
    widths: dict[int, int] = {}
    for position, i in enumerate(flexible):
        later = sum(min(natural(j), columns[j].minimum) for j in flexible[position + 1 :])
        floor = min(natural(i), columns[i].minimum)
        widths[i] = max(floor, min(natural(i), left - later))
        left -= widths[i]

    def cell(i: int, text: str) -> str:
        return _cut(columns[i], text, widths.get(i), measure)

    return Fitted(
        tuple(kept),
        tuple(cell(i, columns[i].header) for i in kept),
        tuple(tuple(cell(i, row[i]) for i in kept) for row in texts),
        tuple(widths.get(i) for i in kept),
    )
