"""Evaluator runs (Pylon's BaseEvaluator): done when ``evaluation_scores.json`` is written.

Progress is binary, as in seed 001: 0% until the scores file holds valid JSON, then 100%.
"""

from __future__ import annotations

import math
import os

from progresskit.formats.fileio import read_json, stat_key
from progresskit.model.core import ProgressInfo
from progresskit.model.scores import flatten_scores
from progresskit.plugin.spec import TrackerSpec
from progresskit.plugin.tracker import BaseProgressTracker, Curves, Target

RUNNER_TYPE = "evaluator"
SCORES_FILE = "evaluation_scores.json"


class EvaluatorProgressTracker(BaseProgressTracker):
    """Progress of an evaluator run from its ``evaluation_scores.json``."""

    runner_type = RUNNER_TYPE
    expected_files = (SCORES_FILE,)
    log_pattern = "eval_*.log"
    curve_axis = "evaluation"

    def curves(self) -> Curves:
        """The one evaluation's scores, one point each (x 1; time: when they were written):
        an evaluator keeps no history of its own."""
        progress = self.calculate_progress()
        return {
            name: [(1.0, value, progress.last_update_time)]
            for name, value in (progress.latest_score or {}).items()
            if math.isfinite(value)
        }

    def calculate_progress(self) -> ProgressInfo:
        path = os.path.join(self.work_dir, SCORES_FILE)
        key = stat_key(path)
        scores: dict[str, float] | None = None
        warnings: tuple[str, ...] = ()
        # An empty or half-written file is not a finished evaluation: the writer may still
        # be at it. It is reported, and the status rules decide from the log's age.
        if key is not None and key[1] > 0:
            try:
                data = read_json(path)
                if not isinstance(data, dict):
                    raise ValueError(f"{path}: expected a JSON object, got {type(data).__name__}")
                aggregated = data.get("aggregated", data)
                scores = flatten_scores(aggregated if isinstance(aggregated, dict) else {})
            except (OSError, ValueError) as exc:
                warnings = (str(exc),)
        done = scores is not None
        return ProgressInfo(
            completed_epochs=1 if done else 0,
            progress_percentage=100.0 if done else 0.0,
            runner_type=RUNNER_TYPE,
            total_epochs=1,
            last_update_time=key[0] / 1e9 if key is not None and done else None,
            best_score=scores,
            latest_score=scores,
            warnings=warnings,
            # Done is 0 s left, band included; not done is unknown (binary progress).
            eta_seconds=0.0 if done else None,
            eta_low_seconds=0.0 if done else None,
            eta_high_seconds=0.0 if done else None,
        )


def _claims(target: Target) -> bool:
    return target.has_file(SCORES_FILE) or (
        target.use_config and "Evaluator" in target.runner_class
    )


tracker = TrackerSpec(
    EvaluatorProgressTracker,
    claim=_claims,
    expects=f"{SCORES_FILE} file, or 'Evaluator' in runner class",
)
progresskit_detect_runner, progresskit_make_tracker, progresskit_describe_runner = tracker.hooks
