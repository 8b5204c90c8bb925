"""Evaluator runs (Pylon's BaseEvaluator): done when ``evaluation_scores.json`` is written.

Progress is binary, as in seed 001: 0% until the scores file holds valid JSON, then 100%.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from progresskit.formats.fileio import read_json, stat_key
from progresskit.model.core import ProgressInfo
from progresskit.model.scores import flatten_scores
from progresskit.plugin.hookspec import hookimpl
from progresskit.plugin.tracker import BaseProgressTracker, RunnerDescription, Target

RUNNER_TYPE = "evaluator"
SCORES_FILE = "evaluation_scores.json"


class EvaluatorProgressTracker(BaseProgressTracker):
    """Progress of an evaluator run from its ``evaluation_scores.json``."""

    def get_runner_type(self) -> str:
        return RUNNER_TYPE

    def get_expected_files(self) -> list[str]:
        return [SCORES_FILE]

    def get_log_pattern(self) -> str:
        return "eval_*.log"

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
            eta_seconds=0.0 if done else None,
        )


@hookimpl
def progresskit_detect_runner(target: Target) -> str | None:
    if target.has_file(SCORES_FILE):
        return RUNNER_TYPE
    if target.use_config and "Evaluator" in target.runner_class:
        return RUNNER_TYPE
    return None


@hookimpl
def progresskit_make_tracker(
    runner_type: str, work_dir: str, config: Mapping[str, Any]
) -> BaseProgressTracker | None:
    return EvaluatorProgressTracker(work_dir, config) if runner_type == RUNNER_TYPE else None


@hookimpl
def progresskit_describe_runner() -> RunnerDescription:
    return RunnerDescription(RUNNER_TYPE, f"{SCORES_FILE} file, or 'Evaluator' in runner class")
