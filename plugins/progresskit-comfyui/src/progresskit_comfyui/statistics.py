"""Generation statistics: completion times per job type, step durations, failure patterns.

Bounded: each job type keeps its newest ``window`` completion times, so a monitor running
for months holds as much as one running for an hour.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter, deque
from typing import Any

__all__ = ["NODE_RUNNER_TYPE", "GenerationStatistics", "NodeTimes", "record_node"]


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


#: The history store's runner type for single nodes: one finished node is one "run" of one
#: unit, grouped by job type and node class, so its level is the node's typical seconds.
NODE_RUNNER_TYPE = "comfyui-node"
#: Newest node durations kept in memory per key.
NODE_WINDOW = 50


class NodeTimes:
    """How long each node class takes, per job type and overall: the weights of
    time-weighted progress and the parts of an ETA.

    Learned from the event stream (a node runs from its ``executing`` to the next node, its
    ``progress_state`` *finished*, or the prompt's end) and kept in progresskit's history
    store (runner type ``comfyui-node``), so a fresh process knows what earlier ones saw.
    """

    def __init__(self) -> None:
        self._seen: dict[str, deque[float]] = {}
        self._medians: dict[str, float | None] = {}
        #: key -> what the history store said (``None``: nothing), asked once per key.
        self._stored: dict[str, float | None] = {}

    @staticmethod
    def keys(job_type: str, node_class: str) -> tuple[str, str]:
        return f"{job_type}|{node_class}", f"*|{node_class}"

    def record(self, job_type: str, node_class: str, seconds: float) -> None:
        if not (math.isfinite(seconds) and seconds >= 0):
            return
        for key in self.keys(job_type, node_class):
            seen = self._seen.get(key)
            if seen is None:
                seen = self._seen[key] = deque(maxlen=NODE_WINDOW)
            seen.append(seconds)
            self._medians.pop(key, None)

    def expected(self, job_type: str, node_class: str) -> float | None:
        """Typical seconds of ``node_class`` in a job of ``job_type`` (else in any job)."""
        for key in self.keys(job_type, node_class):
            value = self._median(key)
            if value is not None:
                return value
        return None

    def _median(self, key: str) -> float | None:
        if key in self._medians:
            return self._medians[key]
        seen = self._seen.get(key)
        value: float | None
        if seen:
            value = statistics.median(seen)
        else:
            if key not in self._stored:
                self._stored[key] = _stored_level(key)
            value = self._stored[key]
        self._medians[key] = value
        return value


def _stored_level(group: str) -> float | None:
    # Imported here: the statistics module is loaded by every monitor, the history only
    # when a node class is first met.
    from progresskit import estimate_run

    found = estimate_run([], 1.0, runner_type=NODE_RUNNER_TYPE, work_dir=NODE_RUNNER_TYPE,
                         group=group)
    seconds = found.seconds
    return seconds if seconds is not None and math.isfinite(seconds) and seconds >= 0 else None


def record_node(job_type: str, node_class: str, run_id: str, started: float,
                seconds: float) -> None:
    """Leave one finished node in the history store (inside a recording block only)."""
    from progresskit import estimate_run

    if not (math.isfinite(started) and math.isfinite(seconds) and seconds > 0):
        return
    for group in NodeTimes.keys(job_type, node_class):
        estimate_run([(started, 0.0), (started + seconds, 1.0)], 1.0,
                     runner_type=NODE_RUNNER_TYPE, work_dir=NODE_RUNNER_TYPE, group=group,
                     run_id=f"{run_id}@{group}", finished=True)
