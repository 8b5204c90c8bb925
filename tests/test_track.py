"""progresskit.track() and Progress (issue 17): real loops in real subprocesses, read back
through the builtin ``progress`` tracker and the status rules; the tqdm bar on a real pty."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import pty
import select
import signal
import struct
import subprocess
import sys
import termios
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import progresskit
from progresskit import Progress, Status, track
from progresskit.builtin.progressfile import ProgressFileTracker
from progresskit.errors import NoTrackerError
from progresskit.formats.lease import LEASE_FILENAME
from progresskit.formats.progressfile import (
    LEVEL_FIELDS,
    PROGRESS_FIELDS,
    PROGRESS_FILENAME,
    PROGRESS_FORMAT,
)
from progresskit.testing import TrackerConformance

#: The job: a training loop as a user writes it, with what the test needs to drive it.
#: argv: run dir, then the scenario.
JOB = textwrap.dedent("""\
    import os, sys, time
    import progresskit

    run_dir, scenario = sys.argv[1], sys.argv[2]
    if scenario == "forever":
        # Until killed: the test waits for the first write, then signals.
        progress = progresskit.track(iter(int, 1), run_dir=run_dir, desc="train",
                                     interval=0.02)
        for step in progress:
            progress.set(loss=1.0 / (step + 1))
            time.sleep(0.001)
    elif scenario == "raise":
        for step in progresskit.track(range(100), run_dir=run_dir, interval=0.02):
            if step == 5:
                raise ValueError("bad batch 5")
    elif scenario == "raise-in-with":
        with progresskit.Progress(total=100, run_dir=run_dir, interval=0.02) as progress:
            for step in range(100):
                if step == 5:
                    raise ValueError("bad batch 5")
                progress.update()
    elif scenario == "break":
        # Early stopping: the loop is left by the code's choice and the process goes on.
        for step in progresskit.track(range(100), run_dir=run_dir, interval=0.02):
            if step == 5:
                break
        print("left the loop", flush=True)
        time.sleep(60)
    elif scenario == "raise-caught":
        # The body raises, the code catches it outside the loop and goes on.
        try:
            for step in progresskit.track(range(100), run_dir=run_dir, interval=0.02):
                if step == 5:
                    raise ValueError("bad batch 5")
        except ValueError:
            print("left the loop", flush=True)
        time.sleep(60)
    elif scenario == "steady":
        for step in progresskit.track(range(400), run_dir=run_dir, interval=0.005):
            time.sleep(0.001)
    elif scenario == "bar":
        for step in progresskit.track(range(50), run_dir=run_dir, desc="bar-desc",
                                      mininterval=0):
            time.sleep(0.002)
    """)


def start_job(run_dir: Path, scenario: str, **kwargs: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", JOB, str(run_dir), scenario], text=True, **kwargs
    )


def read_document(run_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((run_dir / PROGRESS_FILENAME).read_text())
    return data


def wait_for(predicate: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)


def started(run_dir: Path) -> bool:
    try:
        return int(read_document(run_dir)["steps"]) > 0
    except (OSError, ValueError):
        return False


@pytest.fixture
def job(tmp_path: Path) -> Iterator[list[subprocess.Popen[str]]]:
    jobs: list[subprocess.Popen[str]] = []
    yield jobs
    for process in jobs:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


# -- the document --------------------------------------------------------------------------


def test_a_loop_writes_every_documented_field(tmp_path: Path) -> None:
    progress = track(range(3), run_dir=tmp_path / "run", desc="epochs", unit="epoch")
    for _ in progress:
        progress.set(loss=0.5)
    doc = read_document(tmp_path / "run")
    assert list(doc) == list(PROGRESS_FIELDS)
    assert doc["format"] == PROGRESS_FORMAT and doc["state"] == "finished"
    assert (doc["desc"], doc["steps"], doc["total"], doc["unit"]) == ("epochs", 3, 3, "epoch")
    assert doc["fraction"] == 1.0 and doc["eta_seconds"] == 0.0
    assert doc["metrics"] == {"loss": 0.5}
    assert [list(level) for level in doc["levels"]] == [list(LEVEL_FIELDS)]
    assert doc["started_at"] <= doc["updated_at"] == doc["ended_at"]
    lease = json.loads((tmp_path / "run" / LEASE_FILENAME).read_text())
    assert lease["state"] == "finished" and lease["producers"] == ["progress"]


def test_the_status_of_a_finished_loop(tmp_path: Path) -> None:
    with Progress(total=20, run_dir=tmp_path, desc="train") as progress:
        for _ in range(20):
            progress.update()
        progress.set(loss=0.25, lr=3e-4, accuracy=0.9)
    run = progresskit.status(str(tmp_path))
    assert run.status is Status.FINISHED
    assert run.progress.runner_type == "progress"
    assert (run.progress.completed_steps, run.progress.total_steps) == (20, 20)
    assert run.progress.progress_percentage == 100.0
    assert run.progress.metrics == {"loss": 0.25, "lr": 3e-4, "accuracy": 0.9}


def test_metrics_that_are_not_numbers_are_logged_and_left_out(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="progresskit.producer.track"), Progress(
        total=2, run_dir=tmp_path
    ) as progress:
        for _ in range(2):
            progress.set(loss=0.1, name="resnet", bad=float("nan"))
            progress.update()
        progress.set(loss=None)  # removed
    assert read_document(tmp_path)["metrics"] == {}
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2  # once per name, not once per step
    assert any("name not recorded: name must be a finite number, got 'resnet'" in w
               for w in warnings)


def test_stage_is_written_at_once(tmp_path: Path) -> None:
    with Progress(total=10, run_dir=tmp_path, interval=3600) as progress:
        progress.update(4)
        progress.stage("evaluating")
        doc = read_document(tmp_path)
        assert (doc["stage"], doc["steps"], doc["state"]) == ("evaluating", 4, "running")
        progress_info = ProgressFileTracker(str(tmp_path)).calculate_progress()
        assert progress_info.current_stage == "evaluating"
        assert progress_info.progress_percentage == 40.0


def test_nested_loops_are_one_run_with_a_stage(tmp_path: Path) -> None:
    seen: list[dict[str, Any]] = []
    for epoch in track(range(2), run_dir=tmp_path, desc="epoch", interval=3600):
        batches = track(range(4), run_dir=tmp_path, desc="batch")
        for batch in batches:
            if (epoch, batch) == (1, 2):
                batches.stage(None)  # a write now, to look at mid-run
                seen.append(read_document(tmp_path))
                seen.append(
                    ProgressFileTracker(str(tmp_path)).calculate_progress().to_dict()
                )
    doc, info = seen
    assert doc["stage"] == "batch"
    assert doc["levels"] == [
        {"desc": "epoch", "steps": 1, "total": 2},
        {"desc": "batch", "steps": 2, "total": 4},
    ]
    assert doc["fraction"] == pytest.approx((1 + 2 / 4) / 2)
    assert info["current_stage"] == "batch"
    assert info["completed_steps"] == 1 and info["total_steps"] == 2
    assert info["stage_progress_percentage"] == 50.0
    assert info["progress_percentage"] == pytest.approx(75.0)
    final = read_document(tmp_path)
    assert final["state"] == "finished" and final["levels"] == [
        {"desc": "epoch", "steps": 2, "total": 2}
    ]
    assert sorted(os.listdir(tmp_path)) == [LEASE_FILENAME, PROGRESS_FILENAME]


def test_an_unknown_total_is_null_not_zero(tmp_path: Path) -> None:
    with Progress(run_dir=tmp_path, interval=3600) as progress:
        progress.update(7)
        progress.stage("training")
        info = ProgressFileTracker(str(tmp_path)).calculate_progress()
    assert info.completed_steps == 7 and info.total_steps is None
    assert info.source_eta_seconds is None
    # A loop counts steps, not epochs; with no total its progress is unknown: null, never 0.
    assert info.completed_epochs is None and info.progress_percentage is None


def test_an_unwritable_run_dir_never_raises_into_the_loop(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory\n")
    done = 0
    with caplog.at_level(logging.WARNING):
        progress = track(range(50), run_dir=blocker / "run", interval=0.001)
        for _ in progress:
            progress.set(loss=1.0)
            progress.stage("training")
            done += 1
    assert done == 50
    assert not (blocker / "run").exists()
    assert any("cannot write progress file" in r.getMessage() for r in caplog.records)


def test_bad_arguments_are_refused_before_the_loop(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="interval must be > 0 seconds, got 0"):
        Progress(run_dir=tmp_path, interval=0)
    with pytest.raises(ValueError, match="total must be a finite number, got 'ten'"):
        Progress(total="ten", run_dir=tmp_path)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="expect_every must be a finite number > 0"):
        Progress(run_dir=tmp_path, expect_every=-1)
    with Progress(total=2, run_dir=tmp_path) as fresh:  # a run of its own, not nested
        assert fresh.path == str(tmp_path / PROGRESS_FILENAME)
        fresh.stage("x")
        assert len(read_document(tmp_path)["levels"]) == 1
    with Progress(run_dir=tmp_path) as progress, pytest.raises(
        TypeError, match=r"no iterable: use progresskit\.track"
    ):
        iter(progress)


# -- a real job ------------------------------------------------------------------------------


def test_the_document_is_valid_at_every_read_under_a_hammering_reader(
    tmp_path: Path, job: list[subprocess.Popen[str]]
) -> None:
    process = start_job(tmp_path, "steady")
    job.append(process)
    tracker = ProgressFileTracker(str(tmp_path))
    reads, steps_seen = 0, set()
    while process.poll() is None or reads == 0:
        try:
            text = (tmp_path / PROGRESS_FILENAME).read_text()
        except FileNotFoundError:
            continue
        doc = json.loads(text)  # never half a document
        assert doc["format"] == PROGRESS_FORMAT and list(doc) == list(PROGRESS_FIELDS)
        info = tracker.calculate_progress()
        assert info.error_message is None and not info.warnings, info
        reads += 1
        steps_seen.add(doc["steps"])
    assert process.wait(timeout=30) == 0
    assert reads > 100 and len(steps_seen) > 5, (reads, steps_seen)
    assert read_document(tmp_path)["steps"] == 400


def test_sigkill_reads_crashed_within_a_second(
    tmp_path: Path, job: list[subprocess.Popen[str]]
) -> None:
    process = start_job(tmp_path, "forever")
    job.append(process)
    wait_for(lambda: started(tmp_path))
    assert progresskit.status(str(tmp_path)).status is Status.RUNNING
    process.kill()
    killed = time.monotonic()
    process.wait(timeout=10)
    wait_for(lambda: progresskit.status(str(tmp_path)).status is Status.CRASHED, timeout=5)
    assert time.monotonic() - killed < 1.0
    run = progresskit.status(str(tmp_path))
    assert run.progress.completed_steps and run.progress.completed_steps > 0
    assert "loss" in run.progress.metrics


@pytest.mark.parametrize("scenario", ["raise", "raise-in-with"])
def test_an_exception_reads_failed_with_its_message(
    tmp_path: Path, job: list[subprocess.Popen[str]], scenario: str
) -> None:
    process = start_job(tmp_path, scenario, stderr=subprocess.PIPE)
    job.append(process)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 1 and "ValueError: bad batch 5" in stderr
    run = progresskit.status(str(tmp_path))
    assert run.status is Status.FAILED
    assert run.cause is not None and run.cause.message == "bad batch 5"
    assert run.cause.exception_type == "ValueError"
    assert run.progress.completed_steps == 5
    if scenario == "raise-in-with":  # the block knows its exception: the document says it
        doc = read_document(tmp_path)
        assert (doc["state"], doc["error"]) == ("failed", "ValueError: bad batch 5")


def test_a_loop_left_by_break_reads_finished_at_once_at_the_steps_reached(
    tmp_path: Path, job: list[subprocess.Popen[str]]
) -> None:
    process = start_job(tmp_path, "break", stdout=subprocess.PIPE)
    job.append(process)
    assert process.stdout is not None and process.stdout.readline() == "left the loop\n"
    assert process.poll() is None  # the process goes on: the run is closed all the same
    run = progresskit.status(str(tmp_path))
    assert run.status is Status.FINISHED, run.reason
    assert (run.progress.completed_steps, run.progress.total_steps) == (5, 100)
    assert run.progress.progress_percentage == pytest.approx(5.0)
    doc = read_document(tmp_path)
    assert (doc["state"], doc["steps"], doc["fraction"]) == ("finished", 5, 0.05)
    assert doc["ended_at"] is not None and doc["error"] is None


def test_a_loop_left_by_an_exception_is_never_read_finished(
    tmp_path: Path, job: list[subprocess.Popen[str]]
) -> None:
    # The generator cannot see the exception: the run stays open for the process's end.
    process = start_job(tmp_path, "raise-caught", stdout=subprocess.PIPE)
    job.append(process)
    assert process.stdout is not None and process.stdout.readline() == "left the loop\n"
    run = progresskit.status(str(tmp_path))
    assert run.status is Status.RUNNING, run.reason
    assert read_document(tmp_path)["state"] == "running"
    assert run.progress.completed_steps == 5


def _left_by_return(run_dir: Path) -> int:
    for step in track(range(10), run_dir=run_dir):
        if step == 3:
            return step
    return -1


@pytest.mark.parametrize("how", ["return", "del", "nested break"])
def test_a_loop_left_on_purpose_ends_its_run(tmp_path: Path, how: str) -> None:
    if how == "return":
        assert _left_by_return(tmp_path) == 3
    elif how == "del":
        steps = iter(track(range(10), run_dir=tmp_path))
        next(steps), next(steps), next(steps), next(steps)
        del steps
    else:
        for _epoch in track(range(2), run_dir=tmp_path, desc="epoch"):
            for step in track(range(10), run_dir=tmp_path, desc="batch"):
                if step == 3:
                    break
            break
    doc = read_document(tmp_path)
    expected = (0, 2) if how == "nested break" else (3, 10)  # the outer loop's steps
    assert (doc["state"], doc["steps"], doc["total"]) == ("finished", *expected)
    assert doc["ended_at"] is not None
    assert progresskit.status(str(tmp_path)).status is Status.FINISHED


def test_ctrl_c_reads_cancelled(tmp_path: Path, job: list[subprocess.Popen[str]]) -> None:
    process = start_job(tmp_path, "forever", stderr=subprocess.PIPE)
    job.append(process)
    wait_for(lambda: started(tmp_path))
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    assert "KeyboardInterrupt" in stderr
    run = progresskit.status(str(tmp_path))
    assert run.status is Status.CANCELLED
    assert run.cause is not None and run.cause.signal == "SIGINT"


def test_the_tqdm_bar_is_shown_on_a_terminal(tmp_path: Path) -> None:
    pytest.importorskip("tqdm")
    leader, follower = pty.openpty()
    # A terminal has a size: tqdm draws nothing on one of 0 rows.
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    process = start_job(tmp_path, "bar", stdin=subprocess.DEVNULL, stdout=follower,
                        stderr=follower)
    os.close(follower)
    output = b""
    while True:
        ready, _, _ = select.select([leader], [], [], 30)
        assert ready, "no output from the job"
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # EIO: the job closed its end
            break
        if not chunk:
            break
        output += chunk
    os.close(leader)
    assert process.wait(timeout=30) == 0
    text = output.decode(errors="replace")
    assert "bar-desc: 100%" in text and "50/50 [" in text, text
    assert read_document(tmp_path)["steps"] == 50


def test_no_bar_when_the_stream_is_not_a_terminal(tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, "-c", JOB, str(tmp_path), "bar"], capture_output=True, text=True,
        timeout=60,
    )
    assert completed.returncode == 0 and completed.stderr == "", completed.stderr
    assert read_document(tmp_path)["state"] == "finished"


# -- heartbeat()-only directories ---------------------------------------------------------------


def test_a_heartbeat_only_directory_is_a_run_of_liveness_only(tmp_path: Path) -> None:
    run_dir = tmp_path / "job"
    run_dir.mkdir()
    with progresskit.heartbeat(run_dir, expect_every=60) as beat:
        beat.beat()
        run = progresskit.status(str(run_dir))
        assert run.status is Status.RUNNING
        assert run.progress.runner_type == "heartbeat"
        assert run.progress.completed_steps is None and run.progress.total_steps is None
        assert run.progress.eta_seconds is None
        assert run.progress.progress_percentage is None  # unknown, shown "-", never 0%
        [scanned] = progresskit.scan(str(tmp_path))
        assert scanned.work_dir == str(run_dir) and scanned.status is Status.RUNNING
    assert progresskit.status(str(run_dir)).status is Status.FINISHED


def test_a_lease_is_the_weakest_evidence(tmp_path: Path) -> None:
    # A run its config identifies keeps its runner type when it holds a lease.
    (tmp_path / "progresskit.yaml").write_text("epochs: 3\n")
    with progresskit.heartbeat(tmp_path, expect_every=60):
        assert progresskit.status(str(tmp_path)).progress.runner_type == "trainer"


def test_without_the_heartbeat_plugin_a_lease_alone_is_no_run(tmp_path: Path) -> None:
    with progresskit.heartbeat(tmp_path, expect_every=60):
        session = progresskit.Tracking(
            pm=progresskit.get_plugin_manager(disabled=["heartbeat"])
        )
        with pytest.raises(NoTrackerError, match="Cannot detect runner type"):
            session.status(str(tmp_path))


# -- the tracker ---------------------------------------------------------------------------


def write_real_document(directory: Path, steps: int) -> None:
    """A document as the writer makes it: a real Progress, left at ``steps`` of 10."""
    with Progress(total=10, run_dir=directory, desc="train", interval=3600) as progress:
        progress.update(steps)
        progress.set(loss=1.0 / (steps + 1))
        progress.stage("training")


class TestProgressFileConformance(TrackerConformance):
    plugin_name = "progress"
    runner_type = "progress"

    def make_valid_run(self, directory: Path) -> Path:
        write_real_document(directory, 3)
        return directory

    def make_corrupt_run(self, directory: Path) -> Path:
        write_real_document(directory, 3)
        path = directory / PROGRESS_FILENAME
        doc = json.loads(path.read_text())
        doc["steps"], doc["fraction"] = "three", 7
        path.write_text(json.dumps(doc))
        return directory

    def make_foreign_dir(self, directory: Path) -> Path:
        (directory / "progress.txt").write_text("3/10\n")
        (directory / "progresskit-progress.json.bak").write_text("{}\n")
        return directory

    def mutate_run(self, work_dir: Path) -> None:
        write_real_document(work_dir, 7)


def test_a_corrupt_field_is_a_warning_naming_it(tmp_path: Path) -> None:
    TestProgressFileConformance().make_corrupt_run(tmp_path)
    info = ProgressFileTracker(str(tmp_path)).calculate_progress()
    assert info.completed_steps is None
    assert any("field 'steps' expects a number >= 0, got str 'three'" in w
               for w in info.warnings)
    assert any("field 'fraction'" in w for w in info.warnings)


def test_a_document_cut_short_keeps_the_last_good_read(tmp_path: Path) -> None:
    write_real_document(tmp_path, 3)
    tracker = ProgressFileTracker(str(tmp_path))
    assert tracker.calculate_progress().completed_steps == 3
    path = tmp_path / PROGRESS_FILENAME
    path.write_text(path.read_text()[:40])
    info = tracker.calculate_progress()
    assert info.completed_steps == 3
    assert any("showing the last good read" in w for w in info.warnings)


def test_threads_of_a_closed_progress_end(tmp_path: Path) -> None:
    before = threading.active_count()
    for _ in track(range(3), run_dir=tmp_path, interval=0.01):
        pass
    assert threading.active_count() == before


def test_the_brush_writer_points_generic_metrics_to_progress(tmp_path: Path) -> None:
    with progresskit.StatusFileWriter(tmp_path / "training_status.json",
                                      total_iterations=10) as status, pytest.raises(
        TypeError, match=r"Brush's status file; for any metrics.*use progresskit\.Progress"
    ):
        status.set(loss=0.3)
