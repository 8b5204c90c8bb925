"""Every first-party tracker passes the conformance suite it offers to third parties.

The comfyui plugin is not here: its runs are jobs on a ComfyUI server named in the
config, not files in a directory, so the suite's file samples do not apply (its
detection, errors and caching are tested against a replayed server in test_comfyui_*.py).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from helpers.runs import make_evaluator_run, make_trainer_run
from progresskit import EventEmitter
from progresskit.builtin import evaluator
from progresskit.testing import TrackerConformance, make_run_dir


class TestTrainerConformance(TrackerConformance):
    plugin_name = "trainer"
    runner_type = "trainer"
    config: ClassVar[Mapping[str, Any]] = {"epochs": 10}

    def make_valid_run(self, directory: Path) -> Path:
        return make_trainer_run(directory, 3)

    def make_corrupt_run(self, directory: Path) -> Path:
        run = make_trainer_run(directory, 2)
        (run / "epoch_1" / "validation_scores.json").write_text('{"aggregated": {"acc": 0.')
        return run

    def make_foreign_dir(self, directory: Path) -> Path:
        # Checkpoints and logs, but not Pylon's epoch_0/ layout.
        return make_run_dir(
            directory, {"checkpoints/epoch=0.ckpt": b"w", "train_val_0.log": "x", "epoch_1": None}
        )

    def mutate_run(self, work_dir: Path) -> None:
        make_trainer_run(work_dir, 4)


class TestEvaluatorConformance(TrackerConformance):
    plugin_name = "evaluator"
    runner_type = "evaluator"

    def make_valid_run(self, directory: Path) -> Path:
        # An evaluation still running: its log is there, its scores file is not complete.
        return make_evaluator_run(directory, raw="", log=True)

    def make_corrupt_run(self, directory: Path) -> Path:
        return make_evaluator_run(directory, raw='{"aggregated": {"acc": ')

    def make_foreign_dir(self, directory: Path) -> Path:
        return make_run_dir(directory, {"scores.json": {"acc": 1.0}, "eval_0.log": "x"})

    def mutate_run(self, work_dir: Path) -> None:
        (work_dir / "evaluation_scores.json").write_text(json.dumps({"aggregated": {"acc": 0.9}}))


class TestEvaluatorModuleConformance(TestEvaluatorConformance):
    """The same plugin given as a module, as a plugin that is not installed is tested."""

    plugin = evaluator


class TestMultiStageConformance(TrackerConformance):
    plugin_name = "multi_stage"
    runner_type = "multi_stage"
    config: ClassVar[Mapping[str, Any]] = {"stage_weights": {"ranking": 1, "training": 3}}

    def make_valid_run(self, directory: Path) -> Path:
        with EventEmitter("run-1", event_file=directory / "events.jsonl") as events:
            events.stage_change(None, "ranking")
            events.progress("ranking", 100.0, targets_total=2)
            events.stage_change("ranking", "training")
            events.progress("training", 25.0, current_target="t1", targets_total=2)
        return directory

    def make_corrupt_run(self, directory: Path) -> Path:
        self.make_valid_run(directory)
        with open(directory / "events.jsonl", "a", encoding="utf-8") as fh:
            fh.write('{"event_type": "progress", "stage": 7, "progress_pct": "x"}\n')
            fh.write("not json at all\n")
        return directory

    def make_foreign_dir(self, directory: Path) -> Path:
        return make_run_dir(directory, {"events.json": [], "logs/events.jsonl": "{}\n"})

    def mutate_run(self, work_dir: Path) -> None:
        with EventEmitter("run-1", event_file=work_dir / "events.jsonl") as events:
            events.target_complete("t1", "success", models_trained=2)
            events.progress("training", 75.0, current_target="t2", targets_complete=1,
                            targets_total=2)


class TestBrushConformance(TrackerConformance):
    plugin_name = "brush"
    runner_type = "brush"

    @staticmethod
    def _status(directory: Path, iteration: int) -> Path:
        from progresskit.formats.statusfile import format_timestamp

        document = {
            "current_iteration": iteration,
            "total_iterations": 10000,
            "progress_percentage": iteration / 100,
            "elapsed_time_seconds": iteration / 10,
            "estimated_remaining_seconds": (10000 - iteration) / 10,
            "current_splat_count": 50000,
            "last_eval_psnr": 28.5,
            "last_eval_ssim": 0.85,
            "export_path": "./output",
            "current_export_file": f"export_{iteration:05d}.ply",
            "status": "training",
            "last_updated": format_timestamp(os.stat(directory).st_mtime),
        }
        (directory / "training_status.json").write_text(json.dumps(document, indent=2))
        return directory

    def make_valid_run(self, directory: Path) -> Path:
        return self._status(directory, 1500)

    def make_corrupt_run(self, directory: Path) -> Path:
        (directory / "training_status.json").write_text('{"current_iteration": 15')
        return directory

    def make_foreign_dir(self, directory: Path) -> Path:
        return make_run_dir(directory, {"status.json": {"status": "training"}, "output": None})

    def mutate_run(self, work_dir: Path) -> None:
        self._status(work_dir, 3000)


CONSOLE_LOGS = Path(__file__).parent / "data" / "console_logs"


class TestLogConformance(TrackerConformance):
    """The log tracker, on the real captured consoles of tests/data/console_logs."""

    plugin_name = "log"
    runner_type = "log"

    def make_valid_run(self, directory: Path) -> Path:
        log = (CONSOLE_LOGS / "hf_trainer_b_killed.log").read_bytes()
        return make_run_dir(directory, {"slurm-4242.out": log})

    def make_corrupt_run(self, directory: Path) -> Path:
        # a log that is not text and holds no bar
        return make_run_dir(directory, {"train.log": bytes(range(256)) * 64})

    def make_foreign_dir(self, directory: Path) -> Path:
        log = (CONSOLE_LOGS / "hf_trainer_b_killed.log").read_bytes()
        return make_run_dir(directory, {"train.log": log, "model.ckpt": b"\x80"})

    def mutate_run(self, work_dir: Path) -> None:
        with open(work_dir / "slurm-4242.out", "ab") as fh:
            fh.write("\r 63%|██████▎   | 60/96 [00:03<00:01, 23.20it/s]".encode())
