"""The Hugging Face Trainer plugin (plugins/progresskit-hf), a third party in every respect.

Its sample is a real ``trainer_state.json`` (tests/data/README.md); later checkpoints
are derived from it with entries of the shapes transformers logs.
"""

from __future__ import annotations

import copy
import json
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
from progresskit_hf.tracker import HFTrainerTracker

import progresskit
from progresskit import Status
from progresskit.engine.session import Tracking
from progresskit.testing import (
    CliResult,
    TrackerConformance,
    imports_outside_public_api,
    make_run_dir,
    plugin_manager,
)

DIST = Path(__file__).resolve().parent.parent
REAL_STATE = DIST / "tests" / "data" / "checkpoint-100_trainer_state.json"
PLUGIN_SRC = DIST / "src" / "progresskit_hf"
#: The real run: 0.8 epoch at step 100.
STEPS_PER_EPOCH = 125


def real_state() -> dict[str, Any]:
    state: dict[str, Any] = json.loads(REAL_STATE.read_text())
    return state


def state_at(
    step: int,
    *,
    max_steps: int = 500,
    best_step: int | None = None,
    finished: bool = False,
    with_best_global_step: bool = True,
) -> dict[str, Any]:
    """The real state advanced to ``step``: a training log every 10 steps and an evaluation
    every 50 (eval_loss falling by 0.01 each), as the real run's arguments log them."""
    state = copy.deepcopy(real_state())
    history = [e for e in state["log_history"] if e["step"] <= step]
    for s in range(110, step + 1, 10):
        epoch = round(s / STEPS_PER_EPOCH, 4)
        history.append(
            {"epoch": epoch, "grad_norm": 0.5, "learning_rate": 0.0005 * (1 - s / max_steps),
             "loss": 1.3 - s / 1000, "step": s}
        )
        if s % 50 == 0:
            history.append(
                {"epoch": epoch, "eval_loss": round(1.29 - s / 5000, 6), "eval_runtime": 8.1,
                 "eval_samples_per_second": 6.1, "eval_steps_per_second": 1.5, "step": s}
            )
    if finished:
        history.append(
            {"epoch": round(step / STEPS_PER_EPOCH, 4), "step": step, "total_flos": 3.5e14,
             "train_loss": 0.98, "train_runtime": 795.54, "train_samples_per_second": 2.514,
             "train_steps_per_second": 0.629}
        )
    state.update(global_step=step, max_steps=max_steps, epoch=round(step / STEPS_PER_EPOCH, 4),
                 log_history=history)
    if best_step is not None:
        best = next(e["eval_loss"] for e in history if e["step"] == best_step and "eval_loss" in e)
        state.update(best_metric=best, best_model_checkpoint=f"out/checkpoint-{best_step}")
        if with_best_global_step:
            state["best_global_step"] = best_step
    return state


def dump(state: dict[str, Any]) -> str:
    # TrainerState.save_to_json
    return json.dumps(state, indent=2, sort_keys=True) + "\n"


def write_run(
    path: Path,
    steps: Iterable[int],
    *,
    seconds_apart: Iterable[float] | float = 60.0,
    age: float = 10.0,
    top: dict[str, Any] | None = None,
    **state_options: Any,
) -> Path:
    """An output_dir with ``checkpoint-<step>/`` for each step, saved ``seconds_apart``."""
    steps = list(steps)
    gaps = [seconds_apart] * len(steps) if isinstance(seconds_apart, (int, float)) else list(
        seconds_apart
    )
    now = time.time() - age
    when = now - sum(gaps[1:])
    path.mkdir(parents=True, exist_ok=True)
    for i, step in enumerate(steps):
        when += gaps[i] if i else 0.0
        ckpt = path / f"checkpoint-{step}"
        make_run_dir(ckpt, {"adapter_config.json": {"r": 32}, "README.md": "# adapter\n"})
        state_file = ckpt / "trainer_state.json"
        state_file.write_text(dump(state_at(step, **state_options)))
        for p in (*ckpt.iterdir(), ckpt):
            os.utime(p, (when, when))
    if top is not None:
        (path / "trainer_state.json").write_text(dump(top))
    return path


def progress_of(path: Path) -> progresskit.ProgressInfo:
    return HFTrainerTracker(path).get_progress()


def test_the_real_checkpoint_is_read_field_by_field(tmp_path: Path) -> None:
    run = write_run(tmp_path / "out", [100])
    p = progress_of(run)
    assert p.runner_type == "hf"
    assert (p.completed_steps, p.total_steps, p.progress_percentage) == (100, 500, 20.0)
    assert (p.completed_epochs, p.total_epochs) == (0, 4)
    assert p.metrics == {
        "loss": 1.3254374504089355,
        "learning_rate": 0.00040100000000000004,
        "grad_norm": 0.476042240858078,
        "epoch": 0.8,
    }
    assert p.latest_score == {"eval_loss": 1.2738009691238403}
    assert p.best_score is None
    assert p.eta_seconds is None  # one checkpoint: no rate yet
    assert p.details == {"state_file": "checkpoint-100/trainer_state.json"}
    assert p.warnings == () and p.error_message is None
    assert p.last_update_time == pytest.approx((run / "checkpoint-100" / "trainer_state.json")
                                               .stat().st_mtime)


def test_the_newest_checkpoint_is_chosen_by_step_number_not_text(tmp_path: Path) -> None:
    run = write_run(tmp_path / "out", [800, 900, 1000], max_steps=2000)
    p = progress_of(run)
    assert p.completed_steps == 1000
    assert p.details["state_file"] == "checkpoint-1000/trainer_state.json"
    assert p.progress_percentage == 50.0


def test_eta_is_the_step_rate_between_checkpoints_times_steps_left(tmp_path: Path) -> None:
    run = write_run(tmp_path / "out", [100, 200, 300], seconds_apart=60.0)
    p = progress_of(run)
    assert p.eta_seconds == pytest.approx(0.6 * 200, rel=1e-3)


def test_a_pause_between_checkpoints_does_not_skew_the_eta(tmp_path: Path) -> None:
    # Resumed after an hour's outage: the median of the per-step rates ignores it.
    run = write_run(tmp_path / "out", [100, 200, 300, 400], seconds_apart=[0, 60, 3660, 60])
    assert progress_of(run).eta_seconds == pytest.approx(0.6 * 100, rel=1e-3)


def test_eta_has_a_band_around_it(tmp_path: Path) -> None:
    # progresskit's estimator, not a bare median: a point with a null band read as exact.
    run = write_run(tmp_path / "out", [100, 200, 300, 400], seconds_apart=[0, 60, 3660, 60])
    p = progress_of(run)
    assert p.eta_low_seconds is not None and p.eta_high_seconds is not None
    assert p.eta_low_seconds < 60.0 < p.eta_high_seconds


def test_checkpoints_copied_into_place_give_no_eta(tmp_path: Path) -> None:
    run = write_run(tmp_path / "out", [100, 200, 300], seconds_apart=0.0)
    assert progress_of(run).eta_seconds is None


def test_the_top_level_state_after_training_is_finished(tmp_path: Path) -> None:
    run = write_run(tmp_path / "out", [400, 500], top=state_at(500, finished=True))
    p = progress_of(run)
    assert p.details["state_file"] == "trainer_state.json"
    assert p.reported_status is Status.FINISHED
    assert p.progress_percentage == 100.0 and p.eta_seconds == 0.0
    assert p.elapsed_seconds == 795.54
    assert not p.early_stopped
    status = Tracking(plugin_manager(only=["hf"])).status(str(run),
                                                                   discover_processes=False)
    assert status.status is Status.FINISHED


def test_a_newer_checkpoint_wins_over_an_older_top_level_state(tmp_path: Path) -> None:
    run = write_run(tmp_path / "out", [100, 200, 300], top=state_at(100))
    assert progress_of(run).completed_steps == 300


def test_training_that_ended_before_max_steps_is_early_stopped(tmp_path: Path) -> None:
    run = write_run(tmp_path / "out", [300], top=state_at(300, finished=True))
    p = progress_of(run)
    assert p.early_stopped and p.early_stopped_at_epoch == 2
    assert p.progress_percentage == 100.0
    assert p.completed_steps == 300


@pytest.mark.parametrize("with_best_global_step", [True, False])
def test_best_score_is_the_evaluation_at_the_best_checkpoint(
    tmp_path: Path, with_best_global_step: bool
) -> None:
    run = write_run(tmp_path / "out", [300], best_step=200,
                    with_best_global_step=with_best_global_step)
    p = progress_of(run)
    assert p.best_score == {"eval_loss": round(1.29 - 200 / 5000, 6)}
    assert p.latest_score == {"eval_loss": round(1.29 - 300 / 5000, 6)}
    assert p.metrics["best_metric"] == round(1.29 - 200 / 5000, 6)
    assert p.details["best_model_checkpoint"] == "out/checkpoint-200"


def test_best_metric_alone_when_its_evaluation_is_not_logged(tmp_path: Path) -> None:
    state = state_at(300)
    state.update(best_metric=0.91, best_model_checkpoint="out/checkpoint-270")
    run = make_run_dir(tmp_path / "out", {"trainer_state.json": dump(state)})
    assert progress_of(run).best_score == {"best_metric": 0.91}


def test_a_half_written_newest_checkpoint_gives_way_to_the_previous(tmp_path: Path) -> None:
    run = write_run(tmp_path / "out", [100, 200])
    text = dump(state_at(300))
    (run / "checkpoint-300").mkdir()
    (run / "checkpoint-300" / "trainer_state.json").write_text(text[: len(text) // 2])
    p = progress_of(run)
    assert p.completed_steps == 200
    assert p.error_message is None
    assert len(p.warnings) == 1
    assert "checkpoint-300/trainer_state.json: not valid JSON" in p.warnings[0]


def test_a_checkpoint_being_saved_is_skipped_silently(tmp_path: Path) -> None:
    run = write_run(tmp_path / "out", [100, 200])
    make_run_dir(run / "checkpoint-300", {"adapter_model.safetensors": b"\0" * 64})
    p = progress_of(run)
    assert p.completed_steps == 200 and p.warnings == ()


def test_an_unreadable_state_is_an_error_not_an_exception(tmp_path: Path) -> None:
    run = make_run_dir(tmp_path / "out", {"trainer_state.json": "[1, 2"})
    p = progress_of(run)
    assert p.error_message is not None
    assert "trainer_state.json: not valid JSON" in p.error_message


def test_values_of_the_wrong_type_are_warnings_naming_the_key(tmp_path: Path) -> None:
    state = state_at(100)
    state.update(global_step="many", log_history={"loss": 1})
    run = make_run_dir(tmp_path / "out", {"trainer_state.json": dump(state)})
    p = progress_of(run)
    assert any("'global_step' must be an integer >= 0, got 'many'" in w for w in p.warnings)
    assert any("'log_history' must be a list" in w for w in p.warnings)
    assert p.completed_steps == 0 and p.latest_score is None


def test_a_scan_finds_hf_runs_next_to_other_runs(tmp_path: Path) -> None:
    write_run(tmp_path / "root" / "hf", [100, 200])
    make_run_dir(tmp_path / "root" / "eval", {"evaluation_scores.json": {"acc": 1.0}})
    runs = {os.path.basename(r.work_dir): r for r in Tracking(plugin_manager()).scan(
        str(tmp_path / "root"), processes={})}
    assert runs["hf"].progress.runner_type == "hf"
    assert runs["hf"].progress.completed_steps == 200
    assert runs["eval"].progress.runner_type == "evaluator"


def test_status_from_the_cli_in_process_and_in_a_subprocess(
    tmp_path: Path, progresskit_cli: Callable[..., CliResult]
) -> None:
    run = write_run(tmp_path / "out", [100, 200], age=0.0)
    for in_process in (True, False):
        result = progresskit_cli("status", str(run), "--json", in_process=in_process,
                                 cwd=tmp_path)
        assert result.ret == 0, result.stderr
        [row] = result.json()["runs"]
        assert row["progress"]["runner_type"] == "hf"
        assert row["progress"]["completed_steps"] == 200
        assert row["status"] == "running"


def test_it_is_found_through_its_entry_point(
    progresskit_cli: Callable[..., CliResult],
) -> None:
    plugins = {p["name"]: p for p in progresskit_cli("plugins", "--json").json()}
    assert plugins["hf"]["origin"] == "entry point"
    assert plugins["hf"]["distribution"] == "progresskit-hf"
    assert plugins["hf"]["runner_types"] == ["hf"]


def test_it_uses_only_the_public_api_and_no_transformers() -> None:
    assert imports_outside_public_api(PLUGIN_SRC, ["transformers"]) == []


class TestHFConformance(TrackerConformance):
    plugin_name = "hf"
    runner_type = "hf"

    def make_valid_run(self, directory: Path) -> Path:
        return write_run(directory, [100, 200])

    def make_corrupt_run(self, directory: Path) -> Path:
        state = dump(state_at(100))
        return make_run_dir(directory, {"checkpoint-100/trainer_state.json": state[:300]})

    def make_foreign_dir(self, directory: Path) -> Path:
        # A Lightning-style directory: checkpoints, but not the Trainer's checkpoint-<step>/.
        return make_run_dir(
            directory,
            {"checkpoints/epoch=0-step=100.ckpt": b"w", "checkpoint-best": None,
             "state.json": {"global_step": 1}},
        )

    def mutate_run(self, work_dir: Path) -> None:
        write_run(work_dir, [300], age=0.0)


# -- liveness without a lease: the run's own checkpoint rhythm (docs/status.md) ----------


def interrupted_run(path: Path, *, age: float) -> Path:
    """A run saving every 5 steps, ~6 s apart, interrupted at step 25 of 40 ``age`` ago."""
    return write_run(path, range(5, 30, 5), seconds_apart=6.0, age=age, max_steps=40)


def test_an_interrupted_run_silent_far_beyond_its_rhythm_is_failed(tmp_path: Path) -> None:
    run = interrupted_run(tmp_path / "out", age=23 * 60)
    result = Tracking(plugin_manager()).status(str(run), discover_processes=False)
    assert result.progress.completed_steps == 25 and result.progress.total_steps == 40
    assert result.status is Status.FAILED, result.reason
    assert "no sign of life for 23m" in result.reason
    assert "it updated every ~6.0s" in result.reason


def test_the_same_silence_with_a_live_process_is_stuck(tmp_path: Path) -> None:
    run = interrupted_run(tmp_path / "out", age=23 * 60)
    me = progresskit.ProcessInfo(pid=os.getpid())
    result = Tracking(plugin_manager()).status(str(run), process=me)
    assert result.status is Status.STUCK, result.reason
    assert f"process {os.getpid()} is alive" in result.reason


def test_a_silence_within_its_rhythm_is_still_running(tmp_path: Path) -> None:
    # 30 s: five checkpoint intervals, within 7 x 6 s.
    run = interrupted_run(tmp_path / "out", age=30.0)
    result = Tracking(plugin_manager()).status(str(run), discover_processes=False)
    assert result.status is Status.RUNNING, result.reason


def test_too_few_checkpoints_to_judge_leave_sleep_time_in_force(tmp_path: Path) -> None:
    run = write_run(tmp_path / "out", [5, 10, 15], seconds_apart=6.0, age=23 * 60, max_steps=40)
    result = Tracking(plugin_manager()).status(str(run), discover_processes=False)
    assert result.status is Status.RUNNING, result.reason
    assert HFTrainerTracker(run).update_times() == ()  # nothing read yet


def test_unknown_max_steps_is_null_progress_not_zero(tmp_path: Path) -> None:
    run = write_run(tmp_path / "out", [100, 200])
    for state_file in run.glob("checkpoint-*/trainer_state.json"):
        state = json.loads(state_file.read_text())
        state["max_steps"] = 0  # what a Trainer with an iterable dataset and no max writes
        state_file.write_text(json.dumps(state))
    p = progress_of(run)
    assert p.progress_percentage is None  # issue 15: it read 0.0
    assert any("'max_steps' unknown" in w for w in p.warnings)


def test_the_curves_are_every_metric_of_the_log_history(tmp_path: Path) -> None:
    state = real_state()
    state["log_history"].append({"epoch": 0.8, "step": 100, "eval_loss": 1.2,
                                 "eval_runtime": 3.5, "eval_samples_per_second": 80.0})
    make_run_dir(tmp_path / "out", {"checkpoint-100/trainer_state.json": dump(state)})
    curves = HFTrainerTracker(str(tmp_path / "out"), {}).curves()
    logged = [e for e in state["log_history"] if "loss" in e]
    assert [(x, v) for x, v, _t in curves["loss"]] == [(e["step"], e["loss"]) for e in logged]
    assert curves["learning_rate"][0] == (10.0, 0.000491, None), "the history has no time"
    evaluations = [(e["step"], e["eval_loss"], None) for e in state["log_history"]
                   if "eval_loss" in e]
    assert curves["eval_loss"] == evaluations and evaluations[-1] == (100, 1.2, None)
    assert not {"step", "epoch", "eval_runtime", "eval_samples_per_second"} & set(curves)
    assert HFTrainerTracker.curve_axis == "step"


def test_no_state_yet_is_no_curves(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    assert HFTrainerTracker(str(tmp_path / "out"), {}).curves() == {}
