"""The Lightning plugin (plugins/progresskit-lightning), a third party in every respect.

Every run here is a real one that lightning 2.6.6 wrote (tests/data/README.md), restored
with its recorded mtimes (lightning_samples.py); "growing", "resumed" and "torn" runs are real files
cut or recombined, never written by hand.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from progresskit_lightning.metrics import MetricsFile, Summary
from progresskit_lightning.tracker import LightningTracker

import progresskit
from lightning_samples import DATA, real_times, restore
from progresskit import Status, Tracking
from progresskit.testing import (
    CliResult,
    TrackerConformance,
    imports_outside_public_api,
    make_run_dir,
    plugin_manager,
)

PLUGIN_SRC = Path(__file__).resolve().parent.parent / "src" / "progresskit_lightning"
CSV_RUN = "out/csv"
VERSION = "out/csv/version_0"
REAL_METRICS = (DATA / "a_completed" / VERSION / "metrics.csv").read_text()
REAL_LINES = REAL_METRICS.splitlines(keepends=True)


def csv_after(rows: int) -> str:
    """metrics.csv as CSVLogger left it after its first ``rows`` rows: the header is the
    sorted union of the keys logged so far (a new key rewrites the file), empty cells
    for keys a row did not log. Projected from the real final file."""
    header = REAL_LINES[0].strip().split(",")
    table = [dict(zip(header, line.strip().split(","), strict=True)) for line in REAL_LINES[1:]]
    kept = table[:rows]
    keys = sorted({k for row in kept for k, v in row.items() if v} | {"epoch", "step"})
    lines = [",".join(keys)] + [",".join(row[k] for k in keys) for row in kept]
    return "\n".join(lines) + "\n"


def summary_of(text: str, tmp_path: Path) -> Summary:
    """What a fresh reader makes of ``text``."""
    path = tmp_path / f"fresh-{len(text)}.csv"
    path.write_text(text)
    summary = MetricsFile(str(path), "metrics.csv").read()
    assert summary is not None
    return summary


def progress_of(path: Path, **config: object) -> progresskit.ProgressInfo:
    return LightningTracker(path, config).get_progress()


def status_of(path: Path, **config: object) -> progresskit.RunStatus:
    values = {"runner_type": "lightning", **config} if config else None
    return Tracking(plugin_manager(), config=values).status(str(path), discover_processes=False)


# -- the real runs, field by field ------------------------------------------------------


def test_a_completed_run_with_max_epochs_is_finished(tmp_path: Path) -> None:
    run = restore("a_completed", tmp_path / "a") / CSV_RUN
    p = progress_of(run, max_epochs=3)
    assert (p.completed_epochs, p.total_epochs) == (3, 3)
    assert (p.completed_steps, p.total_steps) == (120, 120)  # 40 steps an epoch
    assert p.progress_percentage == 100.0
    assert p.reported_status is Status.FINISHED
    assert p.metrics == {
        "train_loss_epoch": 2.2503185272216797,
        "train_loss_step": 2.2285890579223633,
        "val_acc": 0.1015625,
        "val_loss": 2.336544990539551,
    }
    assert p.latest_score == {"val_acc": 0.1015625, "val_loss": 2.336544990539551}
    # What the run itself printed: best_model_path: .../epoch=2-step=100.ckpt
    assert p.details == {
        "version": "version_0",
        "experiment": ".",
        "versions": "version_0",
        "metrics_file": "version_0/metrics.csv",
        "latest_checkpoint": "version_0/checkpoints/epoch=2-step=100.ckpt",
        "best_checkpoint": "version_0/checkpoints/epoch=2-step=100.ckpt",
    }
    assert p.warnings == () and p.error_message is None
    times = real_times("a_completed")
    assert p.start_time == pytest.approx(times[f"{VERSION}/hparams.yaml"], abs=0.5)
    assert p.last_update_time == pytest.approx(times[f"{VERSION}/metrics.csv"], abs=0.5)
    result = status_of(run, max_epochs=3)
    assert result.status is Status.FINISHED, result.reason


def test_update_times_are_the_runs_own_writes(tmp_path: Path) -> None:
    run = restore("a_completed", tmp_path / "a") / CSV_RUN
    tracker = LightningTracker(run, {})
    tracker.get_progress()
    times = real_times("a_completed")
    expected = sorted(times[f"{VERSION}/{name}"] for name in (
        "hparams.yaml", "checkpoints/epoch=0-step=25.ckpt", "checkpoints/epoch=1-step=50.ckpt",
        "checkpoints/epoch=1-step=75.ckpt", "checkpoints/epoch=2-step=100.ckpt", "metrics.csv"))
    assert list(tracker.update_times()) == pytest.approx(expected, abs=0.5)


def test_without_a_number_of_epochs_progress_is_unknown_not_zero(tmp_path: Path) -> None:
    run = restore("a_completed", tmp_path / "a") / CSV_RUN
    p = progress_of(run)
    assert p.progress_percentage is None
    assert p.total_epochs is None and p.total_steps is None
    assert p.reported_status is None
    assert p.completed_steps == 120 and p.completed_epochs == 3
    assert any("set max_epochs in progresskit.yaml" in w for w in p.warnings)


def test_lightning_cli_config_yaml_gives_the_totals(tmp_path: Path) -> None:
    run = restore("a_completed", tmp_path / "a") / CSV_RUN
    # The shape SaveConfigCallback dumps (tests/data/README.md): a version header line,
    # then every Trainer argument under trainer:, -1 meaning "no limit".
    (run / "version_0" / "config.yaml").write_text(
        "# lightning.pytorch==2.6.6\nseed_everything: 0\ntrainer:\n  accelerator: cpu\n"
        "  max_epochs: 3\n  min_epochs: null\n  max_steps: -1\n  log_every_n_steps: 5\n"
        "model:\n  lr: 0.001\nckpt_path: null\n"
    )
    p = progress_of(run)
    assert (p.total_epochs, p.total_steps, p.reported_status) == (3, 120, Status.FINISHED)
    # The config wins over config.yaml.
    assert progress_of(run, max_epochs=6).progress_percentage == pytest.approx(50.0)


def test_a_config_yaml_that_is_not_yaml_is_a_warning(tmp_path: Path) -> None:
    run = restore("a_completed", tmp_path / "a") / CSV_RUN
    (run / "version_0" / "config.yaml").write_text("trainer: [max_epochs: 3\n")
    p = progress_of(run)
    assert p.completed_steps == 120
    assert any("version_0/config.yaml: not valid YAML" in w for w in p.warnings)


def test_the_crashed_run_is_failed_with_its_exception(tmp_path: Path) -> None:
    job = restore("b_crashed", tmp_path / "b", pin=True)
    result = status_of(job)
    assert result.status is Status.FAILED, result.reason
    assert "RuntimeError: deliberate failure at epoch 1 batch 20" in result.reason
    p = result.progress
    assert p.error_message == "train.log: RuntimeError: deliberate failure at epoch 1 batch 20"
    assert (p.completed_steps, p.completed_epochs) == (60, 1)
    assert p.details["version"] == "out/csv/version_0"
    assert p.details["latest_checkpoint"] == "out/csv/version_0/checkpoints/epoch=1-step=50.ckpt"
    assert p.details["log_file"] == "train.log"


@pytest.mark.parametrize("where", [CSV_RUN, f"{CSV_RUN}/version_0"])
def test_the_job_dirs_console_log_is_read_for_the_run_below_it(
    tmp_path: Path, where: str
) -> None:
    # The real layout: job/train.log, the run (as a scan finds it) at job/out/csv.
    job = restore("b_crashed", tmp_path / "b")
    run = job / where
    assert LightningTracker(run).log_dir() == str(job)
    result = status_of(run)
    assert result.status is Status.FAILED, result.reason
    p = result.progress
    assert p.error_message == "train.log: RuntimeError: deliberate failure at epoch 1 batch 20"
    assert p.details["log_file"] == "train.log"
    assert (p.completed_steps, p.completed_epochs) == (60, 1)  # the logger's, not the bar's


@pytest.mark.parametrize("cwd", [CSV_RUN, "out", "."])
def test_the_job_dirs_log_is_found_from_a_relative_work_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cwd: str
) -> None:
    # `cd job/out/csv; progresskit status .`: what is above a relative work dir counts too.
    job = restore("b_crashed", tmp_path / "b")
    monkeypatch.chdir(job / cwd)
    run = os.path.relpath(job / CSV_RUN)  # ".", "csv", "out/csv"
    assert LightningTracker(run).log_dir() == str(job)
    result = status_of(Path(run))
    assert result.status is Status.FAILED, result.reason
    assert result.progress.details["log_file"] == "train.log"


def test_the_job_dirs_console_log_is_a_sign_of_life(tmp_path: Path) -> None:
    job = restore("c_killed", tmp_path / "c", age=23 * 60)
    run = job / CSV_RUN
    assert status_of(run, max_epochs=3, sleep_time=600).status is Status.FAILED
    os.utime(job / "train.log")  # the job's bar redrawn just now: it is alive
    result = status_of(run, max_epochs=3, sleep_time=600)
    assert result.status is Status.RUNNING, result.reason


def test_a_log_above_the_job_dir_is_not_the_runs(tmp_path: Path) -> None:
    job = restore("b_crashed", tmp_path / "jobs" / "b")
    (job / "train.log").rename(tmp_path / "train.log")  # beside many jobs' directories
    (job.parent / "other.log").write_text("not this run's\n")
    run = job / CSV_RUN
    assert LightningTracker(run).log_dir() == str(run)
    assert status_of(run).progress.reported_status is None


def test_the_crashed_run_without_its_log_is_partial(tmp_path: Path) -> None:
    run = restore("b_crashed", tmp_path / "b") / CSV_RUN
    p = progress_of(run, max_epochs=3)
    assert (p.completed_steps, p.total_steps, p.completed_epochs) == (60, 120, 1)
    assert p.progress_percentage == pytest.approx(50.0)
    assert p.reported_status is None


def test_the_killed_run_is_failed_once_silent_past_sleep_time(tmp_path: Path) -> None:
    job = restore("c_killed", tmp_path / "c", age=23 * 60, pin=True)
    result = status_of(job, max_epochs=3, sleep_time=600)
    assert result.status is Status.FAILED, result.reason
    assert result.progress.completed_steps == 70
    assert result.progress.current_stage == "Epoch 1"  # its bar, from the log
    me = progresskit.ProcessInfo(pid=os.getpid())
    pm = plugin_manager()
    stuck = Tracking(pm, config={"runner_type": "lightning", "max_epochs": 3, "sleep_time": 600})
    assert stuck.status(str(job), process=me).status is Status.STUCK


def test_a_partial_run_has_an_eta_from_its_checkpoint_saves(tmp_path: Path) -> None:
    run = restore("c_killed", tmp_path / "c", age=1.0) / CSV_RUN
    p = progress_of(run, max_epochs=3)
    assert (p.completed_steps, p.total_steps) == (70, 120)
    assert p.progress_percentage == pytest.approx(100 * 70 / 120)
    # Saves at steps 25 and 50 1.41 s apart, metrics at step 70 1.11 s later: ~57 ms a
    # step, 50 steps to go.
    assert p.eta_seconds is not None and 1.0 < p.eta_seconds < 6.0


def test_a_run_whose_writes_stopped_is_failed_by_its_rhythm(tmp_path: Path) -> None:
    # The completed run's files, but configured for 4 epochs: its writes (start, four
    # checkpoints ~1.4 s apart, metrics) stopped short of the end 30 s ago.
    # Without the job's console log, whose "`max_epochs=3` reached" says it finished.
    run = restore("a_completed", tmp_path / "a", age=30.0) / CSV_RUN
    (tmp_path / "a" / "train.log").unlink()
    result = status_of(run, max_epochs=4)
    assert result.status is Status.FAILED, result.reason
    assert re.search(r"no sign of life for 3\ds; it updated every ~1\.4s", result.reason)
    fresh = restore("a_completed", tmp_path / "b", age=3.0) / CSV_RUN
    (tmp_path / "b" / "train.log").unlink()
    assert status_of(fresh, max_epochs=4).status is Status.RUNNING


def test_the_rich_bar_run_finishes_from_its_log(tmp_path: Path) -> None:
    job = restore("d_rich", tmp_path / "d", pin=True)
    result = status_of(job)
    assert result.status is Status.FINISHED, result.reason
    assert result.progress.total_epochs == 3  # "Epoch 2/2" in the final rich bar
    assert result.progress.completed_epochs == 3


def test_a_tensorboard_logger_run_is_read_from_its_checkpoint_and_files(tmp_path: Path) -> None:
    version = restore("e_tensorboard", tmp_path / "e") / "out/lightning_logs/version_0"
    tracker = LightningTracker(version, {})
    p = tracker.get_progress()
    # Epoch 2 (from 0) is done: its *_epoch aggregates are in the events at its last step.
    assert (p.completed_steps, p.completed_epochs) == (120, 3)
    assert p.details["best_checkpoint"] == "checkpoints/epoch=2-step=120.ckpt"
    assert p.details["version"] == "."
    # The scalars TensorBoardLogger wrote, as tensorboard itself read them back (not the
    # epoch, a position, nor log_hyperparams' hp_metric placeholder).
    [read_back] = json.loads((DATA / "e_tensorboard_read_back.json").read_text())["files"]
    expected = {t: s["last_value"] for t, s in read_back["scalars"].items()
                if t not in ("epoch", "hp_metric")}
    assert p.metrics == pytest.approx(expected)
    assert p.latest_score == {"val_loss": p.metrics["val_loss"], "val_acc": p.metrics["val_acc"]}
    assert p.details["metrics_file"] == "events.out.tfevents.1796166190.vm.3285.0"
    times = real_times("e_tensorboard")
    events = "out/lightning_logs/version_0/events.out.tfevents.1796166190.vm.3285.0"
    assert p.last_update_time == pytest.approx(times[events], abs=0.5)
    assert len(tracker.update_times()) == 3  # start, the checkpoint, the event file


def test_a_tensorboard_logger_run_without_checkpoints_is_placed_by_its_events(
    tmp_path: Path,
) -> None:
    # ModelCheckpoint off and no console log: the events alone say where the run is, read
    # as they grow (the file cut mid-record first: the torn record waits for its bytes).
    job = restore("e_tensorboard", tmp_path / "e")
    version = job / "out/lightning_logs/version_0"
    shutil.rmtree(version / "checkpoints")
    (job / "train.log").unlink()
    [events] = version.glob("events.out.tfevents.*")
    data = events.read_bytes()
    events.write_bytes(data[: len(data) // 2 + 7])
    tracker = LightningTracker(version, {})
    first = tracker.get_progress()
    assert first.completed_steps is not None and first.completed_steps < 120
    assert not any("cannot read" in w for w in first.warnings), first.warnings
    events.write_bytes(data)
    p = tracker.get_progress(force_refresh=True)
    assert (p.completed_steps, p.completed_epochs) == (120, 3)
    assert "val_loss" in p.metrics
    assert not any("position unknown" in w for w in p.warnings)


def test_the_default_layout_is_claimed_at_the_job_directory(tmp_path: Path) -> None:
    # default_root_dir left at the working directory: lightning_logs/ next to the log.
    job = tmp_path / "job"
    shutil.copytree(DATA / "e_tensorboard" / "out", job)
    shutil.copy(DATA / "e_tensorboard" / "train.log", job / "train.log")
    result = Tracking(plugin_manager()).status(str(job), discover_processes=False)
    assert result.progress.runner_type == "lightning"
    assert result.progress.details["version"] == "lightning_logs/version_0"
    assert result.progress.details["log_file"] == "train.log"
    assert result.status is Status.FINISHED, result.reason  # `max_epochs=3` reached


# -- versions of one run ------------------------------------------------------------------


def test_versions_are_one_run_reported_by_the_newest(tmp_path: Path) -> None:
    # Resumed from epoch=1-step=50 of the crashed run: Lightning's logger starts
    # version_1, the global step and the epoch go on (the completed run's rows from there).
    experiment = restore("b_crashed", tmp_path / "b") / CSV_RUN
    resumed = experiment / "version_1"
    resumed.mkdir()
    shutil.copy(experiment / "version_0" / "hparams.yaml", resumed / "hparams.yaml")
    rows = [line for line in REAL_LINES[1:] if int(line.split(",")[1]) >= 54]
    (resumed / "metrics.csv").write_text(REAL_LINES[0] + "".join(rows))
    p = progress_of(experiment, max_epochs=3)
    assert p.details["version"] == "version_1"
    assert p.details["versions"] == "version_0, version_1"
    assert p.details["resumed_from"] == "version_0"
    assert (p.completed_steps, p.completed_epochs) == (120, 3)
    assert p.reported_status is Status.FINISHED
    # A scan shows one run for the experiment, not one per version.
    runs = Tracking(plugin_manager(), config={"max_epochs": 3}).scan(str(tmp_path), processes={})
    assert [os.path.relpath(r.work_dir, tmp_path) for r in runs] == ["b/out/csv"]


def test_a_new_version_not_resumed_is_not_called_resumed(tmp_path: Path) -> None:
    experiment = restore("a_completed", tmp_path / "a") / CSV_RUN
    shutil.copytree(DATA / "c_killed" / VERSION, experiment / "version_1")
    p = progress_of(experiment)
    assert p.details["version"] == "version_1" and "resumed_from" not in p.details
    assert p.completed_steps == 70


def test_a_scan_of_many_jobs_lists_each_lightning_run(tmp_path: Path) -> None:
    for sample in ("a_completed", "b_crashed", "c_killed"):
        restore(sample, tmp_path / sample)
    runs = Tracking(plugin_manager()).scan(str(tmp_path), processes={})
    found = {os.path.relpath(r.work_dir, tmp_path): r.progress.completed_steps for r in runs}
    assert found == {"a_completed/out/csv": 120, "b_crashed/out/csv": 60,
                     "c_killed/out/csv": 70}


# -- best checkpoint ------------------------------------------------------------------------


def test_best_checkpoint_by_the_metric_in_its_name(tmp_path: Path) -> None:
    # ModelCheckpoint(monitor="val_loss", filename="{epoch}-{val_loss:.2f}", save_top_k=3)
    # over the completed run's three validations (2.3281, 2.3353, 2.3365).
    run = restore("a_completed", tmp_path / "a") / CSV_RUN
    checkpoints = run / "version_0" / "checkpoints"
    for old in checkpoints.iterdir():
        old.unlink()
    for name in ("epoch=0-val_loss=2.33.ckpt", "epoch=1-val_loss=2.34.ckpt",
                 "epoch=2-val_loss=2.34-v1.ckpt", "last.ckpt"):
        (checkpoints / name).write_bytes(b"")
    p = progress_of(run)
    assert p.details["best_checkpoint"] == "version_0/checkpoints/epoch=0-val_loss=2.33.ckpt"
    assert p.best_score == {"val_loss": 2.33}


# -- growing and torn metrics.csv ---------------------------------------------------------


def test_a_growing_run_advances_on_the_same_tracker(tmp_path: Path) -> None:
    run = restore("a_completed", tmp_path / "a", age=600.0) / CSV_RUN
    metrics = run / "version_0" / "metrics.csv"
    tracker = LightningTracker(run, {"max_epochs": 3})
    seen = []
    # The file as it stood after a number of logging calls.
    for rows in (1, 4, 8, 11, 20, 30):
        metrics.write_text(csv_after(rows))
        when = time.time() - 600 + rows
        os.utime(metrics, (when, when))
        p = tracker.get_progress()
        assert p == LightningTracker(run, {"max_epochs": 3}).get_progress()
        seen.append(p.completed_steps)
    # The newest checkpoint (step 100) counts until the rows pass it.
    assert seen == [100, 100, 100, 100, 100, 120]
    assert tracker.get_progress().reported_status is Status.FINISHED


def test_rows_grow_one_call_at_a_time(tmp_path: Path) -> None:
    version = make_run_dir(tmp_path / "version_0", {
        "hparams.yaml": (DATA / "a_completed" / VERSION / "hparams.yaml").read_text(),
        "metrics.csv": ""})
    steps = []
    for cut in range(1, len(REAL_LINES) + 1):
        (version / "metrics.csv").write_text("".join(REAL_LINES[:cut]))
        steps.append(progress_of(version).completed_steps)
    assert steps[0] is None and steps[1] == 5 and steps[-1] == 120
    assert steps[1:] == sorted(steps[1:])


def test_a_row_being_appended_is_not_read_until_complete(tmp_path: Path) -> None:
    path = tmp_path / "metrics.csv"
    path.write_text("".join(REAL_LINES[:5]) + REAL_LINES[5][:7])
    reader = MetricsFile(str(path), "metrics.csv")
    summary = reader.read()
    assert summary is not None and summary.rows == 4 and reader.problem is None


@pytest.mark.parametrize("cut", [0, 20, len(REAL_LINES[0]) - 3, 200])
def test_a_torn_rewrite_keeps_the_last_good_read(tmp_path: Path, cut: int) -> None:
    path = tmp_path / "metrics.csv"
    path.write_text(REAL_METRICS)
    reader = MetricsFile(str(path), "version_0/metrics.csv")
    good = reader.read()
    assert good is not None and good.rows == 30
    # Caught between the truncation and the end of the rewrite (open("w"), write).
    path.write_bytes(REAL_METRICS.encode()[:cut])
    assert reader.read() is good
    assert reader.problem is not None
    assert reader.problem.startswith("version_0/metrics.csv: ")
    assert "kept the last complete read (30 rows)" in reader.problem
    # The rewrite ends: the new state is read.
    path.write_text(REAL_METRICS)
    assert reader.read() == good and reader.problem is None


def test_the_tracker_reports_a_torn_read_as_a_warning_with_the_last_state(
    tmp_path: Path,
) -> None:
    run = restore("a_completed", tmp_path / "a") / CSV_RUN
    tracker = LightningTracker(run, {"max_epochs": 3})
    assert tracker.get_progress().completed_steps == 120
    (run / "version_0" / "metrics.csv").write_text(REAL_LINES[0][:12])
    p = tracker.get_progress()
    assert p.completed_steps == 120 and p.metrics["val_loss"] == 2.336544990539551
    assert any("kept the last complete read" in w for w in p.warnings)


@pytest.mark.parametrize("rewrite_always", [False, True])
def test_reads_during_real_in_place_rewrites_never_go_back(
    tmp_path: Path, rewrite_always: bool
) -> None:
    # Lightning's writer at full speed in another thread: each logging call appends its
    # row, and a row with a new key rewrites the file in place (open "w": truncate, then
    # write); rewrite_always rewrites at every call, many torn states. Every answer is what
    # a reader of a complete file of some prefix of the rows sees, and never fewer rows
    # than the one before.
    states = [csv_after(rows) for rows in range(1, len(REAL_LINES))]
    expected = {summary_of(text, tmp_path).rows: summary_of(text, tmp_path) for text in states}
    for round_ in range(20):
        path = tmp_path / f"metrics{round_}.csv"
        path.write_text(states[0])
        done = threading.Event()

        def write(path: Path = path, done: threading.Event = done) -> None:
            for before, after in itertools.pairwise(states):
                if after.startswith(before) and not rewrite_always:
                    with open(path, "a") as fh:
                        fh.write(after[len(before):])
                else:
                    with open(path, "w") as fh:
                        fh.write(after)
            done.set()

        reader = MetricsFile(str(path), "metrics.csv")
        writer = threading.Thread(target=write)
        writer.start()
        try:
            rows = 0
            while not done.is_set():
                summary = reader.read()
                assert summary is not None
                assert summary.rows >= rows
                # Nothing complete yet (the first read caught a truncation) or a state.
                assert summary == (Summary() if not summary.rows else expected[summary.rows])
                rows = summary.rows
        finally:
            writer.join()
        assert reader.read() == expected[len(REAL_LINES) - 1]


def test_a_growing_file_is_read_from_where_the_last_read_stopped(tmp_path: Path) -> None:
    path = tmp_path / "metrics.csv"
    reader = MetricsFile(str(path), "metrics.csv")
    previous = ""
    for rows in range(1, len(REAL_LINES)):
        text = csv_after(rows)
        if text.startswith(previous) and previous:
            with open(path, "a") as fh:  # CSVLogger's append
                fh.write(text[len(previous):])
        else:
            path.write_text(text)  # the first write, or a rewrite with a new header
        previous = text
        assert reader.read() == summary_of(text, tmp_path), rows
    # The header changed twice at the end of epoch 0 (val_*, then train_loss_epoch): a
    # whole read each time, the first read, and the rest only the appended rows.
    assert (reader.full_reads, reader.appended_reads) == (3, 27)


def test_a_rewrite_in_place_under_the_same_header_is_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "metrics.csv"
    path.write_text(REAL_METRICS)
    reader = MetricsFile(str(path), "metrics.csv")
    assert reader.read() is not None
    # Same inode, same header, more bytes, but other values where the last read ended.
    changed = REAL_METRICS.replace("2.2503185272216797", "2.9999999999999999")
    path.write_text(changed + REAL_LINES[-1])
    assert reader.read() == summary_of(changed + REAL_LINES[-1], tmp_path)
    assert reader.full_reads == 2


# -- detection, diagnostics, the CLI ---------------------------------------------------------


def test_a_tensorboard_logger_version_is_lightnings_not_tensorboards(tmp_path: Path) -> None:
    # hparams.yaml next to the event file: Lightning's TensorBoardLogger wrote it. With
    # every installed plugin loaded, Lightning alone claims it (docs/lightning.md).
    version = restore("e_tensorboard", tmp_path / "e") / "out/lightning_logs/version_0"
    result = Tracking(plugin_manager()).status(str(version), discover_processes=False)
    assert result.progress.runner_type == "lightning", result.reason


def test_no_match_diagnostic_names_lightning(
    tmp_path: Path, progresskit_cli: Callable[..., CliResult]
) -> None:
    empty = make_run_dir(tmp_path / "empty", {"notes.txt": "x"})
    result = progresskit_cli("status", str(empty))
    assert result.ret == 2
    assert "- lightning: PyTorch Lightning: a lightning_logs/ directory" in result.stderr


def test_status_from_the_cli_in_process_and_in_a_subprocess(
    tmp_path: Path, progresskit_cli: Callable[..., CliResult]
) -> None:
    job = restore("a_completed", tmp_path / "a", pin=True)
    for in_process in (True, False):
        result = progresskit_cli("status", str(job), "--json", in_process=in_process,
                                 cwd=tmp_path)
        assert result.ret == 0, result.stderr
        [row] = result.json()["runs"]
        assert row["progress"]["runner_type"] == "lightning"
        assert row["progress"]["completed_steps"] == 120
        assert row["progress"]["details"]["log_file"] == "train.log"
        assert row["status"] == "finished"
        # The job dir holding train.log is the run's parent, not an unclaimed run.
        assert result.json()["unrecognised"] == []


def test_a_bad_max_epochs_is_refused_naming_the_file(
    tmp_path: Path, progresskit_cli: Callable[..., CliResult]
) -> None:
    job = restore("a_completed", tmp_path / "a")
    (job / "progresskit.yaml").write_text("runner_type: lightning\nmax_epochs: 0\n")
    result = progresskit_cli("status", str(job))
    assert result.ret == 2
    assert "max_epochs" in result.stderr and "expected an integer >= 1" in result.stderr
    assert "progresskit.yaml" in result.stderr


def test_it_is_found_through_its_entry_point(
    progresskit_cli: Callable[..., CliResult],
) -> None:
    plugins = {p["name"]: p for p in progresskit_cli("plugins", "--json").json()}
    assert plugins["lightning"]["origin"] == "entry point"
    assert plugins["lightning"]["distribution"] == "progresskit-lightning"
    assert plugins["lightning"]["runner_types"] == ["lightning"]


def test_it_uses_only_the_public_api_and_no_lightning() -> None:
    assert imports_outside_public_api(PLUGIN_SRC, ["lightning", "pytorch_lightning", "torch"]) == []


def test_the_per_epoch_bar_does_not_become_the_runs_total(tmp_path: Path) -> None:
    job = restore("b_crashed", tmp_path / "b", pin=True)
    p = status_of(job).progress
    assert p.completed_steps == 60
    assert p.total_steps is None  # the bar's 20/40 counts epoch 1's steps


def test_a_run_its_log_shows_finished_is_at_100_percent(tmp_path: Path) -> None:
    job = restore("a_completed", tmp_path / "a", pin=True)
    result = status_of(job)
    assert result.status is Status.FINISHED
    assert result.progress.progress_percentage == 100.0


class TestLightningConformance(TrackerConformance):
    plugin_name = "lightning"
    runner_type = "lightning"

    def make_valid_run(self, directory: Path) -> Path:
        # The completed run as it stood early in epoch 1.
        run = restore("a_completed", directory / "job") / CSV_RUN
        (run / "version_0" / "metrics.csv").write_text("".join(REAL_LINES[:13]))
        return run

    def make_corrupt_run(self, directory: Path) -> Path:
        return make_run_dir(directory / "version_0", {
            "hparams.yaml": (DATA / "a_completed" / VERSION / "hparams.yaml").read_text(),
            "metrics.csv": b"\xff\xfe\x00garbage\n\x00\n",
        })

    def make_foreign_dir(self, directory: Path) -> Path:
        # A plain TensorBoard SummaryWriter directory and an HF output dir: event files
        # and checkpoints, but not Lightning's hparams.yaml or version_N/.
        return make_run_dir(directory, {
            "events.out.tfevents.1796166190.vm.3285.0": b"\0" * 16,
            "checkpoints/epoch=0-step=25.ckpt": b"",
            "checkpoint-100/trainer_state.json": {"global_step": 100},
        })

    def mutate_run(self, work_dir: Path) -> None:
        (work_dir / "version_0" / "metrics.csv").write_text(REAL_METRICS)
