"""progresskit: how far along a long-running job is, whether it is healthy, when it ends.

The public API is what this module exports; everything else is private.
"""

from progresskit.api import (
    create_progress_tracker,
    detect_runner_type,
    get_all_run_status,
    get_run_status,
    get_work_dir,
    scan,
    status,
)
from progresskit.config import Config, ConfigSchema, ensure
from progresskit.converter import load_progress_file, structure, to_json, unstructure
from progresskit.errors import (
    AmbiguousRunnerError,
    ConfigError,
    FormatError,
    NoTrackerError,
    PluginError,
    ProgresskitError,
    RunnerDetectionError,
)
from progresskit.eta import Estimate
from progresskit.events import EventEmitter
from progresskit.fileio import StatKey, atomic_write_text, stat_key
from progresskit.history import estimate_run
from progresskit.hookspec import hookimpl
from progresskit.lease import Heartbeat, heartbeat
from progresskit.model import Cause, CompletedItem, ProcessInfo, ProgressInfo, RunStatus, Status
from progresskit.monitor import Monitor
from progresskit.plugins import PluginManager, get_plugin_manager
from progresskit.runs import Tracking
from progresskit.sinks import Change, Sink, SinkType
from progresskit.statusfile import StatusFileWriter
from progresskit.tracker import BaseProgressTracker, RunnerDescription, Target
from progresskit.vocabulary import SOURCE_VOCABULARIES, canonical_status

__version__ = "0.1.0"

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
    "EventEmitter",
    "FormatError",
    "Heartbeat",
    "Monitor",
    "NoTrackerError",
    "PluginError",
    "PluginManager",
    "ProcessInfo",
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
    "Tracking",
    "__version__",
    "atomic_write_text",
    "canonical_status",
    "create_progress_tracker",
    "detect_runner_type",
    "ensure",
    "estimate_run",
    "get_all_run_status",
    "get_plugin_manager",
    "get_run_status",
    "get_work_dir",
    "heartbeat",
    "hookimpl",
    "load_progress_file",
    "scan",
    "stat_key",
    "status",
    "structure",
    "to_json",
    "unstructure",
]
