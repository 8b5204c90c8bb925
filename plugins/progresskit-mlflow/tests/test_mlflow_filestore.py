"""MLflow's file store (mlruns/): the real finished, failed, killed and FINISHED-after-a-crash
runs, a growing run, a run killed while RUNNING (mlflow#3932), a meta.yaml being rewritten."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from progresskit_mlflow.filestore import FileStoreRunTracker

from mlflow_samples import EXPERIMENT, FILE_RUNS, append_metric, cadence, copy_mlruns, copy_run
from progresskit import ProcessInfo, Status, Tracking
from progresskit.testing import backdate_tree, plugin_manager

#: When the last sample run ended (fail_nowith's end_time), on the generating machine's clock.
SAMPLES_END = 1796166573.502


def tracking(**config: object) -> Tracking:
    return Tracking(plugin_manager(only=["mlflow"]), config=config or None)


def test_a_store_lists_each_run_once_with_its_status(tmp_path: Path) -> None:
    mlruns = copy_mlruns(tmp_path)
    # Two hours after the runs (the samples' own clock), so that they stay this age.
    result = tracking(sleep_time=3600).scan(str(mlruns), processes={}, now=SAMPLES_END + 7200)
    by_run = {Path(r.work_dir).name: r for r in result}
    assert sorted(by_run) == sorted(FILE_RUNS.values())  # no experiment is a run
    assert result.unrecognised == []
    status = {outcome: by_run[run_id] for outcome, run_id in FILE_RUNS.items()}

    finish = status["finish"]
    assert finish.status is Status.FINISHED, finish.reason
    assert finish.progress.source_status == "FINISHED"
    assert (finish.progress.completed_steps, finish.progress.total_steps) == (39, 40)
    assert finish.progress.completed_epochs is None  # no `epoch` metric: unknown, not 0
    assert finish.progress.metrics == {
        "final_loss": 0.355685178966284, "loss": 0.355685178966284, "lr": 1.541333133436018e-06
    }
    assert finish.progress.details["params.steps"] == "40"
    assert finish.progress.details["experiment"] == "formats-demo"
    assert finish.progress.details["run_name"] == "run-finish"
    assert finish.progress.start_time == 1796166560.860
    assert finish.progress.elapsed_seconds == pytest.approx(2.143)

    fail = status["fail"]
    assert fail.status is Status.FAILED and fail.progress.source_status == "FAILED"
    assert fail.cause is not None and fail.cause.kind == "error"
    assert fail.progress.completed_steps == 25

    # Killed by SIGKILL: MLflow still says RUNNING; hours of silence and no process.
    kill = status["kill"]
    assert kill.status is Status.FAILED, kill.reason
    assert kill.progress.source_status == "RUNNING"
    assert "no sign of life for 2h 0m; it updated every ~53ms" in kill.reason
    assert kill.progress.completed_steps == 20
    assert kill.last_activity == pytest.approx(1796166570.258)

    # Died of an uncaught exception without `with`: MLflow's atexit handler said FINISHED.
    nowith = status["fail_nowith"]
    assert nowith.status is Status.FINISHED
    assert any("recorded FINISHED at step 25 of 40" in w for w in nowith.progress.warnings)


def test_a_killed_run_is_failed_by_its_own_rhythm_not_after_a_day(tmp_path: Path) -> None:
    # The real kill logged a step every ~53 ms for one second. MLflow's timestamps are its
    # own records, which the copy kept: a fast rhythm, not files copied into place. Silent
    # past the rule's floor (10 s) with no process, it is failed, where sleep_time (a day
    # by default) would have left it running.
    run = copy_run(tmp_path, "kill")
    last = 1796166570.258
    soon = tracking().status(str(run), discover_processes=False, now=last + 5)
    assert soon.status is Status.RUNNING, soon.reason
    quiet = tracking().status(str(run), discover_processes=False, now=last + 15)
    assert quiet.status is Status.FAILED, quiet.reason
    assert "no sign of life for 15s; it updated every ~53ms" in quiet.reason
    assert quiet.progress.source_status == "RUNNING"


def test_running_forever_after_its_cadence_stopped_is_failed_or_stuck(tmp_path: Path) -> None:
    """mlflow#3932: killed at step 60 of a run logging every 2 s; MLflow says RUNNING."""
    run = copy_run(tmp_path, "kill")
    now = time.time()
    killed_at = int((now - 300) * 1000)  # five minutes of silence
    append_metric(run, "loss", cadence(21, 40, last_ms=killed_at, every_ms=2000))
    backdate_tree(run, 300)

    result = tracking().status(str(run), discover_processes=False, now=now)
    assert result.status is Status.FAILED, result.reason
    assert result.progress.source_status == "RUNNING"
    assert "it updated every ~2.0s" in result.reason and "no process" in result.reason
    assert result.progress.eta_seconds is None  # no ETA for a dead run

    me = ProcessInfo(pid=os.getpid())
    alive = tracking().status(str(run), process=me, now=now)
    assert alive.status is Status.STUCK, alive.reason

    # The same run seen while it still logs: running, with an ETA from its pace.
    fresh = tracking().status(str(run), discover_processes=False, now=killed_at / 1000 + 3)
    assert fresh.status is Status.RUNNING, fresh.reason
    assert fresh.progress.eta_seconds is not None


def test_a_growing_run_is_read_from_where_it_was(tmp_path: Path) -> None:
    run = copy_run(tmp_path, "kill")
    tracker = FileStoreRunTracker(str(run), {})
    first = tracker.get_progress()
    assert first.completed_steps == 20
    offset = tracker._metrics["loss"].offset
    assert offset == (run / "metrics" / "loss").stat().st_size

    now = int(time.time() * 1000)
    # A value still being written (no newline yet) is not read.
    append_metric(run, "loss", cadence(21, 3, last_ms=now, every_ms=50), partial=f"{now + 50} 0.8")
    grown = tracker.get_progress()
    assert grown.completed_steps == 23
    assert grown.metrics["loss"] == pytest.approx(2.5 * 2.718281828459045 ** (-23 / 20))
    metric = tracker._metrics["loss"]
    assert metric.lines == 24 and metric.offset > offset
    assert metric.bad_lines == 0

    append_metric(run, "loss", [], partial="4 24\n")  # the rest of that line
    assert tracker.get_progress().completed_steps == 24
    assert tracker._metrics["loss"].lines == 25
    assert tracker.get_progress().warnings == ()


def test_meta_yaml_being_rewritten_keeps_the_last_good_reading(tmp_path: Path) -> None:
    run = copy_run(tmp_path, "kill")
    tracker = FileStoreRunTracker(str(run), {})
    assert tracker.get_progress().source_status == "RUNNING"
    meta = run / "meta.yaml"
    text = meta.read_text()
    for torn in ("", text[: text.index("run_id")]):  # truncated, then cut short
        meta.write_text(torn, encoding="utf-8")
        progress = tracker.get_progress()
        assert progress.source_status == "RUNNING"
        assert progress.error_message is None
        assert any("meta.yaml" in w and "showing what it said before" in w
                   for w in progress.warnings), progress.warnings
    meta.write_text(text.replace("status: 1", "status: 3").replace(
        "end_time: null", "end_time: 1796166570300"), encoding="utf-8")
    done = tracker.get_progress()
    assert done.source_status == "FINISHED"
    assert not any("meta.yaml" in w for w in done.warnings), done.warnings


def test_a_run_with_a_status_mlflow_does_not_have_says_so(tmp_path: Path) -> None:
    run = copy_run(tmp_path, "finish")
    meta = run / "meta.yaml"
    meta.write_text(meta.read_text().replace("status: 3", "status: 7"), encoding="utf-8")
    result = tracking().status(str(run), discover_processes=False)
    assert result.progress.reported_status is None
    assert result.progress.error_message is not None
    assert "status 7: not an MLflow run status" in result.progress.error_message


def test_one_broken_run_does_not_hide_the_others(tmp_path: Path) -> None:
    mlruns = copy_mlruns(tmp_path)
    broken = mlruns / EXPERIMENT / FILE_RUNS["fail"] / "meta.yaml"
    broken.write_text("{{{", encoding="utf-8")
    result = tracking().scan(str(mlruns), processes={}, now=SAMPLES_END + 60)
    by_run = {Path(r.work_dir).name: r for r in result}
    assert len(by_run) == 4
    assert by_run[FILE_RUNS["finish"]].status is Status.FINISHED
    bad = by_run[FILE_RUNS["fail"]].progress
    assert bad.error_message is not None and "meta.yaml: not valid YAML" in bad.error_message


def test_a_metric_key_with_slashes_is_a_subdirectory(tmp_path: Path) -> None:
    # FileStore._get_metric_path joins the key to metrics/: "val/loss" is metrics/val/loss.
    run = copy_run(tmp_path, "finish")
    (run / "metrics" / "val").mkdir()
    (run / "metrics" / "val" / "loss").write_text(
        "1796166562949 0.41 39\n", encoding="utf-8")
    tracker = FileStoreRunTracker(str(run), {})
    assert tracker.get_progress().metrics["val/loss"] == 0.41
    backdate_tree(run, 3600)
    before = tracker.get_progress()
    with open(run / "metrics" / "val" / "loss", "a", encoding="utf-8") as fh:
        fh.write("1796166563001 0.39 40\n")
    after = tracker.get_progress()  # the nested file's change is noticed
    assert (before.metrics["val/loss"], after.metrics["val/loss"]) == (0.41, 0.39)
    assert after.completed_steps == 40
