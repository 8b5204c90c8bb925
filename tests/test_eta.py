"""The remaining-time estimator: robustness (warm-up, spikes, slowdowns), band, unknowns."""

from __future__ import annotations

import io
import json
import math
import random
import time
from collections.abc import Callable
from pathlib import Path

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from helpers.runs import make_trainer_run
from progresskit import RunStatus, Status, Tracking, record_finished_runs
from progresskit.builtin.table import render_table
from progresskit.builtin.trainer import TrainerProgressTracker
from progresskit.engine.eta import PROFILE_BINS, Basis, Estimate, Prior, estimate, rate_profile
from progresskit.model.core import ProgressInfo
from progresskit.testing import CliResult


def run_of(durations: list[float], start: float = 1_000_000.0) -> list[tuple[float, float]]:
    """Observations of a run whose i-th step took durations[i] seconds."""
    points = [(start, 0.0)]
    for i, d in enumerate(durations, 1):
        points.append((points[-1][0] + d, float(i)))
    return points


def check_invariants(est: Estimate) -> None:
    if est.seconds is None:
        assert est.low is None and est.high is None and est.basis is Basis.UNKNOWN
        assert est.reason
        return
    assert est.low is not None and est.high is not None
    for value in (est.seconds, est.low, est.high):
        assert math.isfinite(value) and value >= 0
    assert est.low <= est.seconds <= est.high
    if est.basis is not Basis.DONE and est.seconds > 0:
        # A band is never a point (issue 15): it reads as a certainty no estimate has.
        assert est.low < est.high, est


# -- unknown is explicit --------------------------------------------------------------------


def test_no_total_is_unknown_not_zero() -> None:
    est = estimate(run_of([1.0] * 10), None)
    assert est.seconds is None and est.basis is Basis.UNKNOWN
    assert "total" in est.reason


def test_no_progress_and_no_history_is_unknown() -> None:
    for observations in ([], [(1000.0, 0.0)], [(1000.0, 3.0)]):
        est = estimate(observations, 100)
        assert est.seconds is None and not est.known
        assert "no history" in est.reason


def test_complete_is_zero() -> None:
    est = estimate(run_of([1.0] * 10), 10)
    assert (est.seconds, est.low, est.high, est.basis) == (0.0, 0.0, 0.0, Basis.DONE)


def test_no_time_between_observations_is_unknown() -> None:
    est = estimate([(5.0, 1.0), (5.0, 2.0), (5.0, 3.0)], 10)
    assert est.seconds is None


def test_estimate_rejects_a_band_that_misses_the_point() -> None:
    with pytest.raises(ValueError, match="must contain"):
        Estimate(10.0, 11.0, 12.0, Basis.OWN)
    with pytest.raises(ValueError, match="all known or all None"):
        Estimate(10.0, None, 12.0, Basis.OWN)
    with pytest.raises(ValueError, match="UNKNOWN"):
        Estimate(None, None, None, Basis.OWN)
    with pytest.raises(ValueError, match=">= 0"):
        Estimate(-1.0, -2.0, 0.0, Basis.OWN)


def test_apply_sets_the_model_fields() -> None:
    est = Estimate(60.0, 50.0, 80.0, Basis.OWN, "own")
    progress = est.apply(ProgressInfo(source_eta_seconds=42.0))
    assert (progress.eta_seconds, progress.eta_low_seconds, progress.eta_high_seconds) == (
        60.0, 50.0, 80.0,
    )
    assert progress.source_eta_seconds == 42.0  # the source's own figure is kept alongside


# -- robustness -----------------------------------------------------------------------------


def test_steady_run() -> None:
    rng = random.Random(1)
    durations = [2.0 * math.exp(rng.gauss(0, 0.1)) for _ in range(3000)]
    est = estimate(run_of(durations[:1000]), 3000)
    truth = sum(durations[1000:])
    assert est.seconds == pytest.approx(truth, rel=0.02)
    assert est.basis is Basis.OWN
    assert est.low is not None and est.high is not None
    assert est.low < truth < est.high


def test_periodic_spikes_count_in_the_long_run_rate() -> None:
    # 1 s steps, every 10th step an evaluation of 11 s more: 2.1 s/step in the long run.
    # A median (1 s) would promise half the real time.
    durations = [1.0 + (11.0 if i % 10 == 0 else 0.0) for i in range(1, 2001)]
    for upto in (105, 200, 555, 1000, 1509):
        est = estimate(run_of(durations[:upto]), 2000)
        truth = sum(durations[upto:])
        assert est.seconds == pytest.approx(truth, rel=0.02), upto


def test_warm_up_is_not_extrapolated() -> None:
    durations = [20.0, 10.0, 5.0, 3.0] + [1.0] * 996
    est = estimate(run_of(durations[:100]), 1000)
    assert est.seconds == pytest.approx(900.0, rel=0.01)


def test_slowdown_partway_takes_over() -> None:
    rng = random.Random(2)
    durations = [
        (1.0 if i < 500 else 1.6) * math.exp(rng.gauss(0, 0.05)) for i in range(2000)
    ]
    est = estimate(run_of(durations[:700]), 2000)
    truth = sum(durations[700:])
    assert est.seconds == pytest.approx(truth, rel=0.03)
    # The whole-run mean (what tqdm's smoothing=0 gives) is 10% short here.
    naive = sum(durations[:700]) / 700 * 1300
    assert abs(naive - truth) / truth > 0.08


def test_slowdown_with_few_coarse_observations() -> None:
    # Epoch-level: 10 epochs of 100 s, then 150 s: the newest regime counts.
    ends = run_of([100.0] * 10 + [150.0] * 6)
    est = estimate(ends, 30)
    assert est.seconds == pytest.approx(14 * 150.0, rel=0.01)


def test_single_interval_gives_an_estimate_with_a_wide_band() -> None:
    est = estimate([(0.0, 1.0), (100.0, 2.0)], 10)
    assert est.seconds == pytest.approx(800.0)
    assert est.low is not None and est.high is not None
    assert est.high / est.seconds > 1.3


def test_progress_going_back_restarts_the_measurement() -> None:
    first = run_of([10.0] * 50)
    second = run_of([1.0] * 50, start=first[-1][0] + 5)
    est = estimate(first + second, 100)
    assert est.seconds == pytest.approx(50.0, rel=0.02)


def test_repeated_progress_and_clock_steps_back_are_ignored() -> None:
    points = [(0.0, 0.0), (1.0, 1.0), (1.5, 1.0), (2.0, 2.0), (1.0, 2.5), (3.0, 3.0)]
    est = estimate(points, 10)
    assert est.seconds == pytest.approx(7.0, rel=0.05)


def test_many_observations_are_thinned_without_losing_the_rate() -> None:
    durations = [0.5] * 20_000 + [1.0] * 20_000  # the newest half is kept whole
    est = estimate(run_of(durations), 50_000)
    assert est.seconds == pytest.approx(10_000.0, rel=0.01)


# -- history --------------------------------------------------------------------------------


def history_of(seconds_per_unit: float, runs: int = 5) -> Prior:
    rng = random.Random(3)
    profiles = []
    for _ in range(runs):
        pace = seconds_per_unit * rng.uniform(0.95, 1.05)
        profiles.append(rate_profile(run_of([pace] * 400), 400))
    return Prior(profiles)


def test_rate_profile_of_a_run() -> None:
    profile = rate_profile(run_of([1.0] * 200 + [3.0] * 200), 400)
    assert len(profile) == PROFILE_BINS
    assert profile[0] == pytest.approx(1.0) and profile[-1] == pytest.approx(3.0)


def test_history_alone_before_any_progress() -> None:
    est = estimate([], 400, history_of(10.0))
    assert est.basis is Basis.HISTORY and est.own_weight == 0.0
    assert est.seconds == pytest.approx(4000.0, rel=0.06)
    check_invariants(est)


def test_own_rate_takes_over_from_history() -> None:
    prior = history_of(10.0)
    durations = [20.0] * 400  # this run is twice as slow as its history
    weights, errors = [], []
    for upto in (2, 3, 5, 10, 40, 200):
        est = estimate(run_of(durations[:upto]), 400, prior)
        check_invariants(est)
        truth = 20.0 * (400 - upto)
        weights.append(est.own_weight)
        assert est.seconds is not None
        errors.append(abs(est.seconds - truth) / truth)
    assert weights == sorted(weights)
    assert weights[0] < 0.5 < weights[-1]
    assert errors[0] > 0.2  # barely started: mostly history (10 s/unit)
    assert errors[-1] < 0.02  # well under way: its own 20 s/unit


def test_history_predicts_a_recurring_slowdown() -> None:
    # Every past run slowed to 3x in its second half (say, longer sequences); this run is at
    # 25%, still fast. Its own rate alone would promise a third of the real time left.
    def durations() -> list[float]:
        return [1.0] * 200 + [3.0] * 200

    prior = Prior([rate_profile(run_of(durations()), 400) for _ in range(4)])
    run = durations()
    est = estimate(run_of(run[:100]), 400, prior)
    truth = sum(run[100:])
    assert est.seconds == pytest.approx(truth, rel=0.03)
    own_only = estimate(run_of(run[:100]), 400)
    assert own_only.seconds == pytest.approx(300.0, rel=0.03)


# -- properties -----------------------------------------------------------------------------

# Zero durations and zero progress are drawn often: copied files, polls seeing no change.
steps = st.lists(
    st.tuples(
        st.one_of(st.just(0.0), st.floats(min_value=0.0, max_value=1e5, allow_nan=False)),
        st.one_of(st.just(0.0), st.just(1.0),
                  st.floats(min_value=0.0, max_value=1e4, allow_nan=False)),
    ),
    max_size=80,
)


@st.composite
def monotone_runs(draw: st.DrawFn) -> tuple[list[tuple[float, float]], float]:
    deltas = draw(steps)
    t, u = draw(st.floats(min_value=0, max_value=2e9)), draw(st.floats(min_value=0, max_value=1e3))
    points = [(t, u)]
    for dt, du in deltas:
        t, u = t + dt, u + du
        points.append((t, u))
    total = draw(st.floats(min_value=1e-3, max_value=1e7, allow_nan=False))
    return points, total


profiles = st.lists(
    st.lists(
        st.one_of(st.none(), st.floats(min_value=1e-6, max_value=1e6)),
        min_size=PROFILE_BINS,
        max_size=PROFILE_BINS,
    ),
    max_size=6,
)


@settings(max_examples=300, deadline=None)
@given(monotone_runs(), profiles)
def test_monotone_progress_never_gives_nan_inf_or_a_band_missing_the_point(
    run: tuple[list[tuple[float, float]], float], history: list[list[float | None]]
) -> None:
    points, total = run
    for prior in (None, Prior(history) if history else None):
        est = estimate(points, total, prior)
        check_invariants(est)
        if points[-1][1] >= total:
            assert est.seconds == 0.0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=0.01, max_value=1e3), min_size=2, max_size=200),
       st.integers(min_value=1, max_value=400))
def test_eta_is_known_once_time_and_progress_were_measured(
    durations: list[float], extra: int
) -> None:
    est = estimate(run_of(durations), len(durations) + extra)
    check_invariants(est)
    assert est.seconds is not None and est.seconds > 0


# -- wiring: the trainer and the status table -----------------------------------------------


def test_trainer_reports_eta_with_band(tmp_path: Path) -> None:
    run = make_trainer_run(tmp_path / "r", 6, epoch_seconds=100.0)
    progress = TrainerProgressTracker(str(run), {"epochs": 10}).get_progress()
    assert progress.eta_seconds == pytest.approx(400.0, abs=1.0)
    assert progress.eta_low_seconds is not None and progress.eta_high_seconds is not None
    assert progress.eta_low_seconds < 400.0 < progress.eta_high_seconds


def test_trainer_unknown_total_is_unknown_eta(tmp_path: Path) -> None:
    run = make_trainer_run(tmp_path / "r", 3)
    progress = TrainerProgressTracker(str(run), {}).get_progress()
    assert progress.eta_seconds is None and progress.eta_low_seconds is None


def test_trainer_copied_epochs_say_nothing_about_speed(tmp_path: Path) -> None:
    run = make_trainer_run(tmp_path / "r", 4, epoch_seconds=0.1)
    progress = TrainerProgressTracker(str(run), {"epochs": 10}).get_progress()
    assert progress.eta_seconds is None


def test_trainer_early_stopped_is_done_and_recorded(
    tmp_path: Path, progresskit_history: Path
) -> None:
    scores = [{"acc": a} for a in (0.5, 0.7, 0.6, 0.6, 0.6)]
    run = make_trainer_run(tmp_path / "r", 5, scores=scores, epoch_seconds=100.0)
    config = {"epochs": 10, "metric": "acc", "early_stopping": 3}
    with record_finished_runs():
        progress = TrainerProgressTracker(str(run), config).get_progress()
    assert progress.early_stopped
    assert (progress.eta_seconds, progress.eta_low_seconds, progress.eta_high_seconds) == (
        0.0, 0.0, 0.0,
    )
    from progresskit.engine.history import HistoryStore

    [record] = HistoryStore(progresskit_history).runs("trainer", "r")
    assert record.seconds_per_unit == pytest.approx(100.0)
    assert record.units == 10  # its pace describes a full run of the config


def test_status_table_shows_eta_and_band() -> None:
    now = time.time()
    progress = ProgressInfo(
        progress_percentage=50.0,
        last_update_time=now - 60,
        eta_seconds=12 * 60 + 60,
        eta_low_seconds=9 * 60 + 60,
        eta_high_seconds=16 * 60 + 60,
    )
    run = RunStatus("cfg", "/w", progress, Status.RUNNING)
    console = Console(file=io.StringIO(), width=200)
    render_table([run], console, now=now)
    assert "12m (9m-16m)" in console.file.getvalue()  # type: ignore[attr-defined]
    unknown = RunStatus("cfg", "/w", attrs.evolve(progress, eta_seconds=None,
                        eta_low_seconds=None, eta_high_seconds=None), Status.RUNNING)
    console = Console(file=io.StringIO(), width=200)
    render_table([unknown], console, now=now)
    assert "12m" not in console.file.getvalue()  # type: ignore[attr-defined]


def test_cli_status_json_and_table_carry_the_band(
    tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    run = make_trainer_run(tmp_path / "runs" / "r", 5, epoch_seconds=600.0)
    (run / "train_val.log").write_text("epoch 5\n")
    (tmp_path / "runs" / "progresskit.yaml").write_text("epochs: 20\n")
    result = cli("status", "--json", str(tmp_path / "runs"))
    assert result.ret == 0, result.stderr
    doc = json.loads(result.stdout)
    progress = doc["runs"][0]["progress"]
    assert progress["eta_seconds"] == pytest.approx(9000.0, rel=0.01)
    assert progress["eta_low_seconds"] < progress["eta_seconds"] < progress["eta_high_seconds"]
    table = cli("status", str(tmp_path / "runs"))
    assert "2h30m (" in table.stdout, table.stdout


def test_tracking_session_uses_history_of_finished_siblings(tmp_path: Path) -> None:
    config = {"epochs": 4, "eta_group": "resnet"}
    for i in range(3):
        make_trainer_run(tmp_path / f"done{i}", 4, epoch_seconds=300.0, age=10_000)
    session = Tracking(config=config, record_history=True)
    for i in range(3):
        assert session.status(str(tmp_path / f"done{i}"), discover_processes=False).status in (
            Status.FINISHED,
            Status.OUTDATED,
        )
    # A fresh run, alive (its log just written): a dead one gets no ETA at all (issue 15).
    fresh = make_trainer_run(tmp_path / "fresh", 0)
    (fresh / "epoch_0").mkdir()
    progress = session.status(str(fresh), discover_processes=False).progress
    assert progress.eta_seconds == pytest.approx(1200.0, rel=0.05)


# -- issue 15: an ETA you can trust or none -------------------------------------------------


def test_one_long_pause_among_few_intervals_is_a_one_off() -> None:
    # A Hugging Face run checkpointing every 60 s, suspended for an hour once and resumed:
    # the pause is not a recurring spike to charge over the rest (it read 1860 s).
    est = estimate([(0.0, 0.0), (60.0, 1.0), (3660.0, 2.0), (3720.0, 3.0)], 4)
    check_invariants(est)
    assert est.seconds == pytest.approx(60.0, rel=0.05)
    assert est.low is not None and est.high is not None and est.low < 60.0 < est.high


def test_an_evaluation_seen_once_still_counts() -> None:
    # One evaluation costing 40 steps after 100 steps of 1 s is cheaper than the work around
    # it: a periodic phase whose cost the rest of the run will pay again, unlike a pause.
    durations = [1.0] * 100 + [41.0] + [1.0] * 49
    est = estimate(run_of(durations), 1000)
    assert est.seconds is not None and est.seconds > 850 * 1.2


def test_history_far_off_the_runs_own_pace_is_ignored() -> None:
    # Five finished runs of 0.001 s per unit under the same key; this run measures 0.1 s per
    # unit over half its length: its own pace decides, not a prior 100x off it.
    past = [tuple(rate_profile(run_of([0.001] * 1000), 1000)) for _ in range(5)]
    est = estimate(run_of([0.1] * 510), 1000, Prior(past))
    check_invariants(est)
    assert est.basis is Basis.OWN and "does not apply" in est.reason
    assert est.seconds == pytest.approx(49.0, rel=0.05)


@pytest.mark.parametrize(
    ("status", "kept"),
    [(Status.RUNNING, True), (Status.PENDING, True), (Status.FINISHED, True),
     (Status.OUTDATED, True), (Status.STUCK, False), (Status.FAILED, False),
     (Status.CRASHED, False), (Status.CANCELLED, False), (Status.UNKNOWN, False)],
)
def test_eta_only_for_statuses_that_can_be_trusted(status: Status, kept: bool) -> None:
    from progresskit.engine.eta import for_status

    progress = ProgressInfo(eta_seconds=120.0, eta_low_seconds=90.0, eta_high_seconds=160.0,
                            source_eta_seconds=117.0)
    out = for_status(progress, status)
    assert (out.eta_seconds is not None) is kept
    assert (out.eta_low_seconds is not None, out.eta_high_seconds is not None) == (kept, kept)
    assert out.source_eta_seconds == 117.0  # what the source said stays


def test_a_dead_run_has_no_eta(tmp_path: Path, cli: Callable[..., CliResult]) -> None:
    # Five of ten epochs, the last two days ago, no process: failed, and no ETA at all (it
    # read "overdue" with a band of a run that will not finish).
    run = make_trainer_run(tmp_path / "runs" / "r", 5, epoch_seconds=100.0, age=2 * 86400)
    (tmp_path / "runs" / "progresskit.yaml").write_text("epochs: 10\n")
    status = Tracking().status(str(run), discover_processes=False)
    assert status.status is Status.FAILED
    assert (status.progress.eta_seconds, status.progress.eta_low_seconds,
            status.progress.eta_high_seconds) == (None, None, None)
    doc = json.loads(cli("status", "--json", str(tmp_path / "runs")).stdout)
    progress = doc["runs"][0]["progress"]
    assert progress["eta_seconds"] is None and progress["eta_high_seconds"] is None


def _table_eta(progress: ProgressInfo, now: float) -> str:
    console = Console(file=io.StringIO(), width=250)
    render_table([RunStatus("cfg", "/w", progress, Status.RUNNING)], console, now=now)
    return console.file.getvalue()  # type: ignore[attr-defined,no-any-return]


def test_table_band_never_reads_as_a_point() -> None:
    now = time.time()
    progress = ProgressInfo(progress_percentage=50.0, last_update_time=now, eta_seconds=117.0,
                            eta_low_seconds=100.0, eta_high_seconds=140.0)
    out = _table_eta(progress, now)
    assert "2m (2m-2m)" not in out
    assert "1m57s (1m40s-2m20s)" in out, out


def test_table_shows_the_sources_estimate_next_to_ours() -> None:
    now = time.time()
    progress = ProgressInfo(progress_percentage=50.0, last_update_time=now, eta_seconds=1200.0,
                            eta_low_seconds=900.0, eta_high_seconds=1600.0,
                            source_eta_seconds=700.0)
    assert "20m (15m-27m) src 12m" in _table_eta(progress, now)


def test_a_finished_evaluator_has_a_zero_band_not_a_null_one(tmp_path: Path) -> None:
    from progresskit.builtin.evaluator import EvaluatorProgressTracker

    run = tmp_path / "eval"
    run.mkdir()
    (run / "eval_0.log").write_text("evaluating\n")
    pending = EvaluatorProgressTracker(str(run), {}).get_progress()
    assert (pending.eta_seconds, pending.eta_low_seconds, pending.eta_high_seconds) == (
        None, None, None)
    (run / "evaluation_scores.json").write_text(json.dumps({"aggregated": {"acc": 0.9}}))
    done = EvaluatorProgressTracker(str(run), {}).get_progress()
    assert (done.eta_seconds, done.eta_low_seconds, done.eta_high_seconds) == (0.0, 0.0, 0.0)


def test_slowdown_risk_is_upper_side_only_and_falls_as_the_run_goes_on() -> None:
    # An exactly steady run measured by itself: the band's lower side is its measurement's
    # error (a slowdown never speeds a run up), its upper side the risk of a slowdown still
    # ahead, which falls as the run goes on without one (it was 1.68x at every progress).
    durations = [1.0] * 1000
    highs = []
    for upto in (100, 500, 900):
        est = estimate(run_of(durations[:upto]), 1000)
        check_invariants(est)
        assert est.seconds is not None and est.low is not None and est.high is not None
        assert est.low > 0.99 * est.seconds
        highs.append(est.high / est.seconds)
    assert highs == sorted(highs, reverse=True)
    assert highs[0] > 1.5 and 1.05 < highs[-1] < 1.3


def test_band_holds_the_noise_of_the_evaluations_still_to_come() -> None:
    # 1 s steps and a 30 s evaluation every 50 steps varying by 20%: at 1500 of 2000 steps,
    # the 10 evaluations left alone vary the remaining ~800 s by 0.2 x 30 x sqrt(10) = 2.4%
    # at 1 sd, so the p10 is further below the point than that (it was 1.9%).
    rng = random.Random(4)
    durations = [
        math.exp(rng.gauss(0, 0.02)) + (30.0 * math.exp(rng.gauss(0, 0.2)) if i % 50 == 0 else 0)
        for i in range(1, 2001)
    ]
    est = estimate(run_of(durations[:1500]), 2000)
    check_invariants(est)
    assert est.seconds is not None and est.low is not None
    assert est.seconds == pytest.approx(sum(durations[1500:]), rel=0.03)
    assert est.low / est.seconds < 1 - 0.2 * 30 * math.sqrt(10) / 800
