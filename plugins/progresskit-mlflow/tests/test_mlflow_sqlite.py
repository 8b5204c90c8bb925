"""MLflow's SQLite store, read-only: the real runs, a killed run left RUNNING (mlflow#3932),
a growing run, a writer holding the database, and what is not an MLflow store."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from progresskit_mlflow.plugin import store_statuses
from progresskit_mlflow.sqlitestore import MlflowStoreError, read_store

from mlflow_samples import (
    DATABASE,
    DB_RUNS,
    FILE_RUNS,
    cadence,
    copy_database,
    copy_mlruns,
    log_metrics,
)
from progresskit import Status, Tracking
from progresskit.testing import plugin_manager

#: When the last sample run ended (fail_nowith's end_time), on the generating machine's clock.
SAMPLES_END = 1796166555.785


def statuses(database: Path, now: float, **config: object) -> dict[str, object]:
    by_id = {}
    for run in store_statuses(f"sqlite:///{database}", config, now):
        by_id[run.progress.details["run_id"]] = run
    return {outcome: by_id[run_id] for outcome, run_id in DB_RUNS.items()}


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_real_runs(tmp_path: Path) -> None:
    database = copy_database(tmp_path)
    runs = statuses(database, SAMPLES_END + 7200, sleep_time=3600)
    finish, fail, kill, nowith = (runs[k] for k in ("finish", "fail", "kill", "fail_nowith"))

    assert finish.status is Status.FINISHED and finish.progress.source_status == "FINISHED"
    assert (finish.progress.completed_steps, finish.progress.total_steps) == (39, 40)
    assert finish.progress.metrics["final_loss"] == 0.355685178966284
    assert finish.progress.details["params.outcome"] == "finish"
    assert finish.progress.details["experiment"] == "formats-demo"
    assert finish.config == f"sqlite:///{database}#{DB_RUNS['finish']}"
    assert finish.work_dir == str(database)

    assert fail.status is Status.FAILED and fail.progress.source_status == "FAILED"
    assert kill.status is Status.FAILED and kill.progress.source_status == "RUNNING"
    assert "no process" in kill.reason
    assert kill.progress.completed_steps == 20
    assert nowith.status is Status.FINISHED
    assert any("recorded FINISHED at step 25 of 40" in w for w in nowith.progress.warnings)


def test_both_stores_read_the_same_outcomes_alike(tmp_path: Path) -> None:
    """The same four outcomes, logged into each store by the same script, read alike
    (ids, times and paths aside)."""

    mlruns = copy_mlruns(tmp_path)
    files = Tracking(plugin_manager(only=["mlflow"]), config={"sleep_time": 3600}).scan(
        str(mlruns), processes={}, now=SAMPLES_END + 7200)
    by_dir = {Path(r.work_dir).name: r for r in files}
    database = statuses(copy_database(tmp_path), SAMPLES_END + 7200, sleep_time=3600)
    for outcome, run_id in FILE_RUNS.items():
        a, b = by_dir[run_id], database[outcome]
        assert (a.status, b.status) == (b.status, a.status), outcome
        for field in ("source_status", "completed_steps", "total_steps", "metrics",
                      "warnings", "progress_percentage"):
            assert getattr(a.progress, field) == getattr(b.progress, field), (outcome, field)
        assert a.progress.details["store"] == "file" and b.progress.details["store"] == "sqlite"


def test_only_running_runs_have_their_moments_read() -> None:
    records = {r.run_name: r for r in read_store(str(DATABASE), timeout=1.0)}
    assert sorted(records) == ["run-fail", "run-fail_nowith", "run-finish", "run-kill"]
    kill = records["run-kill"]
    assert kill.end_ms is None
    # loss and lr of a step are logged a few ms apart: two moments each.
    assert len(kill.recent) == 42 and kill.recent[-1] == (1796166551035, 20)
    assert records["run-finish"].recent == ()


def test_the_real_killed_run_is_failed_by_its_rhythm_with_the_default_limits(
    tmp_path: Path,
) -> None:
    # No sleep_time given: the day-long default would leave it RUNNING; MLflow's own
    # timestamps (a step every ~50 ms) say it is dead a little after it went silent.
    database = copy_database(tmp_path)
    last = 1796166551.035
    assert statuses(database, last + 5)["kill"].status is Status.RUNNING
    kill = statuses(database, last + 60)["kill"]
    assert kill.status is Status.FAILED, kill.reason
    assert "no sign of life for 1m 0s; it updated every ~" in kill.reason
    assert kill.progress.source_status == "RUNNING"


def test_a_killed_run_whose_cadence_stopped_is_failed(tmp_path: Path) -> None:
    database = copy_database(tmp_path)
    now = time.time()
    killed_at = int((now - 300) * 1000)
    log_metrics(database, DB_RUNS["kill"], "loss", cadence(21, 40, last_ms=killed_at,
                                                           every_ms=2000))
    kill = statuses(database, now)["kill"]
    assert kill.status is Status.FAILED, kill.reason
    assert kill.progress.source_status == "RUNNING"
    assert "it updated every ~2.0s" in kill.reason
    assert kill.progress.completed_steps == 60

    # While it was still logging: running, with an ETA from its pace.
    alive = statuses(database, killed_at / 1000 + 3)["kill"]
    assert alive.status is Status.RUNNING, alive.reason
    assert alive.progress.eta_seconds is not None


def test_a_growing_run(tmp_path: Path) -> None:
    database = copy_database(tmp_path)
    run_id = DB_RUNS["kill"]
    now = int(time.time() * 1000)
    log_metrics(database, run_id, "loss", cadence(21, 5, last_ms=now - 4000, every_ms=1000))
    before = statuses(database, now / 1000)["kill"]
    log_metrics(database, run_id, "loss", cadence(26, 4, last_ms=now, every_ms=1000))
    after = statuses(database, now / 1000)["kill"]
    assert (before.progress.completed_steps, after.progress.completed_steps) == (25, 29)
    assert after.status is Status.RUNNING
    assert after.last_activity == pytest.approx(now / 1000)


def test_reading_takes_no_write_lock_and_changes_nothing(tmp_path: Path) -> None:
    database = copy_database(tmp_path)
    before = digest(database)
    database.chmod(0o444)  # a store this user may only read is still read
    records = read_store(str(database), timeout=1.0)
    assert len(records) == 4
    assert digest(database) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlflow.db"]  # no journal left


def test_a_writer_mid_transaction_does_not_stop_the_read(tmp_path: Path) -> None:
    """A writer inside its transaction (RESERVED lock, as MLflow holds it while logging):
    readers see the committed rows, and the writer commits after the read."""
    database = copy_database(tmp_path)
    writer = sqlite3.connect(database, isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("UPDATE runs SET status = 'KILLED' WHERE run_uuid = ?",
                       (DB_RUNS["kill"],))
        records = {r.run_id: r for r in read_store(str(database), timeout=1.0)}
        assert records[DB_RUNS["kill"]].status == "RUNNING"  # not committed yet
        writer.execute("COMMIT")
    finally:
        writer.close()
    runs = statuses(database, SAMPLES_END + 60)
    assert runs["kill"].status is Status.CANCELLED
    assert runs["kill"].progress.source_status == "KILLED"


def test_a_locked_database_is_a_clear_error_after_the_busy_timeout(tmp_path: Path) -> None:
    database = copy_database(tmp_path)
    writer = sqlite3.connect(database, isolation_level=None)
    try:
        writer.execute("BEGIN EXCLUSIVE")  # what a commit holds, for as long as it takes
        began = time.monotonic()
        with pytest.raises(MlflowStoreError) as caught:
            store_statuses(f"sqlite:///{database}", {"mlflow_busy_timeout": 0.3}, time.time())
        waited = time.monotonic() - began
    finally:
        writer.close()
    assert 0.25 <= waited < 5
    assert "stayed locked by a writer for more than 0.3s (mlflow_busy_timeout)" in str(
        caught.value)
    assert str(caught.value).startswith(f"sqlite:///{database}: ")


def test_a_lock_released_within_the_timeout_is_waited_for(tmp_path: Path) -> None:
    database = copy_database(tmp_path)
    writer = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
    writer.execute("BEGIN EXCLUSIVE")
    release = threading.Timer(0.3, lambda: writer.execute("COMMIT"))
    release.start()
    try:
        assert len(read_store(str(database), timeout=5.0)) == 4
    finally:
        release.join()
        writer.close()


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "no such file (expected an MLflow SQLite tracking database"),
        (b"this is not sqlite, just text\n" * 40, "not an SQLite database"),
        ("empty-sqlite", "not an MLflow tracking store: no table runs, experiments"),
    ],
)
def test_what_is_not_an_mlflow_store_is_said(
    tmp_path: Path, content: bytes | str | None, expected: str
) -> None:
    path = tmp_path / "mlflow.db"
    if content == "empty-sqlite":
        sqlite3.connect(path).execute("CREATE TABLE other (x)").connection.close()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    with pytest.raises(MlflowStoreError) as caught:
        store_statuses(f"sqlite:///{path}", {}, time.time())
    assert expected in str(caught.value)
    assert os.path.exists(path) == (content is not None)  # nothing created


@pytest.mark.parametrize(("target", "expected"), [
    ("sqlite:///", "no database path"),
    ("sqlite:///mlflow.db?timeout=5", "query parameters are not supported"),
])
def test_a_malformed_target_is_said(target: str, expected: str) -> None:
    with pytest.raises(MlflowStoreError, match=expected):
        store_statuses(target, {}, time.time())
