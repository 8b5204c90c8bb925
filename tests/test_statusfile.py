"""StatusFileWriter: Brush-compatible status files from Python trainers (issue 4)."""

from __future__ import annotations

import gc
import itertools
import json
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from progresskit import StatusFileWriter
from progresskit.formats.statusfile import (
    STATUS_FIELDS,
    STATUS_VALUES,
    format_timestamp,
    parse_timestamp,
)
from progresskit.model.vocabulary import SOURCE_VOCABULARIES
from progresskit.producer import _throttle

TESTS = Path(__file__).parent
#: The keys of the seed's example document, in its order.
SEED_KEYS = [
    "current_iteration", "total_iterations", "progress_percentage", "elapsed_time_seconds",
    "estimated_remaining_seconds", "current_splat_count", "last_eval_psnr", "last_eval_ssim",
    "export_path", "current_export_file", "status", "last_updated",
]
#: What StatusFileWriter writes: the seed's fields, then progresskit's times of the last
#: writes (the seed's readers, run below unchanged, ignore a field they do not know).
WRITTEN_KEYS = [*SEED_KEYS, "update_times"]
#: Long enough that no background write happens during a test: every write is explicit.
NEVER = 3600.0


def read(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def wait_for(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


@pytest.fixture
def record_writes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[float, dict[str, Any]]]:
    """Every write the writer makes: (monotonic time, document). Writes still happen."""
    writes: list[tuple[float, dict[str, Any]]] = []
    # The writer's one write path, shared with Progress (producer/_throttle.py).
    real = _throttle.atomic_write_text

    def recording(path: str | os.PathLike[str], text: str) -> None:
        real(path, text)
        writes.append((time.monotonic(), json.loads(text)))

    monkeypatch.setattr(_throttle, "atomic_write_text", recording)
    return writes


def test_the_file_exists_at_once_with_every_seed_field(tmp_path: Path) -> None:
    path = tmp_path / "out" / "training_status.json"
    writer = StatusFileWriter(path, total_iterations=10_000, interval=NEVER)
    doc = read(path)
    assert list(doc) == WRITTEN_KEYS
    assert doc["status"] == "starting"
    assert doc["current_iteration"] == 0 and doc["total_iterations"] == 10_000
    assert doc["progress_percentage"] == 0.0
    assert doc["export_path"] == str(tmp_path / "out")
    assert abs(parse_timestamp(doc["last_updated"]) - time.time()) < 5
    writer.close()
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_the_document_vocabulary_agrees_with_the_seed_and_the_status_mapping() -> None:
    # formats.statusfile (the wire format) and the model's brush vocabulary each spell the six
    # words: the model layer cannot import the formats layer, so this test keeps them one.
    assert STATUS_FIELDS[: len(SEED_KEYS)] == tuple(SEED_KEYS)
    assert tuple(SOURCE_VOCABULARIES["brush"]) == STATUS_VALUES


def test_status_changes_are_written_at_once_and_steps_wait_for_the_interval(
    tmp_path: Path, record_writes: list[tuple[float, dict[str, Any]]]
) -> None:
    path = tmp_path / "training_status.json"
    writer = StatusFileWriter(path, total_iterations=1000, interval=NEVER)
    writer.update(1)  # starting -> training: a status change
    assert read(path)["status"] == "training" and read(path)["current_iteration"] == 1
    for step in range(2, 500):
        writer.update(step)
    assert read(path)["current_iteration"] == 1
    assert len(record_writes) == 2
    writer.update(500, "evaluating")
    doc = read(path)
    assert (doc["status"], doc["current_iteration"]) == ("evaluating", 500)
    writer.set(last_eval_psnr=28.5, last_eval_ssim=0.85, current_splat_count=50_000)
    assert read(path)["last_eval_psnr"] is None  # fields ride on the next write
    writer.flush()
    doc = read(path)
    assert (doc["last_eval_psnr"], doc["last_eval_ssim"], doc["current_splat_count"]) == (
        28.5, 0.85, 50_000)
    writes = len(record_writes)
    writer.flush()  # nothing changed: no write
    assert len(record_writes) == writes
    writer.update(501)
    assert read(path)["status"] == "training"  # back to training is a change: written
    writer.close()
    doc = read(path)
    assert doc["status"] == "completed" and doc["current_iteration"] == 501
    assert doc["estimated_remaining_seconds"] == 0.0
    assert doc["progress_percentage"] == pytest.approx(50.1)


def test_the_background_writes_respect_the_interval_and_stop_when_progress_stops(
    tmp_path: Path, record_writes: list[tuple[float, dict[str, Any]]]
) -> None:
    path = tmp_path / "training_status.json"
    interval = 0.1
    writer = StatusFileWriter(path, total_iterations=10**9, interval=interval)
    writer.update(1)
    forced = len(record_writes)
    step = 1
    while len(record_writes) < forced + 4:
        step += 1
        writer.update(step)
        time.sleep(0.001)
    background = [t for t, _ in record_writes[forced:]]
    gaps = [b - a for a, b in itertools.pairwise(background)]
    assert min(gaps) >= interval * 0.99, gaps
    # The trainer stalls: no news, no writes, so last_updated becomes a stale heartbeat.
    wait_for(lambda: record_writes[-1][1]["current_iteration"] == step)
    settled = len(record_writes)
    time.sleep(interval * 4)
    assert len(record_writes) == settled
    writer.close()


def test_interval_zero_writes_every_update(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    with StatusFileWriter(path, total_iterations=100, interval=0) as writer:
        for step in range(1, 6):
            writer.update(step)
            assert read(path)["current_iteration"] == step
        writer.set(current_export_file="export_00005.ply")
        assert read(path)["current_export_file"] == "export_00005.ply"


def test_estimated_remaining_time_comes_from_the_rate_since_training_started(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.json"
    writer = StatusFileWriter(path, total_iterations=100, interval=NEVER)
    writer.update(0)
    time.sleep(0.2)
    writer.update(50)
    writer.flush()
    doc = read(path)
    # 50 steps took >= 0.2 s, so the other 50 take about as long again.
    assert doc["estimated_remaining_seconds"] >= 0.19
    assert doc["estimated_remaining_seconds"] <= doc["elapsed_time_seconds"] + 0.05
    writer.close()


def test_a_clean_exit_writes_completed(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    with StatusFileWriter(path, total_iterations=3, interval=NEVER) as writer:
        for step in (1, 2, 3):
            writer.update(step)
    doc = read(path)
    assert (doc["status"], doc["current_iteration"], doc["progress_percentage"]) == (
        "completed", 3, 100.0)
    assert "error_message" not in doc


def test_an_exception_writes_error_with_the_exception_text(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    with pytest.raises(RuntimeError, match="CUDA out of memory"):  # noqa: SIM117
        with StatusFileWriter(path, total_iterations=100, interval=NEVER) as writer:
            writer.update(7)
            raise RuntimeError("CUDA out of memory")
    doc = read(path)
    assert doc["status"] == "error"
    assert doc["current_iteration"] == 7
    assert doc["error_message"] == "RuntimeError: CUDA out of memory"
    assert doc["estimated_remaining_seconds"] is None


def test_an_error_reported_before_exit_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    with StatusFileWriter(path, total_iterations=100, interval=NEVER) as writer:
        writer.update(3)
        writer.close("error", "diverged: loss is NaN")
    doc = read(path)
    assert (doc["status"], doc["error_message"]) == ("error", "diverged: loss is NaN")


def test_close_is_idempotent_and_a_closed_writer_refuses_updates(tmp_path: Path) -> None:
    writer = StatusFileWriter(tmp_path / "s.json", total_iterations=10, interval=0.05)
    writer.update(1)
    writer.close()
    writer.close()
    with pytest.raises(ValueError, match="closed"):
        writer.update(2)
    with pytest.raises(ValueError, match="closed"):
        writer.set(current_splat_count=1)


def test_a_writer_nobody_closed_stops_its_thread_when_collected(tmp_path: Path) -> None:
    before = set(threading.enumerate())
    writer = StatusFileWriter(tmp_path / "s.json", total_iterations=10, interval=0.01)
    [thread] = set(threading.enumerate()) - before
    writer.update(3)
    del writer
    gc.collect()
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert read(tmp_path / "s.json")["status"] == "training"  # not claimed completed


def test_bad_values_are_refused_naming_the_field(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    with pytest.raises(ValueError, match="total_iterations must be an integer >= 1"):
        StatusFileWriter(path, total_iterations=0)
    with pytest.raises(ValueError, match="interval must be >= 0"):
        StatusFileWriter(path, total_iterations=1, interval=-1)
    writer = StatusFileWriter(path, total_iterations=100, interval=NEVER)
    with pytest.raises(ValueError, match=r"current_iteration must be an integer >= 0, got '5'"):
        writer.update("5")  # type: ignore[arg-type]
    writer.update(5)
    writer.update(-1)  # the fast path stores it; the next write refuses it
    with pytest.raises(ValueError, match="current_iteration must be an integer >= 0, got -1"):
        writer.flush()
    assert read(path)["current_iteration"] == 5
    with pytest.raises(ValueError, match="status must be one of starting, training"):
        writer.update(6, "paused")
    with pytest.raises(ValueError, match="last_eval_psnr must be a finite number, got nan"):
        writer.set(last_eval_psnr=float("nan"))
    with pytest.raises(ValueError, match="current_export_file must be a string"):
        writer.set(current_export_file=3)
    with pytest.raises(TypeError, match=r"unknown field.*loss.*settable fields: total_iterations"):
        writer.set(loss=0.5)
    with pytest.raises(ValueError, match="close\\(\\) status must be 'completed' or 'error'"):
        writer.close("training")
    with pytest.raises(ValueError, match="error_message only with status 'error'"):
        writer.close("completed", "oops")
    writer.close()
    assert read(path)["status"] == "completed"


def test_a_failed_write_is_logged_and_training_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("x")
    with caplog.at_level(logging.WARNING, logger="progresskit.producer.statusfile"):
        writer = StatusFileWriter(blocker / "s.json", total_iterations=10, interval=NEVER)
        writer.update(1)
        writer.update(2, "evaluating")
        writer.close()
    assert isinstance(writer.last_write_error, OSError)
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1  # the same failure is logged once, not on every write
    assert "cannot write status file" in messages[0] and "s.json" in messages[0]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-06-28T09:34:56Z", 1751103296.0),
        ("2025-06-28T09:34:56", 1751103296.0),
        ("2025-06-28T11:34:56+02:00", 1751103296.0),
        ("2025-06-28T09:34:56.123456789Z", 1751103296.123456789),
        ("2025-06-28 04:34:56.5-05:00", 1751103296.5),
    ],
)
def test_timestamps_in_the_forms_writers_use(text: str, expected: float) -> None:
    assert parse_timestamp(text) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("text", ["", "yesterday", "2025-13-01T00:00:00Z", "2025-06-28"])
def test_bad_timestamps_say_what_was_expected(text: str) -> None:
    with pytest.raises(ValueError, match="date-time"):
        parse_timestamp(text)


def test_format_timestamp_is_brush_style() -> None:
    assert format_timestamp(1751103296.7) == "2025-06-28T09:34:56Z"
    assert parse_timestamp(format_timestamp(1751103296.0)) == 1751103296.0


# -- atomicity under load --------------------------------------------------------------------

READER = r"""
import json, os, sys
from progresskit_brush.tracker import BrushProgressTracker

path = sys.argv[1]
tracker = BrushProgressTracker(os.path.dirname(path), {"brush_reread_delay": 0})
reads = failures = backwards = tracker_problems = 0
last = -1
problems = []
while True:
    with open(path, encoding="utf-8") as fh:  # the seed's way: open, read, parse
        text = fh.read()
    reads += 1
    try:
        doc = json.loads(text)
    except ValueError as exc:
        failures += 1
        problems.append(f"{exc}: {text[:80]!r}")
        continue
    if doc["current_iteration"] < last:
        backwards += 1
    last = doc["current_iteration"]
    if doc["status"] == "completed":
        break
    # And progresskit's way, which must never need its second read here.
    progress = tracker.get_progress(force_refresh=True)
    if progress.warnings or progress.error_message:
        tracker_problems += 1
        problems.append(str(progress.error_message or progress.warnings))
print(json.dumps({"reads": reads, "failures": failures, "backwards": backwards,
                  "tracker_problems": tracker_problems, "last": last,
                  "problems": problems[:5]}))
"""


@pytest.mark.slow
def test_readers_hammering_the_file_never_see_a_partial_write(tmp_path: Path) -> None:
    path = tmp_path / "training_status.json"
    updates = 10_000
    writer = StatusFileWriter(path, total_iterations=updates, interval=0)
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        for step in range(1, updates + 1):
            writer.update(step)
        writer.close()
        out, _ = reader.communicate(timeout=120)
    finally:
        reader.kill()
    result = json.loads(out)
    assert reader.returncode == 0
    assert result["failures"] == 0, result["problems"]
    assert result["tracker_problems"] == 0, result["problems"]
    assert result["backwards"] == 0
    assert result["last"] == updates
    assert result["reads"] >= 100, result  # the reader really overlapped the writes


# -- the seed's own consumers -----------------------------------------------------------------

FAKE_CARGO = """#!{python}
# Stands in for `cargo run --release -- DATASET --save-status --export-path DIR
# --status-filename NAME` (Brush): a Python trainer publishing Brush's status file.
import argparse, os, sys, time
from progresskit import StatusFileWriter

brush_args = sys.argv[sys.argv.index("--") + 1:]
parser = argparse.ArgumentParser()
parser.add_argument("dataset")
parser.add_argument("--save-status", action="store_true")
parser.add_argument("--export-path", default=".")
parser.add_argument("--status-filename", default="training_status.json")
args = parser.parse_args(brush_args)
assert os.path.isdir(args.dataset) and args.save_status
path = os.path.join(args.export_path, args.status_filename)
total = 24
with StatusFileWriter(path, total_iterations=total, interval=0.1) as status:
    for step in range(1, total + 1):
        time.sleep(0.1)
        status.update(step)
        status.set(current_splat_count=1000 * step)
        if step == total // 2:
            status.update(step, "evaluating")
            status.set(last_eval_psnr=27.5, last_eval_ssim=0.84)
    status.update(total, "exporting")
    status.set(current_export_file=f"export_{{total:05d}}.ply")
"""


@pytest.mark.slow
def test_the_seeds_orchestration_loop_runs_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from helpers import seed_brush_examples as seed

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    cargo = bin_dir / "cargo"
    cargo.write_text(FAKE_CARGO.format(python=sys.executable))
    cargo.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    dataset = tmp_path / "dataset"
    dataset.mkdir()
    output = tmp_path / "output"

    statuses = []
    run = seed.run_brush_training(str(dataset), str(output))
    while True:
        try:
            statuses.append(next(run))
        except StopIteration as stop:
            returncode = stop.value
            break
    assert returncode == 0
    assert statuses, "the loop never saw the status file"
    for status in statuses:
        assert list(status) == WRITTEN_KEYS
        assert status["status"] in STATUS_VALUES
    iterations = [s["current_iteration"] for s in statuses]
    assert iterations == sorted(iterations)
    final = read(output / "status.json")
    assert final["status"] == "completed"
    assert final["current_export_file"] == "export_00024.ply"
    assert (final["last_eval_psnr"], final["current_splat_count"]) == (27.5, 24_000)


@pytest.mark.slow
def test_the_seeds_basic_monitor_runs_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "training_status.json"
    code = (
        f"import sys; sys.path.insert(0, {str(TESTS)!r}); "
        f"from helpers import seed_brush_examples as s; s.monitor_training({str(path)!r})"
    )
    monitor = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        with StatusFileWriter(path, total_iterations=12, interval=0.1) as writer:
            for step in range(1, 13):
                time.sleep(0.15)
                writer.update(step)
            writer.update(12, "exporting")
            writer.set(current_export_file="export_00012.ply")
        out, _ = monitor.communicate(timeout=60)
    finally:
        monitor.kill()
    assert monitor.returncode == 0
    lines = out.splitlines()
    assert lines[-1] == "Training completed! Output: export_00012.ply"
    assert lines[-2] == "Progress: 100.0% (12/12)"
    assert all(line.startswith("Progress: ") for line in lines[:-1])
