"""Liveness end to end: real producer processes, judged by `progresskit status --json` and
by the library, for each way a run can end (docs/liveness.md)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers.cli import run_cli
from helpers.runs import make_trainer_run
from progresskit import Status, Tracking, get_run_status
from progresskit.formats.lease import LEASE_FILENAME, load_lease

#: Every producer script starts with this: the run dir is argv[1]; "ready" on stdout
#: once the lease is held.
PRELUDE = """\
import os, signal, sys, time
import progresskit
work = sys.argv[1]
def ready():
    print("ready", flush=True)
"""


class Producer:
    """A producer script running in a subprocess on a trainer run (2 of 4 epochs done)."""

    def __init__(self, work: Path, body: str) -> None:
        self.work = work
        script = work.parent / f"{work.name}_producer.py"
        script.write_text(PRELUDE + textwrap.dedent(body))
        self.proc = subprocess.Popen(
            [sys.executable, str(script), str(work)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def wait_ready(self) -> None:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if line.strip() != "ready":
            self.proc.kill()
            _, err = self.proc.communicate(timeout=10)
            raise AssertionError(f"producer did not start: {line!r} {err}")

    def finish(self, timeout: float = 20) -> int:
        _out, self.stderr = self.proc.communicate(timeout=timeout)
        return self.proc.returncode

    def cleanup(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
            self.proc.kill()
            self.proc.communicate(timeout=10)


@pytest.fixture
def producer(tmp_path: Path) -> Iterator[Callable[..., Producer]]:
    started: list[Producer] = []

    def start(body: str, *, name: str = "run", epochs_done: int = 2) -> Producer:
        work = make_trainer_run(tmp_path / name, epochs_done, total=4)
        p = Producer(work, body)
        started.append(p)
        return p

    yield start
    for p in started:
        p.cleanup()


def cli_run(work: Path, *extra: str) -> dict[str, Any]:
    result = run_cli("status", "--json", *extra, str(work))
    assert result.ret in (0, 1), result.stderr
    document = json.loads(result.stdout)
    (run,) = document["runs"]
    return dict(run)


def library_status(work: Path) -> Any:
    return Tracking().status(str(work), discover_processes=False)


LOOP = """\
with progresskit.heartbeat(work, expect_every=1.0) as hb:
    ready()
    while True:
        hb.beat()
        time.sleep(0.05)
"""


def test_a_run_that_finishes_is_finished(producer: Callable[..., Producer]) -> None:
    p = producer(
        """\
        with progresskit.heartbeat(work, expect_every=5) as hb:
            ready()
            for epoch in (2, 3):
                d = os.path.join(work, f"epoch_{epoch}")
                os.makedirs(d)
                for name in ("training_losses.pt", "optimizer_buffer.json",
                             "validation_scores.json"):
                    with open(os.path.join(d, name), "w") as fh:
                        fh.write('{"aggregated": {"acc": 0.9}}')
                hb.beat()
        """
    )
    p.wait_ready()
    assert p.finish() == 0
    lease = load_lease(str(p.work / LEASE_FILENAME))
    assert lease.state == "finished" and lease.cause is None
    run = cli_run(p.work)
    assert run["status"] == "finished" and run["cause"] is None
    assert library_status(p.work).status is Status.FINISHED


def test_a_run_that_raises_is_failed_with_the_exception(
    producer: Callable[..., Producer],
) -> None:
    p = producer(
        """\
        with progresskit.heartbeat(work, expect_every=5):
            ready()
            raise ValueError("loss is NaN at step 1200")
        """
    )
    p.wait_ready()
    assert p.finish() == 1
    assert "ValueError: loss is NaN" in p.stderr  # the traceback is still printed
    run = cli_run(p.work)
    assert run["status"] == "failed"
    assert run["cause"] == {
        "kind": "exception",
        "exception_type": "ValueError",
        "message": "loss is NaN at step 1200",
        "signal": None,
        "exit_code": None,
    }
    assert "ValueError: loss is NaN at step 1200" in run["reason"]
    result = library_status(p.work)
    assert result.status is Status.FAILED and result.cause.exception_type == "ValueError"


def test_an_uncaught_exception_without_a_with_block_is_recorded_by_the_excepthook(
    producer: Callable[..., Producer],
) -> None:
    p = producer(
        """\
        hb = progresskit.heartbeat(work, expect_every=5)
        ready()
        class OutOfMemory(RuntimeError):
            pass
        raise OutOfMemory("CUDA out of memory")
        """
    )
    p.wait_ready()
    assert p.finish() == 1
    run = cli_run(p.work)
    assert run["status"] == "failed"
    assert run["cause"]["exception_type"] == "__main__.OutOfMemory"
    assert run["cause"]["message"] == "CUDA out of memory"


def test_sigkill_is_crashed_at_once(producer: Callable[..., Producer]) -> None:
    p = producer(LOOP)
    p.wait_ready()
    assert cli_run(p.work)["status"] == "running"
    p.proc.send_signal(signal.SIGKILL)
    # Not reaped yet: a zombie is as dead as a reaped process.
    time.sleep(0.2)
    zombie = library_status(p.work)
    assert zombie.status is Status.CRASHED
    p.finish()
    assert p.proc.returncode == -signal.SIGKILL
    run = cli_run(p.work)
    assert run["status"] == "crashed"
    assert run["cause"]["kind"] == "vanished"
    assert "without a word" in run["cause"]["message"]
    # The old API's five words: crashed reads failed.
    assert get_run_status(str(p.work), None, None, None).status is Status.FAILED


def test_sigterm_is_cancelled_by_that_signal_and_still_kills(
    producer: Callable[..., Producer],
) -> None:
    p = producer(LOOP)
    p.wait_ready()
    p.proc.send_signal(signal.SIGTERM)
    # The default action still happens: the parent sees death by SIGTERM.
    assert p.finish() == -signal.SIGTERM
    run = cli_run(p.work)
    assert run["status"] == "cancelled"
    assert run["cause"]["kind"] == "signal" and run["cause"]["signal"] == "SIGTERM"
    assert "terminated by SIGTERM" in run["reason"]
    assert library_status(p.work).status is Status.CANCELLED


def test_sigint_is_cancelled_and_keyboardinterrupt_still_raised(
    producer: Callable[..., Producer],
) -> None:
    p = producer(LOOP)
    p.wait_ready()
    p.proc.send_signal(signal.SIGINT)
    p.finish()
    assert "KeyboardInterrupt" in p.stderr
    run = cli_run(p.work)
    assert run["status"] == "cancelled" and run["cause"]["signal"] == "SIGINT"


@pytest.mark.slow
def test_sigstop_is_stalled_after_the_promised_interval(
    producer: Callable[..., Producer],
) -> None:
    p = producer(LOOP)
    p.wait_ready()
    time.sleep(0.3)
    assert library_status(p.work).status is Status.RUNNING
    p.proc.send_signal(signal.SIGSTOP)
    stopped_at = time.time()
    lease = load_lease(str(p.work / LEASE_FILENAME))
    assert lease.interval == 1.0
    deadline = stopped_at + lease.interval + lease.slack + 3
    result = library_status(p.work)
    while result.status is Status.RUNNING and time.time() < deadline:
        time.sleep(0.05)
        result = library_status(p.work)
    assert result.status is Status.STUCK, result.reason
    assert time.time() - stopped_at >= lease.interval - 0.5  # not before the promise ran out
    assert "stalled" in result.reason and "stopped" in result.reason
    assert result.process_info is not None and result.process_info.pid == p.proc.pid
    run = cli_run(p.work)
    assert run["status"] == "stuck" and run["cause"] is None
    assert get_run_status(str(p.work), None, None, None).status is Status.STUCK
    # Resumed, it renews the lease and is running again.
    os.kill(p.proc.pid, signal.SIGCONT)
    deadline = time.time() + 5
    while library_status(p.work).status is not Status.RUNNING and time.time() < deadline:
        time.sleep(0.05)
    assert library_status(p.work).status is Status.RUNNING


def test_an_exit_without_lease_keeps_seed_001_rules(producer: Callable[..., Producer]) -> None:
    p = producer(
        """\
        ready()
        with open(os.path.join(work, "train_val_0.log"), "a") as fh:
            fh.write("epoch 2 started\\n")
        """
    )
    p.wait_ready()
    assert p.finish() == 0
    assert not (p.work / LEASE_FILENAME).exists()
    # A fresh log and no lease: running until sleep_time passes, as seed 001 says ...
    assert cli_run(p.work)["status"] == "running"
    time.sleep(1.1)
    # ... then failed (incomplete, silent, no process), with no cause claimed.
    run = cli_run(p.work, "--sleep-time", "1")
    assert run["status"] == "failed" and run["cause"] is None
    assert "no process" in run["reason"]


def test_a_lease_removed_before_an_abrupt_exit_falls_back_to_seed_rules(
    producer: Callable[..., Producer],
) -> None:
    p = producer(
        """\
        hb = progresskit.heartbeat(work, expect_every=5)
        ready()
        os.unlink(hb.path)
        os._exit(0)  # no atexit: nothing writes the lease back
        """
    )
    p.wait_ready()
    assert p.finish() == 0
    assert not (p.work / LEASE_FILENAME).exists()
    assert cli_run(p.work)["status"] == "running"  # fresh log, within sleep_time


def test_interpreter_exit_while_holding_the_lease_is_judged_by_completeness(
    producer: Callable[..., Producer],
) -> None:
    incomplete = producer(
        """\
        progresskit.heartbeat(work, expect_every=5)
        ready()
        sys.exit(0)
        """,
        name="incomplete",
    )
    complete = producer(
        """\
        progresskit.heartbeat(work, expect_every=5)
        ready()
        """,
        name="complete",
        epochs_done=4,
    )
    for p in (incomplete, complete):
        p.wait_ready()
        assert p.finish() == 0
        assert load_lease(str(p.work / LEASE_FILENAME)).state == "exited"
    run = cli_run(incomplete.work)
    assert run["status"] == "failed"
    assert run["cause"]["kind"] == "exit"
    assert cli_run(complete.work)["status"] == "finished"


def test_status_file_writer_and_event_emitter_hold_the_lease(tmp_path: Path) -> None:
    brush = tmp_path / "brush"
    stages = tmp_path / "stages"
    script = tmp_path / "producers.py"
    script.write_text(
        textwrap.dedent(
            """\
            import sys
            from progresskit import EventEmitter, StatusFileWriter
            brush, stages = sys.argv[1:]
            events = EventEmitter("r1", event_file=f"{stages}/events.jsonl", expect_every=30)
            events.stage_change(None, "ranking")
            events.run_complete("failed")
            with StatusFileWriter(f"{brush}/training_status.json", total_iterations=10,
                                  expect_every=30) as status:
                status.update(3)
                raise KeyError("camera 7")
            """
        )
    )
    stages.mkdir()
    result = subprocess.run(
        [sys.executable, str(script), str(brush), str(stages)], capture_output=True, text=True
    )
    assert result.returncode == 1, result.stderr
    run = cli_run(brush)
    assert run["status"] == "failed"
    assert run["cause"]["kind"] == "exception"
    assert run["cause"]["exception_type"] == "KeyError"
    lease = load_lease(str(stages / LEASE_FILENAME))
    assert lease.state == "failed" and lease.producers == ("events",)
    run = cli_run(stages)
    assert run["status"] == "failed"
    assert run["cause"]["kind"] == "error"
