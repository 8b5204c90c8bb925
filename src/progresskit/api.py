"""Moved: :mod:`progresskit.engine.query` and :mod:`progresskit.compat.pylon`.

This path works for one release.
"""

import warnings

from progresskit.compat.pylon import (
    create_progress_tracker,
    detect_runner_type,
    get_all_run_status,
    get_run_status,
    get_work_dir,
)
from progresskit.engine.query import scan, status

warnings.warn(
    "progresskit.api moved to progresskit.engine.query and progresskit.compat.pylon; "
    "the old path works until progresskit 0.3",
    DeprecationWarning,
    stacklevel=2,
)

__all__ = [
    "create_progress_tracker",
    "detect_runner_type",
    "get_all_run_status",
    "get_run_status",
    "get_work_dir",
    "scan",
    "status",
]
