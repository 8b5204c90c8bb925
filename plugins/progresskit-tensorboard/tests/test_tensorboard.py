"""The TensorBoard plugin (plugins/progresskit-tensorboard), a third party in every respect.

Its samples are real event files (tests/data/README.md); what the tests need beyond them
(growing files, tensor scalars, rhythms, many runs) is written here with tensorboardX,
the real library, or cut from the real files.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import tensorboardX  # the test extra: pip install -e "plugins/progresskit-tensorboard[test]"
from hypothesis import given, settings
from hypothesis import strategies as st
from progresskit_tensorboard.eventfile import EventFile, is_minimised
from progresskit_tensorboard.proto import DecodeError, decode_event
from progresskit_tensorboard.tfrecord import HEADER_BYTES, masked_crc32c, split_records
from progresskit_tensorboard.tracker import MAX_BYTES_PER_CALL, TensorBoardTracker

import progresskit
from progresskit import Status, Tracking
from progresskit.testing import (
    CliResult,
    TrackerConformance,
    backdate_tree,
    imports_outside_public_api,
    make_run_dir,
    plugin_manager,
)

DIST = Path(__file__).resolve().parent.parent
DATA = DIST / "tests" / "data"
PLUGIN_SRC = DIST / "src" / "progresskit_tensorboard"
SAMPLES = ("completed", "killed", "tensorboardx", "tensorboardx_killed", "hf_a_completed")
#: tensorboard/read_back.json's file paths, by sample directory.
READ_BACK_DIRS = {
    "completed": "tensorboard/completed/logs",
    "killed": "tensorboard/killed/logs",
    "tensorboardx": "tensorboard/tensorboardx/logs",
    "tensorboardx_killed": "tensorboard/tensorboardx_killed/logs",
    "hf_a_completed": "hf_trainer/a_completed/output/runs/Dec01_23-01-12_vm",
}


def sample(name: str, into: Path, *, age: float | None = 3600.0) -> Path:
    """A copy of the real sample ``name`` at ``into`` (its files ``age`` seconds old)."""
    shutil.copytree(DATA / name, into)
    if age is not None:
        backdate_tree(into, age)
    return into


def event_file(run: Path) -> Path:
    [path] = run.glob("events.out.tfevents.*")
    return path


def record_offsets(data: bytes) -> list[int]:
    """Where each record of a real event file starts (its framing, read by split_records)."""
    return [offset for offset, _ in split_records(data, 0).records]


def read(run: Path, config: dict[str, Any] | None = None) -> progresskit.ProgressInfo:
    return TensorBoardTracker(run, config).calculate_progress()


def write_scalars(logdir: Path, steps: range) -> None:
    """``train/loss`` and ``train/acc`` at each step, with tensorboardX's SummaryWriter."""
    writer = tensorboardX.SummaryWriter(str(logdir))
    for step in steps:
        writer.add_scalar("train/loss", 2.0 / (1 + step), step)
        writer.add_scalar("train/acc", step / (1 + step), step)
    writer.close()


class SyncWriter:
    """tensorboardX's own record writer, without SummaryWriter's thread: ``flush()`` puts
    every event logged so far into the file (SummaryWriter.flush() does not wait for its
    queue), which a test of a growing file needs."""

    def __init__(self, logdir: Path, *, started: float | None = None):
        from tensorboardX.event_file_writer import EventsWriter

        logdir.mkdir(parents=True, exist_ok=True)
        # The writer stamps its first event (file_version) with the clock: a run made to
        # have started in the past must have started then.
        with mock.patch("time.time", return_value=started or time.time()):
            self.writer = EventsWriter(str(logdir / "events"))

    def add_scalar(self, tag: str, value: float, step: int, walltime: float | None = None) -> None:
        from tensorboardX.proto.event_pb2 import Event
        from tensorboardX.summary import scalar

        event = Event(wall_time=walltime or time.time(), step=step, summary=scalar(tag, value))
        self.writer.write_event(event)

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


# -- the real samples, against tensorboard's own reader -----------------------------------


@pytest.mark.parametrize("name", SAMPLES)
def test_the_real_samples_read_as_tensorboard_reads_them(name: str, tmp_path: Path) -> None:
    run = sample(name, tmp_path / name)
    progress = read(run)
    expected = {
        os.path.basename(f["file"]): f
        for f in json.loads((DATA / "read_back.json").read_text())["files"]
        if os.path.dirname(f["file"]) == READ_BACK_DIRS[name]
    }
    assert expected and set(expected) == {p.name for p in run.glob("events.*")}
    newest: dict[str, dict[str, Any]] = {}
    for reference in expected.values():
        for tag, scalar in reference["scalars"].items():
            if tag not in newest or scalar["last_wall_time"] >= newest[tag]["last_wall_time"]:
                newest[tag] = scalar
        for tag in reference["tensor_tags"]:  # text summaries: steps, but no score
            assert tag in progress.details["tags"] or f"last_step[{tag}]" in progress.details
            assert tag not in (progress.latest_score or {})
    assert progress.latest_score == {t: s["last_value"] for t, s in newest.items()}
    for tag, scalar in newest.items():
        assert progress.details[f"last_step[{tag}]"] == str(scalar["last_step"])
        assert float(progress.details[f"wall_time[{tag}]"]) == pytest.approx(
            scalar["last_wall_time"], abs=1e-3
        )
    assert progress.last_update_time == pytest.approx(
        max(s["last_wall_time"] for s in newest.values()), abs=0.2
    )
    assert progress.error_message is None
    assert not [w for w in progress.warnings if "CRC" in w or "byte" in w]


def test_completed_and_killed_runs_step_by_step(tmp_path: Path) -> None:
    config = {"total_steps": 200}
    completed = read(sample("completed", tmp_path / "c"), config)
    assert (completed.completed_steps, completed.total_steps) == (200, 200)  # steps 0..199
    assert completed.progress_percentage == 100.0
    killed = read(sample("killed", tmp_path / "k"), config)
    assert (killed.completed_steps, killed.progress_percentage) == (122, 61.0)
    tbx_killed = read(sample("tensorboardx_killed", tmp_path / "x"), config)
    assert tbx_killed.completed_steps == 86  # its write buffer's boundary: step 85
    assert completed.start_time is not None and completed.last_update_time is not None
    assert 4.0 < completed.last_update_time - completed.start_time < 5.0  # write.log.run.json


def test_best_is_the_lowest_loss_and_the_highest_of_the_rest(tmp_path: Path) -> None:
    progress = read(sample("completed", tmp_path / "c"))
    assert progress.best_score is not None and progress.latest_score is not None
    # tb_write.py: loss = 2.5 exp(-step/80) + 0.1 sin(step/5) dips below its last value;
    # lr falls from 1e-3 by a cosine, so its best (highest) is the first.
    assert progress.best_score["train/loss"] < progress.latest_score["train/loss"]
    assert progress.best_score["train/lr"] == pytest.approx(1e-3)
    assert is_minimised("val_loss") and is_minimised("Train/LOSS_epoch")
    assert not is_minimised("val_acc") and not is_minimised("train/lr")


def test_unknown_total_is_null_never_zero_and_says_how_to_set_it(tmp_path: Path) -> None:
    progress = read(sample("completed", tmp_path / "c"))
    assert progress.total_steps is None and progress.progress_percentage is None
    assert progress.completed_steps == 200
    assert any("total_steps" in w and "progresskit.yaml" in w for w in progress.warnings)


def test_max_steps_is_read_when_total_steps_is_absent(tmp_path: Path) -> None:
    progress = read(sample("killed", tmp_path / "k"), {"max_steps": 244})
    assert progress.total_steps == 244 and progress.progress_percentage == 50.0


def test_a_run_of_two_writers_merges_their_tags(tmp_path: Path) -> None:
    progress = read(sample("hf_a_completed", tmp_path / "hf"))
    assert progress.details["event_files"] == "2"
    assert progress.completed_steps == 96  # transformers logs global steps from 1
    # The final evaluate() wrote the .1 file after the .0: its eval/loss is the latest.
    assert progress.latest_score is not None
    assert progress.latest_score["eval/runtime"] == pytest.approx(0.1165, abs=1e-4)


# -- reading incrementally -----------------------------------------------------------------


def test_a_growing_file_is_read_from_its_last_offset(tmp_path: Path) -> None:
    run = tmp_path / "run"
    writer = SyncWriter(run)
    tracker = TensorBoardTracker(run)
    steps = []
    offsets = []
    try:
        for start in (0, 50, 100):
            for step in range(start, start + 50):
                writer.add_scalar("train/loss", 1.0 / (1 + step), step)
            writer.flush()
            [(name, before)] = [(n, f.offset) for n, f in tracker.event_files.items()] or [
                (None, 0)
            ]
            progress = tracker.calculate_progress()
            [(name, state)] = tracker.event_files.items()
            size = os.path.getsize(run / name)
            assert state.offset == size and state.pending == 0
            offsets.append((before, state.offset))
            steps.append(progress.completed_steps)
    finally:
        writer.close()
    assert steps == [50, 100, 150]
    # Each read started where the previous one ended.
    assert [b for b, _ in offsets[1:]] == [e for _, e in offsets[:-1]]
    assert tracker.event_files[name].tags["train/loss"].count == 150


def test_a_torn_last_record_is_not_yet_complete_then_completes(tmp_path: Path) -> None:
    real = event_file(DATA / "completed").read_bytes()
    last = record_offsets(real)[-1]
    run = make_run_dir(tmp_path / "run")
    path = run / event_file(DATA / "completed").name
    whole = read(sample("completed", tmp_path / "whole"))
    for cut in (last + 1, last + HEADER_BYTES - 1, last + HEADER_BYTES + 3, len(real) - 1):
        path.write_bytes(real[:cut])
        tracker = TensorBoardTracker(run)
        torn = tracker.calculate_progress()
        assert torn.error_message is None
        assert not [w for w in torn.warnings if "CRC" in w], torn.warnings
        [state] = tracker.event_files.values()
        assert (state.offset, state.pending) == (last, cut - last)
        with open(path, "ab") as fh:  # the writer finishes its record
            fh.write(real[cut:])
        assert tracker.calculate_progress().latest_score == whole.latest_score
        assert state.offset == len(real)


def test_a_data_crc_mismatch_mid_file_is_a_warning_and_reading_goes_on(tmp_path: Path) -> None:
    real = bytearray(event_file(DATA / "completed").read_bytes())
    offsets = record_offsets(bytes(real))
    bad = offsets[len(offsets) // 2]
    real[bad + HEADER_BYTES + 2] ^= 0xFF
    run = make_run_dir(tmp_path / "run", {event_file(DATA / "completed").name: bytes(real)})
    progress = read(run)
    [warning] = [w for w in progress.warnings if "CRC" in w]
    assert f"byte {bad}: data CRC mismatch" in warning and "events.out.tfevents." in warning
    assert progress.completed_steps == 200  # the records after it were read
    tracker = TensorBoardTracker(run)
    tracker.calculate_progress()
    [state] = tracker.event_files.values()
    assert sum(t.count for t in state.tags.values()) == 200 * 2 + 1 - 1


def test_a_corrupt_header_skips_to_the_next_valid_record(tmp_path: Path) -> None:
    real = bytearray(event_file(DATA / "completed").read_bytes())
    offsets = record_offsets(bytes(real))
    bad = offsets[100]
    real[bad] ^= 0x01  # the length is wrong and its CRC says so
    run = make_run_dir(tmp_path / "run", {"events.out.tfevents.1.vm": bytes(real)})
    progress = read(run)
    [warning] = [w for w in progress.warnings if "CRC" in w]
    skipped = offsets[101] - bad
    assert f"byte {bad}: length CRC mismatch (corrupt header); {skipped} bytes skipped" in warning
    assert progress.completed_steps == 200


def test_a_zero_filled_stretch_is_skipped_to_the_next_record(tmp_path: Path) -> None:
    # What a crash can leave on some filesystems: the file's size grew, its bytes are zeros.
    real = event_file(DATA / "completed").read_bytes()
    cut = record_offsets(real)[150]
    zeros = 1 << 20
    run = make_run_dir(
        tmp_path / "run", {"events.out.tfevents.1.vm": real[:cut] + bytes(zeros) + real[cut:]}
    )
    start = time.perf_counter()
    progress = read(run)
    assert time.perf_counter() - start < 2.0  # not one CRC per zero byte
    [warning] = [w for w in progress.warnings if "CRC" in w]
    assert f"byte {cut}: length CRC mismatch (corrupt header); {zeros} bytes skipped" in warning
    assert progress.completed_steps == 200


def test_split_records_checks_both_crcs_of_real_records() -> None:
    real = event_file(DATA / "tensorboardx").read_bytes()
    split = split_records(real, 0)
    assert not split.problems and split.consumed == len(real) and split.needed == HEADER_BYTES
    first = real[:8]
    assert masked_crc32c(first) == struct.unpack("<I", real[8:12])[0]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_any_bytes_decode_or_raise_decode_error_only(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode_event(data)
    split = split_records(data, 0)
    assert split.consumed <= len(data)


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=19119 - 1), st.integers(min_value=1, max_value=255))
def test_any_flipped_byte_of_a_real_file_is_read_without_raising(at: int, mask: int) -> None:
    real = bytearray(event_file(DATA / "completed").read_bytes())
    real[at] ^= mask
    split = split_records(bytes(real), 0)
    for _offset, record in split.records:
        decode_event(record)  # a CRC-checked record is the Event it was
    assert split.problems  # every byte is under a CRC: the flip is noticed
    assert len(split.records) >= 402 - 3


def test_garbage_is_reported_and_never_raised(tmp_path: Path) -> None:
    run = make_run_dir(tmp_path / "run", {"events.out.tfevents.1.vm": os.urandom(4096)})
    progress = read(run)
    assert progress.completed_steps is None
    assert any("corrupt header" in w for w in progress.warnings)


def test_a_replaced_file_is_read_again_from_its_start(tmp_path: Path) -> None:
    run = sample("killed", tmp_path / "run")
    tracker = TensorBoardTracker(run, {"total_steps": 200})
    assert tracker.calculate_progress().completed_steps == 122
    name = event_file(run).name
    replacement = tmp_path / "new"
    shutil.copy(event_file(DATA / "completed"), replacement)
    os.replace(replacement, run / name)  # another inode under the same name
    progress = tracker.calculate_progress()
    assert progress.completed_steps == 200
    assert any("replaced or truncated" in w for w in progress.warnings)


def test_a_removed_file_no_longer_counts(tmp_path: Path) -> None:
    run = sample("hf_a_completed", tmp_path / "run")
    tracker = TensorBoardTracker(run)
    assert tracker.calculate_progress().details["event_files"] == "2"
    first, second = sorted(run.glob("events.*"))
    second.unlink()
    progress = tracker.calculate_progress()
    assert progress.details["event_files"] == "1" and set(tracker.event_files) == {first.name}


def test_a_fifo_or_device_named_like_an_event_file_is_refused_without_blocking(
    tmp_path: Path,
) -> None:
    run = sample("completed", tmp_path / "run")
    os.mkfifo(run / "events.out.tfevents.2.vm")  # no writer: a blocking open never returns
    (run / "events.out.tfevents.3.vm").symlink_to("/dev/zero")
    progress = read(run)
    refused = [w for w in progress.warnings if "not a regular file" in w]
    assert [w.split(":")[0] for w in refused] == ["events.out.tfevents.2.vm",
                                                 "events.out.tfevents.3.vm"]
    assert progress.completed_steps == 200


def test_a_file_larger_than_one_querys_budget_is_caught_up_over_queries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = sample("completed", tmp_path / "run")
    monkeypatch.setattr("progresskit_tensorboard.tracker.MAX_BYTES_PER_CALL", 4096)
    monkeypatch.setattr("progresskit_tensorboard.eventfile.CHUNK_BYTES", 1024)
    tracker = TensorBoardTracker(run)
    first = tracker.get_progress()
    assert first.completed_steps is not None and first.completed_steps < 200
    assert any("so far; the rest on the next queries" in w for w in first.warnings)
    seen = [first.completed_steps]
    for _ in range(20):  # the budget is spent anew each query: the cache must not hold it
        seen.append(tracker.get_progress().completed_steps or 0)
        if seen[-1] == 200:
            break
    assert seen[-1] == 200 and seen == sorted(seen)
    assert not any("so far" in w for w in tracker.get_progress().warnings)
    assert MAX_BYTES_PER_CALL >= 1 << 20


def test_tensor_scalars_are_scored_and_text_is_not(tmp_path: Path) -> None:
    from tensorboardX.proto.summary_pb2 import Summary, SummaryMetadata
    from tensorboardX.proto.tensor_pb2 import TensorProto
    from tensorboardX.proto.tensor_shape_pb2 import TensorShapeProto

    run = tmp_path / "run"
    writer = tensorboardX.FileWriter(str(run))
    meta = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name="scalars"))
    text = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name="text"))
    for step in range(3):
        # tf.summary.scalar's shape: a rank-0 tensor, its metadata on the first value only.
        values = [
            Summary.Value(tag="f32", tensor=TensorProto(dtype=1, float_val=[0.5 + step]),
                          metadata=meta if step == 0 else None),
            Summary.Value(tag="f64", tensor=TensorProto(dtype=2, double_val=[1.0 - step / 4]),
                          metadata=meta if step == 0 else None),
            Summary.Value(tag="raw", tensor=TensorProto(
                dtype=1, tensor_content=struct.pack("<f", step * 2.0)),
                metadata=meta if step == 0 else None),
            Summary.Value(tag="half", tensor=TensorProto(dtype=19, half_val=[15872]),  # 1.5
                          metadata=meta if step == 0 else None),
            Summary.Value(tag="bf16", tensor=TensorProto(dtype=14, half_val=[0x4000]),  # 2.0
                          metadata=meta if step == 0 else None),
            Summary.Value(tag="i64", tensor=TensorProto(dtype=9, int64_val=[-3 - step]),
                          metadata=meta if step == 0 else None),
            Summary.Value(tag="vector", tensor=TensorProto(
                dtype=1, float_val=[1.0, 2.0],
                tensor_shape=TensorShapeProto(dim=[TensorShapeProto.Dim(size=2)])),
                metadata=meta if step == 0 else None),
            Summary.Value(tag="notes", tensor=TensorProto(dtype=7, string_val=[b"hello"]),
                          metadata=text if step == 0 else None),
            Summary.Value(tag="int", tensor=TensorProto(dtype=3, int_val=[7]),
                          metadata=text if step == 0 else None),
        ]
        writer.add_summary(Summary(value=values), step)
    writer.close()
    progress = read(run)
    assert progress.latest_score == {
        "f32": 2.5, "f64": 0.5, "raw": 4.0, "half": 1.5, "bf16": 2.0, "i64": -5.0
    }
    assert progress.best_score == {
        "f32": 2.5, "f64": 1.0, "raw": 4.0, "half": 1.5, "bf16": 2.0, "i64": -3.0
    }
    assert progress.details["last_step[notes]"] == "2" and progress.details["tags"] == "9"


def test_a_negative_step_is_no_step_done_not_an_exception(tmp_path: Path) -> None:
    writer = SyncWriter(tmp_path / "run")
    writer.add_scalar("loss", 1.0, -1)
    writer.close()
    progress = read(tmp_path / "run", {"total_steps": 10})
    assert progress.completed_steps == 0 and progress.progress_percentage == 0.0


def test_histograms_and_nan_values_advance_steps_but_are_not_scores(tmp_path: Path) -> None:
    import numpy

    run = tmp_path / "run"
    writer = tensorboardX.SummaryWriter(str(run))
    for step in range(1, 4):
        writer.add_histogram("weights", numpy.arange(10.0) * step, step)
        writer.add_scalar("loss", float("nan") if step == 3 else 1.0 / step, step)
    writer.close()
    progress = read(run)
    assert progress.completed_steps == 3
    assert progress.latest_score == {"loss": 0.5} and progress.best_score == {"loss": 0.5}
    assert any("loss: 1 NaN or infinite" in w for w in progress.warnings)
    assert progress.details["last_step[weights]"] == "3"


# -- detection, config, status --------------------------------------------------------------


def test_a_lightning_version_directory_is_left_to_the_lightning_plugin(tmp_path: Path) -> None:
    version = sample("completed", tmp_path / "lightning_logs" / "version_0")
    (version / "hparams.yaml").write_text("lr: 0.001\n")
    target = progresskit.Target(str(version), {}, {n: False for n in os.listdir(version)})
    from progresskit_tensorboard.plugin import tracker

    assert tracker.claim(target) is False
    (version / "hparams.yaml").unlink()
    target = progresskit.Target(str(version), {}, {n: False for n in os.listdir(version)})
    assert tracker.claim(target) is True


def test_a_logdir_of_many_runs_lists_each_run(tmp_path: Path) -> None:
    logdir = tmp_path / "logdir"
    for name in ("completed", "killed", "tensorboardx"):
        sample(name, logdir / name)
    sample("hf_a_completed", logdir / "nested" / "Dec01_23-01-12_vm")
    make_run_dir(logdir / "broken", {"events.out.tfevents.1.vm": os.urandom(300)})
    make_run_dir(logdir / "notes", {"README.md": "not a run\n"})
    runs = {
        os.path.relpath(r.work_dir, logdir): r
        for r in Tracking(plugin_manager(only=["tensorboard"])).scan(str(logdir), processes={})
    }
    assert set(runs) == {"completed", "killed", "tensorboardx", "broken",
                         os.path.join("nested", "Dec01_23-01-12_vm")}
    assert {r.progress.runner_type for r in runs.values()} == {"tensorboard"}
    assert runs["killed"].progress.completed_steps == 122
    assert any("corrupt header" in w for w in runs["broken"].progress.warnings)
    assert runs["completed"].progress.completed_steps == 200


def test_reaching_the_configured_total_is_finished(tmp_path: Path) -> None:
    run = sample("completed", tmp_path / "run")
    (tmp_path / "progresskit.yaml").write_text("total_steps: 200\n")
    result = Tracking(plugin_manager(only=["tensorboard"])).status(
        str(run), discover_processes=False
    )
    assert result.status is Status.FINISHED, result.reason
    assert result.progress.eta_seconds == 0.0


def test_a_bad_total_in_the_config_is_a_clear_error(tmp_path: Path) -> None:
    run = sample("completed", tmp_path / "run")
    (tmp_path / "progresskit.yaml").write_text("total_steps: 0\n")
    with pytest.raises(progresskit.ConfigError, match=r"total_steps.*integer > 0"):
        Tracking(plugin_manager(only=["tensorboard"])).status(str(run), discover_processes=False)


def rhythm_run(path: Path, *, silent_for: float, steps: int = 12, gap: float = 300.0) -> Path:
    """A run that logged a step every ``gap`` seconds and went silent ``silent_for`` ago."""
    end = time.time() - silent_for
    writer = SyncWriter(path, started=end - steps * gap)
    for step in range(steps):
        writer.add_scalar("train/loss", 1.0 / (1 + step), step, end - (steps - 1 - step) * gap)
    writer.close()
    backdate_tree(path, silent_for)
    return path


def test_a_run_silent_far_beyond_its_cadence_is_failed(tmp_path: Path) -> None:
    run = rhythm_run(tmp_path / "run", silent_for=3 * 3600)
    result = Tracking(plugin_manager(only=["tensorboard"])).status(
        str(run), discover_processes=False
    )
    assert result.status is Status.FAILED, result.reason
    assert "it updated every ~5m" in result.reason, result.reason


def test_the_same_silence_with_a_live_process_is_stuck(tmp_path: Path) -> None:
    run = rhythm_run(tmp_path / "run", silent_for=3 * 3600)
    me = progresskit.ProcessInfo(pid=os.getpid())
    result = Tracking(plugin_manager(only=["tensorboard"])).status(str(run), process=me)
    assert result.status is Status.STUCK, result.reason


def test_a_silence_within_its_cadence_is_running(tmp_path: Path) -> None:
    run = rhythm_run(tmp_path / "run", silent_for=600)
    result = Tracking(plugin_manager(only=["tensorboard"])).status(
        str(run), discover_processes=False
    )
    assert result.status is Status.RUNNING, result.reason


def test_a_cadence_faster_than_the_writers_flush_is_not_trusted(tmp_path: Path) -> None:
    # A step every 2 s, flushed every 120 s: 10 minutes of silence is one flush late at
    # most 5 times over; the cadence judged is one update per flush interval.
    run = rhythm_run(tmp_path / "run", silent_for=200, steps=2000, gap=2.0)
    tracker = TensorBoardTracker(run)
    tracker.get_progress()
    times = tracker.update_times()
    assert len(times) > 4 and min(b - a for a, b in itertools.pairwise(times)) >= 120.0
    result = Tracking(plugin_manager(only=["tensorboard"])).status(
        str(run), discover_processes=False
    )
    assert result.status is Status.RUNNING, result.reason


@pytest.mark.parametrize(("silent_for", "expected"), [(600, Status.RUNNING), (3600, Status.FAILED)])
def test_a_short_run_is_judged_by_its_steps_and_its_writers_flushes(
    tmp_path: Path, silent_for: float, expected: Status
) -> None:
    # 50 steps within 5 s: fewer beats than a rhythm needs. Its steps' own times judge it,
    # never as faster than its writer writes them out (every 120 s): silent for 10 minutes
    # it may be between two flushes, for an hour it is not.
    run = rhythm_run(tmp_path / "run", silent_for=silent_for, steps=50, gap=0.1)
    result = Tracking(plugin_manager(only=["tensorboard"])).status(
        str(run), discover_processes=False
    )
    assert result.status is expected, result.reason
    if expected is Status.FAILED:
        assert "it updated every ~100ms, written out at least every 2m" in result.reason


def test_a_killed_short_run_is_failed_not_running_for_a_day(tmp_path: Path) -> None:
    # The real killed sample: 122 steps in a few seconds, then SIGKILL (its events' own
    # times say when, whatever the files' modification times).
    run = sample("killed", tmp_path / "run")
    tracker = TensorBoardTracker(run)
    tracker.get_progress()
    assert len(tracker.update_times()) > 4
    result = Tracking(plugin_manager(only=["tensorboard"])).status(
        str(run), discover_processes=False
    )
    assert result.status is Status.FAILED, result.reason


def test_the_writers_flush_interval_is_configurable(tmp_path: Path) -> None:
    run = rhythm_run(tmp_path / "run", silent_for=3600, steps=50, gap=0.1)
    pm = plugin_manager(only=["tensorboard"])
    tracking = Tracking(pm, config={"tensorboard_flush_secs": 900})  # 7 x 15 min allowed
    assert tracking.status(str(run), discover_processes=False).status is Status.RUNNING
    with pytest.raises(progresskit.ConfigError, match="tensorboard_flush_secs"):
        Tracking(pm, config={"tensorboard_flush_secs": 0})


def test_status_of_a_logdir_from_the_cli(
    tmp_path: Path, progresskit_cli: Callable[..., CliResult]
) -> None:
    logdir = tmp_path / "logdir"
    sample("completed", logdir / "a")
    sample("killed", logdir / "b")
    (logdir / "progresskit.yaml").write_text("total_steps: 200\n")
    for in_process in (True, False):
        result = progresskit_cli("status", str(logdir), "--json", in_process=in_process,
                                 cwd=tmp_path)
        rows = {os.path.basename(r["work_dir"]): r for r in result.json()["runs"]}
        assert set(rows) == {"a", "b"}, result.stderr
        assert rows["a"]["status"] == "finished"
        assert rows["b"]["progress"]["completed_steps"] == 122
        assert rows["b"]["progress"]["progress_percentage"] == 61.0
        # Killed: an hour of silence, far beyond what its writer's flushes allow.
        assert rows["b"]["status"] == "failed", rows["b"]["reason"]
        assert result.ret == 1, result.stderr  # a failed run: the exit code says so


def test_it_is_found_through_its_entry_point(
    progresskit_cli: Callable[..., CliResult],
) -> None:
    plugins = {p["name"]: p for p in progresskit_cli("plugins", "--json").json()}
    assert plugins["tensorboard"]["origin"] == "entry point"
    assert plugins["tensorboard"]["distribution"] == "progresskit-tensorboard"
    assert plugins["tensorboard"]["runner_types"] == ["tensorboard"]


def test_it_uses_only_the_public_api_and_no_tensorboard() -> None:
    banned = ["tensorboard", "tensorboardX", "tensorflow", "google.protobuf"]
    assert imports_outside_public_api(PLUGIN_SRC, banned) == []


class TestTensorBoardConformance(TrackerConformance):
    plugin_name = "tensorboard"
    runner_type = "tensorboard"

    def make_valid_run(self, directory: Path) -> Path:
        shutil.copy(event_file(DATA / "completed"), directory)
        return directory

    def make_corrupt_run(self, directory: Path) -> Path:
        real = bytearray(event_file(DATA / "completed").read_bytes())
        real[len(real) // 2] ^= 0xFF
        (directory / event_file(DATA / "completed").name).write_bytes(bytes(real))
        return directory

    def make_foreign_dir(self, directory: Path) -> Path:
        # A Lightning TensorBoardLogger version directory: the Lightning plugin's.
        shutil.copy(event_file(DATA / "completed"), directory)
        return make_run_dir(directory, {"hparams.yaml": "lr: 0.001\n", "checkpoints": None})

    def mutate_run(self, work_dir: Path) -> None:
        # A resumed run: a second writer appends a new file, further on.
        write_scalars(work_dir, range(300, 310))


def test_an_unreadable_file_is_a_warning_and_the_other_files_are_read(tmp_path: Path) -> None:
    run = sample("completed", tmp_path / "run")
    (run / "events.out.tfevents.2.vm").symlink_to(tmp_path / "gone")  # dangling
    progress = read(run)
    assert any(w.startswith("events.out.tfevents.2.vm: cannot read") for w in progress.warnings)
    assert progress.completed_steps == 200
    assert EventFile(str(event_file(DATA / "completed"))).read(1 << 20) == 19119
