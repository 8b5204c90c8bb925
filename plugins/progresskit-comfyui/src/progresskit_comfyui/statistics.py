"""Generation statistics: completion times per job type, step durations, failure patterns.

Bounded: each job type keeps its newest ``window`` completion times, and the newest
``FAILURE_WINDOW`` failures are counted, so a monitor running for months holds as much as
one running for an hour. Each completion and failure is keyed by its job (server and
prompt id), so the same job met twice (a watcher started again reads the server's history
anew) counts once. What outlives the process: :mod:`progresskit_comfyui.statstore`.
"""

from __future__ import annotations

import math
import statistics
import uuid
from collections import Counter, OrderedDict, deque
from collections.abc import Iterable
from typing import Any

__all__ = ["FAILURE_WINDOW", "NODE_RUNNER_TYPE", "GenerationStatistics", "NodeTimes",
           "middle_mean", "record_node"]

#: Newest failures counted in ``failure_patterns``.
FAILURE_WINDOW = 1000
#: Job types kept (the most recently completed): job types come from workflows, and a
#: server running ever new graphs must not grow the statistics without end.
MAX_TYPES = 100


def _anonymous() -> str:
    # Unique across processes too: the store file merges the records of many.
    return f"#{uuid.uuid4().hex[:16]}"


class GenerationStatistics:
    """What past jobs teach about future ones (seed 003's ``generation_stats``)."""

    def __init__(self, window: int = 1000):
        if window < 1:
            raise ValueError(f"statistics window must be >= 1, got {window}")
        self.window = window
        #: job type -> job key -> seconds, oldest first; the types least recently
        #: completed first.
        self._times: OrderedDict[str, OrderedDict[str, float]] = OrderedDict()
        # Every progress update asks for its type's median (the ETA); sorting the window
        # each time would cost more than the rest of the update.
        self._medians: dict[str, float] = {}
        self._step_total = 0.0
        self._step_count = 0
        #: job key -> "job_type:error", oldest first.
        self._failures: OrderedDict[str, str] = OrderedDict()
        #: What was recorded since the last :meth:`take_unsaved` (for the store file).
        self._unsaved_times: list[tuple[str, str, float]] = []
        self._unsaved_failures: list[tuple[str, str]] = []
        self._unsaved_steps = (0.0, 0)

    def record_completion(self, job_type: str, seconds: float, key: str | None = None) -> None:
        """A job of ``job_type`` (``key``: which job) completed after ``seconds`` of
        execution; a job already counted is not counted again."""
        if not math.isfinite(seconds) or seconds < 0:
            return
        key = key if key is not None else _anonymous()
        if self._add_time(job_type, key, float(seconds)):
            self._unsaved_times.append((job_type, key, float(seconds)))

    def _add_time(self, job_type: str, key: str, seconds: float) -> bool:
        times = self._times.get(job_type)
        if times is None:
            times = self._times[job_type] = OrderedDict()
            while len(self._times) > MAX_TYPES:
                dropped, _ = self._times.popitem(last=False)
                self._medians.pop(dropped, None)
        elif key in times:
            return False
        self._times.move_to_end(job_type)
        times[key] = seconds
        while len(times) > self.window:
            times.popitem(last=False)
        self._medians.pop(job_type, None)
        return True

    def record_step(self, seconds: float) -> None:
        """One sampler step (``progress`` message to the next, same node) took ``seconds``."""
        self._step_total += seconds
        self._step_count += 1
        total, count = self._unsaved_steps
        self._unsaved_steps = (total + seconds, count + 1)

    def record_failure(self, job_type: str, error: str, key: str | None = None) -> None:
        """A job of ``job_type`` (``key``: which job) failed with ``error`` (its one-line
        summary)."""
        key = key if key is not None else _anonymous()
        if self._add_failure(key, f"{job_type}:{error}"):
            self._unsaved_failures.append((key, f"{job_type}:{error}"))

    def _add_failure(self, key: str, pattern: str) -> bool:
        if key in self._failures:
            return False
        self._failures[key] = pattern
        while len(self._failures) > FAILURE_WINDOW:
            self._failures.popitem(last=False)
        return True

    def median(self, job_type: str) -> float | None:
        cached = self._medians.get(job_type)
        if cached is None:
            times = self._times.get(job_type)
            if not times:
                return None
            cached = self._medians[job_type] = statistics.median(times.values())
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
                    "median": statistics.median(times.values()),
                    "mean": statistics.fmean(times.values()),
                    "min": min(times.values()),
                    "max": max(times.values()),
                }
                for job_type, times in sorted(self._times.items())
                if times
            },
            "average_step_duration": self.average_step_duration,
            "failure_patterns": dict(Counter(self._failures.values()).most_common()),
        }

    # -- what the store file keeps ----------------------------------------------------------

    def take_unsaved(self) -> tuple[list[tuple[str, str, float]], list[tuple[str, str]],
                                    tuple[float, int]]:
        """What was recorded since the last call: (completions as (type, key, seconds),
        failures as (key, pattern), (step seconds, steps))."""
        taken = (self._unsaved_times, self._unsaved_failures, self._unsaved_steps)
        self._unsaved_times, self._unsaved_failures, self._unsaved_steps = [], [], (0.0, 0)
        return taken

    def replace(self, times: Iterable[tuple[str, str, float]],
                failures: Iterable[tuple[str, str]], steps: tuple[float, int]) -> None:
        """Take what the store file holds (this process's saved records among it) as the
        statistics, oldest first; what was recorded since the last save stays on top of
        it, unsaved."""
        pending = self.take_unsaved()
        self._times.clear()
        self._medians.clear()
        self._failures.clear()
        self.merge(times, failures)
        self._step_total, self._step_count = steps
        self.merge(pending[0], pending[1])
        self._step_total += pending[2][0]
        self._step_count += pending[2][1]
        self._unsaved_times, self._unsaved_failures, self._unsaved_steps = pending

    def merge(self, times: Iterable[tuple[str, str, float]],
              failures: Iterable[tuple[str, str]]) -> None:
        """Add records (oldest first); those of jobs already counted are skipped."""
        for job_type, key, seconds in times:
            self._add_time(job_type, key, seconds)
        for key, pattern in failures:
            self._add_failure(key, pattern)

    def entries(self) -> tuple[list[tuple[str, str, float]], list[tuple[str, str]],
                               tuple[float, int]]:
        """Everything held, oldest first, in :meth:`replace`'s terms."""
        times = [(t, k, s) for t, by_key in self._times.items() for k, s in by_key.items()]
        return times, list(self._failures.items()), (self._step_total, self._step_count)


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
        self._typical: dict[str, float | None] = {}
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
            self._typical.pop(key, None)

    def expected(self, job_type: str, node_class: str) -> float | None:
        """Typical seconds of ``node_class`` in a job of ``job_type`` (else in any job)."""
        for key in self.keys(job_type, node_class):
            value = self._typical_of(key)
            if value is not None:
                return value
        return None

    def _typical_of(self, key: str) -> float | None:
        if key in self._typical:
            return self._typical[key]
        seen = self._seen.get(key)
        value: float | None
        if seen:
            value = middle_mean(seen)
        else:
            if key not in self._stored:
                self._stored[key] = _stored_level(key)
            value = self._stored[key]
        self._typical[key] = value
        return value


def middle_mean(values: Iterable[float]) -> float:
    """The mean of the middle half of ``values`` (the interquartile mean): as deaf to a few
    outliers as the median, but where the runs of a node form two groups (two workflows of
    one job type, alternating inputs) it stays between them instead of jumping from one
    group to the other whenever one more run of either is seen (the median of the two
    captured runs, alternating, was either run's time in turn)."""
    ordered = sorted(values)
    cut = len(ordered) // 4
    middle = ordered[cut:len(ordered) - cut]
    return statistics.fmean(middle)


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
