"""Trainer runs (Pylon's BaseTrainer): ``epoch_N/`` directories holding the expected files.

Semantics kept from seed 001: epochs are counted from ``epoch_0`` upwards and only an
unbroken run counts (the first gap stops the count); an epoch is complete when its
directory holds every expected file, each non-empty; total epochs come from the config.
"""

from __future__ import annotations

import itertools
import math
import os
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from progresskit.engine.eta import Estimate
from progresskit.engine.history import estimate_run
from progresskit.errors import FormatError
from progresskit.formats.fileio import StatKey, read_json, stat_key
from progresskit.model.core import ProgressInfo
from progresskit.model.scores import flatten_scores
from progresskit.plugin.config import ConfigSchema, ensure
from progresskit.plugin.hookspec import hookimpl
from progresskit.plugin.spec import TrackerSpec
from progresskit.plugin.tracker import BaseProgressTracker, Curves, Target

RUNNER_TYPE = "trainer"
DEFAULT_EXPECTED_FILES = ("training_losses.pt", "optimizer_buffer.json", "validation_scores.json")
SCORES_FILE = "validation_scores.json"
#: The run's own saved config (Pylon writes one); read for ``epochs`` when the config lacks it.
RUN_CONFIG_FILE = "config.json"
#: The cache that the json_file sink writes by default.
PROGRESS_FILE = "progress.json"


def _check_early_stopping(value: Any) -> None:
    if isinstance(value, dict):
        unknown = set(value) - {"patience", "metric", "direction"}
        ensure(
            not unknown, f"unknown keys {sorted(unknown)} (expected patience, metric, direction)"
        )
        patience = value.get("patience")
        ensure(
            isinstance(patience, int) and not isinstance(patience, bool) and patience >= 1,
            "'patience' must be an integer >= 1",
        )
        metric = value.get("metric")
        ensure(metric is None or isinstance(metric, str), "'metric' must be a string")
        ensure(value.get("direction", "max") in ("max", "min"), "'direction' must be max or min")
    else:
        ensure(value >= 1, "patience must be >= 1")


class EarlyStopping:
    """The early-stopping settings of a trainer config, normalised."""

    def __init__(self, patience: int, metric: str, direction: str):
        self.patience = patience
        self.metric = metric
        self.maximize = direction == "max"

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> EarlyStopping | None:
        value = config.get("early_stopping")
        if value is None:
            return None
        if isinstance(value, dict):
            patience = value["patience"]
            metric = value.get("metric") or config.get("metric")
            direction = value.get("direction") or config.get("metric_direction") or "max"
        else:
            patience, metric = value, config.get("metric")
            direction = config.get("metric_direction") or "max"
        return cls(int(patience), metric, direction) if metric else None

    def stopped(self, values: list[float]) -> bool:
        """Replay ``values`` (the last patience + 1 epochs): did the counter reach patience?"""
        best, counter = values[0], 0
        for value in values[1:]:
            if value > best if self.maximize else value < best:
                best, counter = value, 0
            else:
                counter += 1
        return counter >= self.patience


class TrainerProgressTracker(BaseProgressTracker):
    """Progress of a trainer run from its ``epoch_N/`` directories."""

    runner_type = RUNNER_TYPE
    expected_files = DEFAULT_EXPECTED_FILES
    log_pattern = "train_val*.log"
    curve_axis = "epoch"

    def __init__(self, work_dir: str | os.PathLike[str], config: Mapping[str, Any] | None = None):
        super().__init__(work_dir, config)
        self._expected = list(self.config.get("expected_files") or self.expected_files)
        self._early = EarlyStopping.from_config(self.config)
        metric = self.config.get("metric") or (self._early.metric if self._early else None)
        self._metric: str | None = metric
        self._maximize = (self.config.get("metric_direction") or "max") == "max"
        # Parsed validation scores by epoch, keyed by the file's stat: a completed epoch is
        # read once, however often the run is queried.
        self._scores: dict[int, tuple[StatKey, dict[str, float] | None]] = {}
        self._completed = 0
        #: End times of the completed epochs: the run's rhythm (update_times).
        self._epoch_ends: tuple[float, ...] = ()

    def update_times(self) -> Sequence[float]:
        return self._epoch_ends

    def get_expected_files(self) -> list[str]:
        return list(self._expected)

    def get_log_pattern(self) -> str:
        return str(self.config.get("log_pattern") or self.log_pattern)

    def is_complete(self) -> bool:
        progress = self.get_progress()
        if progress.early_stopped:
            return True
        return (
            progress.total_epochs is not None
            and progress.completed_epochs is not None
            and progress.completed_epochs >= progress.total_epochs
        )

    def fingerprint(self) -> tuple[StatKey | None, ...]:
        # Completed epochs are immutable in Pylon's layout, so the state is decided by the
        # work dir's listing (new epoch dirs appear there) and, inside it, by the first
        # incomplete epoch and the small files we read. Files absent from the listing need
        # no stat: creating one changes the work dir's key.
        entries = self.entries()
        join = os.path.join
        keys: list[StatKey | None] = [self.listing_key()]
        frontier_name = f"epoch_{self._completed}"
        if entries.get(frontier_name):
            frontier = join(self.work_dir, frontier_name)
            keys.append(stat_key(frontier))
            keys.extend(stat_key(join(frontier, f)) for f in self._expected)
        for name in (PROGRESS_FILE, RUN_CONFIG_FILE):
            if name in entries:
                keys.append(stat_key(join(self.work_dir, name)))
        return tuple(keys)

    def calculate_progress(self) -> ProgressInfo:
        warnings: list[str] = []
        entries = self.entries()
        epoch_ends = self._completed_epoch_times(entries)
        self._epoch_ends = tuple(epoch_ends)
        completed = len(epoch_ends)
        self._completed = completed
        run_config, unreadable = self._run_config(entries)
        total = self._total_epochs(run_config, unreadable, warnings)

        cached = self._trusted_cache(entries, completed, epoch_ends, warnings)
        if cached is not None:
            best, latest, early_at = (
                cached.best_score,
                cached.latest_score,
                cached.early_stopped_at_epoch,
            )
            early = cached.early_stopped
        else:
            scores = self._epoch_scores(completed, warnings)
            latest = scores[-1] if scores else None
            best = self._best(scores)
            early = self._early_stopped(scores, completed, total, warnings)
            early_at = completed if early else None

        if early:
            percentage = 100.0
        elif total:
            percentage = min(100.0, 100.0 * completed / total)
        else:
            percentage = 0.0
        if total is None:
            warnings.append("total epochs unknown: set 'epochs' in the config")

        progress = ProgressInfo(
            completed_epochs=completed,
            progress_percentage=percentage,
            early_stopped=early,
            early_stopped_at_epoch=early_at,
            runner_type=RUNNER_TYPE,
            total_epochs=total,
            last_update_time=epoch_ends[-1] if epoch_ends else None,
            best_score=best,
            latest_score=latest,
            warnings=tuple(warnings),
        )
        return self._eta(epoch_ends, total, early, run_config).apply(progress)

    def _eta(
        self,
        ends: list[float],
        total: int | None,
        early: bool,
        run_config: Mapping[str, Any] | None,
    ) -> Estimate:
        """The ETA from epoch end times (epoch i done at ends[i]) and the history of the
        runs of the same config name and workload (the run's ``config.json``)."""
        finished = early or (total is not None and len(ends) >= total)
        observations = list(enumerate(ends, start=1))
        # Epochs "finishing" under a second apart are files copied or restored into place,
        # not training: they say nothing about speed.
        if len(ends) >= 2 and statistics.median(b - a for a, b in itertools.pairwise(ends)) < 1.0:
            observations = []
        return estimate_run(
            [(t, float(u)) for u, t in observations],
            total,
            **self.history_args(),
            # Pylon names a work dir after its config (configs/a/b.py -> logs/a/b): re-runs
            # of one config share a name, hence a history.
            group=os.path.basename(os.path.abspath(self.work_dir)),
            # ...but a config edited between runs (another model, batch size) is other
            # work: the saved config.json's values key the history too (docs/eta.md).
            workload=run_config,
            finished=finished,
        )

    def curves(self) -> Curves:
        """Every score of every completed epoch's ``validation_scores.json`` (x: the
        epoch's number, counted from 1; time: when the epoch completed)."""
        curves: Curves = {}
        warnings: list[str] = []
        for epoch, ended in enumerate(self._completed_epoch_times(self.entries())):
            for name, value in (self._read_scores(epoch, warnings) or {}).items():
                if math.isfinite(value):
                    curves.setdefault(name, []).append((float(epoch + 1), value, ended))
        return curves

    # -- reading ---------------------------------------------------------------------------

    def _completed_epoch_times(self, entries: Mapping[str, bool]) -> list[float]:
        """Completion time of each epoch of the unbroken run from epoch_0."""
        ends: list[float] = []
        # Plain concatenation, not os.path.join: this loop stats every expected file of every
        # epoch on a cold scan, and join's checks cost as much as the stat itself.
        prefix = os.path.join(self.work_dir, "")
        while entries.get(f"epoch_{len(ends)}"):
            directory = f"{prefix}epoch_{len(ends)}{os.sep}"
            newest = 0
            for name in self._expected:
                key = stat_key(directory + name)
                if key is None or key[1] == 0:
                    return ends
                newest = max(newest, key[0])
            ends.append(newest / 1e9)
        return ends

    def _run_config(self, entries: Mapping[str, bool]) -> tuple[dict[str, Any] | None, str]:
        """The run's own ``config.json`` (its mapping, ``""``), or ``None`` and why not
        (``""``: there is none)."""
        if entries.get(RUN_CONFIG_FILE) is not False:
            return None, ""
        try:
            run_config = read_json(os.path.join(self.work_dir, RUN_CONFIG_FILE))
        except (OSError, ValueError) as exc:
            return None, str(exc)
        if not isinstance(run_config, dict):
            return None, f"expected a JSON object, got {type(run_config).__name__}"
        return run_config, ""

    def _total_epochs(
        self, run_config: Mapping[str, Any] | None, unreadable: str, warnings: list[str]
    ) -> int | None:
        total = self.config.get("epochs")
        if total is not None:
            return int(total)
        if unreadable:
            warnings.append(f"cannot read epochs from {RUN_CONFIG_FILE}: {unreadable}")
            return None
        epochs = run_config.get("epochs") if run_config is not None else None
        if isinstance(epochs, int) and not isinstance(epochs, bool) and epochs >= 0:
            return epochs
        return None

    def _trusted_cache(
        self,
        entries: Mapping[str, bool],
        completed: int,
        epoch_ends: list[float],
        warnings: list[str],
    ) -> ProgressInfo | None:
        """``progress.json``, if it summarises exactly the epochs on disk and is newer."""
        if entries.get(PROGRESS_FILE) is not False:
            return None
        path = os.path.join(self.work_dir, PROGRESS_FILE)
        key = stat_key(path)
        # The converter loads cattrs: paid by the runs that have a progress.json only.
        from progresskit.model.converter import structure

        try:
            data = read_json(path)  # bounded, regular files only: the file is untrusted
            if not isinstance(data, dict):
                raise FormatError(f"{path}: expected a JSON object, got {type(data).__name__}")
            cached = structure(data, ProgressInfo, where=path)
        except (OSError, ValueError) as exc:  # FormatError is a ValueError
            warnings.append(f"ignored corrupt {PROGRESS_FILE}, recomputed: {exc}")
            return None
        newest = epoch_ends[-1] if epoch_ends else 0.0
        if (
            key is None
            or key[0] / 1e9 < newest
            or cached.completed_epochs != completed
            or cached.runner_type != RUNNER_TYPE
            or (
                self._metric is not None
                and completed
                and self._metric not in (cached.best_score or {})
            )
        ):
            return None
        return cached

    def _epoch_scores(self, completed: int, warnings: list[str]) -> list[dict[str, float] | None]:
        """The ``aggregated`` scores of the epochs that the score summary needs."""
        if self._metric is None:
            needed = range(max(0, completed - 1), completed)
        else:
            needed = range(completed)
        if self._early is not None:
            start = max(0, completed - self._early.patience - 1)
            needed = range(min(needed.start, start), completed)
        scores: list[dict[str, float] | None] = [None] * completed
        for epoch in needed:
            scores[epoch] = self._read_scores(epoch, warnings)
        for epoch in list(self._scores):
            if epoch >= completed:
                del self._scores[epoch]
        return scores

    def _read_scores(self, epoch: int, warnings: list[str]) -> dict[str, float] | None:
        path = os.path.join(self.work_dir, f"epoch_{epoch}", SCORES_FILE)
        key = stat_key(path)
        known = self._scores.get(epoch)
        if key is not None and known is not None and known[0] == key:
            return known[1]
        try:
            data = read_json(path)
            aggregated = data.get("aggregated", data) if isinstance(data, dict) else None
            if not isinstance(aggregated, dict):
                raise ValueError(f"{path}: expected an object with an 'aggregated' object")
            scores: dict[str, float] | None = flatten_scores(aggregated)
        except (OSError, ValueError) as exc:
            warnings.append(str(exc))
            scores = None
        if key is not None:
            self._scores[epoch] = (key, scores)
        return scores

    def _best(self, scores: list[dict[str, float] | None]) -> dict[str, float] | None:
        if self._metric is None:
            return None
        candidates = [s for s in scores if s is not None and self._metric in s]
        if not candidates:
            return None
        pick = max if self._maximize else min
        return pick(candidates, key=lambda s: s[self._metric])  # type: ignore[index]

    def _early_stopped(
        self,
        scores: list[dict[str, float] | None],
        completed: int,
        total: int | None,
        warnings: list[str],
    ) -> bool:
        early = self._early
        if early is None or completed < early.patience + 1:
            return False
        if total is not None and completed >= total:
            return False
        window = scores[completed - early.patience - 1 : completed]
        values = [s.get(early.metric) if s else None for s in window]
        if any(v is None for v in values):
            warnings.append(
                f"early stopping not judged: '{early.metric}' missing from the 'aggregated' "
                f"scores of some of the last {early.patience + 1} epochs"
            )
            return False
        return early.stopped([float(v) for v in values if v is not None])


# -- plugin hooks ---------------------------------------------------------------------------


@hookimpl
def progresskit_addconfig(schema: ConfigSchema) -> None:
    schema.add(
        "epochs",
        (int, type(None)),
        help="Total epochs of a trainer run.",
        check=lambda v: ensure(v >= 0, "must be >= 0"),
    )
    schema.add(
        "expected_files",
        (list, type(None)),
        help="Files every complete epoch_N/ holds, each non-empty "
        f"(default: {', '.join(DEFAULT_EXPECTED_FILES)}).",
        check=lambda v: ensure(
            bool(v) and all(isinstance(f, str) and f for f in v),
            "expects a non-empty list of file names",
        ),
    )
    schema.add(
        "early_stopping",
        (int, dict, type(None)),
        help="Early-stopping patience (an integer), or {patience, metric, direction}.",
        check=_check_early_stopping,
    )
    schema.add(
        "metric",
        (str, type(None)),
        help="The score key inside validation_scores.json 'aggregated' that decides "
        "the best epoch and early stopping.",
    )
    schema.add(
        "metric_direction",
        (str, type(None)),
        help="Whether a higher ('max', default) or lower ('min') metric is better.",
        check=lambda v: ensure(v in ("max", "min"), "must be 'max' or 'min'"),
    )
    schema.add(
        "log_pattern",
        (str, type(None)),
        help="Glob of a trainer's log files in the work dir (default: train_val*.log).",
    )


def _claims(target: Target) -> bool:
    return target.has_dir("epoch_0") or (
        target.use_config
        and (target.config.get("epochs") is not None or "Trainer" in target.runner_class)
    )


tracker = TrackerSpec(
    TrainerProgressTracker,
    claim=_claims,
    expects="epoch_0/ directory, or 'epochs' in config, or 'Trainer' in runner class",
)
progresskit_detect_runner, progresskit_make_tracker, progresskit_describe_runner = tracker.hooks
