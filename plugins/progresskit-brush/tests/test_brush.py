"""The progresskit-brush plugin: Brush's training_status.json (seed 000) as a run (issue 4)."""

from __future__ import annotations

import importlib.metadata as md
import json
import math
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from progresskit_brush import tracker as brush_tracker
from progresskit_brush.tracker import BrushProgressTracker

from progresskit import ConfigError, NoTrackerError, ProcessInfo, Status, StatusFileWriter
from progresskit.engine.detection import detect
from progresskit.engine.session import Tracking
from progresskit.formats.statusfile import STATUS_VALUES, format_timestamp, parse_timestamp
from progresskit.model.vocabulary import canonical_status
from progresskit.plugin.manager import PluginManager, get_plugin_manager
from progresskit.testing import CliResult

#: The seed's example document, verbatim.
SEED_DOCUMENT: dict[str, Any] = {
    "current_iteration": 1500,
    "total_iterations": 10000,
    "progress_percentage": 15.0,
    "elapsed_time_seconds": 120.5,
    "estimated_remaining_seconds": 685.5,
    "current_splat_count": 50000,
    "last_eval_psnr": 28.5,
    "last_eval_ssim": 0.85,
    "export_path": "./output",
    "current_export_file": "export_01500.ply",
    "status": "training",
    "last_updated": "2025-06-28T09:34:56Z",
}
DAY = 86400.0


def write_status(
    path: Path, *, age: float | None = 0.0, drop: tuple[str, ...] = (), raw: str | None = None,
    name: str = "training_status.json", **changes: Any,
) -> Path:
    """A Brush run dir whose status file is the seed's example with ``changes``.

    ``age``: how old ``last_updated`` is (``None`` keeps the seed's own timestamp).
    """
    path.mkdir(parents=True, exist_ok=True)
    doc = dict(SEED_DOCUMENT)
    if age is not None:
        doc["last_updated"] = format_timestamp(time.time() - age)
    doc.update(changes)
    for key in drop:
        doc.pop(key)
    target = path / name
    target.write_text(raw if raw is not None else json.dumps(doc, indent=2))
    return path


@pytest.fixture(scope="module")
def pm() -> PluginManager:
    return get_plugin_manager()


def run_status(pm: PluginManager, run: Path, process: ProcessInfo | None = None,
               **config: Any) -> Any:
    tracking = Tracking(pm, config=config)
    return tracking.status(str(run), process=process, discover_processes=False)


# -- the field mapping ----------------------------------------------------------------------


def test_the_seed_example_maps_every_field(tmp_path: Path) -> None:
    run = write_status(tmp_path / "run", age=None)
    progress = BrushProgressTracker(run).get_progress()
    heartbeat = parse_timestamp("2025-06-28T09:34:56Z")
    assert progress.runner_type == "brush"
    assert (progress.completed_steps, progress.total_steps) == (1500, 10000)
    assert progress.progress_percentage == 15.0
    assert progress.elapsed_seconds == 120.5
    # Brush's own figure is kept; ours comes from the pace: 1500 iterations in 120.5 s.
    assert progress.source_eta_seconds == 685.5
    assert progress.eta_seconds == pytest.approx(8500 * 120.5 / 1500)
    assert progress.eta_low_seconds is not None and progress.eta_high_seconds is not None
    assert progress.eta_low_seconds <= progress.eta_seconds <= progress.eta_high_seconds
    assert progress.metrics == {"splat_count": 50000.0}
    assert progress.latest_score == {"psnr": 28.5, "ssim": 0.85}
    assert progress.best_score == {"psnr": 28.5, "ssim": 0.85}
    assert progress.details == {
        "status_file": str(run / "training_status.json"),
        "export_path": "./output",
        "current_export_file": "export_01500.ply",
    }
    assert progress.source_status == "training"
    assert progress.reported_status is Status.RUNNING
    assert progress.current_stage == "training"
    assert progress.last_update_time == heartbeat
    assert progress.start_time == heartbeat - 120.5
    assert progress.warnings == () and progress.error_message is None


@pytest.mark.parametrize("value", STATUS_VALUES)
def test_every_status_value_is_mapped_and_kept(tmp_path: Path, value: str) -> None:
    run = write_status(tmp_path / "run", status=value)
    progress = BrushProgressTracker(run).get_progress()
    assert progress.source_status == value
    assert progress.reported_status is canonical_status("brush", value)
    live = value in ("starting", "training", "evaluating", "exporting")
    assert progress.current_stage == (value if live else None)
    assert progress.warnings == ()


def test_optional_fields_may_be_absent(tmp_path: Path) -> None:
    optional = ("elapsed_time_seconds", "estimated_remaining_seconds", "current_splat_count",
                "last_eval_psnr", "last_eval_ssim", "export_path", "current_export_file")
    run = write_status(tmp_path / "run", drop=optional)
    progress = BrushProgressTracker(run).get_progress()
    assert progress.warnings == ()
    assert (progress.completed_steps, progress.progress_percentage) == (1500, 15.0)
    assert progress.elapsed_seconds is None and progress.eta_seconds is None
    assert progress.metrics == {} and progress.latest_score is None
    assert set(progress.details) == {"status_file"}


def test_nulls_are_absent_values(tmp_path: Path) -> None:
    # serde writes None as null: an evaluation that has not happened yet.
    run = write_status(tmp_path / "run", last_eval_psnr=None, last_eval_ssim=None,
                       current_export_file=None)
    progress = BrushProgressTracker(run).get_progress()
    assert progress.latest_score is None and "current_export_file" not in progress.details
    assert progress.warnings == ()


def test_a_field_of_the_wrong_type_is_a_warning_naming_it(tmp_path: Path) -> None:
    run = write_status(
        tmp_path / "run", current_iteration="1500", current_splat_count=-5,
        last_eval_psnr="high", export_path=7, status=3, last_updated="yesterday",
    )
    progress = BrushProgressTracker(run).get_progress()
    text = "\n".join(progress.warnings)
    for field in ("current_iteration", "current_splat_count", "last_eval_psnr", "export_path",
                  "status", "last_updated"):
        assert f"field '{field}'" in text, field
    assert "expects an integer >= 0, got str '1500'" in text
    # Everything else is still read.
    assert progress.completed_steps is None and progress.total_steps == 10000
    assert progress.progress_percentage == 15.0
    assert progress.latest_score == {"ssim": 0.85}
    assert progress.reported_status is None
    # No usable last_updated: the file's own modification time is the heartbeat.
    mtime = os.stat(run / "training_status.json").st_mtime
    assert progress.last_update_time == pytest.approx(mtime)


def test_an_unknown_status_word_is_unknown_and_warned(tmp_path: Path) -> None:
    run = write_status(tmp_path / "run", status="paused")
    progress = BrushProgressTracker(run).get_progress()
    assert progress.reported_status is Status.UNKNOWN and progress.source_status == "paused"
    assert any("unknown value 'paused'" in w for w in progress.warnings)


def test_a_percentage_out_of_range_is_clamped_with_a_warning(tmp_path: Path) -> None:
    run = write_status(tmp_path / "run", progress_percentage=104.2)
    progress = BrushProgressTracker(run).get_progress()
    assert progress.progress_percentage == 100.0
    assert any("'progress_percentage' is 104.2, outside [0, 100]" in w for w in progress.warnings)


def test_a_nan_percentage_falls_back_to_the_iterations(tmp_path: Path) -> None:
    # Python's json.dumps writes NaN unless told not to; it is not a percentage.
    run = write_status(tmp_path / "run", progress_percentage=math.nan)
    progress = BrushProgressTracker(run).get_progress()
    assert progress.progress_percentage == 15.0
    assert any("'progress_percentage' expects a finite number" in w for w in progress.warnings)


def test_a_negative_remaining_time_is_kept_as_said_but_is_no_eta(tmp_path: Path) -> None:
    run = write_status(tmp_path / "run", estimated_remaining_seconds=-3.0)
    progress = BrushProgressTracker(run).get_progress()
    # Brush's figure is kept as it said it, and warned about; ours comes from the pace.
    assert progress.source_eta_seconds == -3.0
    assert progress.eta_seconds == pytest.approx(8500 * 120.5 / 1500)
    assert any("'estimated_remaining_seconds' is negative" in w for w in progress.warnings)


def test_brushs_figure_stands_in_while_our_estimate_is_unknown(tmp_path: Path) -> None:
    # No elapsed time and a single read: no pace to measure yet.
    run = write_status(tmp_path / "run", drop=("elapsed_time_seconds",))
    progress = BrushProgressTracker(run).get_progress()
    # Its figure stands in with a band (one run's spread): a value with a null band would
    # read as exact (issue 15).
    assert progress.eta_seconds == 685.5
    assert progress.eta_low_seconds is not None and progress.eta_high_seconds is not None
    assert progress.eta_low_seconds < 685.5 < progress.eta_high_seconds


def test_our_estimate_follows_the_pace_across_reads(tmp_path: Path) -> None:
    run = write_status(tmp_path / "run", drop=("elapsed_time_seconds",), current_iteration=1000,
                       last_updated="2025-06-28T09:00:00Z")
    tracker = BrushProgressTracker(run)
    tracker.get_progress()
    write_status(run, drop=("elapsed_time_seconds",), current_iteration=2000,
                 last_updated="2025-06-28T09:01:40Z")
    progress = tracker.get_progress(force_refresh=True)
    # 1000 iterations in 100 s, 8000 to go.
    assert progress.eta_seconds == pytest.approx(800.0, rel=0.05)


def test_the_best_evaluation_is_tracked_across_reads(tmp_path: Path) -> None:
    run = tmp_path / "run"
    tracker = BrushProgressTracker(run)
    seen = []
    for iteration, psnr, ssim in ((1000, 25.0, 0.80), (2000, 28.0, 0.86), (3000, 26.5, 0.84)):
        write_status(run, current_iteration=iteration, last_eval_psnr=psnr, last_eval_ssim=ssim)
        progress = tracker.get_progress(force_refresh=True)
        seen.append((progress.latest_score, progress.best_score))
    assert seen[-1] == ({"psnr": 26.5, "ssim": 0.84}, {"psnr": 28.0, "ssim": 0.86})
    # Brush restarted in the same directory: the iteration went down, history starts again.
    write_status(run, current_iteration=500, last_eval_psnr=22.0, last_eval_ssim=0.7)
    assert tracker.get_progress(force_refresh=True).best_score == {"psnr": 22.0, "ssim": 0.7}


# -- status rules ----------------------------------------------------------------------------


def test_a_fresh_training_file_is_running(pm: PluginManager, tmp_path: Path) -> None:
    result = run_status(pm, write_status(tmp_path / "run", age=5))
    assert result.status is Status.RUNNING


def test_a_stale_training_file_is_not_running(pm: PluginManager, tmp_path: Path) -> None:
    run = write_status(tmp_path / "run", age=2 * DAY)
    result = run_status(pm, run)
    assert result.status is Status.FAILED
    assert "no sign of life for 2d" in result.reason
    process = ProcessInfo(pid=4242, cmd="brush dataset --save-status")
    assert run_status(pm, run, process).status is Status.STUCK
    assert run_status(pm, write_status(tmp_path / "quick", age=120), sleep_time=60).status is (
        Status.FAILED)


def test_error_is_failed_with_the_message(pm: PluginManager, tmp_path: Path) -> None:
    run = write_status(tmp_path / "run", status="error", error_message="out of GPU memory")
    result = run_status(pm, run)
    assert result.status is Status.FAILED
    assert result.progress.error_message == "out of GPU memory"
    assert result.reason == "the source reports failed (error): out of GPU memory"
    assert result.progress.eta_seconds is None
    bare = run_status(pm, write_status(tmp_path / "bare", status="error"))
    assert bare.status is Status.FAILED
    assert "Brush reported status 'error' without a message" in bare.reason


def test_completed_is_finished_even_before_the_last_iteration(
    pm: PluginManager, tmp_path: Path
) -> None:
    result = run_status(pm, write_status(tmp_path / "run", status="completed", age=3 * DAY))
    assert result.status is Status.FINISHED
    assert result.progress.eta_seconds == 0.0


def test_exporting_at_the_last_iteration_is_not_finished_yet(
    pm: PluginManager, tmp_path: Path
) -> None:
    run = write_status(tmp_path / "run", status="exporting", current_iteration=10000,
                       progress_percentage=100.0)
    result = run_status(pm, run)
    assert result.status is Status.RUNNING and result.progress.current_stage == "exporting"


# -- robust reading ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "file is empty"),
        ('{"current_iteration": 15', "not valid JSON"),
        ("<html>proxy error</html>", "not valid JSON"),
        ("[1, 2]", "expected a JSON object, got list"),
    ],
)
def test_an_unreadable_file_is_reported_with_the_reason(
    tmp_path: Path, raw: str, reason: str
) -> None:
    run = write_status(tmp_path / "run", raw=raw)
    progress = BrushProgressTracker(run, {"brush_reread_delay": 0}).get_progress()
    assert progress.error_message is not None
    assert progress.error_message.startswith("unreadable status file: ")
    assert reason in progress.error_message
    assert progress.reported_status is None and progress.completed_steps is None


def test_an_unreadable_file_keeps_the_last_good_state(tmp_path: Path) -> None:
    run = write_status(tmp_path / "run")
    tracker = BrushProgressTracker(run, {"brush_reread_delay": 0})
    good = tracker.get_progress()
    (run / "training_status.json").write_text('{"current_iteration": 16')
    progress = tracker.get_progress()
    assert progress.completed_steps == good.completed_steps == 1500
    assert progress.reported_status is Status.RUNNING
    assert progress.error_message is None
    assert len(progress.warnings) == 1
    assert "not valid JSON" in progress.warnings[0]
    assert progress.warnings[0].endswith("showing the state of iteration 1500")


def test_a_half_written_file_is_read_again_after_a_delay(tmp_path: Path) -> None:
    run = write_status(tmp_path / "run", raw='{"current_iteration": 15')
    tracker = BrushProgressTracker(run, {"brush_reread_delay": 0.5})

    def finish_writing() -> None:
        time.sleep(0.05)
        write_status(run, current_iteration=1600)

    writer = threading.Thread(target=finish_writing)
    writer.start()
    progress = tracker.get_progress()
    writer.join()
    assert progress.completed_steps == 1600 and progress.warnings == ()


def test_a_missing_file_is_a_run_not_started(pm: PluginManager, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    result = run_status(pm, run, export_path="output")
    assert result.progress.runner_type == "brush"
    assert "status file not written yet" in (result.progress.error_message or "")


def test_one_broken_run_does_not_hide_the_others(pm: PluginManager, tmp_path: Path) -> None:
    write_status(tmp_path / "a")
    write_status(tmp_path / "b", raw="")
    write_status(tmp_path / "c", status="completed")
    results = {Path(r.work_dir).name: r for r in Tracking(pm, config={"brush_reread_delay": 0})
               .scan(str(tmp_path), processes={})}
    assert sorted(results) == ["a", "b", "c"]
    assert results["a"].status is Status.RUNNING
    assert "file is empty" in (results["b"].progress.error_message or "")
    assert results["c"].status is Status.FINISHED


def test_an_unchanged_file_costs_one_stat(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = write_status(tmp_path / "run")
    past = time.time() - 60  # outside the racy window: the cache may trust the stat
    os.utime(run / "training_status.json", (past, past))
    tracker = BrushProgressTracker(run)
    first = tracker.get_progress()
    stats: list[str] = []
    real = brush_tracker.stat_key

    def counting(path: str) -> Any:
        stats.append(path)
        return real(path)

    monkeypatch.setattr(brush_tracker, "stat_key", counting)
    assert tracker.get_progress() is first
    assert stats == [str(run / "training_status.json")]
    write_status(run, current_iteration=1501)
    assert tracker.get_progress().completed_steps == 1501


# -- detection and config ---------------------------------------------------------------------


def validated(pm: PluginManager, **config: Any) -> dict[str, Any]:
    return pm.schema.validate(config, "config")


def test_a_custom_status_filename_needs_the_config(pm: PluginManager, tmp_path: Path) -> None:
    run = write_status(tmp_path / "run", name="status.json")
    with pytest.raises(NoTrackerError, match=r"training_status\.json file"):
        detect(pm, str(run), validated(pm))
    config = validated(pm, status_filename="status.json")
    assert detect(pm, str(run), config, allow_config=False) == "brush"
    result = run_status(pm, run, status_filename="status.json")
    assert result.progress.completed_steps == 1500


@pytest.mark.parametrize("export_path", ["output", "./output", "output/"])
def test_the_status_file_is_found_under_export_path(
    pm: PluginManager, tmp_path: Path, export_path: str
) -> None:
    run = tmp_path / "run"
    write_status(run / "output")
    config = validated(pm, export_path=export_path)
    assert detect(pm, str(run), config, allow_config=False) == "brush"
    tracker = BrushProgressTracker(run, config)
    assert tracker.get_progress().completed_steps == 1500
    assert tracker.status_path == str(run / "output" / "training_status.json")


def test_an_absolute_export_path_is_no_evidence_in_a_scan(
    pm: PluginManager, tmp_path: Path
) -> None:
    write_status(tmp_path / "elsewhere")
    (tmp_path / "other").mkdir()
    config = validated(pm, export_path=str(tmp_path / "elsewhere"))
    with pytest.raises(NoTrackerError):
        detect(pm, str(tmp_path / "other"), config, allow_config=False)
    # One explicit target with the config naming Brush's export path: that run, found there.
    assert detect(pm, str(tmp_path / "other"), config) == "brush"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"status_filename": "out/status.json"}, "key 'status_filename': must be a file name"),
        ({"status_filename": 3}, "key 'status_filename' expects string or null"),
        ({"export_path": ""}, "key 'export_path': must not be empty"),
        ({"brush_reread_delay": 30}, "key 'brush_reread_delay': must be between 0 and 5"),
    ],
)
def test_bad_config_values_are_refused(
    pm: PluginManager, config: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        Tracking(pm, config=config)


# -- the writer and the tracker agree ----------------------------------------------------------

texts = st.text(max_size=40)
status_dicts = st.fixed_dictionaries(
    {
        "total_iterations": st.integers(1, 10**9),
        "status": st.sampled_from(STATUS_VALUES),
        "current_splat_count": st.none() | st.integers(0, 10**12),
        "last_eval_psnr": st.none() | st.floats(allow_nan=False, allow_infinity=False),
        "last_eval_ssim": st.none() | st.floats(allow_nan=False, allow_infinity=False),
        "export_path": st.none() | texts,
        "current_export_file": st.none() | texts,
    }
).flatmap(
    lambda d: st.tuples(st.just(d), st.integers(0, d["total_iterations"] * 2))
)


@settings(max_examples=60, deadline=None)
@given(status_dicts)
def test_whatever_the_writer_accepts_the_tracker_reads_back(
    case: tuple[dict[str, Any], int],
) -> None:
    fields, iteration = case
    fields = dict(fields)
    status = fields.pop("status")
    with tempfile.TemporaryDirectory() as tmp:
        writer = StatusFileWriter(os.path.join(tmp, "training_status.json"),
                                  total_iterations=fields["total_iterations"], interval=3600)
        writer.set(**fields)
        writer.update(iteration, status)
        writer.flush()
        with open(writer.path, encoding="utf-8") as fh:
            doc = json.load(fh)
        progress = BrushProgressTracker(tmp).get_progress()
        writer.close("error" if status == "error" else None)

    assert (progress.warnings == () and progress.error_message is None) or status == "error"
    assert progress.completed_steps == iteration
    total = fields["total_iterations"]
    assert progress.total_steps == total
    assert progress.progress_percentage == min(100.0, 100.0 * iteration / total)
    assert progress.source_status == status
    assert progress.reported_status is canonical_status("brush", status)
    assert progress.elapsed_seconds == doc["elapsed_time_seconds"]
    assert progress.source_eta_seconds == doc["estimated_remaining_seconds"]
    splats = fields["current_splat_count"]
    assert progress.metrics == ({} if splats is None else {"splat_count": float(splats)})
    scores = {k: fields[f"last_eval_{k}"] for k in ("psnr", "ssim")
              if fields[f"last_eval_{k}"] is not None}
    assert progress.latest_score == (scores or None)
    assert progress.details.get("export_path") == fields["export_path"]  # None cleared it
    assert progress.details.get("current_export_file") == fields["current_export_file"]
    assert progress.last_update_time is not None
    assert abs(progress.last_update_time - time.time()) < 60


# -- the plugin as installed -------------------------------------------------------------------


def test_plugins_lists_brush_with_its_distribution(
    progresskit_cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    result = progresskit_cli("plugins", "--json", cwd=tmp_path, in_process=False)
    assert result.ret == 0, result.stderr
    brush = next(p for p in result.json() if p["name"] == "brush")
    dist = md.distribution("progresskit-brush")
    assert brush["distribution"] == dist.metadata["Name"]
    assert brush["version"] == dist.version
    assert brush["origin"] == "entry point"
    assert brush["runner_types"] == ["brush"]
    table = progresskit_cli("plugins", cwd=tmp_path, in_process=False)
    assert f"({dist.metadata['Name']} {dist.version})" in table.stdout


def test_status_of_a_brush_run_from_the_cli(
    progresskit_cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    run = write_status(tmp_path / "run", age=10)
    result = progresskit_cli("status", "--json", str(run), cwd=tmp_path, in_process=False)
    assert result.ret == 0, result.stderr
    [row] = result.json()["runs"]
    assert row["status"] == "running"
    assert row["progress"]["runner_type"] == "brush"
    assert row["progress"]["completed_steps"] == 1500


def test_without_the_plugin_a_brush_run_fails_fast(
    progresskit_cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    run = write_status(tmp_path / "run")
    result = progresskit_cli("-p", "no:brush", "status", str(run), cwd=tmp_path, in_process=False)
    assert result.ret == 2
    assert "Cannot detect runner type for work_dir" in result.stderr
    assert "training_status.json" in result.stderr
    assert "No installed tracker claims this directory" in result.stderr
    assert "  - brush:" not in result.stderr  # its description is gone with it


def test_history_of_short_runs_does_not_override_a_long_runs_pace(tmp_path: Path) -> None:
    # Issue 15: finished 100-iteration runs (0.01 s each) shared one history with every Brush
    # run, and a 10k-iteration run at 51% read 0.001 s ("overdue") against its file's right
    # 117 s. History is per total now: this run's own pace (0.0239 s/iteration) decides.
    from progresskit.engine.history import estimate_run, record_finished_runs

    with record_finished_runs():
        for i in range(5):
            points = [(1e6 + i * 1e4 + k * 0.01, float(k)) for k in range(101)]
            estimate_run(points, 100, runner_type="brush", work_dir=str(tmp_path / f"s{i}"),
                         finished=True)
    run = write_status(tmp_path / "run", current_iteration=5100, progress_percentage=51.0,
                       elapsed_time_seconds=122.0, estimated_remaining_seconds=117.0)
    progress = BrushProgressTracker(str(run)).get_progress()
    assert progress.source_eta_seconds == 117.0
    assert progress.eta_seconds == pytest.approx(4900 * 122.0 / 5100, rel=0.01)
    assert progress.eta_low_seconds is not None and progress.eta_low_seconds > 60.0


def test_what_brush_does_not_say_is_null_never_zero(tmp_path: Path) -> None:
    # Brush counts iterations, not epochs; without a total or a percentage, how far the run
    # is cannot be told. Issue 15: both read 0.
    run = write_status(tmp_path / "run", drop=("progress_percentage", "total_iterations"))
    progress = BrushProgressTracker(str(run)).get_progress()
    assert progress.completed_epochs is None
    assert progress.progress_percentage is None
    assert progress.completed_steps == 1500
    doc = json.loads(json.dumps(progress.to_dict()))
    assert doc["completed_epochs"] is None and doc["progress_percentage"] is None
