"""The multi-stage tracker: folding FoxML event logs, incrementally, and what it reports."""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers.foxml import run_seed_code
from progresskit import ConfigError, Status, Tracking, get_plugin_manager
from progresskit.builtin.multistage import MultiStageProgressTracker
from progresskit.producer.emitter import EventEmitter

T0 = datetime(2026, 1, 21, 10, 0, tzinfo=timezone.utc).timestamp()


def ev(kind: str, at: float = T0, run_id: str = "run-1", **fields: Any) -> dict[str, Any]:
    """One event in the seed's shape (fields first, then run_id and timestamp)."""
    stamp = datetime.fromtimestamp(at, timezone.utc).isoformat()
    return {"event_type": kind, **fields, "run_id": run_id, "timestamp": stamp}


def progress(stage: str, pct: float, at: float = T0, **fields: Any) -> dict[str, Any]:
    return ev("progress", at, stage=stage, progress_pct=pct, **fields)


def line(event: dict[str, Any]) -> bytes:
    return (json.dumps(event) + "\n").encode()


def write(path: Path, *items: dict[str, Any] | bytes, mode: str = "ab") -> None:
    with open(path, mode) as fh:
        for item in items:
            fh.write(item if isinstance(item, bytes) else line(item))


def tracker(work_dir: Path, **config: Any) -> MultiStageProgressTracker:
    return MultiStageProgressTracker(work_dir, config)


def status_of(
    work_dir: Path, config: dict[str, Any] | None = None, now: float | None = None
) -> Any:
    tracking = Tracking(get_plugin_manager(), config=config or {})
    return tracking.status(str(work_dir), discover_processes=False, now=now)


def seed_pipeline(
    work_dir: Path,
    *,
    final: str | None = "success",
    socket: Path | None = None,
    results: dict[str, tuple[bool, int, float | None]] | None = None,
) -> None:
    """Run the seed's own emitter and Part 2 training flow in a fresh interpreter."""
    results = results or {
        "ret_5m": (True, 3, 0.65),
        "ret_1h": (False, 0, None),
        "vol_1d": (True, 5, 0.71),
    }
    script = (
        "import json, sys\nfrom helpers import seed_training_events as s\n"
        "results = {k: tuple(v) for k, v in json.loads(sys.argv[1]).items()}\n"
        "final = json.loads(sys.argv[2])\n"
        "s.run_seed_pipeline('foxml-run', list(results), results, final_status=final)\n"
    )
    run_seed_code(
        script, json.dumps(results), json.dumps(final),
        event_file=work_dir / "events.jsonl", socket=socket or work_dir / "nobody.sock",
    )


# -- the seed's own writer ----------------------------------------------------------------


def test_a_log_written_by_the_seed_emitter_is_tracked(tmp_path: Path) -> None:
    seed_pipeline(tmp_path)
    run = status_of(tmp_path)
    p = run.progress
    assert p.runner_type == "multi_stage"
    assert run.status is Status.FINISHED
    assert p.reported_status is Status.FINISHED and p.source_status == "success"
    assert p.progress_percentage == 100.0
    assert p.current_stage == "training" and p.stage_progress_percentage == 100.0
    assert (p.items_completed, p.items_total) == (3, 3)
    assert [(i.name, i.status, i.metrics) for i in p.completed_items] == [
        ("ret_5m", "success", {"models_trained": 3.0, "best_auc": 0.65}),
        ("ret_1h", "failed", {"models_trained": 0.0}),
        ("vol_1d", "success", {"models_trained": 5.0, "best_auc": 0.71}),
    ]
    assert p.details["run_id"] == "foxml-run"
    assert p.warnings == ()
    assert p.last_update_time is not None and abs(time.time() - p.last_update_time) < 60


def test_a_seed_run_still_training_is_running_with_its_current_target(tmp_path: Path) -> None:
    seed_pipeline(tmp_path, final=None)  # stopped before the final progress and run_complete
    run = status_of(tmp_path)
    p = run.progress
    assert run.status is Status.RUNNING
    assert p.reported_status is None and p.source_status is None
    # Stages seen: ranking, feature_selection (done), training at 2/3 = 66.67%.
    assert p.current_stage == "training"
    assert p.stage_progress_percentage == pytest.approx(200 / 3)
    assert p.progress_percentage == pytest.approx((100 + 100 + 200 / 3) / 3)
    assert p.items_completed == 3 and p.current_item is None  # vol_1d just completed
    assert p.details["stages"] == "ranking 100%, feature_selection 100%, training 67%"


@pytest.mark.parametrize(
    ("word", "expected"), [("failed", Status.FAILED), ("cancelled", Status.CANCELLED)]
)
def test_run_complete_status_is_mapped_into_the_canonical_vocabulary(
    tmp_path: Path, word: str, expected: Status
) -> None:
    seed_pipeline(tmp_path, final=word)
    run = status_of(tmp_path)
    assert run.status is expected
    assert run.progress.source_status == word and run.progress.reported_status is expected


def test_nan_auc_written_by_the_seed_is_no_value(tmp_path: Path) -> None:
    seed_pipeline(tmp_path, results={"a": (True, 2, float("nan"))})
    assert b"NaN" in (tmp_path / "events.jsonl").read_bytes()  # the seed writes it
    item = status_of(tmp_path).progress.completed_items[0]
    assert item.metrics == {"models_trained": 2.0}


# -- what the fold reports ---------------------------------------------------------------


def test_stage_weights_from_config_decide_overall_progress(tmp_path: Path) -> None:
    write(
        tmp_path / "events.jsonl",
        ev("stage_change", new_stage="ranking", previous_stage=None),
        ev("stage_change", new_stage="training", previous_stage="ranking"),
        progress("training", 50.0),
    )
    weights = {"ranking": 1, "feature_selection": 1, "training": 8}
    p = tracker(tmp_path, stage_weights=weights).calculate_progress()
    assert p.progress_percentage == pytest.approx((1 * 100 + 0 + 8 * 50) / 10)
    p = tracker(tmp_path).calculate_progress()  # default: equal over the stages seen
    assert p.progress_percentage == pytest.approx((100 + 50) / 2)


def test_a_stage_missing_from_stage_weights_is_reported(tmp_path: Path) -> None:
    write(tmp_path / "events.jsonl", progress("export", 50.0))
    p = tracker(tmp_path, stage_weights={"training": 1}).calculate_progress()
    assert p.progress_percentage == 0.0
    assert any("export not in stage_weights" in w for w in p.warnings)


def test_targets_complete_counts_completions_after_the_newest_progress_event(
    tmp_path: Path,
) -> None:
    path = tmp_path / "events.jsonl"
    write(path, progress("training", 0.0, current_target="a", targets_complete=0, targets_total=4))
    t = tracker(tmp_path)
    assert (t.calculate_progress().items_completed, t.calculate_progress().current_item) == (0, "a")
    write(path, ev("target_complete", target="a", status="success", models_trained=1))
    write(path, ev("target_complete", target="b", status="success", models_trained=1))
    p = t.calculate_progress()
    assert (p.items_completed, p.items_total, p.current_item) == (2, 4, None)
    write(path, progress("training", 50.0, current_target="c", targets_complete=2, targets_total=4))
    assert t.calculate_progress().items_completed == 2  # the producer's count resets the tally
    write(path, ev("target_complete", target="c", status="success"))
    assert t.calculate_progress().items_completed == 3
    # A retried target moves to the end with its new result.
    write(path, ev("target_complete", target="a", status="failed"))
    assert [(i.name, i.status) for i in t.calculate_progress().completed_items] == [
        ("b", "success"),
        ("c", "success"),
        ("a", "failed"),
    ]


def test_recoverable_errors_are_warnings_and_a_fatal_one_fails_the_run(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    now = time.time()
    write(
        path,
        progress("training", 10.0, at=now),
        ev("error", at=now, error_message="slow disk", error_type="io", recoverable=True),
    )
    run = status_of(tmp_path, now=now)
    assert run.status is Status.RUNNING
    assert any("recoverable error (io)" in w and "slow disk" in w for w in run.progress.warnings)
    write(path, ev("error", at=now, error_message="CUDA OOM", error_type="oom", recoverable=False))
    run = status_of(tmp_path, now=now)
    assert run.status is Status.FAILED
    assert run.progress.error_message == "fatal error (oom): CUDA OOM"
    assert "CUDA OOM" in (run.reason or "")


def test_an_unknown_run_complete_status_is_warned_and_not_finished(tmp_path: Path) -> None:
    write(tmp_path / "events.jsonl", ev("run_complete", status="exploded"))
    p = tracker(tmp_path).calculate_progress()
    assert p.reported_status is Status.UNKNOWN and p.source_status == "exploded"
    assert any("'exploded' is not one of success" in w for w in p.warnings)
    assert not tracker(tmp_path).is_complete()


def test_heartbeat_is_the_newest_event_time_not_the_file_time(tmp_path: Path) -> None:
    old = time.time() - 3 * 86400
    write(
        tmp_path / "events.jsonl",
        progress("training", 10.0, at=old - 60),
        progress("training", 20.0, at=old),
    )
    run = status_of(tmp_path, {"sleep_time": 3600})
    assert run.progress.last_update_time == pytest.approx(old)
    assert run.last_activity == pytest.approx(old)
    assert run.status is Status.FAILED and "no sign of life for 3d" in (run.reason or "")
    assert run.progress.elapsed_seconds == pytest.approx(60)


def test_the_newest_run_in_a_shared_log_is_reported_unless_one_is_pinned(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    write(
        path,
        ev("progress", run_id="old", stage="training", progress_pct=90.0),
        ev("progress", run_id="new", stage="ranking", progress_pct=5.0),
        ev("progress", run_id="old", stage="training", progress_pct=95.0),
    )
    p = tracker(tmp_path).calculate_progress()
    assert p.details["run_id"] == "new" and p.current_stage == "ranking"
    assert any("2 events of other runs ignored" in w for w in p.warnings)
    p = tracker(tmp_path, event_run_id="old").calculate_progress()
    assert p.details["run_id"] == "old" and p.stage_progress_percentage == 95.0


def test_unknown_event_types_are_counted_but_still_a_sign_of_life(tmp_path: Path) -> None:
    write(tmp_path / "events.jsonl", progress("training", 1.0), ev("heartbeat", at=T0 + 30))
    p = tracker(tmp_path).calculate_progress()
    assert p.last_update_time == T0 + 30
    assert any(
        "1 events of unknown type ignored (first: 'heartbeat' at line 2)" in w for w in p.warnings
    )


# -- bad input ----------------------------------------------------------------------------


def test_malformed_lines_are_skipped_and_reported_with_their_line_number(tmp_path: Path) -> None:
    write(
        tmp_path / "events.jsonl",
        progress("ranking", 10.0),
        b"{not json\n",
        b"[1, 2]\n",
        b"\n",
        ev("progress", stage="ranking", progress_pct="half"),
        ev("target_complete", status="success"),
        b"\xff\xfe\n",
        ev("error", error_message="x", recoverable="yes"),
        progress("ranking", 30.0),
        {**progress("ranking", 10.0), "timestamp": "yesterday"},
    )
    p = tracker(tmp_path).calculate_progress()
    assert p.stage_progress_percentage == 30.0  # lines after the bad ones still count
    warnings = "\n".join(p.warnings)
    assert "events.jsonl: line 2: not valid JSON" in warnings
    assert "line 3: expected a JSON object, got list" in warnings
    assert "line 5: 'progress_pct' must be a number, got str 'half'" in warnings
    assert "line 6: 'target' is missing" in warnings
    assert "line 7: not valid JSON" in warnings
    assert "line 8: 'recoverable' must be true or false" in warnings
    assert "line 10: 'timestamp' is not ISO-8601: 'yesterday'" in warnings
    assert "line 4" not in warnings  # a blank line is not an error
    assert p.metrics["malformed_lines"] == 7


def test_many_malformed_lines_are_listed_up_to_a_limit_then_counted(tmp_path: Path) -> None:
    write(tmp_path / "events.jsonl", *([b"garbage\n"] * 25), progress("training", 5.0))
    p = tracker(tmp_path).calculate_progress()
    assert sum("not valid JSON" in w for w in p.warnings) == 10
    assert "events.jsonl: 15 more malformed lines skipped" in p.warnings
    assert p.stage_progress_percentage == 5.0


def test_bad_config_values_are_refused_with_the_key_and_reason(tmp_path: Path) -> None:
    pm = get_plugin_manager()
    with pytest.raises(ConfigError, match="key 'stage_weights': weight of stage 'a' must be"):
        pm.schema.validate({"stage_weights": {"a": -1}}, "cfg.yaml")
    with pytest.raises(ConfigError, match="at least one stage weight must be > 0"):
        pm.schema.validate({"stage_weights": {"a": 0}}, "cfg.yaml")
    with pytest.raises(ConfigError, match="key 'event_file': expects a file name"):
        pm.schema.validate({"event_file": "logs/events.jsonl"}, "cfg.yaml")


# -- tailing ------------------------------------------------------------------------------


def test_a_trailing_partial_line_waits_for_its_newline(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    whole = line(progress("training", 40.0))
    write(path, progress("training", 20.0), whole[:25])
    t = tracker(tmp_path)
    p = t.calculate_progress()
    assert p.stage_progress_percentage == 20.0 and p.warnings == ()
    write(path, whole[25:])
    assert t.calculate_progress().stage_progress_percentage == 40.0


def test_truncation_replacement_and_rewrite_are_read_again_from_scratch(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    write(path, progress("ranking", 10.0), progress("training", 90.0))
    t = tracker(tmp_path)
    assert t.calculate_progress().current_stage == "training"
    write(path, progress("ranking", 15.0), mode="wb")  # truncated and shorter
    p = t.calculate_progress()
    assert (p.current_stage, p.stage_progress_percentage, p.metrics["events"]) == (
        "ranking",
        15.0,
        1,
    )
    other = tmp_path / "new.jsonl"  # replaced: a new inode
    write(other, progress("feature_selection", 5.0))
    os.replace(other, path)
    p = t.calculate_progress()
    assert (p.current_stage, p.metrics["events"]) == ("feature_selection", 1)
    # Rewritten in place, same inode, longer than before: the bytes before the offset moved.
    write(
        path, progress("export", 1.0, current_target="x" * 40), progress("export", 2.0), mode="wb"
    )
    p = t.calculate_progress()
    assert (p.current_stage, p.stage_progress_percentage, p.metrics["events"]) == ("export", 2.0, 2)


def test_an_unchanged_log_is_answered_from_the_cache_for_one_stat(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "events.jsonl"
    write(path, progress("training", 10.0))
    old = time.time() - 60
    os.utime(path, (old, old))  # outside the racy window
    t = tracker(tmp_path)
    first = t.get_progress()
    reads: list[int] = []
    original = t.calculate_progress

    def counting() -> Any:
        reads.append(1)
        return original()

    monkeypatch.setattr(t, "calculate_progress", counting)
    assert t.get_progress() is first and reads == []
    write(path, progress("training", 20.0))
    assert t.get_progress().stage_progress_percentage == 20.0 and reads == [1]


def test_a_missing_log_is_a_warning_not_an_exception(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    write(path, progress("training", 10.0))
    t = tracker(tmp_path)
    t.calculate_progress()
    path.unlink()
    p = t.calculate_progress()
    assert p.stage_progress_percentage == 10.0
    assert any(w.startswith(f"cannot read {path}") for w in p.warnings)


# -- property: incremental tailing == one full read ---------------------------------------

stages = st.sampled_from(["ranking", "feature_selection", "training"])
targets = st.sampled_from(["ret_5m", "ret_1h", "vol_1d"])
times = st.floats(min_value=T0, max_value=T0 + 86400)
runs = st.sampled_from(["r1", "r2"])
numbers = st.one_of(
    st.floats(min_value=-10, max_value=110), st.integers(-5, 105), st.none(), st.just("50")
)
event_strategy = st.one_of(
    st.builds(
        lambda s, p, t, c, n, at, r: ev(
            "progress",
            at,
            r,
            stage=s,
            progress_pct=p,
            current_target=t,
            targets_complete=c,
            targets_total=n,
        ),
        stages,
        numbers,
        st.none() | targets,
        st.integers(0, 5),
        st.integers(0, 5),
        times,
        runs,
    ),
    st.builds(
        lambda a, b, at, r: ev("stage_change", at, r, previous_stage=a, new_stage=b),
        st.none() | stages,
        stages,
        times,
        runs,
    ),
    st.builds(
        lambda t, s, m, auc, at, r: ev(
            "target_complete", at, r, target=t, status=s, models_trained=m, best_auc=auc
        ),
        targets,
        st.sampled_from(["success", "failed", "skipped"]),
        st.integers(0, 9),
        st.none() | st.floats(0, 1) | st.just(float("nan")),
        times,
        runs,
    ),
    st.builds(
        lambda s, at, r: ev("run_complete", at, r, status=s),
        st.sampled_from(["success", "failed", "cancelled", "weird"]),
        times,
        runs,
    ),
    st.builds(
        lambda m, rec, at, r: ev("error", at, r, error_message=m, error_type="x", recoverable=rec),
        st.text(max_size=8),
        st.booleans(),
        times,
        runs,
    ),
)
lines_strategy = st.lists(
    st.one_of(
        event_strategy.map(line),
        st.binary(max_size=12).map(lambda b: b.replace(b"\n", b"") + b"\n"),
    ),
    max_size=30,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    lines=lines_strategy,
    tail=st.binary(max_size=10),
    cuts=st.lists(st.floats(0, 1)),
    weights=st.none() | st.just({"ranking": 1, "feature_selection": 2, "training": 7}),
)
def test_incremental_tailing_equals_one_full_read(
    lines: list[bytes], tail: bytes, cuts: list[float], weights: dict[str, int] | None
) -> None:
    stream = b"".join(lines) + tail.replace(b"\n", b"")  # may end in a partial line
    points = sorted({int(c * len(stream)) for c in cuts} | {len(stream)})
    config = {"stage_weights": weights} if weights else {}
    with tempfile.TemporaryDirectory() as work_dir:
        path = Path(work_dir) / "events.jsonl"
        path.touch()
        incremental = MultiStageProgressTracker(work_dir, config)
        incremental.calculate_progress()
        start = 0
        with open(path, "ab") as fh:
            for point in points:
                fh.write(stream[start:point])
                fh.flush()
                start = point
                incremental.calculate_progress()
        full = MultiStageProgressTracker(work_dir, config).calculate_progress()
        assert incremental.calculate_progress() == full


# -- detection and the command line -------------------------------------------------------


def test_a_directory_with_an_event_log_is_claimed_as_multi_stage(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "foxml"
    run.mkdir(parents=True)
    write(run / "events.jsonl", progress("ranking", 1.0))
    named = tmp_path / "runs" / "named"
    named.mkdir()
    write(named / "train_events.jsonl", progress("ranking", 2.0))
    (named / "progresskit.yaml").write_text(yaml.safe_dump({"event_file": "train_events.jsonl"}))
    found = Tracking(get_plugin_manager()).find_runs(str(tmp_path / "runs"))
    assert [(Path(d).name, rt) for d, rt, _ in found] == [
        ("foxml", "multi_stage"),
        ("named", "multi_stage"),
    ]


def test_status_json_end_to_end(tmp_path: Path, cli: Callable[..., Any]) -> None:
    run = tmp_path / "foxml"
    run.mkdir()
    emitter = EventEmitter("cli-run", event_file=run / "events.jsonl")
    emitter.stage_change(None, "ranking")
    emitter.progress("ranking", 100, targets_total=2)
    emitter.stage_change("ranking", "training")
    emitter.progress("training", 50, current_target="b", targets_complete=1, targets_total=2)
    emitter.target_complete("a", "success", models_trained=4, best_auc=0.61)
    (run / "progresskit.yaml").write_text(
        yaml.safe_dump({"stage_weights": {"ranking": 1, "training": 3}})
    )
    result = cli("status", str(run), "--json", cwd=tmp_path)
    assert result.ret == 0, result.stderr
    (doc,) = json.loads(result.stdout)["runs"]
    p = doc["progress"]
    assert doc["status"] == "running"
    assert p["runner_type"] == "multi_stage" and p["current_stage"] == "training"
    assert p["progress_percentage"] == pytest.approx((100 + 3 * 50) / 4)
    assert (p["items_completed"], p["items_total"]) == (2, 2)
    assert p["completed_items"] == [
        {"name": "a", "status": "success", "metrics": {"models_trained": 4.0, "best_auc": 0.61}}
    ]
    emitter.run_complete("success")
    table = cli("status", str(run), cwd=tmp_path)
    assert table.ret == 0 and "finished" in table.stdout and "2/2 items" in table.stdout


# -- ETA --------------------------------------------------------------------------------


def test_eta_from_the_weighted_overall_pace(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    write(log, *(progress("ranking", pct, at=T0 + pct * 2) for pct in range(0, 101, 10)))
    write(log, *(progress("training", pct, at=T0 + 200 + pct * 2) for pct in range(0, 51, 10)))
    # Half the run took 300 s: ranking (weight 1) at 2 s per %, training (weight 1) so far too.
    info = tracker(tmp_path, stage_weights={"ranking": 1, "training": 1}).get_progress()
    assert info.progress_percentage == 75.0
    assert info.eta_seconds == pytest.approx(100.0, rel=0.1)
    assert info.eta_low_seconds is not None and info.eta_high_seconds is not None
    assert info.eta_low_seconds <= info.eta_seconds <= info.eta_high_seconds


def test_no_eta_without_stage_weights(tmp_path: Path) -> None:
    # Without weights the stages still to come are unknown: unknown, not a guess.
    write(tmp_path / "events.jsonl", progress("ranking", 10, at=T0), progress("ranking", 50,
                                                                              at=T0 + 40))
    assert tracker(tmp_path).get_progress().eta_seconds is None


def test_a_finished_run_has_no_time_left(tmp_path: Path) -> None:
    write(tmp_path / "events.jsonl", progress("ranking", 50, at=T0),
          ev("run_complete", at=T0 + 10, status="success"))
    info = tracker(tmp_path, stage_weights={"ranking": 1}).get_progress()
    assert info.eta_seconds == 0.0
