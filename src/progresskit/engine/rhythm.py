"""Liveness without a lease: how long a run may stay silent, judged by its own rhythm.

A run that holds no lease promised nothing, but its updates (epochs, checkpoints, status
file writes, events) keep a rhythm. :func:`observe_rhythm` turns their times into a
silence limit; the status rules (:mod:`progresskit.engine.rules`) call a run that has been
silent longer than that ``stuck`` (a process is known alive) or ``failed`` (none is).
docs/status.md has the rule and the reasons for its numbers.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Iterable

import attrs

__all__ = [
    "FACTOR",
    "FLOOR_SECONDS",
    "MIN_GAPS",
    "QUANTILE",
    "RECURRING_TOLERANCE",
    "Rhythm",
    "observe_rhythm",
]

#: Gaps needed before the rhythm is trusted; with fewer, ``sleep_time`` alone decides.
MIN_GAPS = 4
#: The gap quantile taken as the run's usual longest silence (nearest rank, rounded down,
#: so that one long gap among a few does not become the rhythm).
QUANTILE = 0.9
#: A long gap that recurs (another gap above the quantile within this fraction of it) is a
#: periodic phase (evaluation, checkpoint upload) and part of the rhythm; a single one (a
#: resumed job's pause) is not.
RECURRING_TOLERANCE = 0.25
#: Silence allowed, in multiples of the usual longest gap. Above 5 so that an evaluation
#: pause of 5x the step cadence (plus the step around it) is not an alarm even before it
#: has recurred; low enough that a run updating every 2 s is declared dead within 20 s.
FACTOR = 7.0
#: Never a shorter limit than this: timestamp granularity, polling and scheduling delays.
FLOOR_SECONDS = 10.0
#: Updates closer than this are files copied or restored into place, not a rhythm (unless
#: the times are the source's own records, which a copy does not change).
_COPIED = 1.0


@attrs.frozen
class Rhythm:
    """What a run's update times say about how long it may stay silent."""

    #: The median gap between updates: "it updated every ~6s".
    typical: float
    #: The longest gap the run usually has (quantile, or a recurring long phase).
    usual_longest: float
    #: Seconds of silence allowed: ``FACTOR * usual_longest``, at least ``FLOOR_SECONDS``,
    #: at most the cap given to :func:`observe_rhythm` (``sleep_time``).
    limit: float
    #: The longest the source holds updates back before they reach disk (its ``buffered``):
    #: :attr:`usual_longest` is never below it.
    buffered: float = 0.0


def observe_rhythm(
    times: Iterable[float], *, cap: float, recorded: bool = False, buffered: float = 0.0
) -> Rhythm | None:
    """The rhythm of updates at ``times`` (Unix seconds, any order), or ``None`` when there
    are too few to judge or they look copied into place rather than written by a run.

    ``recorded``: the times are the source's own clock readings kept in its records (an
    MLflow metric's timestamp), not when files were last modified; copying the files keeps
    them, so close times are a fast run, never a copy. ``buffered``: the longest the
    source holds updates back before writing them out (a TensorBoard writer flushes every
    ``flush_secs``): however fast its updates, a healthy run's newest one on disk may be
    that old, so the usual longest gap is never taken below it."""
    ordered = sorted(set(times))
    gaps = sorted(b - a for a, b in itertools.pairwise(ordered))
    if len(gaps) < MIN_GAPS:
        return None
    typical = statistics.median(gaps)
    if typical < _COPIED and not recorded:
        return None
    quantile = gaps[math.floor(QUANTILE * (len(gaps) - 1))]
    usual = quantile
    long_gaps = [g for g in gaps if g > quantile]
    for i, gap in enumerate(long_gaps):
        others = long_gaps[:i] + long_gaps[i + 1 :]
        if any(abs(o - gap) <= RECURRING_TOLERANCE * gap for o in others):
            usual = max(usual, gap)
    usual = max(usual, buffered)
    limit = min(cap, max(FLOOR_SECONDS, FACTOR * usual))
    return Rhythm(typical=typical, usual_longest=usual, limit=limit, buffered=buffered)
