"""The tracker contract: what every tracker plugin's tracker class provides."""

from __future__ import annotations

import fnmatch
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

import attrs

from progresskit.formats.fileio import StatKey, is_racy, stat_key
from progresskit.model.core import ProgressInfo

__all__ = ["BaseProgressTracker", "RunnerDescription", "Target", "list_entries"]


def list_entries(path: str) -> dict[str, bool]:
    """One listing of ``path``: entry name -> whether it is a directory."""
    with os.scandir(path) as it:
        return {e.name: e.is_dir() for e in it}


@attrs.frozen
class Target:
    """A directory being considered as a run, as shown to ``progresskit_detect_runner``."""

    path: str
    #: The plain config mapping that applies to this directory.
    config: Mapping[str, Any]
    #: Entry name -> is a directory; one listing shared by every plugin.
    entries: Mapping[str, bool]
    #: Whether config keys alone may justify a claim (true for one explicit target only).
    use_config: bool = False

    def has_dir(self, name: str) -> bool:
        """Whether the directory holds a subdirectory ``name``."""
        return self.entries.get(name) is True

    @property
    def runner_class(self) -> str:
        """The config's runner class name (``runner: NAME`` or ``runner: {class: NAME}``)."""
        runner = self.config.get("runner")
        if isinstance(runner, Mapping):
            runner = runner.get("class")
        return runner if isinstance(runner, str) else ""

    def has_file(self, name: str) -> bool:
        """Whether the directory holds a non-directory entry ``name``."""
        return self.entries.get(name) is False


@attrs.frozen
class RunnerDescription:
    """What a tracker plugin looks for, shown in diagnostics and ``progresskit plugins``."""

    runner_type: str
    #: Human-readable evidence the plugin claims on, e.g. ``"epoch_0/ directory"``.
    expects: str


class BaseProgressTracker(ABC):
    """A tracker for one run. Subclasses read their source; this class caches the result.

    The cache is invalidated by the files the tracker reads, not by a timer: subclasses
    list them in :meth:`fingerprint`, and :meth:`get_progress` recomputes only when one of
    them changed (or changed too recently for its timestamp to be trusted).
    """

    def __init__(self, work_dir: str | os.PathLike[str], config: Mapping[str, Any] | None = None):
        self.work_dir = os.fspath(work_dir)
        self.config: Mapping[str, Any] = dict(config or {})
        self._cache: ProgressInfo | None = None
        self._cache_key: tuple[StatKey | None, ...] | None = None
        self._listing: dict[str, bool] = {}
        self._listing_key: StatKey | None = None
        self._listing_trusted = False
        self._log_names: list[str] = []
        # While set, get_progress() and entries() answer from what they just read: one
        # status evaluation validates the cache once, not once per question it asks.
        self._pinned = False

    # -- what a tracker must say (seed 001's API) ----------------------------------------

    @abstractmethod
    def get_runner_type(self) -> str:
        """The runner type this tracker handles (``"trainer"``, ``"evaluator"``, ...)."""

    @abstractmethod
    def get_expected_files(self) -> list[str]:
        """The files whose presence marks completion (per epoch, for trainers)."""

    @abstractmethod
    def get_log_pattern(self) -> str:
        """Glob, relative to the work dir, of the log files whose writes are signs of life."""

    @abstractmethod
    def calculate_progress(self) -> ProgressInfo:
        """Read the source and compute progress now, without using the cache.

        Must not raise for bad content: a corrupt or half-written file is reported through
        ``ProgressInfo.error_message`` / ``warnings``.
        """

    def is_complete(self) -> bool:
        """Whether the run has completed (by default: progress reached 100%)."""
        return self.get_progress().progress_percentage >= 100.0

    # -- caching --------------------------------------------------------------------------

    def fingerprint(self) -> tuple[StatKey | None, ...]:
        """Stat keys of everything :meth:`calculate_progress` reads; a change means recompute.

        The default covers the work dir itself and the expected files in it; trackers that
        read more (epoch directories, logs of events) override this. Keep it to a few
        ``stat`` calls: it runs on every query.
        """
        join = os.path.join
        return (
            stat_key(self.work_dir),
            *(stat_key(join(self.work_dir, f)) for f in self.get_expected_files()),
        )

    def get_progress(self, force_refresh: bool = False) -> ProgressInfo:
        """Progress, from the cache when nothing the tracker reads has changed."""
        if (
            self._cache is not None
            and not force_refresh
            and (self._pinned or self.fingerprint() == self._cache_key)
        ):
            return self._cache
        read_at = time.time_ns()
        progress = self.calculate_progress()
        # Taken after the read, because what the fingerprint covers may depend on what was
        # read (the trainer's first incomplete epoch). A file changed during the read has an
        # mtime after read_at, so it is racy and the result is not cached.
        key = self.fingerprint()
        self._cache = progress
        self._cache_key = None if is_racy(key, read_at) else key
        return progress

    # -- signs of life --------------------------------------------------------------------

    def entries(self) -> dict[str, bool]:
        """The work dir's entries (name -> is a directory), re-listed only when it changed."""
        if self._pinned and self._listing_key is not None:
            return self._listing
        key = stat_key(self.work_dir)
        if key is None:
            self.adopt_listing(None, {}, trusted=False)
        elif key != self._listing_key or not self._listing_trusted:
            read_at = time.time_ns()
            try:
                listing = list_entries(self.work_dir)
            except OSError:
                listing = {}
            self.adopt_listing(key, listing, trusted=not is_racy((key,), read_at))
        return self._listing

    def adopt_listing(
        self, key: StatKey | None, entries: dict[str, bool], *, trusted: bool
    ) -> None:
        """Use a listing of the work dir made under stat ``key`` (by a scan, for one).

        An untrusted listing (the directory changed too recently for its mtime to tell a
        later change apart) is used once and made again on the next call.
        """
        self._listing, self._listing_key, self._listing_trusted = entries, key, trusted
        pattern = self.get_log_pattern()
        self._log_names = [
            name
            for name, is_dir in entries.items()
            if not is_dir and fnmatch.fnmatchcase(name, pattern)
        ]

    def last_log_update(self) -> float | None:
        """Newest modification time of the files matching :meth:`get_log_pattern`."""
        self.entries()
        newest: float | None = None
        for name in self._log_names:
            key = stat_key(os.path.join(self.work_dir, name))
            if key is not None and (newest is None or key[0] / 1e9 > newest):
                newest = key[0] / 1e9
        return newest

    def last_activity(self) -> float | None:
        """The newest sign of life: a log write or the source's own heartbeat."""
        times = [t for t in (self.last_log_update(), self.get_progress().last_update_time) if t]
        return max(times) if times else None

    def evaluate(self) -> tuple[ProgressInfo, bool, float | None]:
        """Progress, completion and last activity, read consistently and validated once."""
        progress = self.get_progress()
        self._pinned = True
        try:
            return progress, self.is_complete(), self.last_activity()
        finally:
            self._pinned = False
