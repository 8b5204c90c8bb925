"""The ``log`` tracker: a run known only by its console log (docs/logs.md).

A directory whose files are all logs (``log_files`` globs: ``*.log``, ``*.out``,
``slurm-*.out`` by default), apart from hidden files other than a lease and its
``progresskit.yaml``, is claimed as a run of type ``log``. Its progress is the newest
progress bar in the tail of its most recently written log (tqdm, rich, Keras; HF Trainer's
and Lightning's console bars), parsed by :mod:`progresskit.formats.progressbar` and read by
:class:`progresskit.engine.logs.LogTail`. A directory with anything else in it belongs to
another tracker (or to none: pin ``runner_type: log``); the session then fills what that
tracker leaves unknown from the same logs (:func:`progresskit.engine.logs.fill_from_log`).
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from progresskit.engine.logs import (
    DEFAULT_LOG_FILES,
    DEFAULT_TAIL_KB,
    DEFAULT_UNIT_DIVISOR,
    LOG_RUNNER_TYPE,
    LOOKBACK_TAILS,
    Checked,
    log_globs,
    log_tail_for,
)
from progresskit.formats.fileio import StatKey, is_racy
from progresskit.formats.lease import LEASE_FILENAME
from progresskit.model.core import ProgressInfo, Status
from progresskit.plugin.config import CONFIG_FILENAME, ConfigSchema
from progresskit.plugin.hookspec import hookimpl
from progresskit.plugin.spec import TrackerSpec
from progresskit.plugin.tracker import BaseProgressTracker, Target

RUNNER_TYPE = LOG_RUNNER_TYPE


#: A log without a bar says nothing of the run's progress: unknown, not seed 001's 0% and
#: 0 epochs (docs/status.md: unknown is never reported as zero).
_UNKNOWN: dict[str, Any] = {"progress_percentage": None, "completed_epochs": None}


class LogTracker(BaseProgressTracker):
    """Progress of a run from the newest progress bar in its console logs."""

    runner_type = RUNNER_TYPE

    def __init__(self, work_dir: str, config: Mapping[str, Any] | None = None):
        super().__init__(work_dir, config)
        globs = log_globs(self.config) or DEFAULT_LOG_FILES
        self.tail = log_tail_for(self.work_dir, globs, self.config)
        #: The logs' stat keys as the last :meth:`get_progress` took them: while pinned
        #: (:meth:`evaluate`), what :meth:`last_log_update` answers from.
        self._keys: Sequence[StatKey | None] | None = None

    def get_progress(self, force_refresh: bool = False) -> ProgressInfo:
        """Progress, from the cache while :meth:`fingerprint` is unchanged, as
        :meth:`BaseProgressTracker.get_progress` says; one ``stat`` of each log serves the
        change check, the racy rule and the log's read (its refusal of a FIFO or a device
        included), so a growing log costs one ``stat`` of it and of the work dir per query.
        """
        if self.reuse_seconds is not None:  # a subclass reading something else as well
            return super().get_progress(force_refresh)
        if self._pinned and self._cache is not None and not force_refresh:
            return self._cache
        entries = self.entries()
        checked = self.tail.stats(entries)
        self._keys = checked[0]
        key = (self._listing_key, *checked[0])
        if self._cache is not None and not force_refresh and key == self._cache_key:
            return self._cache
        read_at = time.time_ns()
        progress = self._progress(entries, checked)
        # Keyed by the stats taken before the read: a write during it shows as a change at
        # the next query, and a log (or listing) changed within the racy window of the read
        # may change again unseen, so its answer is not kept.
        self._cache, self._cache_key = progress, None if is_racy(key, read_at) else key
        return progress

    def fingerprint(self) -> tuple[StatKey | None, ...]:
        entries = self.entries()
        return (self.listing_key(), *self.tail.fingerprint(entries))

    def last_log_update(self) -> float | None:
        # Every log the globs name is a sign of life, not only log_pattern's "*.log"; within
        # one evaluation, as get_progress just saw them (no second stat of each).
        seen = self._keys if self._pinned and self._keys is not None else None
        if seen is None:
            seen = self.tail.fingerprint(self.entries())
        keys = [k for k in seen if k is not None]
        return max(k[0] for k in keys) / 1e9 if keys else None

    def calculate_progress(self) -> ProgressInfo:
        entries = self.entries()
        return self._progress(entries, self.tail.stats(entries))

    def _progress(self, entries: Mapping[str, bool], checked: Checked) -> ProgressInfo:
        """The answer, read from the logs under ``checked`` (what ``self.tail.stats`` took)."""
        progress = self.tail.newest_progress(RUNNER_TYPE, entries, checked)
        if progress is None:
            names = self.tail.names(entries)
            if not names:  # a pinned runner_type, or the logs were removed
                return ProgressInfo(
                    runner_type=RUNNER_TYPE,
                    error_message=f"{self.work_dir}: no file matching {list(self.tail.globs)}",
                    **_UNKNOWN,
                )
            kib = self.tail.tail_bytes * LOOKBACK_TAILS // 1024
            return ProgressInfo(
                runner_type=RUNNER_TYPE,
                warnings=(
                    *self.tail.problems,
                    f"no progress bar or traceback in the last {kib} KiB of {', '.join(names)}",
                ),
                **_UNKNOWN,
            )
        if self.tail.problems:  # another log could not be read: say so, keep the answer
            warnings = (*progress.warnings, *self.tail.problems)
            return attrs.evolve(progress, warnings=warnings)
        return progress

    def is_complete(self) -> bool:
        progress = self.get_progress()
        return progress.at_full or progress.reported_status is Status.FINISHED


def _claims(target: Target) -> bool:
    globs = log_globs(target.config) or DEFAULT_LOG_FILES
    logs = 0
    for name, is_dir in target.entries.items():
        if name == CONFIG_FILENAME or (name.startswith(".") and name != LEASE_FILENAME):
            continue
        if is_dir or not any(fnmatch.fnmatchcase(name, g) for g in globs):
            return False  # anything but logs is another tracker's evidence
        logs += 1
    return logs > 0


tracker = TrackerSpec(
    LogTracker,
    claim=_claims,
    expects="only console logs (log_files: *.log, *.out, slurm-*.out) holding a progress bar",
)
progresskit_detect_runner, progresskit_make_tracker, progresskit_describe_runner = tracker.hooks


@hookimpl
def progresskit_addconfig(schema: ConfigSchema) -> None:
    schema.add(
        "log_files",
        list,
        default=list(DEFAULT_LOG_FILES),
        help="Globs, relative to a run's work dir, of its console logs, read for progress "
        "bars (with the logs its tracker names).",
        check=_check_globs,
    )
    schema.add(
        "log_tail_kb",
        int,
        default=DEFAULT_TAIL_KB,
        help="KiB read from the end of a console log when it changed (the newest bar); a "
        f"tail without a bar is searched further back, up to {LOOKBACK_TAILS} times as far.",
        check=_check_tail,
    )
    schema.add(
        "log_unit_divisor",
        int,
        default=DEFAULT_UNIT_DIVISOR,
        help="tqdm's unit_divisor in the job's bars (1000 or 1024): what the k and M of a "
        "unit_scale count stand for, which tqdm prints alike for both.",
        check=_check_divisor,
    )


def _check_globs(value: Any) -> None:
    if not all(isinstance(g, str) and g and "/" not in g for g in value):
        raise ValueError(f"expected a list of file-name globs without '/', got {value!r}")


def _check_divisor(value: Any) -> None:
    if value not in (1000, 1024):
        raise ValueError(f"expected 1000 or 1024 (tqdm's unit_divisor), got {value!r}")


def _check_tail(value: Any) -> None:
    if not 1 <= value <= 65536:
        raise ValueError(f"expected 1 to 65536 (KiB), got {value!r}")
