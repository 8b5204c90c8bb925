"""Progress of a TensorBoard run: the event files (``events.out.tfevents.*``) of one directory.

Every writer (torch's ``SummaryWriter``, tensorboardX, TensorFlow's ``tf.summary``,
Keras' and Lightning's TensorBoard loggers) appends ``Event`` records to a file named
``events.out.tfevents.<time>.<host>[.<pid>.<n>]`` in its log directory; a directory holding
such files is one run (TensorBoard's own rule for a ``--logdir``), however many files a
restart or a second writer added. The tracker folds every file incrementally
(eventfile.py) and merges what they say per tag.

What a run says and what it does not: event files have no total and no end marker (a
killed run's file simply stops growing), so the total comes from the config
(``total_steps``, or ``max_steps``) and the run is complete only when its step reaches that
total; otherwise it is running while its events keep their cadence, and the engine's rules
decide when silence makes it failed or stuck (docs/status.md).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

from progresskit import BaseProgressTracker, ProgressInfo, StatKey, estimate_run, stat_key
from progresskit_tensorboard.eventfile import (
    BEAT_SECONDS,
    MAX_BEATS,
    EventFile,
    TagState,
    is_better,
)

__all__ = [
    "EVENT_FILE_PREFIX",
    "FLUSH_KEY",
    "MAX_BYTES_PER_CALL",
    "MIN_BEATS",
    "RUNNER_TYPE",
    "TensorBoardTracker",
    "event_file_names",
    "merge_tags",
    "total_steps",
]

RUNNER_TYPE = "tensorboard"
EVENT_FILE_PREFIX = "events.out.tfevents."
#: Bytes read per query, over all of a run's files: a run of many gigabytes is caught up
#: over several queries instead of stalling a scan of thousands (the rest is read next).
MAX_BYTES_PER_CALL = 32 << 20
#: Tags whose last step and wall time are listed in ``details``; beyond that only counted.
MAX_LISTED_TAGS = 50
#: The config keys the total is read from, in order.
TOTAL_KEYS = ("total_steps", "max_steps")
#: The config key of the writers' flush interval (``SummaryWriter(flush_secs=...)``).
FLUSH_KEY = "tensorboard_flush_secs"
#: Beats (update times a flush interval apart) that make the run's rhythm; before it has
#: that many (its first minutes, or a short run), the times of its newest steps do.
MIN_BEATS = 5
#: How many of the newest steps' times make that rhythm (the flush interval floors it).
RECENT_STEPS = 16


def event_file_names(entries: Mapping[str, bool]) -> list[str]:
    """The event files among a directory's entries, in name (creation time) order."""
    prefix = EVENT_FILE_PREFIX
    return sorted(n for n, is_dir in entries.items() if not is_dir and n.startswith(prefix))


def total_steps(config: Mapping[str, Any]) -> int | None:
    """The run's total steps from its config, ``None`` when no key gives one."""
    for key in TOTAL_KEYS:
        value = config.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def merge_tags(files: Sequence[EventFile]) -> dict[str, TagState]:
    """Each tag over every file: the newest event (by wall time) gives its last step and
    latest value, the best of every file's best is its best."""
    merged: dict[str, TagState] = {}
    for event_file in files:
        for tag, state in event_file.tags.items():
            into = merged.get(tag)
            if into is None:
                merged[tag] = TagState(
                    tag, state.kind, state.last_step, state.last_wall_time, state.count,
                    state.latest, state.best, state.best_step, state.non_finite,
                )
                continue
            newer = state.last_wall_time >= into.last_wall_time
            if newer:
                into.last_step, into.last_wall_time = state.last_step, state.last_wall_time
            if state.latest is not None and (newer or into.latest is None):
                into.latest = state.latest
            if state.best is not None and is_better(tag, state.best, into.best):
                into.best, into.best_step = state.best, state.best_step
            into.count += state.count
            into.non_finite += state.non_finite
    return merged


class TensorBoardTracker(BaseProgressTracker):
    """Progress of the TensorBoard run in one directory of event files."""

    runner_type = RUNNER_TYPE
    # Writers keep no console log of their own; launch scripts commonly tee to *.log.
    log_pattern = "*.log"
    # Events carry the writer's wall time: a copy of the files keeps it.
    update_times_recorded = True

    def __init__(self, work_dir: str | os.PathLike[str], config: Mapping[str, Any] | None = None):
        super().__init__(work_dir, config)
        self._files: dict[str, EventFile] = {}
        #: Files listed but not read yet because the byte budget ran out.
        self._unread: list[str] = []
        self._answer: ProgressInfo | None = None
        #: :meth:`update_times`, as of the last read that changed anything.
        self._times: tuple[float, ...] = ()
        #: The event files' names and paths, and the listing they were taken from.
        self._names: list[str] = []
        self._paths: list[str] = []
        self._named_from: dict[str, bool] | None = None

    def _event_files(self) -> tuple[list[str], list[str]]:
        """Names and paths of the run's event files, re-derived only from a new listing
        (the fingerprint runs on every query of a watched tree of thousands)."""
        entries = self.entries()
        if entries is not self._named_from:
            self._names = event_file_names(entries)
            self._paths = [os.path.join(self.work_dir, n) for n in self._names]
            self._named_from = entries
        return self._names, self._paths

    @property
    def event_files(self) -> Mapping[str, EventFile]:
        """The run's event files by name, as last read (offsets, tags, problems)."""
        return self._files

    def fingerprint(self) -> tuple[StatKey | None, ...]:
        paths = self._event_files()[1]  # lists the work dir first when it changed
        keys = [self.listing_key(), *map(stat_key, paths)]
        if self._unread or any(f.behind for f in self._files.values()):
            # More to read than one query's budget: a key stamped now is "racy", so this
            # answer is never reused and the next query reads on.
            keys.append((time.time_ns(), 0, 0))
        return tuple(keys)

    def is_complete(self) -> bool:
        progress = self.get_progress()
        return (
            progress.total_steps is not None
            and progress.completed_steps is not None
            and progress.completed_steps >= progress.total_steps
        )

    def update_times(self) -> Sequence[float]:
        return self._times

    def _rhythm_times(self) -> tuple[float, ...]:
        # Each file's beats are BEAT_SECONDS apart; two writers' may interleave closer.
        beats = sorted({t for f in self._files.values() for t in f.beats})[-MAX_BEATS:]
        if len(beats) >= MIN_BEATS:
            return tuple(beats)
        # Too few yet (a run's first minutes, or a short run): its steps' own times, which
        # updates_buffered keeps from being judged faster than the writer writes them out.
        steps = {w for f in self._files.values() for w, _step in list(f.steps)[-RECENT_STEPS:]}
        return tuple(sorted(steps)[-RECENT_STEPS:])

    def updates_buffered(self) -> float:
        # The writer's flush interval: a healthy run's newest event on disk may be that old.
        value = self.config.get(FLUSH_KEY)
        return BEAT_SECONDS if value is None else float(value)

    def calculate_progress(self) -> ProgressInfo:
        names, paths = self._event_files()
        gone = set(self._files) - set(names)
        for name in gone:
            del self._files[name]
        budget, read, problems = MAX_BYTES_PER_CALL, 0, []
        self._unread = []
        for name, path in zip(names, paths, strict=True):
            event_file = self._files.get(name)
            if event_file is None:
                event_file = self._files[name] = EventFile(path)
            if budget <= 0:
                self._unread.append(name)
                continue
            try:
                spent = event_file.read(budget)
            except OSError as exc:
                problems.append(f"{name}: cannot read: {exc.strerror or exc}")
                continue
            budget -= spent
            read += spent
        if self._answer is not None and not (read or problems or gone):
            return self._answer
        self._times = self._rhythm_times()
        self._answer = self._progress([self._files[n] for n in names], problems)
        return self._answer

    def _progress(self, files: list[EventFile], problems: list[str]) -> ProgressInfo:
        warnings = list(problems)
        for event_file in files:
            warnings += event_file.warnings()
            if event_file.behind:
                warnings.append(
                    f"{event_file.name}: read {event_file.offset} of {event_file.size} bytes "
                    f"so far; the rest on the next queries"
                )
        if self._unread:
            unread = ", ".join(self._unread)
            warnings.append(f"not read yet (this query's byte budget is spent): {unread}")
        tags = merge_tags(files)
        steps = [f for f in files if f.max_step is not None]
        done: int | None = None
        # A writer that logged a scalar at step 0 counts from 0: its step 199 is the 200th
        # (torch, Lightning); one that logs global steps from 1 (transformers, which puts
        # only text at step 0) has done 96 at step 96.
        shift = int(any(f.min_scalar_step == 0 for f in steps))
        if steps:
            # A negative step (some writers' "no step") counts as none done.
            done = max(0, max(f.max_step for f in steps if f.max_step is not None) + shift)
        total = total_steps(self.config)
        if total is None:
            warnings.append(
                "total steps unknown: event files hold none; set total_steps (or max_steps) "
                "in progresskit.yaml"
            )
        elif done is not None and done > total:
            warnings.append(f"step {done} is past total_steps {total} from the config")
        if not files or not any(f.events for f in files):
            warnings.append("no complete event yet: the writer has not flushed its first record")
        percentage = None
        if total is not None:
            percentage = min(100.0, 100.0 * (done or 0) / total)
        walls = [f.first_wall_time for f in files if f.first_wall_time]
        lasts = [f.last_wall_time for f in files if f.last_wall_time]
        scalars = {t: s for t, s in sorted(tags.items()) if s.is_scalar}
        for tag, state in scalars.items():
            if state.non_finite:
                warnings.append(f"{tag}: {state.non_finite} NaN or infinite values (not scored)")
        details = {"event_files": str(len(files)), "tags": str(len(tags))}
        for tag, state in list(sorted(tags.items()))[:MAX_LISTED_TAGS]:
            details[f"last_step[{tag}]"] = str(state.last_step)
            details[f"wall_time[{tag}]"] = f"{state.last_wall_time:.3f}"
        progress = ProgressInfo(
            runner_type=RUNNER_TYPE,
            completed_epochs=None,
            progress_percentage=percentage,
            completed_steps=done,
            total_steps=total,
            start_time=min(walls) if walls else None,
            last_update_time=max(lasts) if lasts else None,
            latest_score={t: s.latest for t, s in scalars.items() if s.latest is not None} or None,
            best_score={t: s.best for t, s in scalars.items() if s.best is not None} or None,
            warnings=tuple(warnings),
            details=details,
        )
        observed = sorted((wall, float(step + shift)) for f in files for wall, step in f.steps)
        complete = total is not None and done is not None and done >= total
        return estimate_run(observed, total, **self.history_args(), finished=complete).apply(
            progress
        )
