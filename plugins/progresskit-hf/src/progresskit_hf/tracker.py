"""Progress of a Hugging Face ``transformers`` Trainer run from its ``trainer_state.json``.

The Trainer writes ``TrainerState`` as JSON (``TrainerState.save_to_json``) into every
``checkpoint-<step>/`` it saves, and ``trainer.save_state()`` writes it at the top of the
output directory. The newest state wins: the top-level file or the checkpoint with the
highest step number (``checkpoint-1000`` is newer than ``checkpoint-999``, whatever their
order as text). A newest checkpoint whose state is missing or cut short (being written)
gives way to the one before it.

ETA: ``log_history`` entries carry ``step`` and ``epoch`` but no time (transformers logs
``{**logs, "step": global_step}``), so the step rate is measured from the modification
times of the checkpoints' ``trainer_state.json`` files (of the last few), fed to
progresskit's estimator (``estimate_run``: a band, the history of finished runs, a one-off
pause told from a recurring one). It needs two checkpoints written at least a second apart;
before that the ETA is unknown rather than guessed.

Only the JSON is read: ``transformers`` is not imported.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

from progresskit import (
    BaseProgressTracker,
    Estimate,
    ProgressInfo,
    StatKey,
    Status,
    estimate_run,
    read_json,
    stat_key,
)

RUNNER_TYPE = "hf"
STATE_FILE = "trainer_state.json"
CHECKPOINT_DIR = re.compile(r"checkpoint-(\d+)\Z")
#: How many of the newest checkpoints the step rate is measured over.
RATE_WINDOW = 5
#: ``log_history`` keys of an evaluation that measure its speed, not the model.
EVAL_SPEED_KEYS = frozenset({"eval_runtime", "eval_samples_per_second", "eval_steps_per_second"})
#: Keys of a training log entry reported as metrics.
TRAIN_KEYS = ("loss", "learning_rate", "grad_norm")
#: ``log_history`` keys that are no metric's curve: the axes, and the end-of-training
#: summary's totals (``train_runtime``, ...; one entry, not a curve).
NOT_CURVES = frozenset(
    {"step", "epoch", "total_flos", "train_runtime", "train_samples_per_second",
     "train_steps_per_second", "train_loss"}
)


def checkpoints(entries: Mapping[str, bool]) -> list[tuple[int, str]]:
    """``(step, name)`` of every ``checkpoint-<step>/`` directory, oldest step first."""
    found = []
    for name, is_dir in entries.items():
        match = CHECKPOINT_DIR.match(name)
        if is_dir and match:
            found.append((int(match.group(1)), name))
    return sorted(found)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _count(state: Mapping[str, Any], key: str, where: str, warnings: list[str]) -> int | None:
    value = state.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        warnings.append(f"{where}: '{key}' must be an integer >= 0, got {value!r}; ignored")
        return None
    return value


class _State:
    """One parsed ``trainer_state.json``: what the tracker needs, type-checked."""

    def __init__(self, path: str, relative: str, data: Mapping[str, Any], mtime: float):
        self.path, self.relative, self.mtime = path, relative, mtime
        self.warnings: list[str] = []
        self.global_step = _count(data, "global_step", relative, self.warnings) or 0
        self.max_steps = _count(data, "max_steps", relative, self.warnings) or 0
        self.best_global_step = _count(data, "best_global_step", relative, self.warnings)
        self.epoch = _number(data.get("epoch"))
        self.num_train_epochs = _number(data.get("num_train_epochs"))
        self.best_metric = _number(data.get("best_metric"))
        best = data.get("best_model_checkpoint")
        self.best_model_checkpoint = best if isinstance(best, str) else None
        history = data.get("log_history")
        if history is None:
            history = []
        if not isinstance(history, list):
            self.warnings.append(f"{relative}: 'log_history' must be a list; ignored")
            history = []
        self.log_history = [e for e in history if isinstance(e, dict)]
        if len(self.log_history) != len(history):
            self.warnings.append(
                f"{relative}: {len(history) - len(self.log_history)} 'log_history' entries "
                f"are not objects; skipped"
            )


class HFTrainerTracker(BaseProgressTracker):
    """Progress of a transformers Trainer output directory."""

    runner_type = RUNNER_TYPE
    expected_files = (STATE_FILE,)
    curve_axis = "step"
    # The Trainer writes no log file of its own; launch scripts commonly tee to *.log.
    log_pattern = "*.log"

    def __init__(self, work_dir: str | os.PathLike[str], config: Mapping[str, Any] | None = None):
        super().__init__(work_dir, config)
        #: The state file the last computation used (its changes must invalidate it too).
        self._used: str | None = None
        #: When the newest checkpoints were saved: the run's rhythm (update_times).
        self._saved_at: tuple[float, ...] = ()

    def is_complete(self) -> bool:
        progress = self.get_progress()
        return progress.reported_status is Status.FINISHED or (
            progress.total_steps is not None
            and progress.total_steps > 0
            and (progress.completed_steps or 0) >= progress.total_steps
        )

    def fingerprint(self) -> tuple[StatKey | None, ...]:
        # New and rotated checkpoints change the listing; the newest ones' states are
        # what is read (and timed), the older ones are never rewritten by the Trainer.
        entries = self.entries()
        join = os.path.join
        keys: list[StatKey | None] = [self.listing_key(), stat_key(join(self.work_dir, STATE_FILE))]
        for _step, name in checkpoints(entries)[-(RATE_WINDOW + 1) :]:
            keys.append(stat_key(join(self.work_dir, name, STATE_FILE)))
        if self._used is not None:
            keys.append(stat_key(self._used))
        return tuple(keys)

    def update_times(self) -> Sequence[float]:
        return self._saved_at

    def curves(self) -> dict[str, list[tuple[float, float, float | None]]]:
        """Every metric of the newest state's ``log_history`` (the loss, learning rate and
        gradient norm of each logging step, each evaluation's scores) by global step; the
        history records no time, so the points have none."""
        state = self._newest_state([])
        curves: dict[str, list[tuple[float, float, float | None]]] = {}
        for entry in [] if state is None else state.log_history:
            step = _number(entry.get("step"))
            if step is None:
                continue
            for key, raw in entry.items():
                value = _number(raw)
                if value is not None and key not in NOT_CURVES and key not in EVAL_SPEED_KEYS:
                    curves.setdefault(key, []).append((step, value, None))
        return curves

    # -- reading ---------------------------------------------------------------------------

    def _read(self, relative: str, problems: list[str]) -> _State | None:
        path = os.path.join(self.work_dir, relative)
        try:
            # progresskit's reader: regular files only, never blocks, bounded in size.
            data = read_json(path)
            mtime = os.stat(path).st_mtime
        except FileNotFoundError:
            return None  # a checkpoint still being saved: its state comes last
        except OSError as exc:
            problems.append(f"{relative}: cannot read: {exc.strerror or exc}")
            return None
        except ValueError as exc:  # empty, cut short, not JSON
            what = str(exc).removeprefix(f"{path}: ")
            problems.append(f"{relative}: {what}; still being written?")
            return None
        if not isinstance(data, dict):
            problems.append(f"{relative}: expected a JSON object, got {type(data).__name__}")
            return None
        return _State(path, relative, data, mtime)

    def _newest_state(self, problems: list[str]) -> _State | None:
        entries = self.entries()
        top = self._read(STATE_FILE, problems) if entries.get(STATE_FILE) is False else None
        newest: _State | None = None
        for _step, name in reversed(checkpoints(entries)):
            newest = self._read(f"{name}/{STATE_FILE}", problems)
            if newest is not None:
                break
        if top is None or (newest is not None and newest.global_step > top.global_step):
            return newest
        return top

    def _step_times(self, state: _State) -> list[tuple[int, float]]:
        """(global step, time it was saved) of the newest checkpoints and of ``state``."""
        points: dict[int, float] = {}
        for step, name in checkpoints(self.entries())[-(RATE_WINDOW + 1) :]:
            key = stat_key(os.path.join(self.work_dir, name, STATE_FILE))
            if key is not None:
                points[step] = key[0] / 1e9
        points.setdefault(state.global_step, state.mtime)
        return sorted(points.items())

    def _eta(self, state: _State, total: int | None, finished: bool) -> Estimate:
        """progresskit's estimator (band, history, one-off pauses: docs/eta.md) on the
        checkpoints' save times."""
        observed: list[tuple[float, float]] = []
        for step, saved in self._step_times(state):
            if observed and saved - observed[-1][0] < 1.0:
                # Closer than that: files copied into place, not trained; what came before
                # says nothing about the pace.
                observed = []
            observed.append((saved, float(step)))
        return estimate_run(observed, total, **self.history_args(), finished=finished)

    def calculate_progress(self) -> ProgressInfo:
        problems: list[str] = []
        state = self._newest_state(problems)
        self._used = state.path if state is not None else None
        self._saved_at = () if state is None else tuple(t for _s, t in self._step_times(state))
        if state is None:
            if problems:
                return ProgressInfo(runner_type=RUNNER_TYPE, error_message="; ".join(problems))
            return ProgressInfo(
                runner_type=RUNNER_TYPE,
                warnings=(f"no {STATE_FILE} yet: the Trainer writes it with its first checkpoint",),
            )
        warnings = problems + state.warnings
        history = state.log_history
        summary = next((e for e in reversed(history) if "train_runtime" in e), None)
        finished = summary is not None
        total = state.max_steps or None
        step = state.global_step
        if finished:
            percentage = 100.0
        elif total:
            percentage = min(100.0, 100.0 * step / total)
        else:
            percentage = None
            warnings.append(f"{state.relative}: 'max_steps' unknown: progress cannot be told")
        total_epochs = math.ceil(state.num_train_epochs) if state.num_train_epochs else None
        done_epochs = math.floor(state.epoch) if state.epoch else 0
        if total_epochs is not None:
            done_epochs = min(done_epochs, total_epochs)
        early = finished and total is not None and step < total

        metrics: dict[str, float] = {}
        last_train = next((e for e in reversed(history) if "loss" in e), None)
        for key in TRAIN_KEYS:
            value = _number((last_train or {}).get(key))
            if value is not None:
                metrics[key] = value
        if state.epoch is not None:
            metrics["epoch"] = state.epoch
        if state.best_metric is not None:
            metrics["best_metric"] = state.best_metric
        details = {"state_file": state.relative}
        if state.best_model_checkpoint:
            details["best_model_checkpoint"] = state.best_model_checkpoint

        progress = ProgressInfo(
            completed_epochs=done_epochs,
            progress_percentage=percentage,
            early_stopped=early,
            early_stopped_at_epoch=done_epochs if early else None,
            runner_type=RUNNER_TYPE,
            total_epochs=total_epochs,
            last_update_time=state.mtime,
            best_score=self._best_score(state),
            latest_score=_latest_eval(history),
            warnings=tuple(warnings),
            completed_steps=step,
            total_steps=total,
            elapsed_seconds=_number((summary or {}).get("train_runtime")),
            reported_status=Status.FINISHED if finished else None,
            metrics=metrics,
            details=details,
        )
        return self._eta(state, total, finished).apply(progress)

    def _best_score(self, state: _State) -> dict[str, float] | None:
        """The evaluation at the best checkpoint, or just ``best_metric`` when that
        evaluation is not in the history."""
        best_step = state.best_global_step
        if best_step is None and state.best_model_checkpoint:
            match = CHECKPOINT_DIR.match(os.path.basename(state.best_model_checkpoint.rstrip("/")))
            best_step = int(match.group(1)) if match else None
        if best_step is not None:
            at_best = [e for e in state.log_history if e.get("step") == best_step]
            scores = _latest_eval(at_best)
            if scores:
                return scores
        return {"best_metric": state.best_metric} if state.best_metric is not None else None


def _eval_scores(entry: Mapping[str, Any]) -> dict[str, float]:
    return {
        key: value
        for key, raw in entry.items()
        if key.startswith("eval_") and key not in EVAL_SPEED_KEYS
        and (value := _number(raw)) is not None
    }


def _latest_eval(history: list[dict[str, Any]]) -> dict[str, float] | None:
    """The model scores of the newest evaluation logged in ``history``."""
    for entry in reversed(history):
        scores = _eval_scores(entry)
        if scores:
            return scores
    return None
