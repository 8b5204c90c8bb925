"""The ETA history store: location, recording once, concurrent writers, failures that never
break a status query, and the prior -> own-rate handover through the tracker helper."""

from __future__ import annotations

import logging
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import make_trainer_run
from progresskit.engine.eta import Basis
from progresskit.engine.history import (
    HISTORY_ENV,
    HistoryStore,
    default_path,
    deferred_records,
    estimate_run,
    finished_record,
    history_path,
)


def steady(n: int, seconds: float, start: float = 1_000_000.0) -> list[tuple[float, float]]:
    return [(start + i * seconds, float(i)) for i in range(n + 1)]


# -- where ----------------------------------------------------------------------------------


def test_location_env_overrides_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(HISTORY_ENV, str(tmp_path / "env.sqlite3"))
    assert history_path({"eta_history": str(tmp_path / "cfg.sqlite3")}) == tmp_path / "env.sqlite3"
    monkeypatch.delenv(HISTORY_ENV)
    assert history_path({"eta_history": str(tmp_path / "cfg.sqlite3")}) == tmp_path / "cfg.sqlite3"
    assert history_path({"eta_history": "off"}) is None
    monkeypatch.setenv(HISTORY_ENV, "off")
    assert history_path({"eta_history": str(tmp_path / "cfg.sqlite3")}) is None


def test_default_location_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(HISTORY_ENV)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert history_path({}) == tmp_path / "state" / "progresskit" / "history.sqlite3"
    monkeypatch.delenv("XDG_STATE_HOME")
    assert default_path() == Path.home() / ".local" / "state" / "progresskit" / "history.sqlite3"


def test_config_keys_are_declared_and_checked(tmp_path: Path) -> None:
    from progresskit import ConfigError
    from progresskit.plugin.manager import default_plugin_manager

    schema = default_plugin_manager().schema
    values = schema.validate({"eta_history": "off", "eta_group": "resnet"}, "cfg")
    assert values["eta_group"] == "resnet"
    with pytest.raises(ConfigError, match="eta_group"):
        schema.validate({"eta_group": " "}, "cfg")
    with pytest.raises(ConfigError, match="eta_history"):
        schema.validate({"eta_history": 3}, "cfg")


# -- recording ------------------------------------------------------------------------------


def test_finished_run_is_recorded_once(isolated_history: Path, tmp_path: Path) -> None:
    obs = steady(10, 60.0)
    for _ in range(3):
        est = estimate_run(obs, 10, runner_type="trainer", work_dir=str(tmp_path), group="g",
                           finished=True)
        assert (est.seconds, est.basis) == (0.0, Basis.DONE)
    store = HistoryStore(isolated_history)
    runs = store.runs("trainer", "g")
    assert len(runs) == 1
    assert runs[0].seconds_per_unit == pytest.approx(60.0)
    assert runs[0].duration_seconds == pytest.approx(600.0)
    # A re-run in the same directory (later first observation) is a new run.
    estimate_run(steady(10, 60.0, start=2_000_000.0), 10, runner_type="trainer",
                 work_dir=str(tmp_path), group="g", finished=True)
    assert len(store.runs("trainer", "g")) == 2
    assert store.runs("evaluator", "g") == [] and store.runs("trainer", "other") == []


def test_deferred_records_commit_once_at_the_end(isolated_history: Path, tmp_path: Path) -> None:
    store = HistoryStore(isolated_history)
    with deferred_records():
        for i in range(5):
            estimate_run(steady(10, 60.0), 10, runner_type="trainer",
                         work_dir=str(tmp_path / f"r{i}"), group="g", finished=True)
            with deferred_records():  # nested: the outermost block records
                pass
        assert store.runs("trainer", "g") == []  # nothing written before the block ends
    assert len(store.runs("trainer", "g")) == 5


def test_a_scan_records_its_finished_runs(isolated_history: Path, tmp_path: Path) -> None:
    for i in range(3):
        make_trainer_run(tmp_path / "runs" / f"r{i}", 3, total=3, age=3600)
    make_trainer_run(tmp_path / "runs" / "busy", 1, total=3)
    from progresskit import scan

    scan(tmp_path / "runs")
    recorded = sqlite3.connect(isolated_history).execute("SELECT COUNT(*) FROM runs").fetchone()
    assert recorded == (3,)


def test_runs_without_a_directory_are_keyed_by_their_id(isolated_history: Path) -> None:
    for prompt in ("p1", "p2", "p1"):
        estimate_run(steady(4, 10.0), 4, runner_type="comfyui", work_dir="",
                     group="video", run_id=f"http://127.0.0.1:8188/{prompt}", finished=True)
    keys = sorted(r.run_key for r in HistoryStore(isolated_history).runs("comfyui", "video"))
    assert keys == ["http://127.0.0.1:8188/p1@1000000.000", "http://127.0.0.1:8188/p2@1000000.000"]


def test_database_format(isolated_history: Path, tmp_path: Path) -> None:
    estimate_run(steady(4, 10.0), 4, runner_type="trainer", work_dir=str(tmp_path), group="g",
                 finished=True)
    conn = sqlite3.connect(isolated_history)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    columns = [r[1] for r in conn.execute("PRAGMA table_info(runs)")]
    assert columns == ["runner_type", "grp", "run_key", "finished_at", "recorded_at",
                       "duration_seconds", "units", "seconds_per_unit", "profile"]


def test_unobserved_run_is_not_recorded(isolated_history: Path, tmp_path: Path) -> None:
    assert finished_record([(5.0, 3.0)], 3, "trainer", "g", str(tmp_path)) is None
    assert finished_record([(5.0, 1.0), (5.0, 2.0)], 3, "trainer", "g", str(tmp_path)) is None
    estimate_run([(5.0, 3.0)], 3, runner_type="trainer", work_dir=str(tmp_path), finished=True)
    assert not isolated_history.exists()  # nothing to record: the file is not even created


def test_query_without_history_does_not_create_the_store(isolated_history: Path) -> None:
    est = estimate_run([], 10, runner_type="trainer", work_dir="/nowhere", group="g")
    assert est.seconds is None
    assert not isolated_history.exists()


def test_history_off(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(HISTORY_ENV, "off")
    est = estimate_run(steady(4, 10.0), 4, runner_type="trainer", work_dir=str(tmp_path),
                       finished=True)
    assert est.basis is Basis.DONE
    assert list(tmp_path.iterdir()) == []


WRITER = textwrap.dedent(
    """
    import sys
    from progresskit.engine.history import estimate_run
    worker, runs = int(sys.argv[1]), int(sys.argv[2])
    for i in range(runs):
        obs = [(1000.0 * i + 10.0 * k, float(k)) for k in range(6)]
        estimate_run(obs, 5, runner_type="trainer", work_dir=f"/runs/w{worker}/r{i}",
                     group="shared", finished=True)
        estimate_run(obs[:3], 5, runner_type="trainer", work_dir="/runs/live",
                     group="shared")
    """
)


@pytest.mark.slow
def test_concurrent_writers_from_several_processes(isolated_history: Path) -> None:
    workers, runs = 6, 40
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(w), str(runs)],
                         stderr=subprocess.PIPE, text=True)
        for w in range(workers)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert "cannot" not in err, err  # no history warning: every write went through
    conn = sqlite3.connect(isolated_history)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert conn.execute("SELECT count(*) FROM runs").fetchone()[0] == workers * runs
    assert conn.execute("SELECT count(DISTINCT run_key) FROM runs").fetchone()[0] == workers * runs


# -- failures never break a query -----------------------------------------------------------


def test_unusable_store_is_logged_once_and_never_raised(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the history's directory should be")
    monkeypatch.setenv(HISTORY_ENV, str(blocker / "history.sqlite3"))
    with caplog.at_level(logging.WARNING, logger="progresskit.engine.history"):
        for i in range(3):
            est = estimate_run(steady(4, 10.0, start=i * 1e5), 4, runner_type="trainer",
                               work_dir=str(tmp_path), finished=True)
            assert est.basis is Basis.DONE
    warnings = [r for r in caplog.records if r.name == "progresskit.engine.history"]
    assert len(warnings) == 1
    assert "cannot record a finished run" in warnings[0].getMessage()


def test_corrupt_store_is_logged_once_and_ignored(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    corrupt = tmp_path / "history.sqlite3"
    corrupt.write_bytes(b"this is not a database" * 100)
    monkeypatch.setenv(HISTORY_ENV, str(corrupt))
    with caplog.at_level(logging.WARNING, logger="progresskit.engine.history"):
        for _ in range(3):
            est = estimate_run(steady(3, 10.0), 10, runner_type="trainer",
                               work_dir=str(tmp_path), group="g")
            assert est.basis is Basis.OWN
            assert est.seconds == pytest.approx(70.0)
    assert len([r for r in caplog.records if r.name == "progresskit.engine.history"]) == 1


def test_status_of_finished_runs_with_an_unwritable_store(
    tmp_path: Path, cli: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    run = make_trainer_run(tmp_path / "runs" / "r", 3, epoch_seconds=60.0)
    (tmp_path / "runs" / "progresskit.yaml").write_text("epochs: 3\n")
    result = cli("status", "--json", str(tmp_path / "runs"),
                 env={HISTORY_ENV: str(blocker / "h.sqlite3")})
    assert result.returncode == 0, result.stderr
    assert '"status": "finished"' in result.stdout
    assert result.stderr.count("ETA history") == 1
    assert run.exists()


# -- prior -> own rate ----------------------------------------------------------------------


def test_prior_hands_over_to_the_runs_own_rate(tmp_path: Path) -> None:
    # Five finished runs at ~60 s per epoch...
    for i in range(5):
        estimate_run(steady(20, 60.0 + i, start=i * 1e5), 20, runner_type="trainer",
                     work_dir=str(tmp_path / f"past{i}"), group="cfg", finished=True)
    # ...and a new run of the same config on a slower machine: 90 s per epoch.
    new = steady(20, 90.0, start=9e5)
    answers = []
    for done in (0, 1, 2, 3, 5, 10, 15):
        est = estimate_run(new[: done + 1], 20, runner_type="trainer",
                           work_dir=str(tmp_path / "new"), group="cfg")
        assert est.seconds is not None
        answers.append((done, est.basis, est.own_weight, est.seconds / (20 - done)))
    # Barely started: history's pace (~62 s/epoch); then blended; at the end its own 90 s.
    assert answers[0][1] is Basis.HISTORY and answers[0][3] == pytest.approx(62.0, rel=0.05)
    # One epoch measured: history still weighs more than that single interval.
    assert answers[1][1] is Basis.BLEND and 0.05 < answers[1][2] < 0.5
    weights = [a[2] for a in answers[1:]]
    assert weights == sorted(weights)
    assert weights[-1] > 0.95
    assert answers[-1][3] == pytest.approx(90.0, rel=0.03)
    paces = [a[3] for a in answers]
    assert paces == sorted(paces)  # moves steadily from history's pace to its own


def test_groups_keep_histories_apart(tmp_path: Path) -> None:
    estimate_run(steady(10, 60.0), 10, runner_type="trainer", work_dir=str(tmp_path / "a"),
                 group="small", finished=True)
    assert estimate_run([], 10, runner_type="trainer", work_dir="/x", group="big").seconds is None
    small = estimate_run([], 10, runner_type="trainer", work_dir="/x", group="small")
    assert small.seconds == pytest.approx(600.0, rel=0.01)
    # the config's eta_group wins over the tracker's default group
    pinned = estimate_run([], 10, runner_type="trainer", work_dir="/x", group="big",
                          config={"eta_group": "small"})
    assert pinned.seconds == pytest.approx(600.0, rel=0.01)
