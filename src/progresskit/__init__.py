"""progresskit: how far along a long-running job is, whether it is healthy, when it ends.

The public API is what this module exports; everything else is private. Names are resolved
on first use (PEP 562), so each audience pays only for what it uses: a training job that
imports :class:`EventEmitter` or :func:`heartbeat` loads the producer side (stdlib and
attrs), never the plugin manager, the engine or the server.
"""

from __future__ import annotations

import importlib

#: ``typing.TYPE_CHECKING`` without importing typing, whose import would be a fifth of what a
#: training job's ``from progresskit import EventEmitter`` costs (type checkers treat any
#: name ``TYPE_CHECKING`` as theirs).
TYPE_CHECKING = False

__version__ = "0.1.0"

# Public name -> the module that defines it, grouped by layer (docs/architecture.md).
_EXPORTS: dict[str, str] = {
    # model
    "Cause": "progresskit.model.core",
    "CompletedItem": "progresskit.model.core",
    "ProcessInfo": "progresskit.model.core",
    "ProgressInfo": "progresskit.model.core",
    "RunStatus": "progresskit.model.core",
    "Status": "progresskit.model.core",
    "SOURCE_VOCABULARIES": "progresskit.model.vocabulary",
    "canonical_status": "progresskit.model.vocabulary",
    "load_progress_file": "progresskit.model.converter",
    "structure": "progresskit.model.converter",
    "to_json": "progresskit.formats.jsonio",
    "unstructure": "progresskit.model.converter",
    # errors
    "AmbiguousRunnerError": "progresskit.errors",
    "ConfigError": "progresskit.errors",
    "FormatError": "progresskit.errors",
    "NoTrackerError": "progresskit.errors",
    "PluginError": "progresskit.errors",
    "ProgresskitError": "progresskit.errors",
    "RunnerDetectionError": "progresskit.errors",
    # formats
    "StatKey": "progresskit.formats.fileio",
    "atomic_write_text": "progresskit.formats.fileio",
    "read_json": "progresskit.formats.fileio",
    "read_bytes": "progresskit.formats.fileio",
    "open_regular": "progresskit.formats.fileio",
    "NotRegularFileError": "progresskit.formats.fileio",
    "FileTooLargeError": "progresskit.formats.fileio",
    "stat_key": "progresskit.formats.fileio",
    "Change": "progresskit.formats.change",
    # producer
    "EventEmitter": "progresskit.producer.emitter",
    "StatusFileWriter": "progresskit.producer.statusfile",
    "Heartbeat": "progresskit.producer.heartbeat",
    "heartbeat": "progresskit.producer.heartbeat",
    "Progress": "progresskit.producer.track",
    "track": "progresskit.producer.track",
    # plugin API
    "hookimpl": "progresskit.plugin.hookspec",
    "PluginManager": "progresskit.plugin.manager",
    "get_plugin_manager": "progresskit.plugin.manager",
    "BaseProgressTracker": "progresskit.plugin.tracker",
    "RunnerDescription": "progresskit.plugin.tracker",
    "Target": "progresskit.plugin.tracker",
    "TrackerSpec": "progresskit.plugin.spec",
    "Sink": "progresskit.plugin.sink",
    "SinkType": "progresskit.plugin.sink",
    "Config": "progresskit.plugin.config",
    "ConfigSchema": "progresskit.plugin.config",
    "ensure": "progresskit.plugin.config",
    # engine
    "apply_rules": "progresskit.engine.rules",
    "scan": "progresskit.engine.query",
    "status": "progresskit.engine.query",
    "Tracking": "progresskit.engine.session",
    "Monitor": "progresskit.engine.monitor",
    "Estimate": "progresskit.engine.eta",
    "estimate_run": "progresskit.engine.history",
    "history_path": "progresskit.engine.history",
    "record_finished_runs": "progresskit.engine.history",
    # seed 001 (Pylon) compatibility
    "create_progress_tracker": "progresskit.compat.pylon",
    "detect_runner_type": "progresskit.compat.pylon",
    "get_all_run_status": "progresskit.compat.pylon",
    "get_run_status": "progresskit.compat.pylon",
    "get_work_dir": "progresskit.compat.pylon",
    "EvaluatorProgressTracker": "progresskit.compat.pylon",
    "TrainerProgressTracker": "progresskit.compat.pylon",
    "check_epoch_finished": "progresskit.compat.pylon",
    "check_file_loadable": "progresskit.compat.pylon",
    "config_to_process_info": "progresskit.compat.pylon",
    "get_epoch_last_update": "progresskit.compat.pylon",
    "get_log_last_update": "progresskit.compat.pylon",
    "get_session_progress": "progresskit.compat.pylon",
    "parse_config": "progresskit.compat.pylon",
}

__all__ = [
    "SOURCE_VOCABULARIES",
    "AmbiguousRunnerError",
    "BaseProgressTracker",
    "Cause",
    "Change",
    "CompletedItem",
    "Config",
    "ConfigError",
    "ConfigSchema",
    "Estimate",
    "EvaluatorProgressTracker",
    "EventEmitter",
    "FileTooLargeError",
    "FormatError",
    "Heartbeat",
    "Monitor",
    "NoTrackerError",
    "NotRegularFileError",
    "PluginError",
    "PluginManager",
    "ProcessInfo",
    "Progress",
    "ProgressInfo",
    "ProgresskitError",
    "RunStatus",
    "RunnerDescription",
    "RunnerDetectionError",
    "Sink",
    "SinkType",
    "StatKey",
    "Status",
    "StatusFileWriter",
    "Target",
    "TrackerSpec",
    "Tracking",
    "TrainerProgressTracker",
    "__version__",
    "apply_rules",
    "atomic_write_text",
    "canonical_status",
    "check_epoch_finished",
    "check_file_loadable",
    "config_to_process_info",
    "create_progress_tracker",
    "detect_runner_type",
    "ensure",
    "estimate_run",
    "get_all_run_status",
    "get_epoch_last_update",
    "get_log_last_update",
    "get_plugin_manager",
    "get_run_status",
    "get_session_progress",
    "get_work_dir",
    "heartbeat",
    "history_path",
    "hookimpl",
    "load_progress_file",
    "open_regular",
    "parse_config",
    "read_bytes",
    "read_json",
    "record_finished_runs",
    "scan",
    "stat_key",
    "status",
    "structure",
    "to_json",
    "track",
    "unstructure",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'progresskit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:
    from typing import Any

    from progresskit.compat.pylon import (
        EvaluatorProgressTracker,
        TrainerProgressTracker,
        check_epoch_finished,
        check_file_loadable,
        config_to_process_info,
        create_progress_tracker,
        detect_runner_type,
        get_all_run_status,
        get_epoch_last_update,
        get_log_last_update,
        get_run_status,
        get_session_progress,
        get_work_dir,
        parse_config,
    )
    from progresskit.engine.eta import Estimate
    from progresskit.engine.history import estimate_run, history_path, record_finished_runs
    from progresskit.engine.monitor import Monitor
    from progresskit.engine.query import scan, status
    from progresskit.engine.rules import apply_rules
    from progresskit.engine.session import Tracking
    from progresskit.errors import (
        AmbiguousRunnerError,
        ConfigError,
        FormatError,
        NoTrackerError,
        PluginError,
        ProgresskitError,
        RunnerDetectionError,
    )
    from progresskit.formats.change import Change
    from progresskit.formats.fileio import (
        FileTooLargeError,
        NotRegularFileError,
        StatKey,
        atomic_write_text,
        open_regular,
        read_bytes,
        read_json,
        stat_key,
    )
    from progresskit.formats.jsonio import to_json
    from progresskit.model.converter import load_progress_file, structure, unstructure
    from progresskit.model.core import (
        Cause,
        CompletedItem,
        ProcessInfo,
        ProgressInfo,
        RunStatus,
        Status,
    )
    from progresskit.model.vocabulary import SOURCE_VOCABULARIES, canonical_status
    from progresskit.plugin.config import Config, ConfigSchema, ensure
    from progresskit.plugin.hookspec import hookimpl
    from progresskit.plugin.manager import PluginManager, get_plugin_manager
    from progresskit.plugin.sink import Sink, SinkType
    from progresskit.plugin.spec import TrackerSpec
    from progresskit.plugin.tracker import BaseProgressTracker, RunnerDescription, Target
    from progresskit.producer.emitter import EventEmitter
    from progresskit.producer.heartbeat import Heartbeat, heartbeat
    from progresskit.producer.statusfile import StatusFileWriter
    from progresskit.producer.track import Progress, track
