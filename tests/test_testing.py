"""progresskit.testing itself: the fixtures, the strategies, and a conformance suite that
fails broken plugins with messages that say what to fix."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers.runs import make_trainer_run
from progresskit import PluginError, ProgressInfo, RunStatus, Status, structure
from progresskit.builtin.multistage import MultiStageProgressTracker
from progresskit.engine.history import history_path
from progresskit.formats.jsonio import to_json
from progresskit.plugin.manager import PluginManager
from progresskit.testing import CliResult, strategies
from progresskit.testing import plugin as pytest_plugin

TESTS = Path(__file__).resolve().parent

BROKEN_SUITE = """
import json
from pathlib import Path

from helpers import broken_tracker_plugins as broken
from progresskit.testing import TrackerConformance, make_run_dir


class JobSamples(TrackerConformance):
    def make_valid_run(self, directory: Path) -> Path:
        return make_run_dir(directory, {"job.json": {"done": 3, "total": 10}})

    def make_corrupt_run(self, directory: Path) -> Path:
        return make_run_dir(directory, {"job.json": '{"done": 3, "tot'})

    def make_foreign_dir(self, directory: Path) -> Path:
        return make_run_dir(directory, {"notes.txt": "x", "data": None})

    def mutate_run(self, work_dir: Path) -> None:
        (work_dir / "job.json").write_text(json.dumps({"done": 5, "total": 10}))


class TestGreedy(JobSamples):
    plugin_name = "greedy"
    plugin = broken.Greedy()
    runner_type = "greedy"


class TestStale(JobSamples):
    plugin_name = "stale"
    plugin = broken.Stale()
    runner_type = "stale"
"""


def run_suite(tmp_path: Path, source: str) -> dict[str, str | None]:
    """Run a conformance test module in a fresh pytest: test id -> failure message."""
    (tmp_path / "test_suite.py").write_text(textwrap.dedent(source))
    report = tmp_path / "report.xml"
    completed = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_suite.py",
         f"--junitxml={report}"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), *sys.path])},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert report.exists(), completed.stdout + completed.stderr
    results: dict[str, str | None] = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        failure = case.find("failure")
        if failure is None:
            failure = case.find("error")
        key = f"{case.get('classname', '').rsplit('.', 1)[-1]}::{case.get('name')}"
        results[key] = None if failure is None else (failure.get("message") or "")
    return results


@pytest.fixture(scope="module")
def broken_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str | None]:
    return run_suite(tmp_path_factory.mktemp("broken"), BROKEN_SUITE)


@pytest.mark.parametrize(
    ("test", "advice"),
    [
        ("test_declines_a_foreign_directory", "claimed the foreign directory"),
        ("test_declines_a_foreign_directory", "Claim only on evidence specific to your runner"),
        ("test_never_claims_an_empty_directory", "with no evidence, return None"),
        ("test_no_match_diagnostic_shows_what_it_expects", "an empty directory was claimed"),
        ("test_corrupt_run_is_reported_not_raised", "raised JSONDecodeError"),
        ("test_corrupt_run_is_reported_not_raised", "A tracker must never raise for what it reads"),
        ("test_half_written_files_do_not_raise", "every file cut to half its size"),
        ("test_progress_round_trips_through_json", "report it in ProgressInfo.error_message"),
        ("test_status_of_its_run_through_the_library", "made the tracker raise"),
    ],
)
def test_a_plugin_claiming_everything_and_raising_fails_with_advice(
    broken_results: dict[str, str | None], test: str, advice: str
) -> None:
    message = broken_results[f"TestGreedy::{test}"]
    assert message is not None, f"TestGreedy::{test} passed"
    assert advice in message


def test_what_the_greedy_plugin_does_right_passes(broken_results: dict[str, str | None]) -> None:
    passed = {k for k, v in broken_results.items() if k.startswith("TestGreedy::") and v is None}
    assert passed == {
        f"TestGreedy::{name}"
        for name in (
            "test_plugin_describes_its_runner",
            "test_make_tracker_declines_other_runner_types",
            "test_claims_its_valid_run",
            "test_claims_its_corrupt_run",
            "test_detection_decides_from_the_listing_alone",
            "test_no_other_installed_plugin_claims_its_run",
            "test_progress_is_within_bounds",
            "test_unchanged_run_is_served_from_the_cache",
            "test_cache_is_invalidated_when_the_run_changes",
        )
    }


def test_a_fingerprint_missing_the_file_read_fails_only_the_cache_test(
    broken_results: dict[str, str | None],
) -> None:
    failed = {k: v for k, v in broken_results.items() if k.startswith("TestStale::") and v}
    assert list(failed) == ["TestStale::test_cache_is_invalidated_when_the_run_changes"]
    message = next(iter(failed.values())) or ""
    assert "served stale cached progress" in message
    assert "fingerprint() must include the stat_key() of every file" in message


def test_an_incomplete_subclass_is_told_what_to_provide(tmp_path: Path) -> None:
    results = run_suite(
        tmp_path,
        """
        from helpers import broken_tracker_plugins as broken
        from progresskit.testing import TrackerConformance

        class TestNothing(TrackerConformance):
            plugin_name = "stale"
            plugin = broken.Stale()
            runner_type = "stale"

        class TestMissing(TrackerConformance):
            plugin_name = "not_installed_anywhere"
            runner_type = "x"
        """,
    )
    message = results["TestNothing::test_claims_its_valid_run"] or ""
    assert "implement make_valid_run(self, ...)" in message
    message = results["TestMissing::test_plugin_describes_its_runner"] or ""
    assert "not_installed_anywhere" in message and "not installed" in message


# -- fixtures --------------------------------------------------------------------------------


def test_the_pytest_plugin_is_registered_by_its_entry_point(pytestconfig: pytest.Config) -> None:
    assert pytestconfig.pluginmanager.get_plugin("progresskit") is pytest_plugin


def test_run_dir_and_config_fixtures(
    progresskit_run_dir: Callable[..., Path], progresskit_config: Callable[..., Path]
) -> None:
    run = progresskit_run_dir("r", {"epoch_0/validation_scores.json": {"acc": 1}, "logs": None},
                              age=600)
    assert json.loads((run / "epoch_0" / "validation_scores.json").read_text()) == {"acc": 1}
    assert (run / "logs").is_dir()
    assert abs(os.stat(run / "epoch_0").st_mtime - (os.stat(run).st_mtime)) < 1
    path = progresskit_config(run, {"epochs": 4, "sleep_time": 60})
    assert path == run / "progresskit.yaml"
    assert "epochs: 4" in path.read_text()
    with pytest.raises(ValueError, match="inside the run"):
        progresskit_run_dir("bad", {"../escape.txt": "x"})


def test_cli_fixture_in_process_and_subprocess_agree(
    tmp_path: Path,
    progresskit_run_dir: Callable[..., Path],
    progresskit_config: Callable[..., Path],
    progresskit_cli: Callable[..., CliResult],
) -> None:
    run = progresskit_run_dir("eval", {"evaluation_scores.json": {"aggregated": {"acc": 0.9}}})
    progresskit_config(tmp_path, {"sleep_time": 60})
    results = [
        progresskit_cli("status", str(run), "--json", cwd=tmp_path, in_process=flag)
        for flag in (True, False)
    ]
    for result in results:
        assert result.ret == 0, result.stderr
    documents = [r.json() for r in results]
    for document in documents:
        document.pop("generated_at")
    assert documents[0] == documents[1]
    assert documents[0]["runs"][0]["progress"]["best_score"] == {"acc": 0.9}


def test_cli_fixture_reports_exit_codes_and_non_json_output(
    tmp_path: Path, progresskit_cli: Callable[..., CliResult]
) -> None:
    result = progresskit_cli("status", str(tmp_path / "missing"))
    assert result.ret == 2
    assert "does not exist" in result.stderr
    with pytest.raises(AssertionError, match="did not print JSON"):
        result.json()
    assert progresskit_cli("--version").ret == 0
    assert progresskit_cli("no-such-command").ret == 2


def test_plugin_manager_fixture_loads_only_the_chosen_plugins(
    progresskit_plugin_manager: Callable[..., PluginManager],
) -> None:
    pm = progresskit_plugin_manager(only=["trainer"])
    assert [d.runner_type for d in pm.runner_descriptions()] == ["trainer"]
    assert {name for name, _ in pm.list_name_plugin() if _ is not None} == {"core", "trainer"}
    with pytest.raises(PluginError, match=r"not installed.*installed: \["):
        progresskit_plugin_manager(only=["trainer", "nope"])


def test_history_fixture_gives_the_test_a_database_of_its_own(
    progresskit_history: Path, progresskit_cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    assert history_path() == progresskit_history
    assert not progresskit_history.exists()
    # A command in a subprocess records the runs it sees finish there too.
    run = make_trainer_run(tmp_path / "r", 3, total=3)
    result = progresskit_cli("status", str(run), "--json", cwd=tmp_path, in_process=False)
    assert result.json()["runs"][0]["status"] == "finished"
    assert progresskit_history.exists()


# -- strategies ------------------------------------------------------------------------------


@given(strategies.run_statuses())
def test_drawn_run_statuses_round_trip_through_json(run: RunStatus) -> None:
    assert structure(json.loads(to_json(run)), RunStatus) == run


@given(strategies.progress_infos(runner_type=st.just("mine"), reported_status=st.none()))
def test_progress_infos_accept_field_overrides(info: ProgressInfo) -> None:
    assert info.runner_type == "mine" and info.reported_status is None


def test_every_progress_info_field_has_a_strategy() -> None:
    assert set(strategies.progress_info_fields()) == set(attrs.fields_dict(ProgressInfo))


def test_progress_infos_refuse_unknown_field_overrides() -> None:
    with pytest.raises(TypeError, match="no ProgressInfo field named \\['percent'\\]"):
        strategies.progress_infos(percent=st.just(1.0))


@settings(max_examples=40, deadline=None)
@given(st.lists(strategies.training_events(run_id=st.just("run-1")), max_size=12))
def test_drawn_training_events_are_read_by_the_multi_stage_tracker(
    tmp_path_factory: pytest.TempPathFactory, events: list[dict[str, Any]]
) -> None:
    work_dir = tmp_path_factory.mktemp("events")
    (work_dir / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    tracker = MultiStageProgressTracker(str(work_dir), {"event_file": "events.jsonl"})
    progress = tracker.get_progress()
    # Every drawn event is valid: nothing is reported but the errors the events announce.
    assert all(w.startswith("recoverable error") for w in progress.warnings)
    fatal = any(e["event_type"] == "error" and not e["recoverable"] for e in events)
    assert progress.error_message is None or fatal
    if any(e["event_type"] == "run_complete" for e in events):
        assert progress.reported_status in (Status.FINISHED, Status.FAILED, Status.CANCELLED)
