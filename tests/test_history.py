"""The ETA history store: location, recording once, who records (and that library queries
never write), concurrent writers, failures that never break a status query, and the
prior -> own-rate handover through the tracker helper."""

from __future__ import annotations

import logging
import math
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

import progresskit
from helpers.runs import make_trainer_run
from progresskit import Tracking
from progresskit.engine.eta import Basis
from progresskit.engine.history import (
    HISTORY_ENV,
    HistoryStore,
    RunRecord,
    default_path,
    estimate_run,
    finished_record,
    history_path,
    record_finished_runs,
)
from progresskit.testing import CliResult


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


def test_finished_run_is_recorded_once(progresskit_history: Path, tmp_path: Path) -> None:
    obs = steady(10, 60.0)
    for _ in range(3):  # three recording queries of the same finished run
        with record_finished_runs():
            est = estimate_run(obs, 10, runner_type="trainer", work_dir=str(tmp_path),
                               group="g", finished=True)
        assert (est.seconds, est.basis) == (0.0, Basis.DONE)
    store = HistoryStore(progresskit_history)
    runs = store.runs("trainer", "g")
    assert len(runs) == 1
    assert runs[0].seconds_per_unit == pytest.approx(60.0)
    assert runs[0].duration_seconds == pytest.approx(600.0)
    # A re-run in the same directory (later first observation) is a new run.
    with record_finished_runs():
        estimate_run(steady(10, 60.0, start=2_000_000.0), 10, runner_type="trainer",
                     work_dir=str(tmp_path), group="g", finished=True)
    assert len(store.runs("trainer", "g")) == 2
    assert store.runs("evaluator", "g") == [] and store.runs("trainer", "other") == []


def test_a_block_records_once_when_it_ends(progresskit_history: Path, tmp_path: Path) -> None:
    store = HistoryStore(progresskit_history)
    with record_finished_runs():
        for i in range(5):
            estimate_run(steady(10, 60.0), 10, runner_type="trainer",
                         work_dir=str(tmp_path / f"r{i}"), group="g", finished=True)
        assert not progresskit_history.exists()  # nothing written before the block ends
        with record_finished_runs():  # nested: records its own runs when it ends
            estimate_run(steady(10, 60.0), 10, runner_type="trainer",
                         work_dir=str(tmp_path / "inner"), group="g", finished=True)
        assert [r.run_key.split("@")[0] for r in store.runs("trainer", "g")] == [
            str((tmp_path / "inner").resolve())
        ]
    assert len(store.runs("trainer", "g")) == 6


def test_estimate_run_outside_a_block_writes_nothing(progresskit_history: Path,
                                                     tmp_path: Path) -> None:
    est = estimate_run(steady(10, 60.0), 10, runner_type="trainer", work_dir=str(tmp_path),
                       group="g", finished=True)
    assert (est.seconds, est.basis) == (0.0, Basis.DONE)
    assert not progresskit_history.exists()
    assert list(tmp_path.iterdir()) == []


def test_a_recording_scan_records_its_finished_runs(progresskit_history: Path,
                                                   tmp_path: Path) -> None:
    for i in range(3):
        make_trainer_run(tmp_path / "runs" / f"r{i}", 3, total=3, age=3600)
    make_trainer_run(tmp_path / "runs" / "busy", 1, total=3)

    Tracking(record_history=True).scan(str(tmp_path / "runs"))
    recorded = sqlite3.connect(progresskit_history).execute("SELECT COUNT(*) FROM runs").fetchone()
    assert recorded == (3,)


def test_runs_without_a_directory_are_keyed_by_their_id(progresskit_history: Path) -> None:
    with record_finished_runs():
        for prompt in ("p1", "p2", "p1"):
            estimate_run(steady(4, 10.0), 4, runner_type="comfyui", work_dir="",
                         group="video", run_id=f"http://127.0.0.1:8188/{prompt}", finished=True)
    keys = sorted(r.run_key for r in HistoryStore(progresskit_history).runs("comfyui", "video"))
    assert keys == ["http://127.0.0.1:8188/p1@1000000.000", "http://127.0.0.1:8188/p2@1000000.000"]


def test_database_format(progresskit_history: Path, tmp_path: Path) -> None:
    with record_finished_runs():
        estimate_run(steady(4, 10.0), 4, runner_type="trainer", work_dir=str(tmp_path),
                     group="g", finished=True)
    conn = sqlite3.connect(progresskit_history)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    columns = [r[1] for r in conn.execute("PRAGMA table_info(runs)")]
    assert columns == ["runner_type", "grp", "run_key", "finished_at", "recorded_at",
                       "duration_seconds", "units", "seconds_per_unit", "profile"]


def test_unobserved_run_is_not_recorded(progresskit_history: Path, tmp_path: Path) -> None:
    assert finished_record([(5.0, 3.0)], 3, "trainer", "g", str(tmp_path)) is None
    assert finished_record([(5.0, 1.0), (5.0, 2.0)], 3, "trainer", "g", str(tmp_path)) is None
    with record_finished_runs():
        estimate_run([(5.0, 3.0)], 3, runner_type="trainer", work_dir=str(tmp_path),
                     finished=True)
    assert not progresskit_history.exists()  # nothing to record: the file is not even created


def test_query_without_history_does_not_create_the_store(progresskit_history: Path) -> None:
    est = estimate_run([], 10, runner_type="trainer", work_dir="/nowhere", group="g")
    assert est.seconds is None
    assert not progresskit_history.exists()


def test_an_estimate_without_a_history_file_does_not_load_sqlite(tmp_path: Path) -> None:
    # sqlite3 is loaded where a database is opened, not by every status query.
    code = textwrap.dedent(f"""
        import os, sys
        os.environ[{HISTORY_ENV!r}] = {str(tmp_path / "none.sqlite3")!r}
        from progresskit.engine.history import estimate_run
        estimate_run([(0.0, 0.0), (60.0, 1.0)], 10, runner_type="trainer", work_dir="/x")
        print("sqlite3" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_history_off(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(HISTORY_ENV, "off")
    with record_finished_runs():
        est = estimate_run(steady(4, 10.0), 4, runner_type="trainer", work_dir=str(tmp_path),
                           finished=True)
    assert est.basis is Basis.DONE
    assert list(tmp_path.iterdir()) == []


WRITER = textwrap.dedent(
    """
    import sys
    from progresskit.engine.history import estimate_run, record_finished_runs
    worker, runs = int(sys.argv[1]), int(sys.argv[2])
    for i in range(runs):
        obs = [(1000.0 * i + 10.0 * k, float(k)) for k in range(6)]
        with record_finished_runs():  # one transaction per run: as many as can be
            estimate_run(obs, 5, runner_type="trainer", work_dir=f"/runs/w{worker}/r{i}",
                         group="shared", finished=True)
        estimate_run(obs[:3], 5, runner_type="trainer", work_dir="/runs/live",
                     group="shared")
    """
)


@pytest.mark.slow
def test_concurrent_writers_from_several_processes(progresskit_history: Path) -> None:
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
    conn = sqlite3.connect(progresskit_history)
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
            with record_finished_runs():
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
    tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    run = make_trainer_run(tmp_path / "runs" / "r", 3, epoch_seconds=60.0)
    (tmp_path / "runs" / "progresskit.yaml").write_text("epochs: 3\n")
    result = cli("status", "--json", str(tmp_path / "runs"),
                 env={HISTORY_ENV: str(blocker / "h.sqlite3")})
    assert result.ret == 0, result.stderr
    assert '"status": "finished"' in result.stdout
    assert result.stderr.count("ETA history") == 1
    assert run.exists()


# -- prior -> own rate ----------------------------------------------------------------------


def test_prior_hands_over_to_the_runs_own_rate(tmp_path: Path) -> None:
    # Five finished runs at ~60 s per epoch...
    with record_finished_runs():
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
    with record_finished_runs():
        estimate_run(steady(10, 60.0), 10, runner_type="trainer", work_dir=str(tmp_path / "a"),
                     group="small", finished=True)
    assert estimate_run([], 10, runner_type="trainer", work_dir="/x", group="big").seconds is None
    small = estimate_run([], 10, runner_type="trainer", work_dir="/x", group="small")
    assert small.seconds == pytest.approx(600.0, rel=0.01)
    # the config's eta_group wins over the tracker's default group
    pinned = estimate_run([], 10, runner_type="trainer", work_dir="/x", group="big",
                          config={"eta_group": "small"})
    assert pinned.seconds == pytest.approx(600.0, rel=0.01)


# -- who records ----------------------------------------------------------------------------


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every file and directory under ``root`` with its size and mtime: what a write moves."""
    return {str(p.relative_to(root)): (p.lstat().st_size, p.lstat().st_mtime_ns)
            for p in root.rglob("*")}


LIBRARY_QUERIES: dict[str, Callable[[Path, dict[str, object]], object]] = {
    "status": lambda runs, _: progresskit.status(runs / "r0"),
    "scan": lambda runs, _: progresskit.scan(runs),
    "get_run_status": lambda runs, _: progresskit.get_run_status(str(runs / "r0"), None, 3, None),
    "get_all_run_status": lambda runs, _: progresskit.get_all_run_status(
        [str(runs / "r0"), str(runs / "r1")], None, 3),
    "create_progress_tracker": lambda runs, config: progresskit.create_progress_tracker(
        runs / "r0", config).get_progress(),
}


@pytest.mark.parametrize("where", ["xdg", "home", "config"])
@pytest.mark.parametrize("query", sorted(LIBRARY_QUERIES))
def test_library_queries_of_finished_runs_create_no_file(
    query: str, where: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every place the history may be (store_for): $XDG_STATE_HOME, ~/.local/state, the
    # config's eta_history; and the working directory. All of them are under tmp_path.
    monkeypatch.delenv(HISTORY_ENV)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    if where == "xdg":
        monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    else:
        monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    config: dict[str, object] = {"epochs": 3}
    if where == "config":
        config["eta_history"] = str(tmp_path / "cfg" / "history.sqlite3")
    for i in range(2):
        make_trainer_run(tmp_path / "runs" / f"r{i}", 3, config=config, age=3600)
    for directory in ("home", "state", "cfg", "cwd"):
        (tmp_path / directory).mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    assert history_path(config) is not None
    before = _tree(tmp_path)

    result = LIBRARY_QUERIES[query](tmp_path / "runs", config)

    assert "eta_seconds=0.0" in repr(result)  # the runs were seen finished
    assert _tree(tmp_path) == before


def test_library_queries_add_nothing_to_an_existing_history(progresskit_history: Path,
                                                           tmp_path: Path) -> None:
    with record_finished_runs():
        estimate_run(steady(3, 60.0), 3, runner_type="trainer", work_dir=str(tmp_path / "old"),
                     group="old", finished=True)
    for i in range(2):
        make_trainer_run(tmp_path / "runs" / f"r{i}", 3, total=3, age=3600)
    config = {"epochs": 3}
    for query in LIBRARY_QUERIES.values():
        query(tmp_path / "runs", config)
    recorded = sqlite3.connect(progresskit_history).execute("SELECT COUNT(*) FROM runs").fetchone()
    assert recorded == (1,)


def test_cli_status_records_finished_runs_exactly_once(
    progresskit_history: Path, tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    for i in range(2):
        make_trainer_run(tmp_path / "runs" / f"r{i}", 3, total=3, age=3600)
    make_trainer_run(tmp_path / "runs" / "busy", 1, total=3)
    for target in ("runs", "runs", "runs/r0"):  # a root twice, then one of its runs
        result = cli("status", "--json", str(tmp_path / target))
        assert result.ret == 0, result.stderr
    rows = sqlite3.connect(progresskit_history).execute(
        "SELECT runner_type, run_key FROM runs ORDER BY run_key").fetchall()
    assert [(kind, key.split("@")[0]) for kind, key in rows] == [
        ("trainer", str((tmp_path / "runs" / f"r{i}").resolve())) for i in range(2)
    ]


def test_a_monitor_records_the_finished_runs_it_meets(progresskit_history: Path,
                                                      tmp_path: Path) -> None:
    for i in range(2):
        make_trainer_run(tmp_path / "runs" / f"r{i}", 3, total=3, age=3600)
    monitor = progresskit.Monitor(tmp_path / "runs", sinks=[])
    for _ in range(2):
        monitor.check()
    recorded = sqlite3.connect(progresskit_history).execute("SELECT COUNT(*) FROM runs").fetchone()
    assert recorded == (2,)


# -- issue 15: comparable runs only; the source's own figure --------------------------------


def test_history_is_kept_per_total(tmp_path: Path) -> None:
    # Short runs (100 iterations at 0.01 s) must not speak for a 30k-iteration run of the same
    # runner: they made a Brush run at 51% read 0.001 s and "overdue".
    with record_finished_runs():
        for i in range(5):
            estimate_run(steady(100, 0.01, start=i * 1e4), 100, runner_type="brush",
                         work_dir=str(tmp_path / f"short{i}"), finished=True)
    long_run = steady(100, 1.17, start=1e6)  # observed every 153 iterations: 100 polls
    points = [(t, u * 153) for t, u in long_run]
    est = estimate_run(points, 30000, runner_type="brush", work_dir=str(tmp_path / "long"))
    assert est.basis is Basis.OWN
    assert est.seconds == pytest.approx((30000 - 15300) * 1.17 / 153, rel=0.05)
    # A run of the short kind still gets their history.
    fresh = estimate_run([], 100, runner_type="brush", work_dir=str(tmp_path / "fresh"))
    assert fresh.basis is Basis.HISTORY and fresh.seconds == pytest.approx(1.0, rel=0.05)
    [record] = HistoryStore(progresskit.engine.history.history_path() or tmp_path).runs(
        "brush", "", 1, units=100)
    assert record.units == 100


def test_source_estimate_stands_in_while_ours_has_no_evidence(tmp_path: Path) -> None:
    work_dir = str(tmp_path / "r")
    # Nothing measured, no history: the source's 117 s, with a band (never a point).
    est = estimate_run([(1e6, 0.0)], 30000, runner_type="brush", work_dir=work_dir,
                       source_eta=117.0)
    assert est.basis is Basis.SOURCE and est.seconds == 117.0
    assert est.low is not None and est.high is not None and est.low < 117.0 < est.high
    # History only (nothing of this run's own pace yet): still the source.
    with record_finished_runs():
        estimate_run(steady(10, 60.0), 10, runner_type="trainer", work_dir=str(tmp_path / "a"),
                     finished=True)
    est = estimate_run([], 10, runner_type="trainer", work_dir="/x", source_eta=300.0)
    assert est.basis is Basis.SOURCE and est.seconds == 300.0
    # Once the run's own pace is measured, ours; the source's figure is not ours.
    own = estimate_run(steady(5, 2.0), 10, runner_type="brush", work_dir=work_dir,
                       source_eta=999.0)
    assert own.basis is Basis.OWN and own.seconds == pytest.approx(10.0, rel=0.05)
    # Unusable source figures are not used.
    for bad in (0.0, -3.0, math.inf, math.nan):
        assert estimate_run([], 10, runner_type="x", work_dir="/x", source_eta=bad).seconds is None


def test_a_prior_read_before_this_process_records_is_not_stale(tmp_path: Path) -> None:
    # The cache is keyed by PRAGMA data_version, which only other connections' commits move.
    store = HistoryStore(tmp_path / "h.sqlite3")
    store.record_many([RunRecord("trainer", "other", "seed", 1.0, 10.0, 10, 1.0, (1.0,) * 40)])
    assert store.prior("trainer", "g") is None
    store.record_many([RunRecord("trainer", "g", "r1", 2.0, 10.0, 10, 1.0, (1.0,) * 40)])
    prior = store.prior("trainer", "g")
    assert prior is not None and prior.runs == 1
