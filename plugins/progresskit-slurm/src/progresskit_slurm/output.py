"""A job's progress from its output file, read by progresskit's own ``log`` tracker.

The tracker is made through the plugin API (``make_tracker("log", ...)``) for the file's
directory with ``log_files`` naming that one file, and kept per file, so a growing output
is read incrementally (docs/logs.md) and an idle one costs a ``stat``.
"""

from __future__ import annotations

import glob
import os
import threading

from progresskit import BaseProgressTracker, PluginManager, ProgressInfo, get_plugin_manager

__all__ = ["OutputReader"]

#: The log tracker's runner type (docs/logs.md).
LOG_RUNNER_TYPE = "log"


class OutputReader:
    """Progress read from jobs' output files, one log tracker per file."""

    def __init__(self, pm: PluginManager | None = None) -> None:
        self._pm = pm
        self._trackers: dict[str, BaseProgressTracker] = {}
        self._lock = threading.Lock()

    def _tracker(self, path: str) -> BaseProgressTracker | None:
        with self._lock:
            tracker = self._trackers.get(path)
            if tracker is None:
                if self._pm is None:
                    self._pm = get_plugin_manager()
                directory, name = os.path.split(path)
                tracker = self._pm.hooks.make_tracker(
                    LOG_RUNNER_TYPE, directory or ".", {"log_files": [glob.escape(name)]}
                )
                if tracker is None:
                    return None  # the log plugin is disabled
                self._trackers[path] = tracker
            return tracker

    def progress(self, path: str | None) -> ProgressInfo | None:
        """What the output file at ``path`` shows; ``None`` when there is none (yet)."""
        if path is None or not os.path.isfile(path):
            return None
        tracker = self._tracker(path)
        return None if tracker is None else tracker.get_progress()
