"""Generation statistics: completion times per job type, step durations, failure patterns.

Bounded: each job type keeps its newest ``window`` completion times, so a monitor running
for months holds as much as one running for an hour.
"""

from __future__ import annotations

import statistics
from collections import Counter, deque
from typing import Any

__all__ = ["GenerationStatistics"]


class GenerationStatistics:
    """What past jobs teach about future ones (seed 003's ``generation_stats``)."""

    def __init__(self, window: int = 1000):
        if window < 1:
            raise ValueError(f"statistics window must be >= 1, got {window}")
        self.window = window
        self._times: dict[str, deque[float]] = {}
        # Every progress update asks for its type's median (the ETA); sorting the window
        # each time would cost more than the rest of the update.
        self._medians: dict[str, float] = {}
        self._step_total = 0.0
        self._step_count = 0
        self._failures: Counter[str] = Counter()

    def record_completion(self, job_type: str, seconds: float) -> None:
        """A job of ``job_type`` completed after ``seconds`` of execution."""
        times = self._times.get(job_type)
        if times is None:
            times = self._times[job_type] = deque(maxlen=self.window)
        times.append(float(seconds))
        self._medians.pop(job_type, None)

    def record_step(self, seconds: float) -> None:
        """One sampler step (``progress`` message to the next, same node) took ``seconds``."""
        self._step_total += seconds
        self._step_count += 1

    def record_failure(self, job_type: str, error: str) -> None:
        """A job of ``job_type`` failed with ``error`` (its one-line summary)."""
        self._failures[f"{job_type}:{error}"] += 1

    def median(self, job_type: str) -> float | None:
        cached = self._medians.get(job_type)
        if cached is None:
            times = self._times.get(job_type)
            if not times:
                return None
            cached = self._medians[job_type] = statistics.median(times)
        return cached

    @property
    def average_step_duration(self) -> float | None:
        return self._step_total / self._step_count if self._step_count else None

    def as_dict(self) -> dict[str, Any]:
        """Seed 003's ``generation_stats`` shape."""
        return {
            "completion_times": {
                job_type: {
                    "count": len(times),
                    "median": statistics.median(times),
                    "mean": statistics.fmean(times),
                    "min": min(times),
                    "max": max(times),
                }
                for job_type, times in sorted(self._times.items())
                if times
            },
            "average_step_duration": self.average_step_duration,
            "failure_patterns": dict(self._failures.most_common()),
        }
