"""ETA history groups keyed by what makes runs comparable (issue 15): runner type, group name,
the run's total *and* its configured workload (a digest of the run's own configuration without
what does not change the work); ``eta_group`` overrides; history written before workloads were
keyed still serves."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from helpers.runs import make_trainer_run
from progresskit import Tracking
from progresskit.engine.eta import Basis
from progresskit.engine.history import (
    HistoryStore,
    RunRecord,
    estimate_run,
    group_name,
    record_finished_runs,
    workload_digest,
)

#: A Pylon-style run config (seed 001: model, dataset, runner, epochs).
RESNET: dict[str, Any] = {
    "model": {"class": "ResNet", "args": {"depth": 50, "name": "resnet50"}},
    "dataset": {"class": "CIFAR10", "args": {"batch_size": 128, "data_dir": "/data/cifar"}},
    "runner": {"class": "SupervisedTrainer"},
    "epochs": 10,
    "seed": 0,
    "work_dir": "logs/cifar/resnet",
}


def steady(n: int, seconds: float, start: float = 1_000_000.0) -> list[tuple[float, float]]:
    return [(start + i * seconds, float(i)) for i in range(n + 1)]


def variant(**changes: Any) -> dict[str, Any]:
    """RESNET with nested values changed: ``variant(dataset__args__batch_size=256)``."""
    config = json.loads(json.dumps(RESNET))
    for path, value in changes.items():
        *parents, leaf = path.split("__")
        node = config
        for name in parents:
            node = node[name]
        node[leaf] = value
    return config


# -- the digest -------------------------------------------------------------------------------


def test_the_digest_ignores_seeds_names_output_paths_and_key_order() -> None:
    base = workload_digest(RESNET)
    assert base is not None and len(base) == 12
    reordered = dict(reversed(list(RESNET.items())))
    assert workload_digest(reordered) == base
    for same in (
        variant(seed=1234),
        variant(work_dir="logs/cifar/resnet_rerun"),
        variant(dataset__args__data_seed=7),
        {**RESNET, "run_name": "try 3", "output_dir": "/scratch/x", "learning_rate": 0.3},
    ):
        assert workload_digest(same) == base, same
    for other in (
        variant(dataset__args__batch_size=256),
        variant(model__args__depth=101),
        variant(model__args__name="resnet101"),  # a model's name is its identity
        variant(dataset__args__data_dir="/data/imagenet"),  # an input path names the data
        variant(dataset__class="CIFAR100"),
    ):
        assert workload_digest(other) != base, other
    # Keys a YAML mapping may give as numbers; nothing left once ignored keys are gone.
    assert workload_digest({1: "a", "b": [1, 2]}) == workload_digest({"b": [1, 2], "1": "a"})
    assert workload_digest({"seed": 3, "output_dir": "x"}) is None


def test_the_digest_is_the_same_in_another_process() -> None:
    # The history is shared by processes and hosts: hash randomisation must not enter it.
    code = (
        "import json, sys\n"
        "from progresskit.engine.history import workload_digest\n"
        "print(workload_digest(json.loads(sys.argv[1])))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, json.dumps(RESNET)],
        capture_output=True, text=True, check=True, env={"PYTHONHASHSEED": "random"},
    )
    assert out.stdout.strip() == workload_digest(RESNET)
    # Pinned (sha256 of '{"batch_size":128,"model":"resnet50"}'): a change of the canonical
    # form would orphan every recorded history.
    assert workload_digest({"model": "resnet50", "batch_size": 128}) == "57e58e7bb1c0"


def test_group_names() -> None:
    assert group_name("resnet", None) == "resnet"
    assert group_name("resnet", {}) == "resnet"
    assert group_name("resnet", {"seed": 1}) == "resnet"
    assert group_name("resnet", RESNET) == f"resnet#{workload_digest(RESNET)}"


# -- estimate_run ------------------------------------------------------------------------------


def _record(workload: dict[str, Any] | None, seconds: float, work_dir: str,
            group: str = "resnet", config: dict[str, Any] | None = None) -> None:
    with record_finished_runs():
        estimate_run(steady(10, seconds), 10, runner_type="trainer", work_dir=work_dir,
                     group=group, workload=workload, config=config, finished=True)


def test_runs_of_another_workload_are_no_prior(tmp_path: Path) -> None:
    # The same config name and total, but a batch size four times larger: other work.
    _record(variant(dataset__args__batch_size=512), 240.0, str(tmp_path / "big"))
    fresh = estimate_run([], 10, runner_type="trainer", work_dir="/x", group="resnet",
                         workload=RESNET)
    assert fresh.seconds is None and fresh.basis is Basis.UNKNOWN
    # A re-run of the same work (another seed, another output dir) learns from it.
    _record(variant(seed=9, work_dir="elsewhere"), 60.0, str(tmp_path / "same"))
    again = estimate_run([], 10, runner_type="trainer", work_dir="/y", group="resnet",
                         workload=RESNET)
    assert again.basis is Basis.HISTORY and again.seconds == pytest.approx(600.0, rel=0.01)


def test_eta_group_overrides_the_workload(tmp_path: Path) -> None:
    # The user says these runs are comparable whatever their configs: one group, no digest.
    pinned = {"eta_group": "cifar-sweep"}
    _record(variant(dataset__args__batch_size=512), 60.0, str(tmp_path / "a"), config=pinned)
    est = estimate_run([], 10, runner_type="trainer", work_dir="/x", group="resnet",
                       workload=RESNET, config=pinned)
    assert est.basis is Basis.HISTORY and est.seconds == pytest.approx(600.0, rel=0.01)
    [record] = HistoryStore(str(_history_file())).runs("trainer", "cifar-sweep", units=10)
    assert record.group == "cifar-sweep"


def _history_file() -> Path:
    from progresskit.engine.history import history_path

    path = history_path()
    assert path is not None
    return path


def test_history_recorded_before_workloads_were_keyed_still_serves(tmp_path: Path) -> None:
    # A history file of an earlier version: rows keyed by the group name alone.
    store = HistoryStore(_history_file())
    steps = steady(10, 60.0, start=5_000_000.0)
    from progresskit.engine.eta import rate_profile

    store.record_many([RunRecord(
        runner_type="trainer", group="resnet", run_key=f"{tmp_path}/old@5000000.000",
        finished_at=steps[-1][0], duration_seconds=600.0, units=10.0, seconds_per_unit=60.0,
        profile=tuple(rate_profile(steps, 10.0)),
    )])
    est = estimate_run([], 10, runner_type="trainer", work_dir="/x", group="resnet",
                       workload=RESNET)
    assert est.basis is Basis.HISTORY and est.seconds == pytest.approx(600.0, rel=0.01)
    # Once runs of this very workload are recorded, they are the prior, not the old rows.
    _record(RESNET, 30.0, str(tmp_path / "new"))
    est = estimate_run([], 10, runner_type="trainer", work_dir="/x", group="resnet",
                       workload=RESNET)
    assert est.seconds == pytest.approx(300.0, rel=0.01)


# -- trackers -------------------------------------------------------------------------------


def _trainer(path: Path, config: dict[str, Any], epochs_done: int, seconds: float) -> Path:
    make_trainer_run(path, epochs_done, epoch_seconds=seconds)
    (path / "config.json").write_text(json.dumps(config))
    return path


def test_trainer_runs_are_grouped_by_their_config_json(tmp_path: Path) -> None:
    # Pylon names a work dir after its config: the same name, a config edited in between
    # (batch size 512, 4x the time per epoch) is not the same work.
    _trainer(tmp_path / "old" / "resnet", variant(dataset__args__batch_size=512), 10, 240.0)
    assert Tracking(record_history=True).status(str(tmp_path / "old" / "resnet")).status.value \
        == "finished"
    # One epoch done (a time, no interval yet): its ETA can come from history only.
    other = _trainer(tmp_path / "new" / "resnet", RESNET, 1, 60.0)
    assert Tracking().status(str(other)).progress.eta_seconds is None  # no prior of its work
    # A re-run of the old work with another seed and work dir gets the old run's pace.
    rerun = _trainer(tmp_path / "rerun" / "resnet",
                     variant(dataset__args__batch_size=512, seed=5, work_dir="x"), 1, 240.0)
    eta = Tracking().status(str(rerun)).progress.eta_seconds
    assert eta == pytest.approx(9 * 240.0, rel=0.05)


def test_progress_file_runs_are_grouped_by_their_loop(tmp_path: Path) -> None:
    from progresskit.builtin.progressfile import ProgressFileTracker
    from progresskit.formats.progressfile import PROGRESS_FILENAME

    def document(run: Path, total: int, steps: int, started: float, updated: float,
                 state: str = "running") -> None:
        run.mkdir(parents=True, exist_ok=True)
        (run / PROGRESS_FILENAME).write_text(json.dumps({
            "format": "progresskit.progress", "version": 2, "state": state, "desc": "train",
            "steps": steps, "total": total, "unit": "batch", "fraction": steps / total,
            "stage": None, "levels": [], "metrics": {}, "rate": None, "eta_seconds": None,
            "started_at": started, "updated_at": updated, "update_times": [updated],
            "ended_at": updated if state != "running" else None, "error": None,
        }))

    # A finished 10-batch loop of 100 s; its units (the fraction done) are 1 like any run's.
    short = tmp_path / "short"
    with record_finished_runs():
        tracker = ProgressFileTracker(short)
        for i in range(0, 11):
            document(short, 10, i, 1e6, 1e6 + 10.0 * i, "finished" if i == 10 else "running")
            tracker.get_progress(force_refresh=True)
    # A 10,000-batch loop of the same description learns nothing from it...
    long = tmp_path / "long"
    document(long, 10_000, 0, 2e6, 2e6)
    assert ProgressFileTracker(long).get_progress().eta_seconds is None
    # ...a re-run of the 10-batch loop does.
    again = tmp_path / "again"
    document(again, 10, 0, 3e6, 3e6)
    assert ProgressFileTracker(again).get_progress().eta_seconds == pytest.approx(100.0, rel=0.05)


def test_a_config_json_nested_hundreds_deep_does_not_break_the_run(tmp_path: Path) -> None:
    # Anyone who can write a run's directory can write its config.json: nested 900 deep
    # (json reads it), digesting it must not exhaust the stack of the status query.
    deep: Any = {"depth": 50}
    for _ in range(900):
        deep = {"model": deep}
    assert workload_digest(deep) is not None
    run = _trainer(tmp_path / "resnet", {**deep, "epochs": 10}, 3, 60.0)
    found = Tracking().status(str(run))
    assert found.status.value == "running", found.reason
    assert found.progress.total_epochs == 10 and found.progress.eta_seconds is not None
