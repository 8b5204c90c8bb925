"""The ``heartbeat`` tracker: a run directory that holds only a liveness lease, as
:func:`progresskit.heartbeat` leaves it. Such a run has a liveness (running, stalled,
crashed, how it ended: docs/liveness.md) and no progress: its steps, total and ETA are
unknown (``null``).

It claims nothing itself: a lease is left by every producer, so it is no evidence of a kind
of run. The engine gives a directory this runner type when no tracker claims it and its
only evidence is the lease (:data:`progresskit.engine.detection.LEASE_ONLY_RUNNER`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from progresskit.errors import FormatError
from progresskit.formats.lease import LEASE_FILENAME, load_lease
from progresskit.model.core import ProgressInfo
from progresskit.plugin.hookspec import hookimpl
from progresskit.plugin.tracker import BaseProgressTracker, RunnerDescription

__all__ = ["HeartbeatTracker"]

RUNNER_TYPE = "heartbeat"


class HeartbeatTracker(BaseProgressTracker):
    """A run known by its lease alone: liveness, and no progress."""

    runner_type = RUNNER_TYPE
    expected_files = (LEASE_FILENAME,)

    def is_complete(self) -> bool:
        return self.get_progress().at_full

    def calculate_progress(self) -> ProgressInfo:
        path = os.path.join(self.work_dir, LEASE_FILENAME)
        details = {"lease": path, "progress": "unknown: only a liveness lease (heartbeat())"}
        try:
            lease = load_lease(path)
        except (OSError, FormatError) as exc:
            return ProgressInfo(
                progress_percentage=None,
                completed_epochs=None,
                runner_type=RUNNER_TYPE,
                error_message=f"unreadable lease: {exc}",
                details=details,
            )
        # The lease's end is the only progress it knows of: a clean end is all done; before
        # it, how far the run is cannot be told (null, not 0%).
        done = lease.state == "finished"
        return ProgressInfo(
            runner_type=RUNNER_TYPE,
            progress_percentage=100.0 if done else None,
            completed_epochs=None,
            start_time=lease.started_at or None,
            details=details,
        )


@hookimpl
def progresskit_make_tracker(
    runner_type: str, work_dir: str, config: Mapping[str, Any]
) -> BaseProgressTracker | None:
    return HeartbeatTracker(work_dir, config) if runner_type == RUNNER_TYPE else None


@hookimpl
def progresskit_describe_runner() -> RunnerDescription:
    return RunnerDescription(
        RUNNER_TYPE,
        f"only a {LEASE_FILENAME} (progresskit.heartbeat()): a run known by its liveness "
        "alone, when no other tracker claims the directory",
    )
