"""The ``progress`` tracker: runs of :func:`progresskit.track` and :class:`progresskit.Progress`,
read from their ``progresskit-progress.json`` (:mod:`progresskit.formats.progressfile`).

The writer replaces the file atomically, so a half-written document comes only from a
foreign writer or a copy: it is reported as a warning while the last good state is shown.
A field of the wrong type is a warning naming it; the other fields are still used.
"""

from __future__ import annotations

import collections
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from progresskit.engine.history import estimate_run
from progresskit.formats.fileio import read_json, stat_key
from progresskit.formats.progressfile import (
    FINAL_STATES,
    PROGRESS_FILENAME,
    PROGRESS_FORMAT,
    PROGRESS_STATES,
    update_times_of,
)
from progresskit.model.core import ProgressInfo, Status
from progresskit.model.vocabulary import canonical_status
from progresskit.plugin.spec import TrackerSpec
from progresskit.plugin.tracker import BaseProgressTracker, Target

__all__ = ["RUNNER_TYPE", "ProgressFileTracker", "tracker"]

RUNNER_TYPE = "progress"
#: Reads kept as ETA observations: a run watched for days must not grow memory.
MAX_OBSERVATIONS = 128


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


class ProgressFileTracker(BaseProgressTracker):
    """Progress of a run from the document :func:`progresskit.track` writes."""

    runner_type = RUNNER_TYPE
    expected_files = (PROGRESS_FILENAME,)

    def __init__(self, work_dir: str | os.PathLike[str], config: Mapping[str, Any] | None = None):
        super().__init__(work_dir, config)
        self._path = os.path.join(self.work_dir, PROGRESS_FILENAME)
        #: The last state read from a good document, shown (with a warning) while the
        #: document is unreadable.
        self._good: ProgressInfo | None = None
        #: (write time, fraction done) of the reads of this run: the estimator's observations.
        self._observed: collections.deque[tuple[float, float]] = collections.deque(
            maxlen=MAX_OBSERVATIONS
        )
        #: The document's own ``update_times`` (version 2): its last writes, which a
        #: one-off query would otherwise never see.
        self._written: tuple[float, ...] = ()

    def is_complete(self) -> bool:
        # A loop left by break after its last step is complete, though still "running".
        progress = self.get_progress()
        return progress.reported_status is Status.FINISHED or progress.at_full

    def update_times(self) -> Sequence[float]:
        # The writes the document lists (every one, where a watch may miss some); for a
        # document of version 1, which lists none, the writes this tracker has read: a
        # one-off query sees one, a watch sees them all.
        return self._written or tuple(when for when, _done in self._observed)

    def calculate_progress(self) -> ProgressInfo:
        problem = ""
        try:
            data = read_json(self._path)
        except FileNotFoundError:
            problem = f"{self._path}: progress file not written yet"
        except OSError as exc:
            problem = f"{self._path}: cannot read: {exc.strerror or exc}"
        except ValueError as exc:  # empty, cut short, not JSON
            problem = str(exc)
        else:
            if not isinstance(data, dict) or data.get("format") != PROGRESS_FORMAT:
                problem = (
                    f'{self._path}: not a progresskit progress file (expected "format": '
                    f'"{PROGRESS_FORMAT}")'
                )
            else:
                self._good = self._interpret(data)
                return self._good
        if self._good is not None:
            kept = f"{problem}; showing the last good read"
            return attrs.evolve(self._good, warnings=(*self._good.warnings, kept))
        key = stat_key(self._path)
        return ProgressInfo(
            runner_type=RUNNER_TYPE,
            error_message=f"unreadable progress file: {problem}",
            # The file's mtime is still a sign of life: a writer is at it.
            last_update_time=key[0] / 1e9 if key is not None else None,
            details={"progress_file": self._path},
        )

    def _interpret(self, data: Mapping[str, Any]) -> ProgressInfo:
        warnings: list[str] = []
        where = PROGRESS_FILENAME

        def field(name: str, check: Any, expected: str) -> Any:
            value = data.get(name)
            if value is None:
                return None
            checked = check(value)
            if checked is None:
                warnings.append(
                    f"{where}: field '{name}' expects {expected}, got {type(value).__name__} "
                    f"{value!r}"
                )
            return checked

        def non_negative(value: Any) -> float | None:
            number = _number(value)
            return number if number is not None and number >= 0 else None

        def fraction_of(value: Any) -> float | None:
            number = _number(value)
            return number if number is not None and 0 <= number <= 1 else None

        def state_of(value: Any) -> str | None:
            return value if value in PROGRESS_STATES else None

        state = field("state", state_of, f"one of {', '.join(PROGRESS_STATES)}") or "running"
        steps = field("steps", non_negative, "a number >= 0")
        total = field("total", non_negative, "a number >= 0")
        fraction = field("fraction", fraction_of, "a number within [0, 1]")
        started = field("started_at", _number, "a Unix time")
        updated = field("updated_at", _number, "a Unix time")
        ended = field("ended_at", _number, "a Unix time")
        eta = field("eta_seconds", non_negative, "a number >= 0")
        stage = field("stage", _text, "a string")
        desc = field("desc", _text, "a string")
        unit = field("unit", _text, "a string")
        error = field("error", _text, "a string")
        times = field("update_times", update_times_of, "a list of Unix times") or ()
        self._written = times[-MAX_OBSERVATIONS:]
        metrics: dict[str, float] = {}
        raw_metrics = data.get("metrics")
        if isinstance(raw_metrics, dict):
            for name, value in raw_metrics.items():
                number = _number(value)
                if number is None:
                    warnings.append(f"{where}: metric '{name}' is not a finite number: {value!r}")
                else:
                    metrics[str(name)] = number
        elif raw_metrics is not None:
            warnings.append(f"{where}: field 'metrics' expects an object of numbers")
        levels = data.get("levels")
        inner: float | None = None
        if isinstance(levels, list) and len(levels) > 1 and isinstance(levels[-1], dict):
            # The innermost nested loop: how far the current stage has come.
            level_steps = non_negative(levels[-1].get("steps"))
            level_total = non_negative(levels[-1].get("total"))
            if level_steps is not None and level_total:
                inner = min(100.0, 100.0 * level_steps / level_total)
        finished = state == "finished"
        if fraction is None and finished:
            fraction = 1.0
        elapsed = None
        if started is not None and (ended or updated) is not None:
            elapsed = max(0.0, (ended or updated or 0.0) - started)
        details = {"progress_file": self._path}
        if desc is not None:
            details["desc"] = desc
        if unit is not None:
            details["unit"] = unit
        progress = ProgressInfo(
            runner_type=RUNNER_TYPE,
            progress_percentage=None if fraction is None else 100.0 * fraction,
            completed_steps=None if steps is None else int(steps),
            total_steps=None if total is None else int(total),
            current_stage=stage,
            stage_progress_percentage=inner,
            start_time=started,
            last_update_time=updated,
            elapsed_seconds=elapsed,
            source_eta_seconds=eta,
            source_status=state,
            reported_status=canonical_status("progress", state),
            error_message=error if state in FINAL_STATES and state != "finished" else None,
            metrics=metrics,
            details=details,
            warnings=tuple(warnings),
        )
        return self._estimate(progress, fraction, updated, started, finished)

    def _estimate(
        self,
        progress: ProgressInfo,
        fraction: float | None,
        updated: float | None,
        started: float | None,
        finished: bool,
    ) -> ProgressInfo:
        if fraction is not None and updated is not None:
            if self._observed and fraction < self._observed[-1][1]:
                self._observed.clear()  # restarted: the old pace says nothing
            if started is not None and not self._observed:
                self._observed.append((started, 0.0))
            if not self._observed or self._observed[-1] != (updated, fraction):
                self._observed.append((updated, fraction))
        # The units are the fraction done, the same for every run: what the loop is (its
        # description, unit and total) tells the runs of one job from the others.
        loop = {
            "desc": progress.details.get("desc"),
            "unit": progress.details.get("unit"),
            "total": progress.total_steps,
        }
        estimate = estimate_run(
            self._observed,
            1.0 if fraction is not None else None,  # units: the fraction of the run done
            **self.history_args(),
            workload=loop,
            finished=finished,
            source_eta=progress.source_eta_seconds,
        )
        return estimate.apply(progress)


def _claims(target: Target) -> bool:
    return target.has_file(PROGRESS_FILENAME)


tracker = TrackerSpec(
    ProgressFileTracker,
    claim=_claims,
    expects=f"{PROGRESS_FILENAME} file (written by progresskit.track() or Progress)",
)
progresskit_detect_runner, progresskit_make_tracker, progresskit_describe_runner = tracker.hooks
