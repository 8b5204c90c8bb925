"""Which runs a view shows and in which order: the urgency order, the other sort keys, the
status filters and the summary line, shared by ``progresskit status`` (``--sort``,
``--status``, ``--active``, ``--limit``) and the ``watch`` screen (docs/cli.md).

Names are what a person reads: a run's path relative to the root it was found under.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence

from progresskit.model.core import RunStatus, Status

__all__ = [
    "PROBLEMS",
    "SORT_KEYS",
    "URGENCY",
    "display_name",
    "parse_statuses",
    "relative_name",
    "remaining_seconds",
    "select_runs",
    "sort_runs",
    "summary_text",
]

#: The default order: what needs a person first, then what will finish soonest (running
#: runs by ETA), then what waits, then what is over.
URGENCY: tuple[Status, ...] = (
    Status.CRASHED,
    Status.FAILED,
    Status.STUCK,
    Status.UNKNOWN,
    Status.RUNNING,
    Status.PENDING,
    Status.CANCELLED,
    Status.FINISHED,
    Status.OUTDATED,
)
_RANK = {status: rank for rank, status in enumerate(URGENCY)}

#: The statuses that make the exit code 1: what ``--status`` lists as "needs attention".
PROBLEMS: frozenset[Status] = frozenset(s for s in Status if not s.is_healthy)

#: The values of ``--sort``.
SORT_KEYS = ("urgency", "name", "progress", "eta", "updated")

_LAST = float("inf")


def relative_name(config: str, root: str) -> str:
    """``runs/sweep/lr_0.1`` under the root ``runs`` -> ``sweep/lr_0.1``: the root a person
    gave is not repeated on every row. A run that is the root itself, or lies outside it
    (a plugin's target: a URL, a job id), keeps its own name."""
    if "://" in config or not root:
        return config
    try:
        relative = os.path.relpath(config, root)
    except ValueError:  # another drive (Windows)
        return config
    if relative == "." or relative == os.pardir or relative.startswith(os.pardir + os.sep):
        return config
    return relative


def display_name(run: RunStatus, names: Mapping[str, str] | None) -> str:
    """The name a view shows for ``run``: from ``names`` (config -> name), else its config."""
    if names is None:
        return run.config
    return names.get(run.config, run.config)


def remaining_seconds(run: RunStatus, now: float) -> float | None:
    """The ETA counted down from the run's last update to ``now`` (negative: overdue);
    ``None`` when unknown or the run is no longer active."""
    p = run.progress
    if p.eta_seconds is None or not run.status.is_active:
        return None
    since = now - p.last_update_time if p.last_update_time else 0.0
    return p.eta_seconds - since


def parse_statuses(text: str) -> frozenset[Status]:
    """``"crashed,failed,stuck"`` -> those statuses.

    :raises ValueError: naming each word that is no status, and the words that are.
    """
    words = [word.strip().lower() for word in text.split(",") if word.strip()]
    known = {status.value: status for status in Status}
    wrong = [word for word in words if word not in known]
    if wrong or not words:
        given = ", ".join(repr(w) for w in wrong) if wrong else "nothing"
        raise ValueError(
            f"got {given}; expected a comma-separated list of statuses: "
            + ", ".join(status.value for status in URGENCY)
        )
    return frozenset(known[word] for word in words)


def select_runs(
    runs: Iterable[RunStatus],
    statuses: Collection[Status] | None = None,
    *,
    active: bool = False,
    text: str = "",
    name: Callable[[RunStatus], str] = lambda run: run.config,
) -> list[RunStatus]:
    """The runs whose status is among ``statuses`` (all when ``None``), active ones only
    with ``active``, and whose name holds ``text`` (case-insensitive)."""
    needle = text.lower()
    return [
        run
        for run in runs
        if (statuses is None or run.status in statuses)
        and (not active or run.status.is_active)
        and (not needle or needle in name(run).lower())
    ]


def sort_runs(
    runs: Iterable[RunStatus],
    key: str,
    now: float,
    name: Callable[[RunStatus], str] = lambda run: run.config,
) -> list[RunStatus]:
    """``runs`` in the order of ``key`` (one of :data:`SORT_KEYS`); ties by name.

    ``urgency``: :data:`URGENCY`, active runs soonest ETA first within their status;
    ``name``; ``progress``: least done first (unknown last); ``eta``: soonest first (no
    ETA last, in urgency order); ``updated``: latest sign of life first (none last).
    """
    if key not in SORT_KEYS:
        raise ValueError(f"sort key {key!r}: expected one of {', '.join(SORT_KEYS)}")

    def eta(run: RunStatus) -> float:
        left = remaining_seconds(run, now)
        return _LAST if left is None else left

    def order(run: RunStatus) -> tuple[float, ...] | tuple[str]:
        if key == "urgency":
            return (_RANK[run.status], eta(run))
        if key == "progress":
            pct = run.progress.progress_percentage
            return (_LAST if pct is None else pct,)
        if key == "eta":
            return (eta(run), _RANK[run.status])
        if key == "updated":
            return (_LAST if run.last_activity is None else -run.last_activity,)
        return ()

    return sorted(runs, key=lambda run: (order(run), name(run)))


def summary_text(runs: Sequence[RunStatus], unrecognised: int = 0) -> str:
    """``"300 runs: 3 crashed, 79 failed, 32 running, 186 finished; 2 unrecognised"``:
    every status present, in :data:`URGENCY` order, and the run-like directories no
    tracker claims."""
    counts = Counter(run.status for run in runs)
    parts = ", ".join(f"{counts[s]} {s.value}" for s in URGENCY if counts[s])
    text = f"{len(runs)} run{'s' * (len(runs) != 1)}: {parts}" if runs else "no runs"
    if unrecognised:
        text += f"; {unrecognised} unrecognised"
    return text
