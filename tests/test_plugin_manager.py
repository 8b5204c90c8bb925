"""The plugin manager: builtins in code, entry points after them, the precedence rule, hook
wrappers refused on per-plugin hooks, and every hook call through the typed facade."""

from __future__ import annotations

import ast
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers.cli import run_cli
from helpers.runs import make_trainer_run
from progresskit import (
    PluginError,
    Target,
    __version__,
    get_plugin_manager,
    hookimpl,
)
from progresskit.builtin import DEFAULT_PLUGINS
from progresskit.engine.detection import detect, make_tracker
from progresskit.plugin import entrypoints
from progresskit.plugin.hooks import PER_PLUGIN_HOOKS
from progresskit.plugin.manager import PluginManager

ROOT = Path(__file__).resolve().parent.parent


def _distribution(site: Path, dist: str, entry_points: dict[str, str]) -> None:
    """An installed distribution ``dist`` 1.0 on ``site`` whose entry points are
    ``{name: module source}``, each module named ``<dist>_<name>``."""
    info = site / f"{dist}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    lines = ["[progresskit]"]
    for name, source in entry_points.items():
        (site / f"{dist}_{name}.py").write_text(source)
        lines.append(f"{name} = {dist}_{name}")
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory on sys.path for this test's fake distributions."""
    path = tmp_path / "site"
    path.mkdir()
    monkeypatch.syspath_prepend(str(path))
    yield path


def _load_order(pm: PluginManager) -> list[str]:
    return [info.name for info in sorted(pm.plugin_infos(), key=lambda i: i.load_order)]


# -- builtins, in code ------------------------------------------------------------------


def test_builtins_are_registered_first_in_the_documented_order() -> None:
    pm = get_plugin_manager()
    builtin_names = [name for name, _ in DEFAULT_PLUGINS]
    assert builtin_names[0] == "core"
    assert _load_order(pm)[: len(builtin_names)] == builtin_names
    for info in pm.plugin_infos():
        if info.name in builtin_names:
            assert (info.origin, info.distribution, info.version) == (
                "builtin", "progresskit", __version__
            )


def test_a_checkout_without_package_metadata_still_has_its_trackers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No entry points at all: what a checkout on sys.path without `pip install` sees.
    monkeypatch.setattr(entrypoints, "entry_points", lambda group: [])
    pm = get_plugin_manager()
    config = pm.schema.validate({"epochs": 3}, "progresskit.yaml")
    assert detect(pm, str(make_trainer_run(tmp_path / "r", 1)), config) == "trainer"
    assert {"json_file", "stdout", "webhook"} <= set(pm.sink_types)


def test_stale_entry_points_of_progresskit_itself_are_ignored(site: Path) -> None:
    # An install made before the builtins moved into code still lists them as entry points.
    _distribution(site, "progresskit", {})
    (site / "progresskit-1.0.dist-info" / "entry_points.txt").write_text(
        "[progresskit]\ntrainer = progresskit.builtin.trainer\n"
    )
    infos = {info.name: info for info in get_plugin_manager().plugin_infos()}
    assert infos["trainer"].origin == "builtin"


def test_the_core_plugin_cannot_be_disabled() -> None:
    with pytest.raises(PluginError, match="the core plugin cannot be disabled"):
        get_plugin_manager(disabled=["core"])


# -- entry points: order, names --------------------------------------------------------


def test_entry_points_load_after_builtins_by_distribution_then_name(site: Path) -> None:
    _distribution(site, "zz_dist", {"aaa": "", "bbb": ""})
    _distribution(site, "aa_dist", {"zzz": ""})
    order = _load_order(get_plugin_manager(extra_plugins=[("extra", object())]))
    assert order.index("zzz") < order.index("aaa") < order.index("bbb") < order.index("extra")
    assert order.index("local_process") < order.index("zzz")


def test_an_entry_point_named_like_a_builtin_is_refused(site: Path) -> None:
    _distribution(site, "pk_impostor", {"trainer": ""})
    with pytest.raises(PluginError) as info:
        get_plugin_manager()
    message = str(info.value)
    assert "plugin 'trainer'" in message and "pk_impostor" in message
    assert "taken by the builtin plugin 'trainer'" in message


def test_two_distributions_with_one_entry_point_name_are_refused(site: Path) -> None:
    _distribution(site, "pk_one", {"same": ""})
    _distribution(site, "pk_two", {"same": ""})
    with pytest.raises(PluginError, match=r"plugin 'same' .*pk_two.* distribution pk_one"):
        get_plugin_manager()


def test_a_module_hook_under_another_name_is_found_and_a_misspelt_one_refused(
    site: Path,
) -> None:
    # The manager skips a module's names that cannot be hooks (imports, constants) without
    # pluggy's lookup; a function marked with specname, and any progresskit_* name, are
    # still pluggy's to judge.
    source = (
        "from progresskit import hookimpl\n"
        "LIMIT = 3\n"
        "@hookimpl(specname='progresskit_addconfig')\n"
        "def declare(schema):\n"
        "    schema.add('pk_named_limit', int, default=LIMIT, help='a limit')\n"
    )
    _distribution(site, "pk_named", {"named": source})
    pm = get_plugin_manager()
    assert pm.hooks.implemented("named") == ["progresskit_addconfig"]
    assert pm.schema.validate({}, "x")["pk_named_limit"] == 3
    _distribution(site, "pk_typo", {"typo": "def progresskit_addconfg(schema):\n    pass\n"})
    with pytest.raises(PluginError, match="plugin 'typo' implements an unknown hook"):
        get_plugin_manager()


def test_plugins_json_shows_the_load_order(tmp_path: Path) -> None:
    result = run_cli("plugins", "--json", cwd=tmp_path)
    assert result.ret == 0, result.stderr
    listed = json.loads(result.stdout)
    assert [p["name"] for p in listed] == sorted(p["name"] for p in listed)
    by_order = [p["name"] for p in sorted(listed, key=lambda p: p["load_order"])]
    assert by_order[: len(DEFAULT_PLUGINS)] == [name for name, _ in DEFAULT_PLUGINS]
    assert sorted(p["load_order"] for p in listed) == list(range(len(listed)))


# -- precedence ---------------------------------------------------------------------------


#: What the plugins below make for runner type "trainer" (the manager does not look inside).
_THEIRS = object()


class _ProvidesTrainer:
    @hookimpl
    def progresskit_make_tracker(self, runner_type: str) -> object:
        return _THEIRS if runner_type == "trainer" else None


class _ProvidesTrainerLast:
    @hookimpl(trylast=True)
    def progresskit_make_tracker(self, runner_type: str) -> object:
        return _THEIRS if runner_type == "trainer" else None


def test_a_later_plugin_answers_a_firstresult_hook_before_a_builtin(tmp_path: Path) -> None:
    pm = get_plugin_manager(extra_plugins=[("my-trainer", _ProvidesTrainer())])
    config = pm.schema.validate({}, "t")
    assert make_tracker(pm, "trainer", str(tmp_path), config) is _THEIRS


def test_trylast_puts_a_plugin_behind_the_builtins(tmp_path: Path) -> None:
    pm = get_plugin_manager(extra_plugins=[("my-trainer", _ProvidesTrainerLast())])
    config = pm.schema.validate({}, "t")
    tracker = make_tracker(pm, "trainer", str(tmp_path), config)
    assert tracker is not _THEIRS and tracker.get_runner_type() == "trainer"


# -- per-plugin hooks ------------------------------------------------------------------


def _wrapping(hook_name: str, **marks: bool) -> object:
    """A plugin implementing ``hook_name`` as a hook wrapper."""
    generators = {
        "progresskit_addconfig": lambda self, schema: (yield),
        "progresskit_detect_runner": lambda self, target: (yield),
        "progresskit_describe_runner": lambda self: (yield),
        "progresskit_sink_types": lambda self: (yield),
    }
    assert set(generators) == set(PER_PLUGIN_HOOKS)
    return type("Wrapping", (), {hook_name: hookimpl(**marks)(generators[hook_name])})()


@pytest.mark.parametrize("marks", [{"wrapper": True}, {"hookwrapper": True}], ids=str)
@pytest.mark.parametrize("hook_name", PER_PLUGIN_HOOKS)
def test_a_hook_wrapper_on_a_per_plugin_hook_is_refused(
    hook_name: str, marks: dict[str, bool]
) -> None:
    with pytest.raises(PluginError) as info:
        get_plugin_manager(extra_plugins=[("wrapping-plugin", _wrapping(hook_name, **marks))])
    assert f"plugin 'wrapping-plugin': {hook_name} is a hook wrapper" in str(info.value)


def test_a_refused_plugin_leaves_no_trace() -> None:
    pm = get_plugin_manager()
    with pytest.raises(PluginError):
        pm.register_plugin(_wrapping("progresskit_detect_runner", wrapper=True), "wrapping")
    assert not pm.has_plugin("wrapping")


class _WrapsMakeTracker:
    @hookimpl(wrapper=True)
    def progresskit_make_tracker(self) -> Iterator[None]:
        return (yield)


def test_a_hook_wrapper_on_another_hook_works(tmp_path: Path) -> None:
    pm = get_plugin_manager(extra_plugins=[("wraps", _WrapsMakeTracker())])
    config = pm.schema.validate({}, "t")
    assert make_tracker(pm, "trainer", str(tmp_path), config).get_runner_type() == "trainer"


class _ClaimsWithANumber:
    @hookimpl
    def progresskit_detect_runner(self, target: Target) -> int:
        return 42


def test_a_claim_that_is_not_a_str_is_a_plugin_error_naming_the_plugin(tmp_path: Path) -> None:
    pm = get_plugin_manager(extra_plugins=[("numeric", _ClaimsWithANumber())])
    with pytest.raises(PluginError, match="plugin 'numeric': progresskit_detect_runner "
                                          "returned 42"):
        detect(pm, str(make_trainer_run(tmp_path / "r", 1)), pm.schema.validate({}, "t"))


def test_runner_descriptions_are_in_load_order() -> None:
    described = [d.runner_type for d in get_plugin_manager().runner_descriptions()]
    assert described[:3] == ["trainer", "evaluator", "multi_stage"]


# -- the facade is the only reader of pm.hook ------------------------------------------------

_PLUGGY_INTERNALS = {"hook", "get_hookimpls", "get_hookcallers"}


def _python_files() -> Iterator[Path]:
    for top in ("src", "scripts", "benchmarks", *(str(p / "src") for p in ROOT.glob("plugins/*"))):
        yield from (ROOT / top).rglob("*.py")


def test_no_module_but_the_facade_reads_pm_hook() -> None:
    facade = ROOT / "src" / "progresskit" / "plugin" / "hooks.py"
    readers = []
    for path in _python_files():
        if path == facade:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Attribute) and node.attr in _PLUGGY_INTERNALS:
                readers.append(f"{path.relative_to(ROOT)}:{node.lineno}: .{node.attr}")
    assert not readers, "hooks are called through pm.hooks (plugin/hooks.py) only:\n" + "\n".join(
        readers
    )
