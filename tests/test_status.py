"""Run-status rules, through the library API on real files."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from helpers.runs import DAY, make_evaluator_run, make_trainer_run
from progresskit import (
    NoTrackerError,
    ProcessInfo,
    ProgressInfo,
    Status,
    Tracking,
    get_all_run_status,
    get_run_status,
    get_work_dir,
    scan,
    status,
)
from progresskit.engine.rules import decide_status

PROC = ProcessInfo(pid=4242, user="me", cmd="python train.py", start_time=1.0)


def test_running_when_log_is_fresh(tmp_path: Path) -> None:
    run = make_trainer_run(tmp_path / "r", 2, total=10)
    result = status(run)
    assert result.status is Status.RUNNING
    assert "last sign of life" in (result.reason or "")


def test_failed_when_silent_incomplete_and_no_process(tmp_path: Path) -> None:
    run = make_trainer_run(tmp_path / "r", 2, total=10, age=2 * DAY)
    result = status(run, process=None)
    assert result.status is Status.FAILED


def test_stuck_when_silent_but_a_process_exists(tmp_path: Path) -> None:
    run = make_trainer_run(tmp_path / "r", 2, total=10, age=2 * DAY)
    result = status(run, process=PROC)
    assert result.status is Status.STUCK
    assert "4242" in (result.reason or "")


def test_finished_when_complete(tmp_path: Path) -> None:
    run = make_trainer_run(tmp_path / "r", 3, total=3)
    assert status(run).status is Status.FINISHED


def test_outdated_when_complete_outputs_are_old(tmp_path: Path) -> None:
    run = make_trainer_run(tmp_path / "r", 3, total=3, age=40 * DAY)
    assert status(run).status is Status.OUTDATED


def test_sleep_time_and_outdated_days_from_config(tmp_path: Path) -> None:
    run = make_trainer_run(tmp_path / "r", 2, total=10, age=120)
    assert status(run, {"epochs": 10}).status is Status.RUNNING
    assert status(run, {"epochs": 10, "sleep_time": 60}).status is Status.FAILED
    done = make_trainer_run(tmp_path / "d", 2, total=2, age=3 * DAY)
    assert status(done, {"epochs": 2, "outdated_days": 2}).status is Status.OUTDATED


def test_early_stopped_run_is_finished(tmp_path: Path) -> None:
    values = [0.5, 0.6, 0.7, 0.69, 0.68, 0.67]
    run = make_trainer_run(
        tmp_path / "r",
        6,
        scores=[{"acc": v} for v in values],
        config={"epochs": 20, "early_stopping": 3, "metric": "acc"},
        age=3600,
    )
    result = status(run)
    assert result.status is Status.FINISHED
    assert result.progress.early_stopped_at_epoch == 6


def test_evaluator_statuses(tmp_path: Path) -> None:
    done = make_evaluator_run(tmp_path / "done", scores={"aggregated": {"acc": 0.9}})
    assert status(done).status is Status.FINISHED
    assert status(done).progress.best_score == {"acc": 0.9}
    busy = make_evaluator_run(tmp_path / "busy", raw='{"aggregated": {"ac', log=True)
    assert status(busy).status is Status.RUNNING
    dead = make_evaluator_run(tmp_path / "dead", raw="", age=2 * DAY)
    (dead / "eval_0.log").write_text("x")
    old = time.time() - 2 * DAY
    os.utime(dead / "eval_0.log", (old, old))
    assert status(dead).status is Status.FAILED


@pytest.mark.parametrize(
    ("reported", "expected"),
    [
        (Status.FAILED, Status.FAILED),
        (Status.CANCELLED, Status.CANCELLED),
        (Status.CRASHED, Status.CRASHED),
    ],
)
def test_source_reported_endings_win(reported: Status, expected: Status) -> None:
    progress = ProgressInfo(reported_status=reported, source_status="x", error_message="boom")
    result, reason = decide_status(
        progress,
        complete=False,
        last_activity=time.time(),
        process=PROC,
        now=time.time(),
        sleep_time=60,
        outdated_days=30,
    )
    assert result is expected
    assert "boom" in reason


def test_reported_pending_with_fresh_heartbeat_is_pending() -> None:
    now = time.time()
    progress = ProgressInfo(reported_status=Status.PENDING, last_update_time=now)
    assert (
        decide_status(
            progress,
            complete=False,
            last_activity=now,
            process=None,
            now=now,
            sleep_time=60,
            outdated_days=30,
        )[0]
        is Status.PENDING
    )


def test_complete_with_a_silent_process_is_stuck() -> None:
    now = time.time()
    result, _ = decide_status(
        ProgressInfo(progress_percentage=100),
        complete=True,
        last_activity=now - 2 * DAY,
        process=PROC,
        now=now,
        sleep_time=DAY,
        outdated_days=30,
    )
    assert result is Status.STUCK


class TestScan:
    def test_every_run_under_a_root(self, tmp_path: Path) -> None:
        make_trainer_run(tmp_path / "a" / "run1", 2, total=4)
        make_trainer_run(tmp_path / "a" / "run2", 4, total=4)
        make_evaluator_run(tmp_path / "b" / "deep" / "eval", scores={"acc": 1})
        (tmp_path / "b" / "not_a_run").mkdir()
        results = scan(tmp_path)
        assert [Path(r.work_dir).relative_to(tmp_path).as_posix() for r in results] == [
            "a/run1",
            "a/run2",
            "b/deep/eval",
        ]
        assert [r.status for r in results] == [Status.RUNNING, Status.FINISHED, Status.FINISHED]

    def test_a_broken_run_is_a_row_and_hides_nothing(self, tmp_path: Path) -> None:
        make_trainer_run(tmp_path / "good", 2, total=4)
        bad = make_trainer_run(tmp_path / "ambiguous", 1)
        make_evaluator_run(bad, scores={"acc": 1})
        badcfg = make_trainer_run(tmp_path / "badcfg", 1)
        (badcfg / "progresskit.yaml").write_text("epochs: [unclosed\n")
        results = {Path(r.work_dir).name: r for r in scan(tmp_path)}
        assert set(results) == {"good", "ambiguous", "badcfg"}
        assert results["good"].status is Status.RUNNING
        assert results["ambiguous"].status is Status.UNKNOWN
        assert "Ambiguous" in (results["ambiguous"].reason or "")
        assert results["badcfg"].status is Status.UNKNOWN
        assert "invalid YAML" in (results["badcfg"].reason or "")

    def test_tracker_exception_is_a_row(self, tmp_path: Path) -> None:
        make_trainer_run(tmp_path / "ok", 1, total=2)
        make_evaluator_run(tmp_path / "boom", scores={"acc": 1})
        session = Tracking()
        session.scan(str(tmp_path))
        tracked = session._trackers[str(tmp_path / "boom")]

        def explode() -> ProgressInfo:
            raise RuntimeError("disk on fire")

        tracked.tracker.calculate_progress = explode  # type: ignore[method-assign]
        tracked.tracker._cache = None
        results = {Path(r.work_dir).name: r for r in session.scan(str(tmp_path))}
        assert results["boom"].status is Status.UNKNOWN
        assert "disk on fire" in (results["boom"].reason or "")
        assert results["ok"].status is Status.RUNNING

    def test_warm_scan_sees_changes(self, tmp_path: Path) -> None:
        run = make_trainer_run(tmp_path / "r", 2, total=4, age=100)
        session = Tracking()
        assert session.scan(str(tmp_path))[0].progress.completed_epochs == 2
        assert session.scan(str(tmp_path))[0].progress.completed_epochs == 2
        make_trainer_run(run, 3, total=4)
        make_evaluator_run(tmp_path / "new_eval", scores={"acc": 1})
        results = session.scan(str(tmp_path))
        assert [r.progress.completed_epochs for r in results] == [1, 3]

    def test_single_run_root(self, tmp_path: Path) -> None:
        run = make_trainer_run(tmp_path / "r", 1, total=2)
        assert [r.work_dir for r in scan(run)] == [str(run)]

    def test_no_runs_is_empty(self, tmp_path: Path) -> None:
        assert scan(tmp_path) == []

    def test_status_of_a_non_run_raises(self, tmp_path: Path) -> None:
        with pytest.raises(NoTrackerError):
            status(tmp_path)


class TestSeedApi:
    def test_get_work_dir(self, tmp_path: Path) -> None:
        assert get_work_dir("./configs/exp/run_1.py") == "logs/exp/run_1"
        assert get_work_dir(str(tmp_path)) == str(tmp_path)
        with pytest.raises(ValueError, match="cannot derive a work dir"):
            get_work_dir("somewhere/run.txt")

    def test_get_run_status_uses_seed_vocabulary(self, tmp_path: Path) -> None:
        run = make_trainer_run(tmp_path / "r", 2, age=2 * DAY)
        result = get_run_status(str(run), None, 10, {str(run): PROC})
        assert result.status == "stuck"
        assert result.process_info == PROC
        assert result.progress.total_epochs == 10
        assert result.config == str(run)

    def test_config_file_overrides_the_epochs_argument(self, tmp_path: Path) -> None:
        run = make_trainer_run(tmp_path / "r", 2, total=2, age=60)
        assert get_run_status(str(run), None, 10, {}).status == "finished"

    def test_get_all_run_status(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.chdir(tmp_path)
        make_trainer_run(tmp_path / "logs" / "exp" / "a", 2, age=2 * DAY)
        make_trainer_run(tmp_path / "logs" / "exp" / "b", 5, age=60)
        (tmp_path / "logs" / "exp" / "empty").mkdir()
        configs = [
            "./configs/exp/a.py",
            "./configs/exp/b.py",
            "./configs/exp/empty.py",
            "./configs/exp/missing.py",
        ]
        results = get_all_run_status(configs, None, 5, sleep_time=3600)
        assert list(results) == configs
        assert results["./configs/exp/a.py"].status == "failed"
        assert results["./configs/exp/b.py"].status == "finished"
        # Seed 001's third strategy: 'epochs' in the config makes an empty dir a trainer run.
        assert results["./configs/exp/empty.py"].status == "failed"
        assert results["./configs/exp/empty.py"].progress.runner_type == "trainer"
        assert results["./configs/exp/missing.py"].status == "failed"
        assert "does not exist" in (results["./configs/exp/missing.py"].reason or "")
        assert {r.status.value for r in results.values()} <= {
            "running",
            "finished",
            "stuck",
            "failed",
            "outdated",
        }


def test_a_heartbeat_only_run_has_null_progress_not_zero(tmp_path: Path) -> None:
    # Issue 15: a job that only calls heartbeat() read 0.0% and 0 epochs; neither is known.
    import json

    from progresskit import Tracking, heartbeat
    from progresskit.formats.jsonio import to_json

    with heartbeat(tmp_path, expect_every=30):
        run = Tracking().status(str(tmp_path), discover_processes=False)
    assert run.progress.runner_type == "heartbeat"
    assert run.progress.progress_percentage is None and run.progress.completed_epochs is None
    doc = json.loads(to_json(run.progress))
    assert doc["progress_percentage"] is None and doc["completed_epochs"] is None


def test_an_age_from_a_lease_is_never_negative(tmp_path: Path) -> None:
    # The lease's renewal time, a little ahead of this host's clock: "-0.6s ago" before.
    from progresskit import heartbeat
    from progresskit.engine.liveness import observe
    from progresskit.engine.rules import decide
    from progresskit.formats.lease import LEASE_FILENAME, load_lease

    with heartbeat(tmp_path, expect_every=30):
        lease = load_lease(str(tmp_path / LEASE_FILENAME))
        now = time.time()
        decision = decide(
            ProgressInfo(progress_percentage=None),
            complete=False,
            last_activity=None,
            process=None,
            now=now,
            sleep_time=60,
            outdated_days=30,
            lease=observe(lease, now + 0.6),
        )
    assert decision.status is Status.RUNNING
    assert "-0" not in decision.reason and "0.0s ago" in decision.reason, decision.reason
