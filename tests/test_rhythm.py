"""Liveness without a lease: the silence limit a run's own update rhythm allows
(engine/rhythm.py, docs/status.md), and config layering over a run's own file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import progresskit
from helpers.runs import make_trainer_run
from progresskit import Monitor, ProcessInfo, Status
from progresskit.compat.pylon import get_run_status
from progresskit.engine.rhythm import FACTOR, FLOOR_SECONDS, observe_rhythm
from progresskit.engine.session import Tracking
from progresskit.testing import plugin_manager

DAY = 86400.0
EXPECTED = ["training_losses.pt", "optimizer_buffer.json", "validation_scores.json"]


def cadence_times(cadence: float, steps: int, pause: float = 0.0, every: int = 0) -> list[float]:
    """Update times of a run updating every ``cadence`` s, with a ``pause`` s phase (an
    evaluation) before every ``every``-th update."""
    times, t = [], 1_000_000.0
    for i in range(steps):
        t += cadence + (pause if every and i and i % every == 0 else 0.0)
        times.append(t)
    return times


@given(
    cadence=st.floats(1.0, 3600.0),
    steps=st.integers(5, 300),
    ratio=st.floats(0.0, 5.0),
    every=st.integers(2, 50),
)
def test_periodic_pauses_up_to_5x_the_cadence_are_never_an_alarm(
    cadence: float, steps: int, ratio: float, every: int
) -> None:
    times = cadence_times(cadence, steps, pause=ratio * cadence, every=every)
    # At every point of the run, the next gap is within what the updates so far allow.
    for seen in range(5, len(times)):
        rhythm = observe_rhythm(times[:seen], cap=DAY)
        assert rhythm is not None
        assert times[seen] - times[seen - 1] <= rhythm.limit


@given(cadence=st.floats(1.0, 3600.0), steps=st.integers(5, 300))
def test_a_steady_run_is_judged_within_factor_times_its_cadence(cadence: float, steps: int) -> None:
    rhythm = observe_rhythm(cadence_times(cadence, steps), cap=DAY)
    assert rhythm is not None
    assert rhythm.typical == pytest.approx(cadence)
    assert rhythm.usual_longest == pytest.approx(cadence)
    assert rhythm.limit == pytest.approx(max(FLOOR_SECONDS, FACTOR * cadence))


def test_one_long_pause_is_not_the_rhythm_but_a_recurring_one_is() -> None:
    once = cadence_times(6.0, 40)
    once[20:] = [t + 3600.0 for t in once[20:]]  # a job resumed after an hour
    rhythm = observe_rhythm(once, cap=DAY)
    assert rhythm is not None and rhythm.limit == FACTOR * 6.0
    recurring = cadence_times(6.0, 40, pause=54.0, every=10)  # a 1-minute evaluation
    rhythm = observe_rhythm(recurring, cap=DAY)
    assert rhythm is not None and rhythm.usual_longest == 60.0


def test_too_few_copied_or_capped_updates() -> None:
    assert observe_rhythm(cadence_times(6.0, 4), cap=DAY) is None  # 3 gaps
    assert observe_rhythm([5.0] * 10, cap=DAY) is None
    assert observe_rhythm([i * 0.01 for i in range(50)], cap=DAY) is None  # restored
    assert observe_rhythm(cadence_times(6.0, 10), cap=20.0).limit == 20.0  # type: ignore[union-attr]
    assert observe_rhythm(cadence_times(0.1 + 1.0, 10), cap=DAY).limit == FLOOR_SECONDS  # type: ignore[union-attr]


def test_a_dead_trainer_run_is_failed_after_its_rhythm_not_after_a_day(tmp_path: Path) -> None:
    # Epochs every minute, the newest (and the log) 20 minutes old, no process.
    run = make_trainer_run(tmp_path / "run", 6, total=10, age=20 * 60)
    result = Tracking(plugin_manager()).status(str(run), discover_processes=False)
    assert result.status is Status.FAILED, result.reason
    assert "it updated every ~1m 0s" in result.reason
    alive = ProcessInfo(pid=os.getpid())
    result = Tracking(plugin_manager()).status(str(run), process=alive)
    assert result.status is Status.STUCK, result.reason
    fresh = make_trainer_run(tmp_path / "fresh", 6, total=10, age=5 * 60)
    result = Tracking(plugin_manager()).status(str(fresh), discover_processes=False)
    assert result.status is Status.RUNNING, result.reason  # 5 min < 7 x 1 min


def test_the_seed_api_keeps_sleep_time_as_its_rule(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_trainer_run(tmp_path / "logs" / "a", 6, age=20 * 60)
    monkeypatch.chdir(tmp_path)
    result = get_run_status("configs/a.py", EXPECTED, 10, {})
    assert result.work_dir == "./logs/a"
    assert result.status == "running", result.reason


def test_a_lease_still_wins_over_the_rhythm(tmp_path: Path) -> None:
    run = make_trainer_run(tmp_path / "run", 6, total=10, age=20 * 60)
    with progresskit.heartbeat(run, expect_every=60.0):
        result = Tracking(plugin_manager()).status(str(run), discover_processes=False)
    assert result.status is Status.RUNNING, result.reason


# -- config layering: defaults < the run's own progresskit.yaml < the caller's mapping ----


def test_the_first_monitor_example_of_docs_watch_keeps_each_runs_file(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    make_trainer_run(root / "training", 3, total=10)  # epochs: 10 in its progresskit.yaml
    make_trainer_run(root / "done", 4, total=4, age=60.0)
    monitor = Monitor(root, {"watch_heartbeat": 0})
    try:
        monitor.check()
        runs = {os.path.basename(r.work_dir): r for r in monitor.runs}
    finally:
        monitor.stop()
    assert monitor.settings.heartbeat == 0
    assert runs["training"].progress.total_epochs == 10
    assert runs["training"].status is Status.RUNNING, runs["training"].reason
    assert runs["done"].status is Status.FINISHED, runs["done"].reason


def test_library_queries_layer_the_callers_mapping_over_the_runs_file(tmp_path: Path) -> None:
    run = make_trainer_run(tmp_path / "run", 3, total=10, age=2 * 60)
    assert progresskit.status(run, {"sleep_time": 30}).progress.total_epochs == 10
    [scanned] = progresskit.scan(tmp_path, {"epochs": 20})
    assert scanned.progress.total_epochs == 20  # the caller's key wins over the file's
