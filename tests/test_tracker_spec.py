"""Declarative tracker plugins (``TrackerSpec``) and what a tracker class declares.

Includes the third-party tracker of docs/writing-a-tracker.md: under 30 lines, written
against ``from progresskit import ...`` only, it is detected, tracked and passes the
conformance suite (tests/test_tutorials.py also installs it and runs its own tests).
"""

from __future__ import annotations

import ast
import importlib
import inspect
import os
import re
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from progresskit import (
    BaseProgressTracker,
    ProgressInfo,
    RunnerDescription,
    Status,
    Target,
    TrackerSpec,
    stat_key,
)
from progresskit.engine.session import Tracking
from progresskit.plugin.manager import get_plugin_manager
from progresskit.testing import TrackerConformance, make_run_dir

TUTORIAL = Path(__file__).resolve().parent.parent / "docs" / "writing-a-tracker.md"
PLUGIN_BLOCK = re.compile(
    r'^```python title="src/progresskit_shards/plugin\.py"\n(.*?)^```$', re.MULTILINE | re.DOTALL
)


def _tutorial_source() -> str:
    match = PLUGIN_BLOCK.search(TUTORIAL.read_text(encoding="utf-8"))
    assert match, f"{TUTORIAL} shows no src/progresskit_shards/plugin.py"
    return match.group(1)


def _tutorial_plugin() -> ModuleType:
    """The tutorial's plugin module, as the page shows it (not installed)."""
    module = ModuleType("progresskit_shards_tutorial")
    exec(compile(_tutorial_source(), str(TUTORIAL), "exec"), module.__dict__)
    return module


SHARDS = _tutorial_plugin()


def _shards_job(directory: Path, total: str = "12\n", done: str = "a\nb\n") -> Path:
    return make_run_dir(directory, {"shards.total": total, "shards.done": done})


# -- a third-party tracker in under 30 lines --------------------------------------------------


def test_the_tutorial_tracker_is_under_30_lines_of_public_api() -> None:
    source = _tutorial_source()
    assert len(source.splitlines()) < 30, source
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("progresskit"):
            assert node.module == "progresskit", f"imports {node.module}: not the public API"
        if isinstance(node, ast.Import):
            assert not any(a.name.startswith("progresskit") for a in node.names)
        if isinstance(node, ast.Attribute):
            assert not node.attr.startswith("_"), f"uses the private {node.attr}"


class TestTutorialTrackerConformance(TrackerConformance):
    plugin_name = "shards"
    runner_type = "shards"
    plugin = SHARDS.tracker

    def make_valid_run(self, directory: Path) -> Path:
        return _shards_job(directory)

    def make_corrupt_run(self, directory: Path) -> Path:
        return _shards_job(directory, total="twelve\n", done="shard-0")

    def make_foreign_dir(self, directory: Path) -> Path:
        return make_run_dir(directory, {"shards/part-0.parquet": b"PAR1", "done.txt": "yes\n"})

    def mutate_run(self, work_dir: Path) -> None:
        with open(work_dir / "shards.done", "a", encoding="utf-8") as fh:
            fh.write("c\n")


def test_the_tutorial_tracker_is_detected_and_tracked(tmp_path: Path) -> None:
    pm = get_plugin_manager(extra_plugins=[("shards", SHARDS.tracker)])
    job = _shards_job(tmp_path / "job-42", total="4\n", done="a\nb\nc")
    run = Tracking(pm).status(str(job), discover_processes=False)
    assert run.progress.runner_type == "shards"
    assert (run.progress.completed_steps, run.progress.total_steps) == (2, 4)
    assert run.progress.progress_percentage == 50.0
    assert run.status is Status.RUNNING  # shards.done was just written: a sign of life


def test_an_entry_point_may_name_the_spec_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "tinyshards.py").write_text(_tutorial_source(), encoding="utf-8")
    dist_info = tmp_path / "tinyshards-0.1.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: tinyshards\nVersion: 0.1\n")
    (dist_info / "entry_points.txt").write_text("[progresskit]\nshards = tinyshards:tracker\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    pm = get_plugin_manager()
    [info] = [i for i in pm.plugin_infos() if i.name == "shards"]
    assert (info.origin, info.distribution) == ("entry point", "tinyshards")
    assert info.module == "tinyshards"  # the module that defines the tracker
    assert info.runner_types == ("shards",)
    assert set(info.hooks) == {
        "progresskit_describe_runner",
        "progresskit_detect_runner",
        "progresskit_make_tracker",
    }
    run = Tracking(pm).status(str(_shards_job(tmp_path / "job")), discover_processes=False)
    assert (run.progress.runner_type, run.progress.completed_steps) == ("shards", 2)


# -- every first-party tracker is a spec, its claims and descriptions unchanged -----------------

FIRST_PARTY = {
    "progresskit.builtin.trainer": RunnerDescription(
        "trainer", "epoch_0/ directory, or 'epochs' in config, or 'Trainer' in runner class"
    ),
    "progresskit.builtin.evaluator": RunnerDescription(
        "evaluator", "evaluation_scores.json file, or 'Evaluator' in runner class"
    ),
    "progresskit.builtin.multistage": RunnerDescription(
        "multi_stage",
        "events.jsonl event log (config: event_file), or 'stage_weights' in config",
    ),
    "progresskit_brush.plugin": RunnerDescription(
        "brush",
        "training_status.json file (or config 'status_filename'), in the directory or under "
        "config 'export_path'",
    ),
    "progresskit_hf.plugin": RunnerDescription(
        "hf", "trainer_state.json file, or checkpoint-<step>/ directories (transformers Trainer)"
    ),
    "progresskit_comfyui.plugin": RunnerDescription(
        "comfyui",
        "'comfyui_url' and 'comfyui_prompt_ids' in config; or an http(s):// URL of a ComfyUI "
        "server as the target",
    ),
}


@pytest.mark.parametrize("module_name", sorted(FIRST_PARTY))
def test_first_party_trackers_bind_their_spec(module_name: str) -> None:
    module = importlib.import_module(module_name)
    spec = module.tracker
    assert isinstance(spec, TrackerSpec)
    assert (
        module.progresskit_detect_runner,
        module.progresskit_make_tracker,
        module.progresskit_describe_runner,
    ) == spec.hooks
    assert module.progresskit_describe_runner() == FIRST_PARTY[module_name]
    assert spec.runner_type == spec.tracker.runner_type


def _base_private_names() -> set[str]:
    """The ``self._...`` attributes of BaseProgressTracker: its state, not API."""
    tree = ast.parse(Path(inspect.getfile(BaseProgressTracker)).read_text(encoding="utf-8"))
    return {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "self"
        and node.attr.startswith("_")
        and not node.attr.startswith("__")
    }


@pytest.mark.parametrize("module_name", sorted(FIRST_PARTY))
def test_first_party_trackers_use_no_private_state_of_the_base_class(module_name: str) -> None:
    # The plugin module and the module of its tracker class.
    module = importlib.import_module(module_name)
    tracker_module = importlib.import_module(module.tracker.tracker.__module__)
    files = {Path(module.__file__ or ""), Path(tracker_module.__file__ or "")}
    private = _base_private_names()
    assert {"_cache", "_listing_key"} <= private
    for path in files:
        used = {
            node.attr
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(node, ast.Attribute) and node.attr in private
        }
        assert not used, f"{path} uses BaseProgressTracker's private {sorted(used)}"


@pytest.mark.parametrize(
    ("entries", "config", "use_config", "claimed"),
    [
        ({"epoch_0": True}, {}, False, ["trainer"]),
        ({}, {"epochs": 3}, True, ["trainer"]),
        ({}, {"epochs": 3}, False, []),
        ({}, {"runner": {"class": "MyTrainer"}}, True, ["trainer"]),
        ({"evaluation_scores.json": False}, {}, False, ["evaluator"]),
        ({}, {"runner": "BaseEvaluator"}, True, ["evaluator"]),
        ({"events.jsonl": False}, {}, False, ["multi_stage"]),
        ({"log.jsonl": False}, {"event_file": "log.jsonl"}, False, ["multi_stage"]),
        ({}, {"stage_weights": {"a": 1.0}}, True, ["multi_stage"]),
        ({"training_status.json": False}, {}, False, ["brush"]),
        ({}, {"status_filename": "s.json"}, True, ["brush"]),
        ({"trainer_state.json": False}, {}, False, ["hf"]),
        ({"checkpoint-500": True}, {}, False, ["hf"]),
        ({"checkpoint-500": False}, {}, False, []),
        ({}, {"comfyui_url": "http://h:8188", "comfyui_prompt_ids": ["p"]}, True, ["comfyui"]),
        ({}, {"comfyui_url": "http://h:8188", "comfyui_prompt_ids": ["p"]}, False, []),
        ({"epoch_0": False, "notes.txt": False}, {}, True, []),
    ],
)
def test_first_party_claims(
    entries: dict[str, bool], config: dict[str, Any], use_config: bool, claimed: list[str]
) -> None:
    found = []
    for module_name in FIRST_PARTY:
        spec = importlib.import_module(module_name).tracker
        if spec.progresskit_detect_runner(Target("/nowhere", config, entries, use_config)):
            found.append(spec.runner_type)
    assert found == claimed


# -- TrackerSpec -----------------------------------------------------------------------------


class _Tiny(BaseProgressTracker):
    runner_type = "tiny"

    def calculate_progress(self) -> ProgressInfo:
        return ProgressInfo(runner_type=self.runner_type)


def _has_tiny(target: Target) -> bool:
    return target.has_file("tiny.txt")


def test_a_spec_implements_the_three_tracker_hooks() -> None:
    spec = TrackerSpec(_Tiny, claim=_has_tiny, expects="tiny.txt file")
    assert spec.runner_type == "tiny"
    assert spec.progresskit_detect_runner(Target("/x", {}, {"tiny.txt": False})) == "tiny"
    assert spec.progresskit_detect_runner(Target("/x", {}, {"tiny.txt": True})) is None
    made = spec.progresskit_make_tracker(runner_type="tiny", work_dir="/x", config={"a": 1})
    assert isinstance(made, _Tiny) and (made.work_dir, dict(made.config)) == ("/x", {"a": 1})
    assert spec.progresskit_make_tracker(runner_type="other", work_dir="/x", config={}) is None
    assert spec.progresskit_describe_runner() == RunnerDescription("tiny", "tiny.txt file")


def test_a_spec_may_name_the_runner_type_of_a_factory() -> None:
    def factory(work_dir: str, config: Mapping[str, Any]) -> BaseProgressTracker:
        return _Tiny(work_dir, config)

    spec = TrackerSpec(factory, claim=_has_tiny, expects="tiny.txt file", runner_type="small")
    assert spec.progresskit_describe_runner().runner_type == "small"
    assert isinstance(spec.progresskit_make_tracker("small", "/x", {}), _Tiny)


def test_a_spec_without_a_runner_type_is_refused_where_it_is_written() -> None:
    class Nameless(BaseProgressTracker):
        def calculate_progress(self) -> ProgressInfo:
            return ProgressInfo()

    with pytest.raises(TypeError, match="give runner_type=, or set the class attribute"):
        TrackerSpec(Nameless, claim=_has_tiny, expects="tiny.txt file")


def test_a_plugin_module_binds_a_spec_next_to_its_other_hooks(tmp_path: Path) -> None:
    spec = TrackerSpec(_Tiny, claim=_has_tiny, expects="tiny.txt file")
    module = ModuleType("tiny_plugin")
    (
        module.progresskit_detect_runner,
        module.progresskit_make_tracker,
        module.progresskit_describe_runner,
    ) = spec.hooks

    def progresskit_addconfig(schema: Any) -> None:
        schema.add("tiny_size", (int, type(None)), help="How tiny.")

    module.progresskit_addconfig = progresskit_addconfig
    pm = get_plugin_manager(extra_plugins=[("tiny", module)])
    [info] = [i for i in pm.plugin_infos() if i.name == "tiny"]
    assert (info.module, info.runner_types) == ("tiny_plugin", ("tiny",))
    run = make_run_dir(tmp_path / "run", {"tiny.txt": "x"})
    status = Tracking(pm, config={"tiny_size": 2}).status(str(run), discover_processes=False)
    assert status.progress.runner_type == "tiny"


# -- what a tracker class declares -------------------------------------------------------------


def test_the_seed_getters_answer_from_the_class_attributes() -> None:
    class Declared(_Tiny):
        expected_files = ("a.json", "b.json")
        log_pattern = "run*.log"

    tracker = Declared("/x")
    assert tracker.get_runner_type() == "tiny"
    assert tracker.get_expected_files() == ["a.json", "b.json"]
    tracker.get_expected_files().append("c.json")  # a copy: the class keeps its files
    assert tracker.get_expected_files() == ["a.json", "b.json"]
    assert tracker.get_log_pattern() == "run*.log"
    assert (_Tiny("/x").get_expected_files(), _Tiny("/x").get_log_pattern()) == ([], "*.log")


def test_a_seed_tracker_that_overrides_the_getters_still_works(tmp_path: Path) -> None:
    class Seed(BaseProgressTracker):  # seed 001's way: methods, no class attributes
        def get_runner_type(self) -> str:
            return "seed"

        def get_expected_files(self) -> list[str]:
            return ["done.txt"]

        def get_log_pattern(self) -> str:
            return "seed*.log"

        def calculate_progress(self) -> ProgressInfo:
            done = os.path.exists(os.path.join(self.work_dir, "done.txt"))
            return ProgressInfo(runner_type="seed", progress_percentage=100.0 * done)

    run = make_run_dir(tmp_path / "run", {"done.txt": "1", "seed_0.log": "x"})
    tracker = Seed(run)
    assert tracker.is_complete()
    assert tracker.last_log_update() == pytest.approx((run / "seed_0.log").stat().st_mtime)
    spec = TrackerSpec(Seed, claim=_has_tiny, expects="done.txt file", runner_type="seed")
    assert spec.progresskit_describe_runner() == RunnerDescription("seed", "done.txt file")


def test_listing_key_is_the_work_dirs_key_when_it_was_listed(tmp_path: Path) -> None:
    run = make_run_dir(tmp_path / "run", {"a.txt": "x"})
    tracker = _Tiny(run)
    assert tracker.listing_key() is None  # not listed yet
    assert tracker.entries() == {"a.txt": False}
    assert tracker.listing_key() == stat_key(str(run))
    (run / "a.txt").unlink()
    run.rmdir()
    assert tracker.entries() == {}
    assert tracker.listing_key() is None


class _Counting(_Tiny):
    calls = 0

    def calculate_progress(self) -> ProgressInfo:
        type(self).calls += 1
        return ProgressInfo(runner_type=self.runner_type, completed_steps=type(self).calls)


def test_reuse_seconds_reuses_an_answer_whatever_the_files_say(tmp_path: Path) -> None:
    class Server(_Counting):
        reuse_seconds = 3600.0

    run = make_run_dir(tmp_path / "run")
    tracker = Server(run)
    first = tracker.get_progress()
    (run / "new.txt").write_text("the work dir changed")
    assert tracker.get_progress() is first
    assert tracker.get_progress(force_refresh=True).completed_steps == 2


def test_reuse_seconds_expires_but_one_evaluation_reads_once(tmp_path: Path) -> None:
    class Server(_Counting):
        reuse_seconds = 0.0

    tracker = Server(make_run_dir(tmp_path / "run"))
    assert tracker.get_progress().completed_steps == 1
    assert tracker.get_progress().completed_steps == 2
    progress, _complete, _activity = tracker.evaluate()
    assert progress.completed_steps == Server.calls == 3
