"""The tracker contract: what every tracker plugin's tracker class provides."""

from __future__ import annotations

import fnmatch
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, TypedDict

import attrs

from progresskit.formats.fileio import StatKey, is_racy, stat_key
from progresskit.model.core import ProgressInfo

__all__ = [
    "BaseProgressTracker",
    "CurvePoint",
    "Curves",
    "HistoryArgs",
    "RunnerDescription",
    "Target",
    "list_entries",
]

#: One point of a metric's curve: ``(x, value, time)``, ``x`` in the tracker's
#: :attr:`~BaseProgressTracker.curve_axis` (an epoch, a step), ``time`` the Unix time the
#: source recorded for it, or ``None`` when it records none.
CurvePoint = tuple[float, float, float | None]
#: Metric name -> its points, oldest first: what :meth:`BaseProgressTracker.curves` returns.
Curves = dict[str, list[CurvePoint]]


def list_entries(path: str) -> dict[str, bool]:
    """One listing of ``path``: entry name -> whether it is a directory (a symlink counts
    as what it points to; one that cannot be followed, a loop, as no directory)."""
    with os.scandir(path) as it:
        return {e.name: _is_dir(e) for e in it}


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError:  # ELOOP: a symlink loop must not make the whole directory unlistable
        return False


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
    #: Glob of the logs its runs write (a tracker's :attr:`~BaseProgressTracker.log_pattern`):
    #: a directory holding one that no tracker claims is reported as unrecognised. Not
    #: part of equality: two descriptions of one runner say the same whatever its logs.
    log_pattern: str | None = attrs.field(default=None, eq=False)


class HistoryArgs(TypedDict):
    """What names a run in the ETA history: ``estimate_run``'s keyword arguments of the same
    names (see :meth:`BaseProgressTracker.history_args`)."""

    runner_type: str
    work_dir: str
    config: Mapping[str, Any]


class BaseProgressTracker(ABC):
    """A tracker for one run. Subclasses read their source; this class caches the result.

    A subclass declares what it handles as class attributes (:attr:`runner_type`,
    :attr:`expected_files`, :attr:`log_pattern`) and implements :meth:`calculate_progress`.
    Seed 001's ``get_runner_type()``, ``get_expected_files()`` and ``get_log_pattern()``
    answer from those attributes; a tracker whose answer depends on its config overrides
    the method instead.

    The cache is invalidated by the files the tracker reads, not by a timer: subclasses
    list them in :meth:`fingerprint`, and :meth:`get_progress` recomputes only when one of
    them changed (or changed too recently for its timestamp to be trusted). A tracker whose
    source is not files sets :attr:`reuse_seconds` instead.
    """

    #: The runner type this tracker handles (``"trainer"``, ``"evaluator"``, ...). Required.
    runner_type: ClassVar[str]
    #: The files, relative to the work dir, whose presence marks completion (per epoch, for
    #: trainers); the default :meth:`fingerprint` stats them.
    expected_files: ClassVar[Sequence[str]] = ()
    #: Glob, relative to the work dir, of the log files whose writes are signs of life.
    log_pattern: ClassVar[str] = "*.log"
    #: ``None``: the answer is reused while :meth:`fingerprint` is unchanged. A number of
    #: seconds, for a source that is not files (a server, whose jobs change while nothing
    #: on disk does): the answer is reused that long after it was read, and the fingerprint
    #: is not consulted.
    reuse_seconds: ClassVar[float | None] = None
    #: What the x of the points of :meth:`curves` counts, as the run page labels its axis:
    #: ``"epoch"``, ``"step"``, ... or ``"time"`` (x is then a Unix time).
    curve_axis: ClassVar[str] = "step"
    #: ``True`` when :meth:`update_times` are the source's own clock readings kept in its
    #: records (an MLflow metric's timestamp, an event's time), not files' modification
    #: times: a copy of the run keeps them, so updates less than a second apart are a fast
    #: run, which the rhythm rule judges, never files copied into place.
    update_times_recorded: ClassVar[bool] = False

    def __init__(self, work_dir: str | os.PathLike[str], config: Mapping[str, Any] | None = None):
        self.work_dir = os.fspath(work_dir)
        self.config: Mapping[str, Any] = dict(config or {})
        self._cache: ProgressInfo | None = None
        self._cache_key: tuple[StatKey | None, ...] | None = None
        #: When (monotonic clock) the cached answer was computed; for :attr:`reuse_seconds`.
        self._computed_at = 0.0
        self._listing: dict[str, bool] = {}
        self._listing_key: StatKey | None = None
        self._listing_trusted = False
        self._log_names: list[str] = []
        self._log_keys: dict[str, StatKey | None] = {}
        # While set, get_progress() and entries() answer from what they just read: one
        # status evaluation validates the cache once, not once per question it asks.
        self._pinned = False

    # -- what a tracker must say (seed 001's API) ----------------------------------------

    def get_runner_type(self) -> str:
        """The runner type this tracker handles: :attr:`runner_type`."""
        return self.runner_type

    def get_expected_files(self) -> list[str]:
        """The files whose presence marks completion: :attr:`expected_files`."""
        return list(self.expected_files)

    def get_log_pattern(self) -> str:
        """The glob of the log files that are signs of life: :attr:`log_pattern`."""
        return self.log_pattern

    def log_dir(self) -> str:
        """The directory holding the run's console logs, which the engine reads for what
        this tracker leaves unknown (docs/logs.md): the work dir by default. A tracker whose
        run's console log sits elsewhere overrides it (Lightning's job writes ``train.log``
        into the job dir, above the logger's ``version_N`` dir that is the run)."""
        return self.work_dir

    @abstractmethod
    def calculate_progress(self) -> ProgressInfo:
        """Read the source and compute progress now, without using the cache.

        Must not raise for bad content: a corrupt or half-written file is reported through
        ``ProgressInfo.error_message`` / ``warnings``.
        """

    def is_complete(self) -> bool:
        """Whether the run has completed (by default: progress reached 100%)."""
        return self.get_progress().at_full

    def history_args(self) -> HistoryArgs:
        """This run's runner type, work dir and config, for
        ``estimate_run(observations, total, **self.history_args(), ...)`` in
        :meth:`calculate_progress` (docs/eta.md)."""
        return {
            "runner_type": self.get_runner_type(),
            "work_dir": self.work_dir,
            "config": self.config,
        }

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
        """Progress, from the cache when nothing the tracker reads has changed (or, with
        :attr:`reuse_seconds`, when it was read less than that long ago)."""
        if (
            self._cache is not None
            and not force_refresh
            and (self._pinned or self._cache_is_fresh())
        ):
            return self._cache
        read_at = time.time_ns()
        progress = self.calculate_progress()
        self._cache, self._computed_at = progress, time.monotonic()
        if self.reuse_seconds is None:
            # Taken after the read, because what the fingerprint covers may depend on what
            # was read (the trainer's first incomplete epoch). A file changed during the read
            # has an mtime after read_at, so it is racy and the result is not cached.
            key = self.fingerprint()
            self._cache_key = None if is_racy(key, read_at) else key
        return progress

    def _cache_is_fresh(self) -> bool:
        if self.reuse_seconds is not None:
            return time.monotonic() - self._computed_at < self.reuse_seconds
        # No key: the answer was read while its files were changing (racy), so it is never
        # reused and their stat keys need not be taken to know it.
        return self._cache_key is not None and self.fingerprint() == self._cache_key

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

    def listing(self) -> dict[str, bool]:
        """The work dir's entries as :meth:`entries` last listed (or validated) them, at no
        ``stat``: for code that runs right after :meth:`evaluate` in the same query."""
        return self._listing

    def log_keys(self) -> dict[str, StatKey | None]:
        """Log file name -> the stat key :meth:`last_log_update` last took of it: lets what
        runs right after :meth:`evaluate` (the engine's log reader) spare a second ``stat``."""
        return self._log_keys

    def listing_key(self) -> StatKey | None:
        """The work dir's stat key when :meth:`entries` last listed it; ``None`` before the
        first listing and while the work dir is missing.

        A tracker whose answer depends on the listing (new epoch or checkpoint directories)
        puts it first in its :meth:`fingerprint`, after calling :meth:`entries`: it costs no
        ``stat`` of its own.
        """
        return self._listing_key

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
        self._log_keys = {}
        for name in self._log_names:
            key = self._log_keys[name] = stat_key(os.path.join(self.work_dir, name))
            if key is not None and (newest is None or key[0] / 1e9 > newest):
                newest = key[0] / 1e9
        return newest

    def update_times(self) -> Sequence[float]:
        """Unix times of the run's recent updates as its source records them (epoch ends,
        checkpoints, status-file writes, events), oldest first; read from what
        :meth:`get_progress` last read, so call it after that.

        The status rules judge a run without a lease by this rhythm (engine/rhythm.py,
        docs/status.md): silent much longer than its usual gaps, it is stuck or failed.
        The default, no times, leaves ``sleep_time`` as the only limit; a tracker whose
        source records when it updated overrides it. A few dozen recent times suffice."""
        return ()

    def updates_buffered(self) -> float:
        """Seconds the source may hold its updates back before they reach disk, whatever
        their own pace: a TensorBoard writer flushes its events every ``flush_secs`` (120 s
        by default), so a healthy run's newest event on disk may be that old. The rhythm
        rule then never takes the run's usual longest gap below it (engine/rhythm.py). The
        default, 0, suits a source whose updates are written as they happen."""
        return 0.0

    def curves(self) -> Curves:
        """Every metric's full curve, read from the run's files now (all epochs' scores, a
        Trainer's ``log_history``, an event log's metrics), not only the latest values that
        :meth:`calculate_progress` reports.

        Called for one run at a time when someone looks at it (``progresskit serve``'s run
        page, ``GET /api/runs/{id}``), from a worker thread, on a tracker of its own: it may
        read every file it needs, but must not raise for bad content (skip a corrupt point).
        Non-finite values are left out. The default, no curves, suits a source that keeps
        no history.
        """
        return {}

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
