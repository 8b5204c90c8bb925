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
from collections.abc import Mapping
from typing import Any

import attrs

from progresskit.engine.logs import (
    DEFAULT_LOG_FILES,
    DEFAULT_TAIL_KB,
    DEFAULT_UNIT_DIVISOR,
    LOG_RUNNER_TYPE,
    LOOKBACK_TAILS,
    log_globs,
    log_tail_for,
    progress_from_log,
)
from progresskit.formats.fileio import StatKey
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
        self._read_keys: tuple[StatKey | None, ...] | None = None
        #: Log name -> the stat key the cache check of this get_progress call just took:
        #: what calculate_progress then reads under, at no stat of its own.
        self._checked: dict[str, StatKey | None] | None = None

    def get_progress(self, force_refresh: bool = False) -> ProgressInfo:
        # Only a read or check made by this call may key its cache or spare a stat.
        self._read_keys = self._checked = None
        return super().get_progress(force_refresh)

    def fingerprint(self) -> tuple[StatKey | None, ...]:
        if self._read_keys is not None:
            # Asked right after calculate_progress (get_progress keys its cache by it): the
            # keys it read under, taken before reading, so a write during the read shows as
            # a change at the next query.
            keys, self._read_keys = self._read_keys, None
            return keys
        entries = self.entries()
        keys = self.tail.fingerprint(entries)
        # get_progress's cache check: when a log changed, calculate_progress comes next and
        # reads under these keys (taken before it reads, as a cache key must be), so a
        # growing log costs one stat of it and of the work dir per query, not two.
        self._checked = dict(zip(self.tail.names(entries), keys, strict=True))
        return (self.listing_key(), *keys)

    def last_log_update(self) -> float | None:
        # Every log the globs name is a sign of life, not only log_pattern's "*.log".
        keys = [k for k in self.tail.fingerprint(self.entries()) if k is not None]
        return max(k[0] for k in keys) / 1e9 if keys else None

    def calculate_progress(self) -> ProgressInfo:
        checked, self._checked = self._checked, None
        entries = self.listing() if checked is not None else self.entries()
        newest = self.tail.newest(entries, checked)
        self._read_keys = (self.listing_key(), *self.tail.keys)
        if newest is None:
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
        name, reading, mtime = newest
        progress = progress_from_log(RUNNER_TYPE, reading, name, mtime)
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
