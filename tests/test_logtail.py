"""The ``log`` tracker and the log fill of other trackers' answers, on real files.

Logs are the real captures in tests/data/console_logs (README there) or written by the real
tqdm in a subprocess.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
import tracemalloc
from pathlib import Path

import pytest

from helpers.runs import make_trainer_run
from progresskit import ConfigError, NoTrackerError, Status, Tracking
from progresskit.engine import logs

DATA = Path(__file__).parent / "data" / "console_logs"


def _run_with(tmp_path: Path, capture: str, name: str = "slurm-4242.out") -> Path:
    run = tmp_path / "job"
    run.mkdir(exist_ok=True)
    shutil.copyfile(DATA / capture, run / name)
    return run


def test_a_directory_with_only_a_log_is_a_run(tmp_path: Path) -> None:
    run = _run_with(tmp_path, "hf_trainer_b_killed.log")
    result = Tracking().status(str(run), discover_processes=False)
    progress = result.progress
    assert progress.runner_type == "log"
    assert (progress.completed_steps, progress.total_steps) == (59, 96)
    assert progress.progress_percentage == pytest.approx(100 * 59 / 96)
    assert progress.source_eta_seconds == 1
    assert progress.metrics["rate"] == 23.13
    assert progress.details["log_file"] == "slurm-4242.out"
    assert result.status is Status.RUNNING  # just written: a sign of life


def test_keras_epochs_make_the_overall_progress(tmp_path: Path) -> None:
    run = _run_with(tmp_path, "keras_fit_verbose2.log", "train.log")
    result = Tracking().status(str(run), discover_processes=False)
    assert (result.progress.completed_epochs, result.progress.total_epochs) == (3, 3)
    assert result.progress.progress_percentage == 100.0
    assert result.progress.metrics["val_loss"] == 2.4488
    assert result.status is Status.FINISHED


def test_traceback_at_the_end_is_failed_with_its_cause(tmp_path: Path) -> None:
    run = _run_with(tmp_path, "lightning_b_crashed.log", "train.log")
    result = Tracking().status(str(run), discover_processes=False)
    assert result.status is Status.FAILED
    assert result.cause is not None and result.cause.kind == "error"
    assert result.cause.message == "train.log: RuntimeError: deliberate failure at epoch 1 batch 20"
    assert result.progress.current_stage == "Epoch 1"


def test_keyboard_interrupt_is_cancelled(tmp_path: Path) -> None:
    run = tmp_path / "job"
    run.mkdir()
    script = textwrap.dedent(
        """
        import os, signal
        from tqdm import tqdm
        for i in tqdm(range(100), desc="train", mininterval=0):
            if i == 30:
                os.kill(os.getpid(), signal.SIGINT)
        """
    )
    with open(run / "run.out", "wb") as fh:
        subprocess.run([sys.executable, "-c", script], stdout=fh, stderr=subprocess.STDOUT,
                       timeout=60, check=False)
    result = Tracking().status(str(run), discover_processes=False)
    assert result.status is Status.CANCELLED
    assert result.progress.completed_steps == 30


def test_lightning_completion_is_finished(tmp_path: Path) -> None:
    run = _run_with(tmp_path, "lightning_a_completed.log", "train.log")
    result = Tracking().status(str(run), discover_processes=False)
    assert result.status is Status.FINISHED
    assert (result.progress.completed_epochs, result.progress.total_epochs) == (3, 3)


def test_a_killed_lightning_run_without_epoch_total_says_so(tmp_path: Path) -> None:
    run = _run_with(tmp_path, "lightning_c_killed.log", "train.log")
    progress = Tracking().status(str(run), discover_processes=False).progress
    assert progress.completed_epochs == 1 and progress.total_epochs is None
    assert progress.stage_progress_percentage == 80.0
    assert any("number of epochs is not shown" in w for w in progress.warnings)


def test_a_log_next_to_other_files_is_not_claimed(tmp_path: Path) -> None:
    run = _run_with(tmp_path, "hf_trainer_b_killed.log", "train.log")
    (run / "notes.txt").write_text("hello\n")
    with pytest.raises(NoTrackerError, match="only console logs"):
        Tracking().status(str(run), discover_processes=False)
    (run / "notes.txt").unlink()
    (run / "output").mkdir()
    with pytest.raises(NoTrackerError):
        Tracking().status(str(run), discover_processes=False)


def test_configured_globs(tmp_path: Path) -> None:
    run = _run_with(tmp_path, "hf_trainer_b_killed.log", "console.txt")
    with pytest.raises(NoTrackerError):
        Tracking().status(str(run), discover_processes=False)
    tracking = Tracking(config={"log_files": ["*.txt"]})
    assert tracking.status(str(run), discover_processes=False).progress.completed_steps == 59


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"log_files": "*.log"}, "key 'log_files' expects list"),
        ({"log_files": ["logs/*.log"]}, "without '/'"),
        ({"log_tail_kb": 0}, "expected 1 to 65536"),
    ],
)
def test_bad_config_is_refused(values: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Tracking(config=values)


def test_an_unchanged_log_is_not_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = _run_with(tmp_path, "hf_trainer_b_killed.log")
    reads: list[str] = []
    real = logs.read_tail

    def counted(path: str, max_bytes: int) -> str:
        reads.append(path)
        return real(path, max_bytes)

    monkeypatch.setattr(logs, "read_tail", counted)
    tracking = Tracking()
    log = run / "slurm-4242.out"
    old = time.time() - 10  # older than the racy window: its stat key can be trusted
    os.utime(log, (old, old))
    os.utime(run, (old, old))
    for _ in range(3):
        assert tracking.status(str(run), discover_processes=False).progress.completed_steps == 59
    assert len(reads) == 1
    with open(log, "a") as fh:
        fh.write("\r 63%|######2   | 60/96 [00:03<00:01, 23.20it/s]")
    os.utime(log, (old + 1, old + 1))
    assert tracking.status(str(run), discover_processes=False).progress.completed_steps == 60
    assert len(reads) == 2


def test_a_1_gb_log_is_read_from_its_tail(tmp_path: Path) -> None:
    run = tmp_path / "job"
    run.mkdir()
    log = run / "train.log"
    bar = "\rtrain:  45%|####5     | 450/1000 [00:10<00:12, 44.20it/s, loss=0.31]"
    with open(log, "wb") as fh:
        fh.truncate(1 << 30)  # sparse: 1 GiB of NULs, no disk used
        fh.seek(0, os.SEEK_END)
        fh.write(bar.encode())
    assert log.stat().st_size > 1 << 30
    tracemalloc.start()
    began = time.perf_counter()
    result = Tracking().status(str(run), discover_processes=False)
    took = time.perf_counter() - began
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert (result.progress.completed_steps, result.progress.total_steps) == (450, 1000)
    assert result.progress.metrics["loss"] == 0.31
    # bounded by the tail (64 KiB), not the file: a full read would take seconds and 1 GiB
    assert peak < 8 << 20, peak
    assert took < 2.0, took


def test_the_log_fills_what_a_structured_tracker_leaves_unknown(tmp_path: Path) -> None:
    run = make_trainer_run(tmp_path / "r", 2, total=10)
    shutil.copyfile(DATA / "lightning_c_killed.log", run / "train_val_0.log")
    progress = Tracking().status(str(run), discover_processes=False).progress
    # the trainer's own answer wins...
    assert progress.runner_type == "trainer"
    assert (progress.completed_epochs, progress.total_epochs) == (2, 10)
    assert progress.progress_percentage == pytest.approx(20.0)
    # ...and the log adds what the epoch directories do not say
    assert (progress.completed_steps, progress.total_steps) == (32, 40)
    assert progress.current_stage == "Epoch 1"
    assert progress.metrics["train_loss_step"] == 2.23
    assert progress.details["log_file"] == "train_val_0.log"


def test_without_the_log_plugin_nothing_is_filled(tmp_path: Path) -> None:
    from progresskit.plugin.manager import get_plugin_manager

    run = make_trainer_run(tmp_path / "r", 2, total=10)
    shutil.copyfile(DATA / "lightning_c_killed.log", run / "train_val_0.log")
    pm = get_plugin_manager(disabled=["log"])
    progress = Tracking(pm=pm).status(str(run), discover_processes=False).progress
    assert progress.completed_steps is None and progress.current_stage is None
