"""The progresskit hooks of the Hugging Face Trainer plugin (entry point ``hf``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from progresskit import BaseProgressTracker, RunnerDescription, Target, hookimpl
from progresskit_hf.tracker import CHECKPOINT_DIR, RUNNER_TYPE, STATE_FILE, HFTrainerTracker


@hookimpl
def progresskit_detect_runner(target: Target) -> str | None:
    if target.has_file(STATE_FILE):
        return RUNNER_TYPE
    if any(is_dir and CHECKPOINT_DIR.match(name) for name, is_dir in target.entries.items()):
        return RUNNER_TYPE
    return None


@hookimpl
def progresskit_make_tracker(
    runner_type: str, work_dir: str, config: Mapping[str, Any]
) -> BaseProgressTracker | None:
    return HFTrainerTracker(work_dir, config) if runner_type == RUNNER_TYPE else None


@hookimpl
def progresskit_describe_runner() -> RunnerDescription:
    return RunnerDescription(
        RUNNER_TYPE, f"{STATE_FILE} file, or checkpoint-<step>/ directories (transformers Trainer)"
    )
