"""What the watch screen shows, without drawing it: the filter and sort in force, the rows'
texts, and which runs changed lately (the marked rows).

Kept free of Textual so the rules are tested as plain functions and the screen only draws.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence

import attrs

from progresskit.builtin.runorder import (
    PROBLEMS,
    SORT_KEYS,
    relative_name,
    select_runs,
    sort_runs,
    summary_text,
)
from progresskit.builtin.table import row_cells
from progresskit.engine.rules import format_duration
from progresskit.model.core import RunStatus, Status

__all__ = [
    "CHANGE_MARK",
    "MARK_SECONDS",
    "SCREEN_COLUMNS",
    "Filter",
    "ViewState",
    "default_filters",
]

#: How long a row stays marked after its run changed.
MARK_SECONDS = 10.0
#: The mark of a row whose run changed in the last :data:`MARK_SECONDS`.
CHANGE_MARK = "●"
#: The columns of the screen's table: the mark, then the status table's columns but the
#: runner type (it is on the run's page).
SCREEN_COLUMNS = ("", "run", "status", "progress", "done", "ETA", "last update", "reason")
_FROM_TABLE = (0, 2, 3, 4, 5, 6, 7)  # indices into builtin.table.COLUMNS


def _age(seconds: float) -> str:
    """An age on the screen: to the second below a minute, then to the minute (``12m``,
    ``1h 2m``), so that a quiet tree's rows do not all change every second."""
    if seconds >= 60:
        return format_duration(seconds - seconds % 60).removesuffix(" 0s")
    return format_duration(seconds)


@attrs.frozen
class Filter:
    """A filter the ``f`` key cycles through."""

    label: str
    statuses: frozenset[Status] | None = None
    active: bool = False


def default_filters(
    statuses: Collection[Status] | None = None, active: bool = False
) -> tuple[Filter, ...]:
    """The filters ``f`` cycles through; the one given on the command line first."""
    cycle = (
        Filter("all"),
        Filter("attention", PROBLEMS),
        Filter("active", active=True),
        Filter("finished", frozenset({Status.FINISHED, Status.OUTDATED})),
    )
    if statuses is None and not active:
        return cycle
    words = ",".join(sorted(s.value for s in statuses)) if statuses else "active"
    given = Filter(words, None if statuses is None else frozenset(statuses), active)
    return (given, *cycle)


@attrs.define
class ViewState:
    """The screen's state: sort key, filter, search text and the changed runs' marks."""

    root: str
    sort: str = "urgency"
    filters: tuple[Filter, ...] = attrs.field(factory=default_filters)
    filter_at: int = 0
    search: str = ""
    #: config -> monotonic time of its latest change.
    changed: dict[str, float] = attrs.field(factory=dict)

    @property
    def filter(self) -> Filter:
        return self.filters[self.filter_at]

    def next_sort(self) -> None:
        self.sort = SORT_KEYS[(SORT_KEYS.index(self.sort) + 1) % len(SORT_KEYS)]

    def next_filter(self) -> None:
        self.filter_at = (self.filter_at + 1) % len(self.filters)

    #: config -> the name shown (a path computation: asked for every row of every update).
    names: dict[str, str] = attrs.field(factory=dict)

    def name(self, run: RunStatus) -> str:
        name = self.names.get(run.config)
        if name is None:
            name = self.names[run.config] = relative_name(run.config, self.root)
        return name

    def mark(self, config: str, at: float | None = None) -> None:
        self.changed[config] = time.monotonic() if at is None else at

    def forget_marks(self, now: float) -> None:
        """Forget the marks older than :data:`MARK_SECONDS` (``now``: monotonic)."""
        for config, at in list(self.changed.items()):
            if now - at >= MARK_SECONDS:
                del self.changed[config]

    def shown(self, runs: Sequence[RunStatus], now: float) -> list[RunStatus]:
        """The runs on screen, in their order."""
        f = self.filter
        picked = select_runs(runs, f.statuses, active=f.active, text=self.search, name=self.name)
        return sort_runs(picked, self.sort, now, self.name)

    def cells(self, run: RunStatus, now: float, monotonic: float) -> tuple[str, ...]:
        """A row's texts, in :data:`SCREEN_COLUMNS` order."""
        texts = list(row_cells(run, now, self.name(run)))
        if run.last_activity is not None:
            texts[6] = f"{_age(now - run.last_activity)} ago"
        at = self.changed.get(run.config)
        mark = CHANGE_MARK if at is not None and monotonic - at < MARK_SECONDS else " "
        return (mark, *(texts[i] for i in _FROM_TABLE))

    def summary(self, runs: Sequence[RunStatus], unrecognised: int, shown: int) -> str:
        """The line always on screen: every status counted, then what the view shows."""
        search = f" · search {self.search!r}" if self.search else ""
        return (
            f"{summary_text(runs, unrecognised)}\n"
            f"showing {shown} · sort {self.sort} · filter {self.filter.label}{search}"
            f" · {CHANGE_MARK} changed in the last {MARK_SECONDS:g}s · ↑↓ PgUp PgDn scroll"
        )

