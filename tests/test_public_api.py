"""The public API: lazy names (PEP 562) and the old module paths kept for one release."""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest

import progresskit

SRC = Path(progresskit.__file__).parent

#: Every module path that the layered layout replaced with a shim, and the public names it
#: had then (its ``__all__``; hookspec and coreconfig had none: their public definitions).
#: Each keeps working, with a DeprecationWarning, until progresskit 0.3 (CHANGELOG).
OLD_PATHS: dict[str, tuple[str, ...]] = {
    "progresskit.api": (
        "create_progress_tracker", "detect_runner_type", "get_all_run_status",
        "get_run_status", "get_work_dir", "scan", "status",
    ),
    "progresskit.config": (
        "CONFIG_FILENAME", "Config", "ConfigKey", "ConfigSchema", "ensure", "find_config_file",
        "load_yaml",
    ),
    "progresskit.converter": (
        "converter", "load_progress_file", "structure", "to_json", "unstructure",
    ),
    "progresskit.coreconfig": (
        "DEFAULT_OUTDATED_DAYS", "DEFAULT_SLEEP_TIME", "WATCH_MODES", "progresskit_addconfig",
    ),
    "progresskit.detection": ("claims", "detect", "make_tracker"),
    "progresskit.eta": ("Basis", "Estimate", "Prior", "estimate", "rate_profile"),
    "progresskit.events": (
        "ENV_EVENT_FILE", "ENV_EVENT_SOCKET", "EventEmitter", "TrainingEventEmitter",
        "append_bytes", "emit_error", "emit_progress", "emit_run_complete", "emit_stage_change",
        "emit_target_complete", "get_emitter", "get_training_emitter", "init_events",
        "init_training_events",
    ),
    "progresskit.fileio": ("StatKey", "atomic_write_text", "is_racy", "read_json", "stat_key"),
    "progresskit.history": (
        "HISTORY_ENV", "HistoryStore", "estimate_run", "history_path", "store_for",
    ),
    "progresskit.hookspec": (
        "hookimpl", "hookspec", "progresskit_addconfig", "progresskit_addoption",
        "progresskit_cancel", "progresskit_configure", "progresskit_describe_runner",
        "progresskit_detect_runner", "progresskit_make_tracker", "progresskit_process_info",
        "progresskit_resolve_target", "progresskit_sink_types",
    ),
    "progresskit.lease": (
        "GRACE_SECONDS", "Heartbeat", "LEASE_FILENAME", "LEASE_STATES", "Lease", "LeaseCheck",
        "MAX_RENEW_SECONDS", "cause_of", "heartbeat", "load_lease", "observe",
    ),
    "progresskit.listen": ("EventListener", "ListenError", "add_listen_arguments", "run_listen"),
    "progresskit.monitor": (
        "CHANGE_FORMAT", "Monitor", "WatchSettings", "change_document", "change_key",
    ),
    "progresskit.plugins": (
        "ENTRY_POINT_GROUP", "PluginInfo", "PluginManager", "get_plugin_manager",
    ),
    "progresskit.render": (
        "STATUS_STYLE", "render_table", "status_document", "status_summary", "status_table",
    ),
    "progresskit.rules": ("Decision", "decide", "decide_status", "format_duration"),
    "progresskit.runs": ("Tracking",),
    "progresskit.scores": ("flatten_scores",),
    "progresskit.sinks": (
        "CHANGE_KINDS", "Change", "Sink", "SinkType", "build_sinks", "emit_changes",
    ),
    "progresskit.statusfile": (
        "DEFAULT_STATUS_FILENAME", "LIVE_STATUSES", "STATUS_FIELDS", "STATUS_VALUES",
        "StatusFileWriter", "format_timestamp", "parse_timestamp",
    ),
    "progresskit.tracker": ("BaseProgressTracker", "RunnerDescription", "Target", "list_entries"),
    "progresskit.vocabulary": ("SOURCE_VOCABULARIES", "canonical_status"),
    "progresskit.watch": ("add_watch_arguments", "run_watch"),
}

#: The layers (docs/architecture.md): where every object now lives.
LAYERS = ("model", "formats", "producer", "plugin", "engine", "builtin", "compat", "server", "cli")
#: Top-level modules that are not old paths.
NOT_SHIMS = {"__init__", "__main__", "errors", "_moved"}


def python(code: str) -> Any:
    """Run ``code`` in a fresh interpreter (this one has loaded every layer already) and
    return what it printed, as JSON."""
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout)


def new_homes(obj: object, name: str) -> list[str]:
    """The modules of the layered layout that hold ``obj`` under ``name``."""
    return sorted(
        module_name
        for module_name, module in list(sys.modules.items())
        if module_name.split(".")[1:2] and module_name.split(".")[1] in LAYERS
        and isinstance(module, types.ModuleType)
        and getattr(module, name, None) is obj
    )


def test_every_old_path_is_listed() -> None:
    shims = {f"progresskit.{p.stem}" for p in SRC.glob("*.py") if p.stem not in NOT_SHIMS}
    assert shims == set(OLD_PATHS)


@pytest.mark.parametrize("old", sorted(OLD_PATHS))
def test_an_old_path_warns_and_gives_the_objects_of_the_new_layout(old: str) -> None:
    # The warning is raised when the shim runs, that is on the first import only.
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=rf"{re.escape(old)} moved to progresskit\."):
        module = importlib.import_module(old)
    missing = [name for name in OLD_PATHS[old] if not hasattr(module, name)]
    assert not missing, f"{old} lost {missing}"
    for name in OLD_PATHS[old]:
        assert new_homes(getattr(module, name), name), (
            f"{old}.{name} is not the object that a module of the new layout holds"
        )


def test_modules_that_became_packages_keep_their_names() -> None:
    # The console script of an install made before the move: `progresskit.cli:main`, loaded
    # by a fresh interpreter.
    assert python(
        "import json; from progresskit.cli import main; "
        "from progresskit.cli.main import main as f; print(json.dumps(main is f))"
    )
    import progresskit.model
    from progresskit.model import core

    old_model = ("Cause", "CompletedItem", "ProcessInfo", "ProgressInfo", "RunStatus", "Status")
    for name in old_model:
        assert getattr(progresskit.model, name) is getattr(core, name)


# -- lazy public names ------------------------------------------------------------------------


def test_import_progresskit_loads_none_of_the_layers() -> None:
    loaded = python(
        "import sys, json, progresskit; "
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('progresskit.'))))"
    )
    assert loaded == []


def test_every_public_name_resolves_to_the_object_of_its_module() -> None:
    names = [name for name in progresskit.__all__ if name != "__version__"]
    assert sorted(names) == sorted(progresskit._EXPORTS)
    for name in names:
        home = importlib.import_module(progresskit._EXPORTS[name])
        assert getattr(progresskit, name) is getattr(home, name), name


def test_dir_lists_the_public_names() -> None:
    assert dir(progresskit) == sorted(progresskit.__all__)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="module 'progresskit' has no attribute 'Nope'"):
        progresskit.Nope  # noqa: B018
    with pytest.raises(ImportError, match="Nope"):
        from progresskit import Nope  # noqa: F401

