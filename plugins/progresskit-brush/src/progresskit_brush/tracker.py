"""The Brush tracker: one run's progress from its ``training_status.json`` (seed 000).

Brush replaces the file atomically, but other writers may not, and the seed's own monitor
scripts crash on a half-written file. This tracker never does: an empty, truncated or
non-JSON file is read once more after a short delay, then reported with the reason while
the last good state (if any) is kept. A field of the wrong type is a warning naming it;
the other fields are still used.
"""

from __future__ import annotations

import collections
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import attrs

from progresskit import (
    BaseProgressTracker,
    ProgressInfo,
    StatKey,
    Status,
    canonical_status,
    estimate_run,
    read_json,
    stat_key,
)
from progresskit.formats.statusfile import (
    DEFAULT_STATUS_FILENAME,
    LIVE_STATUSES,
    STATUS_VALUES,
    parse_timestamp,
    update_times_of,
)

__all__ = ["DEFAULT_REREAD_DELAY", "LOG_PATTERN", "RUNNER_TYPE", "BrushProgressTracker"]

T = TypeVar("T")

RUNNER_TYPE = "brush"
#: Seconds to wait before reading an unreadable status file a second time: long enough for
#: a writer that is not atomic to finish a file under 1 KB, short enough for a status query.
DEFAULT_REREAD_DELAY = 0.05
#: Brush writes no log of its own; its output redirected to ``brush*.log`` is a sign of life.
LOG_PATTERN = "brush*.log"
#: Reads kept as ETA observations: the estimator looks at recent pace, and a run watched
#: for days must not grow memory.
MAX_OBSERVATIONS = 128


def status_file_candidates(work_dir: str, config: Mapping[str, Any]) -> list[str]:
    """Where a run's status file may be: in the work dir, then under ``export_path``."""
    filename = config.get("status_filename") or DEFAULT_STATUS_FILENAME
    candidates = [os.path.join(work_dir, filename)]
    export = config.get("export_path")
    if export:
        under = os.path.normpath(os.path.join(work_dir, export, filename))
        if under != os.path.normpath(candidates[0]):
            candidates.append(under)
    return candidates


# -- one field of the document -----------------------------------------------------------


def _count(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return value if isinstance(value, int) and value >= 0 else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


class _Document:
    """The fields of one status document, read one by one; problems become warnings."""

    def __init__(self, data: Mapping[str, Any], where: str):
        self.data = data
        self.where = where
        self.warnings: list[str] = []

    def get(self, name: str, check: Callable[[Any], T | None], expected: str) -> T | None:
        """The value of ``name``; ``None`` (absent, null, or wrong with a warning)."""
        value = self.data.get(name)
        if value is None:
            return None
        checked = check(value)
        if checked is None:
            self.warn(name, f"expects {expected}, got {type(value).__name__} {value!r}")
        return checked

    def warn(self, name: str, problem: str) -> None:
        self.warnings.append(f"{self.where}: field '{name}' {problem}")


class BrushProgressTracker(BaseProgressTracker):
    """Progress of a Brush run from its status file."""

    runner_type = RUNNER_TYPE
    expected_files = (DEFAULT_STATUS_FILENAME,)
    log_pattern = LOG_PATTERN

    def __init__(self, work_dir: str | os.PathLike[str], config: Mapping[str, Any] | None = None):
        super().__init__(work_dir, config)
        self._filename: str = self.config.get("status_filename") or DEFAULT_STATUS_FILENAME
        self._candidates = status_file_candidates(self.work_dir, self.config)
        self._path = self._candidates[0]
        delay = self.config.get("brush_reread_delay")
        self._reread_delay = DEFAULT_REREAD_DELAY if delay is None else float(delay)
        #: The last state read from a good file: shown, with a warning, while it is unreadable.
        self._good: ProgressInfo | None = None
        #: Best evaluation seen across reads of this run, and the highest iteration read
        #: (an iteration going down means the run was restarted: history starts again).
        self._best: dict[str, float] | None = None
        self._max_iteration = -1
        #: (heartbeat, iteration) of the reads of this run, the estimator's observations;
        #: bounded, since a run may be watched for days.
        self._observed: collections.deque[tuple[float, float]] = collections.deque(
            maxlen=MAX_OBSERVATIONS
        )
        #: The file's own ``update_times`` (progresskit's StatusFileWriter writes them;
        #: Brush does not): its last writes, which a one-off query would otherwise not see.
        self._written: tuple[float, ...] = ()

    @property
    def status_path(self) -> str:
        """The status file this tracker reads."""
        return self._path

    def get_expected_files(self) -> list[str]:
        return [self._filename]

    def is_complete(self) -> bool:
        progress = self.get_progress()
        if progress.reported_status is not None:
            return progress.reported_status is Status.FINISHED
        return progress.at_full

    def fingerprint(self) -> tuple[StatKey | None, ...]:
        return (self._locate()[1],)

    def _locate(self) -> tuple[str, StatKey | None]:
        """The status file and its stat key. One stat while the file is where it was
        found; the other candidate is looked at only while the current one is missing."""
        key = stat_key(self._path)
        if key is None:
            for candidate in self._candidates:
                other = stat_key(candidate) if candidate != self._path else None
                if other is not None:
                    self._path = candidate
                    return candidate, other
        return self._path, key

    # -- reading -------------------------------------------------------------------------

    def update_times(self) -> Sequence[float]:
        # The writes the file lists (StatusFileWriter's); for Brush's own file, which lists
        # none, the writes this tracker has read: a one-off query sees one, a watch all.
        return self._written or tuple(when for when, _done in self._observed)

    def calculate_progress(self) -> ProgressInfo:
        path, key = self._locate()
        data, problem = self._read(path)
        if data is None:
            return self._unreadable(problem, path, key)
        progress = self._interpret(data, path, key)
        self._good = progress
        return progress

    def _read(self, path: str) -> tuple[dict[str, Any] | None, str]:
        """The document, or ``None`` and why not. A bad file gets a second read."""
        problem = ""
        for attempt in range(2):
            if attempt:
                time.sleep(self._reread_delay)
            try:
                data = read_json(path)
            except FileNotFoundError:
                return None, f"{path}: status file not written yet"
            except OSError as exc:
                return None, f"{path}: cannot read: {exc.strerror or exc}"
            except ValueError as exc:
                problem = str(exc)
                continue
            if isinstance(data, dict):
                return data, ""
            problem = f"{path}: expected a JSON object, got {type(data).__name__}"
        return None, problem

    def _unreadable(self, problem: str, path: str, key: StatKey | None) -> ProgressInfo:
        if self._good is not None:
            at = self._good.completed_steps
            kept = f"iteration {at}" if at is not None else "its last good read"
            return attrs.evolve(
                self._good,
                warnings=(*self._good.warnings, f"{problem}; showing the state of {kept}"),
            )
        # Nothing good read yet: say why. The file's mtime is still a sign of life (a
        # writer is at it), so a run being written reads running, an abandoned one not.
        return ProgressInfo(
            runner_type=RUNNER_TYPE,
            error_message=f"unreadable status file: {problem}",
            last_update_time=key[0] / 1e9 if key is not None else None,
            details={"status_file": path},
        )

    def _interpret(self, data: Mapping[str, Any], path: str, key: StatKey | None) -> ProgressInfo:
        doc = _Document(data, os.path.basename(path))
        iteration = doc.get("current_iteration", _count, "an integer >= 0")
        total = doc.get("total_iterations", _count, "an integer >= 0")
        percentage = self._percentage(doc, iteration, total)
        elapsed = doc.get("elapsed_time_seconds", _number, "a finite number")
        if elapsed is not None and elapsed < 0:
            doc.warn("elapsed_time_seconds", f"is negative ({elapsed:g}); ignored")
            elapsed = None
        remaining = doc.get("estimated_remaining_seconds", _number, "a finite number")
        splats = doc.get("current_splat_count", _count, "an integer >= 0")
        psnr = doc.get("last_eval_psnr", _number, "a finite number")
        ssim = doc.get("last_eval_ssim", _number, "a finite number")
        export_path = doc.get("export_path", _text, "a string")
        export_file = doc.get("current_export_file", _text, "a string")
        message = doc.get("error_message", _text, "a string")
        written = doc.get("update_times", update_times_of, "a list of Unix times") or ()
        self._written = written[-MAX_OBSERVATIONS:]
        source_status = doc.get("status", _text, "a string")
        reported: Status | None = None
        if source_status is not None:
            reported = canonical_status("brush", source_status)
            if reported is Status.UNKNOWN:
                doc.warn(
                    "status",
                    f"has the unknown value {source_status!r} "
                    f"(expected one of {', '.join(STATUS_VALUES)})",
                )
        elif "status" not in data:
            doc.warn("status", "is missing")
        heartbeat = self._heartbeat(doc, key)

        if reported is Status.FAILED and not message:
            message = f"Brush reported status {source_status!r} without a message"
        if remaining is not None and remaining < 0:
            doc.warn("estimated_remaining_seconds", f"is negative ({remaining:g}); ignored")

        latest = {k: v for k, v in (("psnr", psnr), ("ssim", ssim)) if v is not None} or None
        best = self._track_best(iteration, latest)
        details = {"status_file": path}
        if export_path is not None:
            details["export_path"] = export_path
        if export_file is not None:
            details["current_export_file"] = export_file
        stage = source_status.strip().lower() if source_status else None
        started = heartbeat - elapsed if heartbeat is not None and elapsed is not None else None
        progress = ProgressInfo(
            progress_percentage=percentage,  # None: Brush said nothing of it
            completed_epochs=None,  # Brush counts iterations, not epochs
            runner_type=RUNNER_TYPE,
            start_time=started,
            last_update_time=heartbeat,
            best_score=best,
            latest_score=latest,
            error_message=message if reported is Status.FAILED else None,
            warnings=tuple(doc.warnings),
            completed_steps=iteration,
            total_steps=total,
            current_stage=stage if stage in LIVE_STATUSES else None,
            elapsed_seconds=elapsed,
            source_eta_seconds=remaining,
            source_status=source_status,
            reported_status=reported,
            metrics={"splat_count": float(splats)} if splats is not None else {},
            details=details,
        )
        return self._with_eta(progress, reported, remaining)

    def _with_eta(
        self, progress: ProgressInfo, reported: Status | None, remaining: float | None
    ) -> ProgressInfo:
        """Our estimate (with its band) from the iterations seen over time; Brush's own figure
        stays in ``source_eta_seconds`` and stands in (banded) while ours has no measurement of
        this run's own pace."""
        if reported is Status.FAILED:
            return progress
        iteration, heartbeat = progress.completed_steps, progress.last_update_time
        if iteration is not None and heartbeat is not None:
            if self._observed and iteration < self._observed[-1][1]:
                self._observed.clear()  # restarted: the old pace says nothing
            if progress.start_time is not None and not self._observed:
                self._observed.append((progress.start_time, 0.0))
            if not self._observed or self._observed[-1] != (heartbeat, iteration):
                self._observed.append((heartbeat, float(iteration)))
        estimate = estimate_run(
            self._observed,
            progress.total_steps,
            **self.history_args(),
            finished=reported is Status.FINISHED,
            source_eta=remaining,
        )
        return estimate.apply(progress)

    @staticmethod
    def _percentage(doc: _Document, iteration: int | None, total: int | None) -> float | None:
        percentage = doc.get("progress_percentage", _number, "a finite number")
        if percentage is None and iteration is not None and total:
            return min(100.0, 100.0 * iteration / total)
        if percentage is not None and not 0.0 <= percentage <= 100.0:
            clamped = min(100.0, max(0.0, percentage))
            doc.warn(
                "progress_percentage",
                f"is {percentage:g}, outside [0, 100]; clamped to {clamped:g}",
            )
            return clamped
        return percentage

    @staticmethod
    def _heartbeat(doc: _Document, key: StatKey | None) -> float | None:
        """``last_updated`` as Unix time; the file's mtime when it is absent or invalid."""
        text = doc.get("last_updated", _text, "an ISO-8601 date-time string")
        if text is not None:
            try:
                return parse_timestamp(text)
            except ValueError as exc:
                doc.warn("last_updated", f"{exc}; using the file's modification time")
        return key[0] / 1e9 if key is not None else None

    def _track_best(
        self, iteration: int | None, latest: dict[str, float] | None
    ) -> dict[str, float] | None:
        """The best evaluation seen so far: higher PSNR wins, SSIM when PSNR is absent."""
        if iteration is not None:
            if iteration < self._max_iteration:
                self._best = None
            self._max_iteration = iteration
        if latest is not None:
            best = self._best
            metric = next((m for m in ("psnr", "ssim") if best and m in best and m in latest), None)
            if best is None or metric is None or latest[metric] > best[metric]:
                self._best = dict(latest)
        return self._best
