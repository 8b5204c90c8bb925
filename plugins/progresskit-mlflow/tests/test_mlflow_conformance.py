"""The MLflow file-store tracker passes progresskit's tracker conformance suite, on the real
runs of tests/data (README.md there)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from mlflow_samples import MLRUNS, append_metric, copy_run, loss
from progresskit.testing import TrackerConformance


class TestMlflowFileStoreConformance(TrackerConformance):
    plugin_name = "mlflow"
    runner_type = "mlflow"

    def make_valid_run(self, directory: Path) -> Path:
        return copy_run(directory, "finish")

    def make_corrupt_run(self, directory: Path) -> Path:
        run = copy_run(directory, "kill")
        (run / "meta.yaml").write_text("run_id: [9413dd75\nstatus: 1\n", encoding="utf-8")
        append_metric(run, "loss", [(1796166570310, float("nan"), 21)], partial="")
        with open(run / "metrics" / "lr", "a", encoding="utf-8") as fh:
            fh.write("not a metric line\n")
        return run

    def make_foreign_dir(self, directory: Path) -> Path:
        # An experiment directory: its own meta.yaml next to runs, but no metrics/.
        experiment = directory / "mlruns" / "0"
        experiment.mkdir(parents=True)
        shutil.copy(MLRUNS / "0" / "meta.yaml", experiment / "meta.yaml")
        (experiment / "tags").mkdir()
        return experiment

    def mutate_run(self, work_dir: Path) -> None:
        now = int(time.time() * 1000)
        append_metric(work_dir, "loss", [(now, loss(40), 40)])
