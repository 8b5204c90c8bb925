"""The statistics file: generation statistics that outlive the process.

Completion times per job type, failure patterns and step durations are kept in a JSON file
of this plugin beside progresskit's ETA history (its path + ``.comfyui-statistics.json``:
``$PROGRESSKIT_HISTORY``, else ``$XDG_STATE_HOME/progresskit/history.sqlite3``; none when
the history is ``off``), so a fresh process (another ``watch``, a restarted
service) starts from what earlier ones learned. Node times and each job's pace are in the
history store itself (:mod:`progresskit_comfyui.statistics`).

Several processes share the file: a save takes an exclusive lock on ``FILE.lock``, reads
the file, adds this process's new records (each keyed by its job, so nothing counts twice),
trims to the bounds and replaces the file atomically (temp file, fsync, rename); readers
need no lock. A file that is unreadable, not JSON or of another shape is ignored with a
warning (the statistics start empty, nothing else fails) and replaced at the next save.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from progresskit import atomic_write_text, history_path, read_json
from progresskit_comfyui.statistics import GenerationStatistics

__all__ = ["FORMAT_VERSION", "SAVE_EVERY", "StatisticsFile", "statistics_path"]

logger = logging.getLogger("progresskit_comfyui.statstore")

FORMAT_VERSION = 1
#: Seconds between two saves of a monitor's new records (and once when it stops).
SAVE_EVERY = 5.0
#: progresskit's ETA history setting (docs/eta.md): the statistics file follows it.
_SUFFIX = ".comfyui-statistics.json"


def statistics_path() -> Path | None:
    """Where the statistics are kept: beside the ETA history in force
    (:func:`progresskit.history_path`, its name + ``.comfyui-statistics.json``), or ``None``
    when the history is off."""
    history = history_path()
    if history is None:
        return None
    return history.with_name(history.name + _SUFFIX)


class StatisticsFile:
    """One statistics file, loaded into and saved from :class:`GenerationStatistics`."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self._saved_at: float | None = None
        self._warned = False

    def load(self, stats: GenerationStatistics) -> None:
        """Take the file's statistics (none when there is no usable file)."""
        stored = self._read()
        if stored is not None:
            stats.replace(*stored)

    def save_due(self, stats: GenerationStatistics, now: float) -> None:
        """Save when there is something new and the last save is ``SAVE_EVERY`` ago."""
        if self._saved_at is not None and now - self._saved_at < SAVE_EVERY:
            return
        self._saved_at = now
        self.save(stats)

    def save(self, stats: GenerationStatistics) -> None:
        """Add this process's new records to the file, and take what other processes
        added meanwhile."""
        times, failures, steps = stats.take_unsaved()
        if not times and not failures and not steps[1]:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._locked():
                stored = self._read() or ([], [], (0.0, 0))
                merged = GenerationStatistics(stats.window)
                merged.merge(stored[0], stored[1])
                merged.merge(times, failures)
                total = (stored[2][0] + steps[0], stored[2][1] + steps[1])
                entries = merged.entries()
                atomic_write_text(self.path, json.dumps({
                    "version": FORMAT_VERSION,
                    "completions": [list(e) for e in entries[0]],
                    "failures": [list(e) for e in entries[1]],
                    "steps": list(total),
                }, separators=(",", ":")))
            stats.replace(entries[0], entries[1], total)
        except OSError as exc:
            self._warn(f"cannot save statistics ({exc}); they are this process's own")

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        import fcntl

        with open(self.path.with_name(self.path.name + ".lock"), "a") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def _read(self) -> tuple[list[tuple[str, str, float]], list[tuple[str, str]],
                             tuple[float, int]] | None:
        if not self.path.exists():
            return None
        try:
            return _parse(read_json(os.fspath(self.path)))
        except (OSError, ValueError) as exc:
            self._warn(f"ignored ({exc}); the statistics start empty")
            return None

    def _warn(self, what: str) -> None:
        if not self._warned:
            self._warned = True
            logger.warning("ComfyUI statistics file %s: %s", self.path, what)


def _parse(document: Any) -> tuple[list[tuple[str, str, float]], list[tuple[str, str]],
                                   tuple[float, int]]:
    """The file's records; ``ValueError`` for anything but version 1's shape."""
    if not isinstance(document, dict) or document.get("version") != FORMAT_VERSION:
        raise ValueError(f"not a statistics file of version {FORMAT_VERSION}")
    completions, failures, steps = (document.get(k) for k in ("completions", "failures",
                                                               "steps"))
    if not (isinstance(completions, list) and isinstance(failures, list)
            and isinstance(steps, list) and len(steps) == 2):
        raise ValueError("expected 'completions', 'failures' and 'steps' lists")
    times = []
    for item in completions:
        if not (isinstance(item, list) and len(item) == 3 and isinstance(item[0], str)
                and isinstance(item[1], str) and _number(item[2]) and item[2] >= 0):
            raise ValueError(f"a completion is not [job type, job, seconds]: {item!r:.80}")
        times.append((item[0], item[1], float(item[2])))
    patterns = []
    for item in failures:
        if not (isinstance(item, list) and len(item) == 2
                and all(isinstance(v, str) for v in item)):
            raise ValueError(f"a failure is not [job, pattern]: {item!r:.80}")
        patterns.append((item[0], item[1]))
    total, count = steps
    if not (_number(total) and isinstance(count, int) and count >= 0 and total >= 0):
        raise ValueError(f"'steps' is not [seconds, count]: {steps!r:.80}")
    return times, patterns, (float(total), count)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value)
