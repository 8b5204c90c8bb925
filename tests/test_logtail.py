"""The ``log`` tracker and the log fill of other trackers' answers, on real files.

Logs are the real captures in tests/data/console_logs (README there) or written by the real
tqdm in a subprocess.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import tracemalloc
from pathlib import Path

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tqdm import tqdm

from helpers.runs import make_trainer_run
from progresskit import ConfigError, NoTrackerError, ProgressInfo, Status, Tracking
from progresskit.builtin.logtail import LogTracker
from progresskit.engine import logs
from progresskit.formats.fileio import NotRegularFileError, open_regular
from progresskit.formats.progressbar import LogReading, parse_log

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
        subprocess.run(
            [sys.executable, "-c", script],
            stdout=fh,
            stderr=subprocess.STDOUT,
            timeout=60,
            check=False,
        )
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
    pinned = Tracking(config={"runner_type": "log"}).status(str(run), discover_processes=False)
    assert pinned.progress.completed_steps == 59  # the documented way to read it anyway
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
    reads: list[int] = []
    real = logs._tail_of  # every read of a log's bytes, through a kept descriptor or not

    def counted(
        fd: int, size: int, max_bytes: int, resume: tuple[int, bytes] | None
    ) -> tuple[bytes, int, bool]:
        reads.append(fd)
        return real(fd, size, max_bytes, resume)

    monkeypatch.setattr(logs, "_tail_of", counted)
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


def test_a_live_tqdm_job_is_followed_from_its_log(tmp_path: Path) -> None:
    run = tmp_path / "job"
    run.mkdir()
    script = textwrap.dedent(
        """
        import time
        from tqdm import tqdm
        for _ in tqdm(range(150), desc="train", mininterval=0):
            time.sleep(0.01)
        """
    )
    tracking = Tracking()
    with open(run / "slurm-7.out", "wb") as fh:
        job = subprocess.Popen([sys.executable, "-c", script], stdout=fh, stderr=fh)
        seen: list[int] = []
        try:
            deadline = time.monotonic() + 60
            while job.poll() is None and time.monotonic() < deadline:
                if (run / "slurm-7.out").stat().st_size:
                    result = tracking.status(str(run), discover_processes=False)
                    if result.progress.completed_steps is not None:
                        seen.append(result.progress.completed_steps)
                        assert result.progress.total_steps == 150
                        if result.progress.completed_steps < 150:  # a full bar is finished
                            assert result.status is Status.RUNNING
                time.sleep(0.05)
        finally:
            job.wait(timeout=60)
    assert len(set(seen)) >= 2 and seen == sorted(seen), seen  # it moved, never back
    final = tracking.status(str(run), discover_processes=False)
    assert final.progress.completed_steps == 150 and final.status is Status.FINISHED


# -- the incremental read: what a growing, truncated or replaced log says after each write ----

CAPTURES = sorted(p.name for p in [*DATA.glob("*.log"), *DATA.glob("*.typescript")])


def _tail_reads(tmp_path: Path) -> tuple[Path, logs.LogTail, dict[str, bool]]:
    run = tmp_path / "job"
    run.mkdir(exist_ok=True)
    return run / "train.log", logs.LogTail(str(run), ("*.log",)), {"train.log": False}


def _bump(log: Path, tick: list[int]) -> None:
    # Each write of a real job moves the mtime; a test faster than the clock's tick says so.
    tick[0] += 1_000_000
    os.utime(log, ns=(tick[0], tick[0]))


def _full(log: Path) -> LogReading:
    data, _, appended = logs.read_tail(str(log), logs.DEFAULT_TAIL_KB * 1024)
    assert not appended
    return parse_log(data)


@settings(max_examples=80, deadline=None)
@given(
    first=st.sampled_from(CAPTURES),
    second=st.sampled_from(CAPTURES),
    steps=st.lists(
        st.tuples(
            st.integers(min_value=1, max_value=4000),
            st.sampled_from(["append"] * 4 + ["truncate", "replace"]),
        ),
        min_size=1,
        max_size=14,
    ),
)
def test_incremental_reads_say_what_a_full_tail_read_says(
    tmp_path_factory: pytest.TempPathFactory,
    first: str,
    second: str,
    steps: list[tuple[int, str]],
) -> None:
    """Real captures written in pieces cut anywhere (mid-redraw, mid-traceback); some steps
    truncate the log in place (same file) or replace it with a shorter one (a new file) and
    go on with another capture: after every step the incremental reading equals a fresh
    full tail read's, whether the log was read through a kept descriptor or opened anew."""
    source, pos = (DATA / first).read_bytes(), 0
    log, tail, entries = _tail_reads(tmp_path_factory.mktemp("inc"))
    log.write_bytes(b"")
    tick = [time.time_ns() - 10**11]
    for size, how in steps:
        if how != "append":
            keep = log.stat().st_size // 2
            source, pos = (DATA / second).read_bytes(), 0
            if how == "replace":
                log.with_suffix(".new").write_bytes(log.read_bytes()[:keep])
                os.replace(log.with_suffix(".new"), log)
            else:
                os.truncate(log, keep)
        with open(log, "ab") as fh:
            fh.write(source[pos : pos + size])
        pos += size
        _bump(log, tick)
        # With the caller's stats (the log tracker's way: its descriptor kept between
        # reads) or without (the session's fill of another tracker's answer).
        newest = tail.newest(entries, checked=tail.stats(entries) if size % 2 else None)
        full = _full(log)
        assert (newest is not None) == (full.bar is not None or full.failure is not None)
        if newest is not None:
            assert newest[1] == full


def _redraw(n: int, total: int = 1000) -> bytes:
    return (
        "\r" + tqdm.format_meter(n, total, n / 40.0, prefix="train", postfix="loss=0.25")
    ).encode()


def test_an_appended_redraw_is_read_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log, tail, entries = _tail_reads(tmp_path)
    log.write_bytes(b"".join(_redraw(n) for n in range(3000)))  # well over 64 KiB
    tick = [time.time_ns() - 10**11]
    _bump(log, tick)
    assert tail.newest(entries) is not None
    reads: list[int] = []
    real = logs.read_tail

    def sized(
        path: str,
        max_bytes: int,
        resume: tuple[int, bytes] | None = None,
        st_mode: int | None = None,
    ) -> tuple[bytes, int, bool]:
        data, end, appended = real(path, max_bytes, resume, st_mode)
        reads.append(len(data) if appended else -1)
        return data, end, appended

    monkeypatch.setattr(logs, "read_tail", sized)
    with open(log, "ab") as fh:
        fh.write(_redraw(3000))
    _bump(log, tick)
    newest = tail.newest(entries)
    assert newest is not None and newest[1].bar is not None
    assert newest[1].bar.n == 3000
    # the previous redraw (to resume after it) and the new one, not 64 KiB
    assert reads == [len(_redraw(2999)) + len(_redraw(3000))]


def test_a_bar_split_across_two_appends(tmp_path: Path) -> None:
    log, tail, entries = _tail_reads(tmp_path)
    log.write_bytes(_redraw(1) + _redraw(2))
    tick = [time.time_ns() - 10**11]
    _bump(log, tick)
    new = _redraw(3)
    for piece, shown in ((new[:25], 2), (new[25:], 3)):
        with open(log, "ab") as fh:
            fh.write(piece)
        _bump(log, tick)
        newest = tail.newest(entries)
        assert newest is not None and newest[1].bar is not None
        assert newest[1].bar.n == shown  # half a redraw is not a bar: the one before stands


def _traceback() -> bytes:
    crashed = (DATA / "lightning_b_crashed.log").read_bytes()
    return b"\n" + crashed[crashed.rindex(b"Traceback (most recent call last):") :]


def test_truncated_then_rewritten_in_place_is_read_again(tmp_path: Path) -> None:
    log, tail, entries = _tail_reads(tmp_path)
    log.write_bytes(b"".join(_redraw(n) for n in range(200)))
    tick = [time.time_ns() - 10**11]
    _bump(log, tick)
    assert tail.newest(entries) is not None
    with open(log, "r+b") as fh:  # the same file (inode), rewritten from the start, longer
        fh.truncate(0)
        fh.write(_traceback() + b"".join(_redraw(n, 500) for n in range(300)))
    _bump(log, tick)
    newest = tail.newest(entries)
    assert newest is not None and newest[1].bar is not None
    assert (newest[1].bar.n, newest[1].bar.total) == (299, 500)
    # the traceback before the redraws is only seen by reading the whole tail again
    assert newest[1].failure == "RuntimeError: deliberate failure at epoch 1 batch 20"
    assert newest[1] == _full(log)


def test_bars_after_a_traceback_keep_it_as_the_failure(tmp_path: Path) -> None:
    log, tail, entries = _tail_reads(tmp_path)
    log.write_bytes(b"".join(_redraw(n) for n in range(50)) + _traceback())
    tick = [time.time_ns() - 10**11]
    _bump(log, tick)
    for n in (50, 51):  # bars drawn after a traceback do not make the job alive again
        with open(log, "ab") as fh:
            fh.write(_redraw(n))
        _bump(log, tick)
        newest = tail.newest(entries)
        assert newest is not None
        assert newest[1] == _full(log)
        assert newest[1].failure == "RuntimeError: deliberate failure at epoch 1 batch 20"


def test_replaced_by_a_shorter_file_is_read_again(tmp_path: Path) -> None:
    log, tail, entries = _tail_reads(tmp_path)
    log.write_bytes(b"".join(_redraw(n) for n in range(50)))
    tick = [time.time_ns() - 10**11]
    _bump(log, tick)
    assert tail.newest(entries) is not None
    fresh = log.with_suffix(".tmp")
    fresh.write_bytes(_redraw(7, 20))
    os.replace(fresh, log)  # a new inode, shorter than what was read
    _bump(log, tick)
    newest = tail.newest(entries)
    assert newest is not None and newest[1].bar is not None
    assert (newest[1].bar.n, newest[1].bar.total) == (7, 20)


def test_a_traceback_appended_after_redraws_is_the_failure(tmp_path: Path) -> None:
    log, tail, entries = _tail_reads(tmp_path)
    log.write_bytes(b"".join(_redraw(n) for n in range(50)))
    tick = [time.time_ns() - 10**11]
    _bump(log, tick)
    assert tail.newest(entries) is not None
    traceback = _traceback()
    for piece in (traceback[:6], traceback[6:]):  # the marker itself cut in two
        with open(log, "ab") as fh:
            fh.write(piece)
        _bump(log, tick)
        newest = tail.newest(entries)
        assert newest is not None
        assert newest[1] == _full(log)
    assert _full(log).failure == "RuntimeError: deliberate failure at epoch 1 batch 20"


def test_a_direct_read_does_not_key_a_later_query(tmp_path: Path) -> None:
    log, _, _ = _tail_reads(tmp_path)
    log.write_bytes(_redraw(1))
    old = time.time() - 10  # out of the racy window: the answer is cached
    os.utime(log, (old, old))
    os.utime(log.parent, (old, old))
    tracker = LogTracker(str(log.parent), Tracking().config_for(str(log.parent)))
    assert tracker.get_progress().completed_steps == 1
    assert tracker.calculate_progress().completed_steps == 1  # keys taken, not used
    with open(log, "ab") as fh:
        fh.write(_redraw(2))
    os.utime(log, (old + 1, old + 1))
    assert tracker.get_progress().completed_steps == 2


# -- bars beyond the tail: looked for further back, bounded --------------------------------------

#: A real job: tqdm's bar into the log (a redirected stderr), then what many jobs print after
#: it: a flood of logging lines (``lines`` of them), and, with ``raise``, a traceback.
FLOOD_JOB = textwrap.dedent(
    """
    import logging, sys
    from tqdm import tqdm
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    steps, lines, ending = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    for step in tqdm(range(1000), desc="train", mininterval=0):
        if step == steps:
            break
    log = logging.getLogger("data.loader")
    for i in range(lines):
        log.info("shard %d of /datasets/imagenet/train/shard-%05d.tar read, 1251 samples", i, i)
    if ending == "raise":
        raise RuntimeError("CUDA out of memory while evaluating")
    """
)


def _flood_log(log: Path, steps: int, lines: int, ending: str = "") -> None:
    with open(log, "ab") as fh:
        subprocess.run(
            [sys.executable, "-c", FLOOD_JOB, str(steps), str(lines), ending or "-"],
            stdout=fh, stderr=fh, timeout=60, check=ending != "raise",
        )


def test_a_flood_of_log_lines_after_the_last_bar_is_looked_past(tmp_path: Path) -> None:
    run = tmp_path / "job"
    run.mkdir()
    _flood_log(run / "train.log", 450, 3000)  # ~270 KiB of lines after the bar
    assert (run / "train.log").stat().st_size > 4 * logs.DEFAULT_TAIL_KB * 1024
    progress = Tracking().status(str(run), discover_processes=False).progress
    assert (progress.completed_steps, progress.total_steps) == (450, 1000)
    assert progress.current_stage == "train"
    assert progress.progress_percentage == pytest.approx(45.0)


def test_a_traceback_after_a_flood_keeps_the_steps_reached(tmp_path: Path) -> None:
    run = tmp_path / "job"
    run.mkdir()
    _flood_log(run / "slurm-9.out", 620, 2000, "raise")
    result = Tracking().status(str(run), discover_processes=False)
    assert result.status is Status.FAILED
    assert result.progress.error_message == (
        "slurm-9.out: RuntimeError: CUDA out of memory while evaluating"
    )
    assert (result.progress.completed_steps, result.progress.total_steps) == (620, 1000)


def test_a_bar_beyond_the_bound_is_not_looked_for(tmp_path: Path) -> None:
    run = tmp_path / "job"
    run.mkdir()
    _flood_log(run / "train.log", 450, 400)  # ~36 KiB of lines after the bar
    near = Tracking(config={"log_tail_kb": 4})  # 4 KiB tails: 64 KiB searched
    assert near.status(str(run), discover_processes=False).progress.completed_steps == 450
    far = Tracking(config={"log_tail_kb": 1})  # 1 KiB tails: 16 KiB searched, bar older
    progress = far.status(str(run), discover_processes=False).progress
    assert progress.completed_steps is None and progress.progress_percentage is None
    assert any("no progress bar or traceback in the last 16 KiB" in w for w in progress.warnings)


def test_looking_back_reads_a_bounded_amount_and_then_only_what_was_appended(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "job"
    run.mkdir()
    log = run / "train.log"
    with open(log, "wb") as fh:
        fh.truncate(1 << 30)  # sparse: 1 GiB of NULs before the job's output
    _flood_log(log, 450, 3000)
    read: list[int] = []
    real_pread = os.pread

    def counted(fd: int, n: int, offset: int) -> bytes:
        data = real_pread(fd, n, offset)
        read.append(len(data))
        return data

    monkeypatch.setattr(logs.os, "pread", counted)
    tail = logs.LogTail(str(run), ("*.log",))
    tick = [time.time_ns() - 10**10]
    _bump(log, tick)
    found = tail.newest({"train.log": False})
    assert found is not None and found[1].bar is not None and found[1].bar.n == 450
    assert 0 < sum(read) <= logs.LOOKBACK_TAILS * logs.DEFAULT_TAIL_KB * 1024
    for i in range(3):  # the flood goes on: a tail read, and none of what was searched
        read.clear()
        with open(log, "ab") as fh:
            fh.write(b"2026-12-02 05:00:00,000 INFO data.loader: shard %d read\n" % i)
        _bump(log, tick)
        found = tail.newest({"train.log": False})
        assert found is not None and found[1].bar is not None and found[1].bar.n == 450
        assert 0 < sum(read) <= logs.DEFAULT_TAIL_KB * 1024 + 200, read
    with open(log, "ab") as fh:  # a new bar is the newest again
        fh.write(b"\rtrain:  46%|####6     | 460/1000 [00:10<00:12, 44.20it/s]")
    _bump(log, tick)
    found = tail.newest({"train.log": False})
    assert found is not None and found[1].bar is not None and found[1].bar.n == 460


# -- progress unknown is null, never 0% -----------------------------------------------------------


def test_a_bar_without_a_total_is_progress_null_not_zero(tmp_path: Path) -> None:
    run = tmp_path / "job"
    run.mkdir()
    line = tqdm.format_meter(450, None, 10.0, prefix="stream")
    (run / "train.log").write_text("\r" + line)
    progress = Tracking().status(str(run), discover_processes=False).progress
    assert progress.completed_steps == 450 and progress.total_steps is None
    assert progress.progress_percentage is None


def test_a_heartbeat_run_with_a_log_without_a_total_is_progress_null(tmp_path: Path) -> None:
    import progresskit

    with progresskit.heartbeat(tmp_path, expect_every=60) as beat:
        beat.beat()
        line = tqdm.format_meter(450, None, 10.0, prefix="stream")
        (tmp_path / "train.log").write_text("\r" + line)
        (tmp_path / "notes.txt").write_text("not a log: the run is the heartbeat's\n")
        run = Tracking().status(str(tmp_path), discover_processes=False)
        assert run.progress.runner_type == "heartbeat" and run.status is Status.RUNNING
        assert run.progress.completed_steps == 450  # the log fills what the lease lacks
        assert run.progress.progress_percentage is None
        shown = subprocess.run(  # a short name: the table's row is one line
            [sys.executable, "-m", "progresskit", "status", tmp_path.name],
            capture_output=True, text=True, timeout=60, cwd=tmp_path.parent,
        )
        rows = [line for line in shown.stdout.splitlines() if "running │" in line]
        assert len(rows) == 1, (shown.stdout, shown.stderr)
        row = rows[0]
        assert "%" not in row and "│ -        │" in row, row


# -- tqdm's unit_divisor --------------------------------------------------------------------------


def test_a_job_using_unit_divisor_1024_is_counted_as_it_was_told(tmp_path: Path) -> None:
    run = tmp_path / "job"
    run.mkdir()
    line = tqdm.format_meter(
        3 * 1024**2, 8 * 1024**2, 10.0, prefix="download", unit="B", unit_scale=True,
        unit_divisor=1024,
    )
    assert "3.00M/8.00M" in line  # what tqdm prints: the same suffixes as for 1000
    (run / "train.log").write_text("\r" + line)
    told = Tracking(config={"log_unit_divisor": 1024})
    progress = told.status(str(run), discover_processes=False).progress
    assert (progress.completed_steps, progress.total_steps) == (3 * 1024**2, 8 * 1024**2)
    default = Tracking().status(str(run), discover_processes=False).progress
    assert (default.completed_steps, default.total_steps) == (3 * 10**6, 8 * 10**6)
    with pytest.raises(ConfigError, match="expected 1000 or 1024"):
        Tracking(config={"log_unit_divisor": 1023})


def test_a_log_truncated_and_written_again_forgets_the_bar_found_before(tmp_path: Path) -> None:
    run = tmp_path / "job"
    run.mkdir()
    log = run / "train.log"
    _flood_log(log, 450, 3000)
    tail = logs.LogTail(str(run), ("*.log",))
    tick = [time.time_ns() - 10**10]
    _bump(log, tick)
    found = tail.newest({"train.log": False})
    assert found is not None and found[1].bar is not None and found[1].bar.n == 450
    inode = log.stat().st_ino
    with open(log, "r+b") as fh:  # the job started again into the same file (same inode)
        fh.truncate(0)
    _flood_log(log, 0, 4000)  # a longer flood, after a bar at 0 steps
    assert log.stat().st_ino == inode
    _bump(log, tick)
    found = tail.newest({"train.log": False})
    assert found is not None and found[1].bar is not None and found[1].bar.n == 0


# -- the answer is built through ProgressInfo's fast path: the constructor's, checked ------------


def _as_constructed(progress: ProgressInfo) -> None:
    """``progress`` is what the validating constructor builds from its own fields, with the
    same type in every field (1 == 1.0, so equality alone would not tell an int from a
    float the converter makes)."""
    fields = attrs.asdict(progress, recurse=False)
    again = ProgressInfo(**fields)
    assert again == progress
    for name, value in fields.items():
        assert type(getattr(again, name)) is type(value), name


@pytest.mark.parametrize("name", sorted(p.name for p in DATA.glob("*.log")))
def test_the_answer_of_every_real_capture_is_what_the_constructor_builds(name: str) -> None:
    data = (DATA / name).read_bytes()
    for end in range(len(data) // 7, len(data) + 1, max(1, len(data) // 7)):
        reading = parse_log(data[:end])
        if reading.bar is not None or reading.failure is not None:
            _as_constructed(logs.progress_from_log("log", reading, name, 1.7e9))


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(min_value=0, max_value=10**12),
    total=st.one_of(st.none(), st.integers(min_value=1, max_value=10**12)),
    elapsed=st.floats(min_value=0, max_value=10**7),
    unit_scale=st.booleans(),
    postfix=st.sampled_from([None, "loss=0.25", "loss=nan, lr=1e-05", "acc=1e+300"]),
)
def test_the_answer_of_any_tqdm_bar_is_what_the_constructor_builds(
    n: int, total: int | None, elapsed: float, unit_scale: bool, postfix: str | None
) -> None:
    line = tqdm.format_meter(
        n, total, elapsed, prefix="train", unit_scale=unit_scale, postfix=postfix  # type: ignore[arg-type]
    )
    reading = parse_log(("\r" + line).encode())
    assert reading.bar is not None, line
    _as_constructed(logs.progress_from_log("log", reading, "train.log", 1.7e9))


def test_a_count_beyond_a_float_keeps_the_last_real_bar(tmp_path: Path) -> None:
    # A line holding a 400-digit count: not a bar (the model cannot hold it), so the run is
    # reported from the bar before it, not as a failed tracker.
    run = tmp_path / "job"
    run.mkdir()
    good = tqdm.format_meter(450, 1000, 10.0, prefix="train")
    huge = f"train:  50%|#####     | {'9' * 400}/1000 [00:01<00:01, 1.00it/s]"
    (run / "train.log").write_text("\r" + good + "\r" + huge)
    result = Tracking().status(str(run), discover_processes=False)
    assert result.progress.runner_type == "log"
    assert (result.progress.completed_steps, result.progress.total_steps) == (450, 1000)


# -- one stat per log per query: the change check, the racy rule and the read share it ----------


def _grown_run(tmp_path: Path) -> tuple[Path, Path, LogTracker]:
    run = tmp_path / "job"
    run.mkdir(parents=True)
    log = run / "train.log"
    log.write_bytes(b"".join(_redraw(n) for n in range(10)))
    tracker = LogTracker(str(run), Tracking().config_for(str(run)))
    assert tracker.get_progress().completed_steps == 9
    return run, log, tracker


def test_a_log_replaced_by_a_fifo_between_two_queries_is_refused(tmp_path: Path) -> None:
    _run, log, tracker = _grown_run(tmp_path)
    log.unlink()
    os.mkfifo(log)  # opened for reading without O_NONBLOCK, it would wait for a writer
    progress = tracker.get_progress()
    assert progress.completed_steps is None
    assert any("train.log: cannot read log: a FIFO" in w for w in progress.warnings)


def test_a_fifo_swapped_in_after_the_callers_stat_is_refused_on_the_descriptor(
    tmp_path: Path,
) -> None:
    # The caller's stat said "regular file" (the log it checked); a FIFO stands there when
    # the file is opened: the check of the open descriptor refuses it, without blocking.
    fifo = tmp_path / "train.log"
    regular = tmp_path / "other.log"
    regular.write_bytes(_redraw(1))
    os.mkfifo(fifo)
    with pytest.raises(NotRegularFileError, match="a FIFO"):
        open_regular(str(fifo), os.stat(regular).st_mode)
    with pytest.raises(NotRegularFileError, match="a FIFO"):
        logs.read_tail(str(fifo), 65536, None, os.stat(regular).st_mode)


def test_a_grown_log_is_statted_once_per_evaluation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _run, log, tracker = _grown_run(tmp_path)
    with open(log, "ab") as fh:
        fh.write(_redraw(10))
    stats: list[str] = []
    real = os.stat

    def counted(path: str, *args: object, **kwargs: object) -> os.stat_result:
        stats.append(os.fspath(path))
        return real(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "stat", counted)
    progress, _complete, last = tracker.evaluate()
    assert progress.completed_steps == 10
    assert last == real(log).st_mtime_ns / 1e9
    assert stats.count(str(log)) == 1  # the check, the FIFO refusal and the last activity


def test_a_racy_change_under_an_unchanged_stat_key_is_read_again(tmp_path: Path) -> None:
    # Rewritten in place, same size, and the mtime set back (a coarse clock does that): the
    # stat key is the one read under, but it was written within the racy window of that
    # read, so the log is read again instead of trusted.
    _run, log, tracker = _grown_run(tmp_path)
    before = os.stat(log)
    data = log.read_bytes()
    head = data[: -len(_redraw(9))]
    again = head + _redraw(8).ljust(len(_redraw(9)), b" ")
    log.write_bytes(again)
    os.utime(log, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert logs.stat_key(str(log)) == (before.st_mtime_ns, before.st_size, before.st_ino)
    assert tracker.get_progress().completed_steps == 8
    # Out of the racy window, the same unchanged stat key is trusted: the answer is kept.
    old = time.time_ns() - 10**10
    os.utime(log, ns=(old, old))
    os.utime(log.parent, ns=(old, old))
    assert tracker.get_progress().completed_steps == 8
    log.write_bytes(data)
    os.utime(log, ns=(old, old))
    assert tracker.get_progress().completed_steps == 8  # trusted: nothing it can see changed


@settings(max_examples=150, deadline=None)
@given(
    steps=st.lists(st.integers(min_value=0, max_value=10**9), min_size=1, max_size=4),
    total=st.one_of(st.none(), st.integers(min_value=1, max_value=10**9)),
    elapsed=st.floats(min_value=0, max_value=10**6),
    prefix=st.sampled_from(["train", "", "Epoch 3", "a: b", "Training|x"]),
    unit_scale=st.booleans(),
    postfix=st.sampled_from([None, "loss=0.25", "loss=nan, lr=1e-05", "v_num=3"]),
)
def test_the_answer_from_appended_redraws_is_the_answer_of_a_full_read(
    steps: list[int],
    total: int | None,
    elapsed: float,
    prefix: str,
    unit_scale: bool,
    postfix: str | None,
) -> None:
    # The fast path (a plain tqdm redraw straight to the answer) against the general one (a
    # fresh full tail read, parse_log, progress_from_log): field by field and type by type.
    def redraw(n: int) -> bytes:
        line = tqdm.format_meter(
            n, total, elapsed, prefix=prefix, unit_scale=unit_scale, postfix=postfix  # type: ignore[arg-type]
        )
        return ("\r" + line).encode()

    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp)
        log = run / "train.log"
        log.write_bytes(redraw(0))
        tick = [time.time_ns() - 10**11]
        _bump(log, tick)
        entries = {"train.log": False}
        tail = logs.LogTail(str(run), ("*.log",))
        assert tail.newest(entries) is not None
        for n in steps:
            with open(log, "ab") as fh:
                fh.write(redraw(n))
            _bump(log, tick)
            fast = tail.newest_progress("log", entries, tail.stats(entries))
            fresh = logs.LogTail(str(run), ("*.log",)).newest(entries)
            assert fast is not None and fresh is not None
            general = logs.progress_from_log("log", fresh[1], fresh[0], fresh[2])
            assert fast == general
            _as_constructed(fast)
            for name in attrs.fields_dict(ProgressInfo):
                assert type(getattr(fast, name)) is type(getattr(general, name)), name
            read = tail._reads["train.log"]  # the fast path is the one taken, when it applies
            assert (read.plain is not None) == (not prefix.startswith("Epoch "))
            assert read.full() == fresh[1]


# -- kept descriptors: a followed log is read through one open descriptor ------------------------


def _fds_on(path: Path) -> int:
    """How many of this process's descriptors are open on the file named ``path``."""
    names = {str(path), f"{path} (deleted)"}
    targets = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the listing's own descriptor, closed since
            targets.append(os.readlink(f"/proc/self/fd/{fd}"))
    return sum(target in names for target in targets)


def test_a_growing_log_is_followed_through_one_kept_descriptor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _run, log, tracker = _grown_run(tmp_path)
    opened: list[str] = []
    real = logs.open_regular

    def counted(path: str, st_mode: int | None = None) -> tuple[int, os.stat_result]:
        opened.append(path)
        return real(path, st_mode)

    monkeypatch.setattr(logs, "open_regular", counted)
    with open(log, "ab") as fh:
        for n in range(10, 20):
            fh.write(_redraw(n))
            fh.flush()
            assert tracker.get_progress().completed_steps == n
    assert opened == []  # the descriptor of the first read, kept
    assert _fds_on(log) == 1


def test_a_rotated_log_is_read_from_the_new_file_and_the_old_one_let_go(tmp_path: Path) -> None:
    _run, log, tracker = _grown_run(tmp_path)
    rotated = log.with_name("train.log.1")  # not a log name: only the new file is read
    os.rename(log, rotated)
    log.write_bytes(_redraw(3))
    assert tracker.get_progress().completed_steps == 3
    assert _fds_on(rotated) == 0
    assert _fds_on(log) == 1


def test_a_log_rewritten_by_rename_is_read_from_the_new_file(tmp_path: Path) -> None:
    _run, log, tracker = _grown_run(tmp_path)
    new = log.with_name("train.tmp")
    new.write_bytes(b"".join(_redraw(n) for n in range(5)))
    os.replace(new, log)  # same path, same size class, another inode
    assert tracker.get_progress().completed_steps == 4
    assert _fds_on(log) == 1


def test_a_deleted_log_keeps_no_descriptor_nor_its_disk_space(tmp_path: Path) -> None:
    _run, log, tracker = _grown_run(tmp_path)
    assert _fds_on(log) == 1
    log.unlink()
    tracker.get_progress()
    assert _fds_on(log) == 0


def test_a_quiet_logs_descriptor_is_closed_at_the_next_look(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run, log, tracker = _grown_run(tmp_path)
    old = time.time_ns() - 10**10  # out of the racy window: an unchanged log is not read
    os.utime(log, ns=(old, old))
    os.utime(run, ns=(old, old))
    assert tracker.get_progress().completed_steps == 9
    assert _fds_on(log) == 1
    monkeypatch.setattr(logs._KEPT, "quiet_ns", 0)
    monkeypatch.setattr(logs._KEPT, "_next_sweep", 0)
    assert tracker.get_progress().completed_steps == 9  # unchanged: looked at, not read
    assert _fds_on(log) == 0
    with open(log, "ab") as fh:
        fh.write(_redraw(10))
    assert tracker.get_progress().completed_steps == 10  # opened again when it grows


def test_at_most_the_limit_of_descriptors_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logs._KEPT, "limit", 2)
    found = []
    for r in range(5):
        _run, log, _tracker = _grown_run(tmp_path / f"r{r}")
        found.append(log)
    assert [_fds_on(log) for log in found] == [0, 0, 0, 1, 1]  # the two read last


def test_a_sweep_never_closes_a_descriptor_a_reader_holds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The interleaving of a sweep with two readers of one log (a Monitor's thread and the
    # server's run page): right after the sweep lists the pool, one reader takes the kept
    # descriptor and another keeps a new one. The reader's descriptor stays open (its
    # number is not given to another open meanwhile), and none is left outside the pool.
    pool = logs._Descriptors(limit=8, quiet_seconds=0)  # every entry is due
    monkeypatch.setattr(pool, "_timer", object())  # no timer thread in this test
    log = tmp_path / "train.log"
    log.write_bytes(_redraw(1))
    path, st = str(log), os.stat(log)
    fd, _size, dev, ino, _kept = pool.open(path, st)
    pool.keep(path, fd, dev, ino)
    held: list[int] = []
    listed = list

    def interleaved(items: object) -> list[object]:
        snapshot = listed(items)  # type: ignore[call-overload]
        held.append(pool.open(path, st)[0])  # the first reader: the kept descriptor
        fresh, _size, dev, ino, kept = pool.open(path, st)  # the second: a new one
        assert not kept
        pool.keep(path, fresh, dev, ino)
        return snapshot

    monkeypatch.setattr(logs, "list", interleaved, raising=False)
    pool.sweep(now=True)
    monkeypatch.undo()
    assert held == [fd]
    assert os.pread(fd, 1 << 16, 0) == log.read_bytes()  # still the log's, still open
    assert pool._kept == {}  # the second reader's, taken by the sweep and closed
    assert _fds_on(log) == 1
    os.close(fd)


def test_descriptors_are_closed_when_nothing_looks_at_a_log_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A one-shot status (nothing asks again): the timer closes what was kept.
    monkeypatch.setattr(logs, "_KEPT", logs._Descriptors(limit=8, quiet_seconds=0.2))
    _run, log, _tracker = _grown_run(tmp_path)
    assert _fds_on(log) == 1
    deadline = time.monotonic() + 10
    while _fds_on(log) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _fds_on(log) == 0
    assert logs._KEPT._kept == {}


def test_a_forked_child_holds_no_log_open(tmp_path: Path) -> None:
    _run, log, _tracker = _grown_run(tmp_path)
    assert _fds_on(log) == 1
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, then leave at once
        try:
            os.write(write, b"%d %d" % (_fds_on(log), len(logs._KEPT._kept)))
        finally:
            os._exit(0)
    os.close(write)
    said = os.read(read, 100)
    os.close(read)
    os.waitpid(pid, 0)
    assert said == b"0 0"
    assert _fds_on(log) == 1  # the parent's is untouched


def test_two_readers_keeping_one_log_leave_one_descriptor(tmp_path: Path) -> None:
    pool = logs._Descriptors(limit=8, quiet_seconds=60)
    log = tmp_path / "train.log"
    log.write_bytes(_redraw(1))
    path, st = str(log), os.stat(log)
    first, second = pool.open(path, st), pool.open(path, st)  # two readers, two opens
    pool.keep(path, first[0], first[2], first[3])
    pool.keep(path, second[0], second[2], second[3])  # the second finds one kept: closed
    assert [entry[0] for entry in pool._kept.values()] == [first[0]]
    assert _fds_on(log) == 1
    pool.discard(path)
    assert _fds_on(log) == 0


def test_a_bar_that_shows_no_count_leaves_the_steps_unknown(tmp_path: Path) -> None:
    # rich's default columns (the real capture): a percentage, no n/total. The steps are
    # unknown, never reported as 0.
    run = _run_with(tmp_path, "rich_track_default_console.log", "train.log")
    progress = Tracking().status(str(run), discover_processes=False).progress
    assert progress.progress_percentage == 100.0
    assert progress.completed_steps is None and progress.total_steps is None
    assert progress.current_stage == "train"  # the bar's description


def test_richs_live_display_under_a_terminal_reads_its_top_row(tmp_path: Path) -> None:
    # Lightning's RichProgressBar under a pty (the real capture): each redraw goes up to
    # the top of the live region, then draws the epoch bar, its metrics, and during
    # validation a validation bar below. The epoch bar is the run's; the validation bar
    # below it is a nested one, not the run's progress.
    data = (DATA / "lightning_d_rich_pty.typescript").read_bytes()
    reading = parse_log(data)
    assert reading.bar is not None and reading.bar.desc == "Epoch 2/2"
    assert (reading.bar.n, reading.bar.total) == (40, 40)
    assert (reading.epochs_done, reading.epochs_total, reading.finished) == (3, 3, True)
    # Cut right after a validation row: it is drawn below the epoch bar.
    during = data[: data.find(b"\r", data.rfind(b"Validation"))]
    reading = parse_log(during)
    assert reading.bar is not None and reading.bar.desc.startswith("Epoch")
    assert reading.inner is not None and reading.inner.desc == "Validation"
