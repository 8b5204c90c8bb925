"""Seed 001 (Pylon): its names, signatures and return types, for callers of every version.

See docs/compat-pylon.md for which Pylon version's forms each name accepts, and where
progresskit deliberately differs.
"""

from progresskit.compat.pylon.api import (
    create_progress_tracker,
    detect_runner_type,
    get_all_run_status,
    get_config,
    get_run_status,
    get_session_progress,
    get_work_dir,
    pylon_work_dir,
)
from progresskit.compat.pylon.configs import PylonConfigWarning, read_pylon_config
from progresskit.compat.pylon.errors import PylonTypeError, PylonValueError
from progresskit.compat.pylon.helpers import (
    check_epoch_finished,
    check_file_loadable,
    get_epoch_last_update,
    get_log_last_update,
)
from progresskit.compat.pylon.processes import (
    as_process_info,
    build_config_to_process_mapping,
    config_to_process_info,
    parse_config,
)
from progresskit.compat.pylon.trackers import (
    BaseProgressTracker,
    EvaluatorProgressTracker,
    TrainerProgressTracker,
)
from progresskit.model.core import ProcessInfo, ProgressInfo, RunStatus

#: Pylon V2-V8's private name, which its callers and tests imported.
_build_config_to_process_mapping = build_config_to_process_mapping

__all__ = [
    "BaseProgressTracker",
    "EvaluatorProgressTracker",
    "ProcessInfo",
    "ProgressInfo",
    "PylonConfigWarning",
    "PylonTypeError",
    "PylonValueError",
    "RunStatus",
    "TrainerProgressTracker",
    "as_process_info",
    "build_config_to_process_mapping",
    "check_epoch_finished",
    "check_file_loadable",
    "config_to_process_info",
    "create_progress_tracker",
    "detect_runner_type",
    "get_all_run_status",
    "get_config",
    "get_epoch_last_update",
    "get_log_last_update",
    "get_run_status",
    "get_session_progress",
    "get_work_dir",
    "parse_config",
    "pylon_work_dir",
    "read_pylon_config",
]
