"""What a target is, decided once, in the engine (``Tracking.runs_of``): the command line,
``progresskit.status``/``scan`` and ``Monitor`` agree, detection runs once per directory,
and the config file in force is found one way."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import progresskit.engine.query as query
from helpers.cli import run_cli
from helpers.runs import make_trainer_run
from progresskit import (
    Monitor,
    ProgressInfo,
    RunnerDetectionError,
    RunStatus,
    Status,
    Target,
    Tracking,
    get_plugin_manager,
    hookimpl,
    scan,
    status,
)
from progresskit.plugin.config import config_file
from progresskit.plugin.manager import PluginManager


class Jobs:
    """A plugin whose targets ``jobs://N`` are N jobs of some server: no directory at all."""

    @hookimpl
    def progresskit_resolve_target(
        self, target: str, config: dict[str, Any]
    ) -> list[RunStatus] | None:
        if not target.startswith("jobs://"):
            return None
        return [
            RunStatus(
                f"{target}#{i}",
                target,
                ProgressInfo(runner_type="job", progress_percentage=10.0 * i),
                Status.RUNNING,
            )
            for i in range(int(target.removeprefix("jobs://")))
        ]


class Counting:
    """Counts the detection questions asked: (directory name, config evidence asked)."""

    def __init__(self) -> None:
        self.asked: Counter[tuple[str, bool]] = Counter()

    @hookimpl
    def progresskit_detect_runner(self, target: Target) -> str | None:
        self.asked[(os.path.basename(target.path), target.use_config)] += 1
        return None


@pytest.fixture
def pm() -> PluginManager:
    return get_plugin_manager(extra_plugins=[("jobs", Jobs())])


@pytest.fixture
def library(pm: PluginManager, monkeypatch: pytest.MonkeyPatch) -> None:
    """``progresskit.status``/``scan`` with the ``jobs`` plugin loaded."""
    monkeypatch.setattr(query, "default_plugin_manager", lambda: pm)
    monkeypatch.setattr(query, "_sessions", type(query._sessions)())


def test_the_library_resolves_a_plugin_s_target(library: None, isolated_cwd: Path) -> None:
    assert [run.config for run in scan("jobs://2")] == ["jobs://2#0", "jobs://2#1"]
    assert status("jobs://1").config == "jobs://1#0"
    with pytest.raises(RunnerDetectionError, match="resolves it to 2 runs, not one"):
        status("jobs://2")


def test_a_monitor_polls_a_plugin_s_target(pm: PluginManager, isolated_cwd: Path) -> None:
    monitor = Monitor("jobs://3", pm=pm, sinks=[])
    try:
        assert (monitor.root, monitor.mode, monitor.config_origin) == ("jobs://3", "poll",
                                                                       "defaults")
        changes = monitor.check()
    finally:
        monitor.stop()
    assert [(c.kind, c.run.config) for c in changes] == [
        ("new", "jobs://3#0"), ("new", "jobs://3#1"), ("new", "jobs://3#2"),
    ]
    with pytest.raises(RunnerDetectionError, match="does not exist"):
        Monitor("nowhere/at/all", pm=pm, sinks=[])


def test_command_line_and_library_see_the_same_runs(tmp_path: Path, isolated_cwd: Path) -> None:
    root = tmp_path / "runs"
    make_trainer_run(root / "a", 2, total=4)
    make_trainer_run(root / "group" / "b", 1, total=4)
    make_trainer_run(root / "c", 4, total=4)
    cli = run_cli("status", str(root), "--json", cwd=isolated_cwd).json()["runs"]
    assert [(r["work_dir"], r["status"]) for r in cli] == [
        (run.work_dir, run.status.value) for run in scan(root)
    ]


@pytest.mark.parametrize("strict", [True, False])
def test_detection_asks_each_directory_once(tmp_path: Path, strict: bool) -> None:
    counting = Counting()
    pm = get_plugin_manager(extra_plugins=[("counting", counting)])
    root = tmp_path / "root"
    make_trainer_run(root / "a", 1, total=3)
    make_trainer_run(root / "b", 1, total=3)
    # Freshly written directories: changed too recently to be trusted by a later query.
    tracking = Tracking(pm)
    assert len(tracking.runs_of(str(root), strict=strict)) == 2
    assert counting.asked == {("root", False): 1, ("a", False): 1, ("b", False): 1}


def test_a_fresh_run_is_asked_for_config_evidence_once(tmp_path: Path) -> None:
    counting = Counting()
    pm = get_plugin_manager(extra_plugins=[("counting", counting)])
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / "progresskit.yaml").write_text("epochs: 5\n")
    (run,) = Tracking(pm).runs_of(str(fresh), strict=True)
    assert run.progress.runner_type == "trainer"
    assert counting.asked == {("fresh", False): 1, ("fresh", True): 1}


def test_the_config_file_in_force_is_found_one_way(tmp_path: Path) -> None:
    (tmp_path / "progresskit.yaml").write_text("sleep_time: 60\n")
    run = make_trainer_run(tmp_path / "runs" / "r", 1)
    other = tmp_path / "other.yaml"
    other.write_text("sleep_time: 30\n")
    assert config_file(run) == tmp_path / "progresskit.yaml"
    assert config_file(run, other) == other
    pm = get_plugin_manager()
    assert Tracking(pm).config_origin(str(run)) == str(tmp_path / "progresskit.yaml")
    assert Tracking(pm, config_path=other).config_origin(str(run)) == str(other)
    assert Tracking(pm, config={}).config_origin(str(run)) == "config"
    monitor = Monitor(run.parent, pm=pm, sinks=[])
    monitor.stop()
    assert monitor.config_origin == str(tmp_path / "progresskit.yaml")
