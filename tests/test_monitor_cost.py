"""What watching costs: a change re-evaluates only the runs whose files changed, and the
periodic check is spread out within its CPU budget (docs/watch.md, "What watching costs").
The figures (idle CPU, latency at 10,000 runs) are benchmarks/serve.py's; these tests pin
the behaviour that makes them."""

from __future__ import annotations

import collections
import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers.runs import make_evaluator_run, make_trainer_run
from helpers.webhook_receiver import wait_for
from progresskit import Change, Monitor, Status
from progresskit.engine import monitor as monitor_module
from progresskit.engine.session import Tracking
from progresskit.formats.fileio import atomic_write_text

QUIET = {"watch_heartbeat": 0}


class Calls:
    """Counts the session's evaluations per run and its full scans."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.status: collections.Counter[str] = collections.Counter()
        self.scans = 0
        status, runs_of = Tracking.status, Tracking.runs_of

        def counted_status(session: Tracking, work_dir: str, **kwargs: Any) -> Any:
            self.status[Path(work_dir).name] += 1
            return status(session, work_dir, **kwargs)

        def counted_runs_of(session: Tracking, target: str, **kwargs: Any) -> Any:
            self.scans += 1
            return runs_of(session, target, **kwargs)

        monkeypatch.setattr(Tracking, "status", counted_status)
        monkeypatch.setattr(Tracking, "runs_of", counted_runs_of)

    def reset(self) -> None:
        self.status.clear()
        self.scans = 0


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Calls:
    return Calls(monkeypatch)


def _score(run: Path, value: float) -> None:
    atomic_write_text(run / "evaluation_scores.json", json.dumps({"acc": value}))


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    for i in range(20):
        make_evaluator_run(root / f"r{i:02d}", scores={"acc": 0.1})
    return root


@pytest.fixture
def watching(tree: Path) -> Iterator[tuple[Monitor, list[Change]]]:
    # No periodic check within the test: only notifications cause evaluations.
    monitor = Monitor(tree, {"watch_mode": "notify", "watch_poll_interval": 3600, **QUIET})
    seen: list[Change] = []
    monitor.subscribe(seen.append)
    monitor.start()
    try:
        wait_for(lambda: len(seen) == 20, what="the first evaluation")
        time.sleep(0.3)  # the OS watch is set up, and its first round done
        yield monitor, seen
    finally:
        monitor.stop()


def test_a_change_re_evaluates_only_its_run(
    calls: Calls, tree: Path, watching: tuple[Monitor, list[Change]]
) -> None:
    _monitor, seen = watching
    calls.reset()
    _score(tree / "r07", 0.9)
    wait_for(lambda: any(c.kind == "changed" for c in seen), what="the change")
    time.sleep(0.3)
    assert set(calls.status) == {"r07"} and calls.scans == 0


def test_new_and_removed_runs_need_no_full_scan(
    calls: Calls, tree: Path, watching: tuple[Monitor, list[Change]]
) -> None:
    monitor, seen = watching
    calls.reset()
    make_evaluator_run(tree / "r99", scores={"acc": 0.5})
    wait_for(lambda: any(c.kind == "new" and c.run.work_dir.endswith("r99") for c in seen),
             what="the new run")
    shutil.rmtree(tree / "r03")
    wait_for(lambda: any(c.kind == "removed" for c in seen), what="the removed run")
    assert calls.scans == 0
    assert set(calls.status) <= {"r99", "r03"}
    names = [Path(r.work_dir).name for r in monitor.runs]
    assert names == sorted(names) and "r99" in names and "r03" not in names  # path order


def test_writes_the_walk_never_enters_cost_nothing(
    calls: Calls, tree: Path, watching: tuple[Monitor, list[Change]]
) -> None:
    calls.reset()
    for i in range(5):
        (tree / ".cache").mkdir(exist_ok=True)
        (tree / ".cache" / f"blob{i}").write_text("x")
        time.sleep(0.06)
    time.sleep(0.3)
    assert calls.scans == 0 and not calls.status


def test_a_write_outside_every_run_asks_for_a_full_scan(
    calls: Calls, tree: Path, watching: tuple[Monitor, list[Change]]
) -> None:
    calls.reset()
    (tree / "notes").mkdir()
    (tree / "notes" / "todo.txt").write_text("x")  # a directory no tracker claims
    wait_for(lambda: calls.scans >= 1, what="the full scan")


def test_the_periodic_check_is_spread_out(
    calls: Calls, tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under a budget that buys one piece of work per round, a full check walks the tree
    (the first round), then re-evaluates each run once, one per round."""
    monkeypatch.setattr(monitor_module, "SWEEP_CPU_SHARE", 1e-7)
    monkeypatch.setattr(monitor_module, "FULL_CHECK_CPU_SHARE", 1e-7)
    monitor = Monitor(tree, {"watch_mode": "notify", "watch_poll_interval": 1, **QUIET})
    monitor.check()
    calls.reset()
    now = time.monotonic() + monitor_module.FULL_CHECK_SECONDS  # a full check is due
    for round_ in range(21):
        monitor._periodic(now + 1e6 * round_)  # time enough to repay any cost
        assert sum(calls.status.values()) == round_
    assert set(calls.status.values()) == {1} and len(calls.status) == 20
    assert calls.scans == 0  # a walk, not a scan: the evaluations are the rounds'
    monitor.stop()


def test_between_full_checks_only_active_runs_are_judged_and_from_what_was_read(
    calls: Calls, tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cycles between full checks read no file: the running runs are judged again from
    their last evaluation, the finished ones are left alone."""
    for name in ("t1", "t2"):
        make_trainer_run(tree / name, 2, total=10)
    judged: collections.Counter[str] = collections.Counter()
    rejudge = Tracking.rejudge

    def counted_rejudge(session: Tracking, work_dir: str, **kwargs: Any) -> Any:
        judged[Path(work_dir).name] += 1
        return rejudge(session, work_dir, **kwargs)

    monkeypatch.setattr(Tracking, "rejudge", counted_rejudge)
    monitor = Monitor(tree, {"watch_mode": "notify", "watch_poll_interval": 1, **QUIET})
    monitor.check()
    calls.reset()
    now = time.monotonic() + 1  # a cycle is due, a full check is not
    for round_ in range(3):
        monitor._periodic(now + 2 * round_)
    assert dict(judged) == {"t1": 3, "t2": 3}
    assert not calls.status and calls.scans == 0
    monitor.stop()


def test_a_run_falling_silent_fails_on_time_between_full_checks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No file is written, no full check comes: the judging from what was read still turns a
    running run failed once its silence passes sleep_time."""
    monkeypatch.setattr(monitor_module, "FULL_CHECK_SECONDS", 3600.0)
    root = tmp_path / "runs"
    make_trainer_run(root / "job", 2, total=10, config={"sleep_time": 2})
    monitor = Monitor(root, {"watch_mode": "notify", "watch_poll_interval": 0.2, **QUIET})
    seen: list[Change] = []
    monitor.subscribe(seen.append)
    with monitor:
        wait_for(lambda: any(c.run.status is Status.RUNNING for c in seen), what="running")
        wait_for(lambda: any(c.run.status is Status.FAILED for c in seen),
                 what="the silence", timeout=10)
    silent = next(c for c in seen if c.run.status is Status.FAILED)
    assert silent.kind == "changed" and silent.previous_status is Status.RUNNING


LEASE_HOLDER = """\
import sys, time
import progresskit
with progresskit.heartbeat(sys.argv[1], expect_every=3600):
    print("ready", flush=True)
    time.sleep(600)
"""


def test_a_process_killed_without_a_write_is_caught_by_the_periodic_check(
    tmp_path: Path,
) -> None:
    root = tmp_path / "runs"
    run = make_trainer_run(root / "job", 2, total=4)
    proc = subprocess.Popen([sys.executable, "-c", LEASE_HOLDER, str(run)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        monitor = Monitor(root, {"watch_mode": "notify", "watch_poll_interval": 0.2, **QUIET})
        seen: list[Change] = []
        monitor.subscribe(seen.append)
        with monitor:
            wait_for(lambda: any(c.run.status is Status.RUNNING for c in seen), what="running")
            proc.send_signal(signal.SIGKILL)  # no file is written: no notification
            wait_for(lambda: any(c.run.status is Status.CRASHED for c in seen),
                     what="the crash", timeout=20)
    finally:
        proc.kill()
        proc.wait(10)
