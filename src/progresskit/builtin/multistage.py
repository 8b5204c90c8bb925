"""Multi-stage runs (FoxML, seed 002): progress folded from a JSONL log of training events.

The run's work dir holds the event log (``events.jsonl`` unless ``event_file`` says
otherwise), written by :class:`progresskit.producer.emitter.EventEmitter`, by ``progresskit listen``
or by the seed's own ``TrainingEventEmitter``: one JSON object per line with
``event_type`` (``progress``, ``stage_change``, ``target_complete``, ``run_complete``,
``error``), ``run_id`` and an ISO-8601 ``timestamp``.

Reading is incremental: the tracker keeps the byte offset of the last complete line it
folded and the folded state, so a query reads only what was appended since. A trailing
line without its newline is left for the next query; a file that shrank, was replaced
(new inode) or no longer holds the bytes last read is folded again from its start. A line
that is not a valid event is skipped and reported in ``warnings`` with its line number.

Overall progress (docs/multistage.md): each stage counts with its weight from
``stage_weights``, done stages at 100%, the current one at its last ``progress_pct``, the
others at 0; without ``stage_weights`` every stage seen so far weighs the same. A
``run_complete`` with status success makes it 100%.
"""

from __future__ import annotations

import collections
import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from progresskit.engine.history import estimate_run
from progresskit.formats.events import (
    DEFAULT_EVENT_FILE,
    EVENT_TYPES,
    RUN_OUTCOMES,
    parse_timestamp,
)
from progresskit.formats.fileio import StatKey, open_regular, parse_json, stat_key
from progresskit.model.core import CompletedItem, ProgressInfo, Status
from progresskit.model.vocabulary import canonical_status
from progresskit.plugin.config import ConfigSchema, ensure
from progresskit.plugin.hookspec import hookimpl
from progresskit.plugin.spec import TrackerSpec
from progresskit.plugin.tracker import BaseProgressTracker, Curves, Target

RUNNER_TYPE = "multi_stage"

#: Malformed lines listed one by one in ``warnings``; beyond that they are only counted.
MAX_LISTED_PROBLEMS = 10
#: Recoverable errors listed in ``warnings`` (the newest); older ones are only counted.
MAX_LISTED_ERRORS = 10
#: Bytes read per ``read`` call: a 150 MB log is folded in bounded memory.
CHUNK_BYTES = 1 << 20
#: ETA observations kept (the newest): the estimator looks at the recent pace, and the log
#: of a long run must not grow memory. Estimating costs time linear in them.
MAX_OBSERVATIONS = 256
#: An observation is kept once overall progress moved this many points (0.5%): a run of a
#: million events gives at most 200 observations, spread over the whole run.
OBSERVATION_STEP = 0.5
#: A line longer than this is skipped (and reported) rather than held in memory: no event
#: is anywhere near it, and a log without newlines must not be re-read whole on each query.
MAX_LINE_BYTES = 1 << 20
#: Bytes before the offset that must be unchanged for the log to count as only appended to.
ANCHOR_BYTES = 64
#: The name of the overall progress curve (:meth:`MultiStageProgressTracker.curves`).
PROGRESS_CURVE = "progress_pct"


class InvalidEvent(ValueError):
    """A line that is JSON but not a valid event; the message says which field and why."""


def _number(event: Mapping[str, Any], name: str, *, required: bool) -> float | None:
    value = event.get(name)
    if value is None:
        if required:
            raise InvalidEvent(f"'{name}' is missing (expected a number)")
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidEvent(f"'{name}' must be a number, got {type(value).__name__} {value!r}")
    return float(value)


def _count(event: Mapping[str, Any], name: str) -> int | None:
    value = event.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidEvent(f"'{name}' must be an integer >= 0, got {value!r}")
    return value


def _text(event: Mapping[str, Any], name: str, *, required: bool) -> str | None:
    value = event.get(name)
    if value is None or value == "":
        if required:
            raise InvalidEvent(f"'{name}' is missing (expected a non-empty string)")
        return None
    if not isinstance(value, str):
        raise InvalidEvent(f"'{name}' must be a string, got {type(value).__name__} {value!r}")
    return value


def _timestamp(event: Mapping[str, Any]) -> float | None:
    value = event.get("timestamp")
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidEvent(f"'timestamp' must be an ISO-8601 string, got {value!r}")
    try:
        return parse_timestamp(value)
    except ValueError:
        raise InvalidEvent(f"'timestamp' is not ISO-8601: {value!r}") from None


def _finite(value: float | None) -> float | None:
    """NaN or infinity (the seed's json.dumps writes them) means "no value"."""
    return value if value is not None and math.isfinite(value) else None


class _Fold:
    """The state of one log, folded event by event; a pure function of the lines given."""

    def __init__(
        self,
        pinned_run: str | None,
        weights: Mapping[str, float] | None = None,
        *,
        record: bool = False,
    ):
        self.pinned_run = pinned_run
        self.weights = weights
        #: Whether every event's figures are kept as curves (a run page's read, not a query's).
        self.record = record
        self.lines = 0
        self.problems: list[str] = []
        self.problem_count = 0
        self.unknown_types = 0
        self.first_unknown: str | None = None
        self.seen_runs: set[str] = set()
        self.other_run_events = 0
        self._reset_run(None)

    def _reset_run(self, run_id: str | None) -> None:
        self.run_id = run_id
        self.events = 0
        #: Stage -> its last progress percentage, in order of first appearance.
        self.stages: dict[str, float] = {}
        self.current_stage: str | None = None
        self.current_target: str | None = None
        #: targets_complete of the newest progress event, and completions since.
        self.base_complete: int | None = None
        self.completions_since = 0
        self.targets_total: int | None = None
        self.completed: dict[str, CompletedItem] = {}
        self.start: float | None = None
        self.newest: float | None = None
        self.outcome_word: str | None = None
        self.outcome: Status | None = None
        self.error_message: str | None = None
        self.errors: collections.deque[str] = collections.deque(maxlen=MAX_LISTED_ERRORS)
        self.error_count = 0
        #: (event time, overall %) after each event, the ETA's observations: only with
        #: stage_weights, since without them the stages still to come are unknown and
        #: the overall figure can fall. The newest ones only, so memory stays bounded.
        self.observations: collections.deque[tuple[float, float]] = collections.deque(
            maxlen=MAX_OBSERVATIONS
        )
        #: Times of the newest events of the run, whatever their kind: its rhythm, for
        #: liveness without a lease (engine/rhythm.py).
        self.event_times: collections.deque[float] = collections.deque(maxlen=MAX_OBSERVATIONS)
        #: With ``record``: metric -> (event time, value, event time) after each timed event.
        self.curves: Curves = {}

    # -- lines ----------------------------------------------------------------------------

    def line(self, raw: bytes) -> None:
        self.lines += 1
        if not raw.strip():
            return
        try:
            event = parse_json(raw, "line")
        except ValueError as exc:  # UnicodeDecodeError is a ValueError too
            self._problem(str(exc).removeprefix("line: "))
            return
        if not isinstance(event, dict):
            self._problem(f"expected a JSON object, got {type(event).__name__}")
            return
        try:
            self._event(event)
        except InvalidEvent as exc:
            self._problem(str(exc))

    def overlong(self) -> None:
        """A line longer than :data:`MAX_LINE_BYTES`, skipped unread."""
        self.lines += 1
        self._problem(f"longer than {MAX_LINE_BYTES} bytes")

    def _problem(self, reason: str) -> None:
        self.problem_count += 1
        if len(self.problems) < MAX_LISTED_PROBLEMS:
            self.problems.append(f"line {self.lines}: {reason}; line skipped")

    # -- events ---------------------------------------------------------------------------

    def _event(self, event: dict[str, Any]) -> None:
        kind = event.get("event_type")
        if not isinstance(kind, str) or not kind:
            expected = ", ".join(EVENT_TYPES)
            raise InvalidEvent(f"'event_type' must be one of {expected}, got {kind!r}")
        run_id = event.get("run_id")
        if run_id is not None and not isinstance(run_id, str):
            raise InvalidEvent(f"'run_id' must be a string, got {run_id!r}")
        when = _timestamp(event)
        handler = getattr(self, f"_on_{kind}", None) if kind in EVENT_TYPES else None
        # Handlers validate, then return the change to make: a broken line must not reset
        # anything, not even by switching runs.
        changes: Callable[[], None] | None = handler(event) if handler is not None else None
        if not self._belongs(run_id):
            self.other_run_events += 1
            return
        self.events += 1
        if when is not None:
            self.event_times.append(when)
        if when is not None:
            self.start = when if self.start is None else min(self.start, when)
            self.newest = when if self.newest is None else max(self.newest, when)
        if changes is None:
            # A newer producer's event type: not understood, but still a sign of life.
            self.unknown_types += 1
            if self.first_unknown is None:
                self.first_unknown = f"'{kind}' at line {self.lines}"
            return
        changes()
        if self.record and when is not None:
            self._record(kind, when)
        if self.weights and when is not None:
            overall = self.overall(self.weights, [])
            last = self.observations[-1][1] if self.observations else None
            if last is None or abs(overall - last) >= OBSERVATION_STEP:
                self.observations.append((when, overall))

    def _record(self, kind: str, when: float) -> None:
        """Keep the figures of the event just folded: the overall progress whenever it
        moved, and a completed target's metrics."""
        points = self.curves.setdefault(PROGRESS_CURVE, [])
        overall = self.overall(self.weights, [])
        if not points or points[-1][1] != overall:
            points.append((when, overall, when))
        if kind == "target_complete" and self.completed:
            item = next(reversed(self.completed.values()))
            for name, value in item.metrics.items():
                self.curves.setdefault(name, []).append((when, value, when))

    def _belongs(self, run_id: str | None) -> bool:
        """Whether an event of ``run_id`` is folded: the pinned run, else the newest run."""
        if run_id is None or run_id == self.run_id:
            return True
        if self.pinned_run is not None:
            if run_id != self.pinned_run:
                return False
        elif run_id in self.seen_runs:
            return False  # an earlier run, superseded by a newer one in the same file
        self.seen_runs.add(run_id)
        self.other_run_events += self.events
        self._reset_run(run_id)
        return True

    def _enter(self, stage: str) -> None:
        if stage != self.current_stage:
            if self.current_stage is not None:
                self.stages[self.current_stage] = 100.0
            self.current_stage = stage
            self.stages.setdefault(stage, 0.0)

    def _on_progress(self, event: Mapping[str, Any]) -> Callable[[], None]:
        stage = _text(event, "stage", required=True)
        pct = _number(event, "progress_pct", required=True)
        if pct is None or not math.isfinite(pct):
            raise InvalidEvent(f"'progress_pct' must be a finite number, got {pct!r}")
        target = _text(event, "current_target", required=False)
        complete = _count(event, "targets_complete")
        total = _count(event, "targets_total")
        assert stage is not None

        def apply() -> None:
            self._enter(stage)
            self.stages[stage] = min(100.0, max(0.0, pct))
            self.current_target = target
            self.base_complete, self.completions_since = complete, 0
            # The seed sends 0 for "not known yet" (its default): keep the last real total.
            if total:
                self.targets_total = total

        return apply

    def _on_stage_change(self, event: Mapping[str, Any]) -> Callable[[], None]:
        previous = _text(event, "previous_stage", required=False)
        new = _text(event, "new_stage", required=True)
        assert new is not None

        def apply() -> None:
            if previous is not None and previous in self.stages:
                self.stages[previous] = 100.0
            self._enter(new)
            self.current_target = None
            self.base_complete, self.completions_since = None, 0

        return apply

    def _on_target_complete(self, event: Mapping[str, Any]) -> Callable[[], None]:
        target = _text(event, "target", required=True)
        status = _text(event, "status", required=True)
        metrics: dict[str, float] = {}
        extra = event.get("metrics")
        if extra is not None:
            if not isinstance(extra, dict):
                raise InvalidEvent(f"'metrics' must be an object of numbers, got {extra!r}")
            for name in extra:
                number = _finite(_number(extra, name, required=False))
                if number is not None:
                    metrics[str(name)] = number
        models = _count(event, "models_trained")
        if models is not None:
            metrics["models_trained"] = float(models)
        auc = _finite(_number(event, "best_auc", required=False))
        if auc is not None:
            metrics["best_auc"] = auc
        assert target is not None and status is not None
        item = CompletedItem(target, status, metrics)

        def apply() -> None:
            # A target completed again (a retry) moves to the end with its new result.
            self.completed.pop(target, None)
            self.completed[target] = item
            self.completions_since += 1
            if self.current_target == target:
                self.current_target = None

        return apply

    def _on_run_complete(self, event: Mapping[str, Any]) -> Callable[[], None]:
        word = _text(event, "status", required=True)
        assert word is not None
        status = canonical_status("foxml", word)

        def apply() -> None:
            self.outcome_word, self.outcome = word, status
            if status is Status.FINISHED:
                self.error_message = None
                for stage in self.stages:
                    self.stages[stage] = 100.0

        return apply

    def _on_error(self, event: Mapping[str, Any]) -> Callable[[], None]:
        message = _text(event, "error_message", required=True)
        kind = _text(event, "error_type", required=False) or "unknown"
        recoverable = event.get("recoverable", True)
        if not isinstance(recoverable, bool):
            raise InvalidEvent(f"'recoverable' must be true or false, got {recoverable!r}")
        stamp = event.get("timestamp")
        at = f" at {stamp}" if stamp else ""

        def apply() -> None:
            if recoverable:
                self.error_count += 1
                self.errors.append(f"recoverable error ({kind}){at}: {message}")
            else:
                self.error_message = f"fatal error ({kind}): {message}"
                self.outcome_word, self.outcome = "error", Status.FAILED

        return apply

    # -- the answer -----------------------------------------------------------------------

    def overall(self, weights: Mapping[str, float] | None, warnings: list[str]) -> float:
        if self.outcome is Status.FINISHED:
            return 100.0
        if weights:
            unplanned = [s for s in self.stages if s not in weights]
            if unplanned:
                warnings.append(
                    f"stage(s) {', '.join(unplanned)} not in stage_weights: they do not "
                    "count towards overall progress"
                )
            total = sum(weights.values())
            done = sum(w * self.stages.get(s, 0.0) for s, w in weights.items())
            return min(100.0, done / total) if total > 0 else 0.0
        if not self.stages:
            return 0.0
        return min(100.0, sum(self.stages.values()) / len(self.stages))

    def progress(self, name: str, weights: Mapping[str, float] | None) -> ProgressInfo:
        warnings = [f"{name}: {p}" for p in self.problems]
        if self.problem_count > len(self.problems):
            warnings.append(
                f"{name}: {self.problem_count - len(self.problems)} more malformed lines skipped"
            )
        if self.error_count > len(self.errors):
            warnings.append(f"{self.error_count - len(self.errors)} earlier recoverable errors")
        warnings += self.errors
        if self.unknown_types:
            warnings.append(
                f"{self.unknown_types} events of unknown type ignored (first: {self.first_unknown})"
            )
        if self.other_run_events:
            warnings.append(
                f"{self.other_run_events} events of other runs ignored "
                f"(reporting run {self.run_id!r})"
            )
        if self.outcome is Status.UNKNOWN:
            warnings.append(
                f"run_complete status {self.outcome_word!r} is not one of "
                f"{', '.join(RUN_OUTCOMES)}"
            )
        overall = self.overall(weights, warnings)
        items_completed = None
        if self.base_complete is not None or self.completions_since:
            items_completed = (self.base_complete or 0) + self.completions_since
            if self.targets_total is not None:
                items_completed = min(items_completed, self.targets_total)
        details = {"event_file": name}
        if self.run_id is not None:
            details["run_id"] = self.run_id
        if self.stages:
            details["stages"] = ", ".join(f"{s} {p:.0f}%" for s, p in self.stages.items())
        metrics = {"events": float(self.events), "recoverable_errors": float(self.error_count)}
        if self.problem_count:
            metrics["malformed_lines"] = float(self.problem_count)
        return ProgressInfo(
            progress_percentage=overall,
            completed_epochs=None,  # stages and targets, not epochs
            runner_type=RUNNER_TYPE,
            start_time=self.start,
            last_update_time=self.newest,
            error_message=self.error_message,
            warnings=tuple(warnings),
            current_stage=self.current_stage,
            stage_progress_percentage=(
                self.stages[self.current_stage] if self.current_stage is not None else None
            ),
            current_item=self.current_target,
            items_completed=items_completed,
            items_total=self.targets_total,
            completed_items=tuple(self.completed.values()),
            elapsed_seconds=(
                self.newest - self.start
                if self.newest is not None and self.start is not None
                else None
            ),
            source_status=self.outcome_word,
            reported_status=self.outcome,
            metrics=metrics,
            details=details,
        )


class MultiStageProgressTracker(BaseProgressTracker):
    """Progress of a multi-stage run from its event log, read incrementally."""

    runner_type = RUNNER_TYPE
    curve_axis = "time"
    expected_files = (DEFAULT_EVENT_FILE,)
    # The events' own timestamps are the heartbeat; a training log written next to the
    # event log is a sign of life too (seed 001's rule).
    log_pattern = "*.log"

    def __init__(self, work_dir: str | os.PathLike[str], config: Mapping[str, Any] | None = None):
        super().__init__(work_dir, config)
        self.event_file = str(self.config.get("event_file") or DEFAULT_EVENT_FILE)
        self.path = os.path.join(self.work_dir, self.event_file)
        weights = self.config.get("stage_weights")
        self._weights = {str(k): float(v) for k, v in weights.items()} if weights else None
        self._run_filter = self.config.get("event_run_id")
        self._restart()

    def _restart(self) -> None:
        self._fold = _Fold(self._run_filter, self._weights)
        self._offset = 0
        self._inode: int | None = None
        self._anchor = b""
        #: Whether the offset is inside a line longer than MAX_LINE_BYTES (being skipped).
        self._overlong = False
        self._answer: ProgressInfo | None = None

    def get_expected_files(self) -> list[str]:
        return [self.event_file]

    def fingerprint(self) -> tuple[StatKey | None, ...]:
        # The log is the only input: an unchanged log costs one stat per query.
        return (stat_key(self.path),)

    def is_complete(self) -> bool:
        # Not "100%": without stage_weights the stages still to come are unknown, so only
        # the run's own run_complete says it is done.
        return self.get_progress().reported_status is Status.FINISHED

    def calculate_progress(self) -> ProgressInfo:
        try:
            changed = self._read_new()
        except OSError as exc:
            base = self._answer or self._fold.progress(self.event_file, self._weights)
            problem = f"cannot read {self.path}: {exc.strerror or exc}"
            return _with_warning(base, problem)
        if changed or self._answer is None:
            progress = self._fold.progress(self.event_file, self._weights)
            estimate = estimate_run(
                self._fold.observations,
                100.0 if self._weights else None,
                **self.history_args(),
                finished=progress.reported_status is Status.FINISHED,
            )
            self._answer = estimate.apply(progress)
        return self._answer

    def update_times(self) -> Sequence[float]:
        return tuple(self._fold.event_times)

    def curves(self) -> Curves:
        """The overall progress and each completed target's metrics over the whole event
        log (x: the event's time), folded afresh by the rules of a query; a last line
        still being written is left out, as a query leaves it."""
        fold = _Fold(self._run_filter, self._weights, record=True)
        try:
            fd, _st = open_regular(self.path)
        except OSError:
            return {}
        with os.fdopen(fd, "rb") as fh:
            while line := fh.readline(MAX_LINE_BYTES + 1):
                if len(line) > MAX_LINE_BYTES:
                    while line and not line.endswith(b"\n"):  # skip the rest, unread
                        line = fh.readline(CHUNK_BYTES)
                    fold.overlong()
                elif line.endswith(b"\n"):
                    fold.line(line[:-1])
        return fold.curves

    def _read_new(self) -> bool:
        """Fold the lines appended since the last read; whether anything was folded.

        Each byte is read once: a last line without its newline yet is left for the next
        read (the offset stays after the last complete line), and a line longer than
        :data:`MAX_LINE_BYTES` is skipped, reported, never accumulated."""
        fd, st = open_regular(self.path)  # a FIFO or a device named events.jsonl: refused
        with os.fdopen(fd, "rb") as fh:
            restarted = False
            if st.st_ino != self._inode or st.st_size < self._offset or not self._anchored(fh):
                restarted = self._offset > 0 or self._inode is not None
                self._restart()
                self._inode = st.st_ino
            fh.seek(self._offset)
            fold = self._fold
            pending: list[bytes] = []  # the start of a line not ended yet
            pending_size = 0
            folded = False
            while True:
                chunk = fh.read(CHUNK_BYTES)
                if not chunk:
                    break
                start = 0
                if self._overlong:
                    cut = chunk.find(b"\n")
                    if cut < 0:
                        self._consumed(chunk, len(chunk))
                        continue
                    fold.overlong()
                    folded = True
                    self._overlong = False
                    start = cut + 1
                    self._consumed(chunk, start)
                end = chunk.rfind(b"\n", start)
                if end < 0:
                    pending.append(chunk[start:])
                    pending_size += len(chunk) - start
                    if pending_size > MAX_LINE_BYTES:
                        self._offset += pending_size - len(chunk)
                        self._consumed(chunk, len(chunk))
                        pending, pending_size, self._overlong = [], 0, True
                    continue
                data = b"".join((*pending, chunk[start:end]))
                for raw in data.split(b"\n"):
                    fold.line(raw)
                folded = True
                self._offset += pending_size - start
                self._consumed(chunk, end + 1)
                pending = [chunk[end + 1 :]]
                pending_size = len(chunk) - end - 1
            return folded or restarted

    def _consumed(self, chunk: bytes, upto: int) -> None:
        """Move the offset past ``chunk[:upto]`` (``chunk`` read at the offset, less what
        the caller has accounted for already) and anchor it there."""
        self._offset += upto
        self._anchor = chunk[max(0, upto - ANCHOR_BYTES) : upto]

    def _anchored(self, fh: Any) -> bool:
        """Whether the bytes just before the offset are the ones folded last time."""
        if not self._anchor:
            return True
        fh.seek(self._offset - len(self._anchor))
        return bool(fh.read(len(self._anchor)) == self._anchor)


def _with_warning(progress: ProgressInfo, warning: str) -> ProgressInfo:
    return attrs.evolve(progress, warnings=(*progress.warnings, warning))


def _check_event_file(value: str) -> None:
    ensure(
        bool(value) and "/" not in value and os.sep not in value and value not in (".", ".."),
        "expects a file name inside the work dir (no directory part)",
    )


def _check_weights(value: dict[Any, Any]) -> None:
    ensure(bool(value), "expects a non-empty mapping of stage name to weight")
    for stage, weight in value.items():
        ensure(isinstance(stage, str) and bool(stage), f"stage name {stage!r} must be a string")
        ensure(
            isinstance(weight, (int, float))
            and not isinstance(weight, bool)
            and math.isfinite(weight)
            and weight >= 0,
            f"weight of stage '{stage}' must be a number >= 0, got {weight!r}",
        )
    ensure(sum(value.values()) > 0, "at least one stage weight must be > 0")


# -- plugin hooks ---------------------------------------------------------------------------


@hookimpl
def progresskit_addconfig(schema: ConfigSchema) -> None:
    schema.add(
        "event_file",
        str,
        default=DEFAULT_EVENT_FILE,
        help="File name, in a multi-stage run's work dir, of its JSONL event log.",
        check=_check_event_file,
    )
    schema.add(
        "stage_weights",
        (dict, type(None)),
        help="Multi-stage runs: {stage: weight} for overall progress, in stage order "
        "(default: every stage seen weighs the same).",
        check=_check_weights,
    )
    schema.add(
        "event_run_id",
        (str, type(None)),
        help="Multi-stage runs: the run_id to report when the event log holds several "
        "runs (default: the newest run).",
    )


def _claims(target: Target) -> bool:
    return target.has_file(str(target.config.get("event_file") or DEFAULT_EVENT_FILE)) or bool(
        target.use_config and target.config.get("stage_weights")
    )


tracker = TrackerSpec(
    MultiStageProgressTracker,
    claim=_claims,
    expects=f"{DEFAULT_EVENT_FILE} event log (config: event_file), or 'stage_weights' in config",
)
progresskit_detect_runner, progresskit_make_tracker, progresskit_describe_runner = tracker.hooks
