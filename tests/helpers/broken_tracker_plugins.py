"""Deliberately broken tracker plugins: tests/test_testing.py shows that the conformance
suite fails each of them with a message telling its author what to fix."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from progresskit import (
    BaseProgressTracker,
    ProgressInfo,
    RunnerDescription,
    StatKey,
    Target,
    hookimpl,
    stat_key,
)

DATA_FILE = "job.json"


class JobTracker(BaseProgressTracker):
    """Reads ``job.json`` ({"done": N, "total": M}) trusting it blindly: raises on bad input."""

    runner_type = "greedy"

    def get_runner_type(self) -> str:
        return self.runner_type

    def get_expected_files(self) -> list[str]:
        return [DATA_FILE]

    def get_log_pattern(self) -> str:
        return "*.log"

    def calculate_progress(self) -> ProgressInfo:
        with open(os.path.join(self.work_dir, DATA_FILE), encoding="utf-8") as fh:
            data = json.load(fh)
        return ProgressInfo(
            runner_type=self.runner_type,
            completed_steps=data["done"],
            total_steps=data["total"],
            progress_percentage=100.0 * data["done"] / data["total"],
        )


class Greedy:
    """Claims every directory it is shown, and its tracker raises on corrupt input."""

    @staticmethod
    @hookimpl
    def progresskit_detect_runner(target: Target) -> str | None:
        return "greedy"

    @staticmethod
    @hookimpl
    def progresskit_make_tracker(
        runner_type: str, work_dir: str, config: Mapping[str, Any]
    ) -> BaseProgressTracker | None:
        return JobTracker(work_dir, config) if runner_type == "greedy" else None

    @staticmethod
    @hookimpl
    def progresskit_describe_runner() -> RunnerDescription:
        return RunnerDescription("greedy", f"{DATA_FILE} file")


class StaleJobTracker(JobTracker):
    """Detects properly and reads safely, but its fingerprint misses the file it reads."""

    runner_type = "stale"

    def calculate_progress(self) -> ProgressInfo:
        try:
            return super().calculate_progress()
        except (OSError, ValueError, KeyError, TypeError, ZeroDivisionError) as exc:
            return ProgressInfo(runner_type=self.runner_type, error_message=f"{DATA_FILE}: {exc}")

    def fingerprint(self) -> tuple[StatKey | None, ...]:
        # Rewriting job.json in place does not change the directory's mtime.
        return (stat_key(self.work_dir),)


class Stale:
    """A careful plugin except for its cache."""

    @staticmethod
    @hookimpl
    def progresskit_detect_runner(target: Target) -> str | None:
        return "stale" if target.has_file(DATA_FILE) else None

    @staticmethod
    @hookimpl
    def progresskit_make_tracker(
        runner_type: str, work_dir: str, config: Mapping[str, Any]
    ) -> BaseProgressTracker | None:
        return StaleJobTracker(work_dir, config) if runner_type == "stale" else None

    @staticmethod
    @hookimpl
    def progresskit_describe_runner() -> RunnerDescription:
        return RunnerDescription("stale", f"{DATA_FILE} file")
