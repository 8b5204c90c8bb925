"""What a run's page shows beyond its view (``GET /api/runs/{id}/detail``, docs/serve.md):
every metric's full curve as its tracker reads it from disk, the config it is evaluated
with, the tail of its newest log and what its lease says.

Read for one run at a time, when someone opens its page, from a worker thread, with a
tracker made for the purpose (the monitor's own trackers belong to its thread). The run
is one the monitor discovered: no path comes from the request. Each part that cannot be
read says why in its own ``error`` and never hides the others.
"""

from __future__ import annotations

import fnmatch
import os
import stat
from collections.abc import Sequence
from typing import Any

from progresskit.engine.detection import make_tracker
from progresskit.engine.logs import DEFAULT_LOG_FILES, log_globs, read_tail
from progresskit.engine.monitor import Monitor
from progresskit.formats.fileio import stat_key
from progresskit.formats.lease import LEASE_FILENAME, load_lease
from progresskit.model.converter import unstructure
from progresskit.model.core import RunStatus
from progresskit.plugin.manager import PluginManager
from progresskit.plugin.tracker import BaseProgressTracker, Curves, list_entries

__all__ = ["LOG_TAIL_BYTES", "LOG_TAIL_LINES", "MAX_CURVE_POINTS", "run_detail", "thin"]

#: Points sent per curve; a longer curve is thinned evenly, its first and last kept.
MAX_CURVE_POINTS = 2000
#: Bytes read from the end of the newest log, and the lines of them shown.
LOG_TAIL_BYTES = 32 * 1024
LOG_TAIL_LINES = 200
#: Lease fields shown: the nonce (``token``) proves the process is the run's and is not.
_LEASE_FIELDS = (
    "pid", "host", "state", "interval", "slack", "started_at", "ended_at", "cause",
    "producers", "process_start_time", "slurm",
)


def thin(points: Sequence[tuple[float, float, float | None]], limit: int) -> list[Any]:
    """At most ``limit`` of ``points``, evenly spread, the first and the last kept."""
    if len(points) <= limit:
        return [list(p) for p in points]
    step = (len(points) - 1) / (limit - 1)
    return [list(points[round(i * step)]) for i in range(limit)]


def _curves(tracker: BaseProgressTracker) -> dict[str, Any]:
    try:
        found: Curves = tracker.curves()
    except Exception as exc:  # a tracker's bug must not take the rest of the page with it
        return {"axis": None, "series": {}, "error": f"{type(exc).__name__}: {exc}"}
    series = {
        name: {"points": thin(points, MAX_CURVE_POINTS), "total": len(points)}
        for name, points in sorted(found.items())
        if points
    }
    return {"axis": tracker.curve_axis, "series": series, "error": None}


def _log_names(work_dir: str, globs: Sequence[str]) -> list[str]:
    return [
        name
        for name, is_dir in list_entries(work_dir).items()
        if not is_dir and any(fnmatch.fnmatchcase(name, g) for g in globs)
    ]


def _log(log_dir: str, globs: Sequence[str]) -> dict[str, Any]:
    """The last lines of the most recently written log in the run's ``log_dir``."""
    try:
        names = _log_names(log_dir, globs)
    except OSError as exc:
        return {"file": None, "lines": [], "truncated": False, "error": str(exc)}
    newest: tuple[int, str] | None = None
    for name in names:
        try:
            st = os.stat(os.path.join(log_dir, name))
        except OSError:
            continue  # gone since the listing
        # A FIFO or a device named like a log is no log: never opened, never shown.
        if stat.S_ISREG(st.st_mode) and (newest is None or st.st_mtime_ns > newest[0]):
            newest = (st.st_mtime_ns, name)
    if newest is None:
        return {"file": None, "lines": [], "truncated": False, "error": None}
    name = newest[1]
    try:
        data, end, _appended = read_tail(os.path.join(log_dir, name), LOG_TAIL_BYTES)
    except OSError as exc:
        return {"file": name, "lines": [], "truncated": False, "error": str(exc)}
    # A progress bar redraws its line with \r: what the terminal shows is the last redraw.
    lines = [line.rsplit("\r", 1)[-1] for line in data.decode("utf-8", "replace").split("\n")]
    if lines and lines[-1] == "":
        lines.pop()
    truncated = end > len(data) or len(lines) > LOG_TAIL_LINES
    return {"file": name, "lines": lines[-LOG_TAIL_LINES:], "truncated": truncated, "error": None}


def _lease(run: RunStatus) -> dict[str, Any] | None:
    path = os.path.join(run.work_dir, LEASE_FILENAME)
    key = stat_key(path)
    if key is None:
        return None
    try:
        lease = unstructure(load_lease(path))
    except (OSError, ValueError) as exc:  # FormatError is a ValueError
        return {"error": f"lease ignored: {exc}"}
    shown = {name: lease.get(name) for name in _LEASE_FIELDS}
    shown["renewed_at"] = key[0] / 1e9  # a renewal is the file's mtime (formats/lease.py)
    shown["error"] = None
    return shown


def run_detail(monitor: Monitor, pm: PluginManager, run: RunStatus) -> dict[str, Any]:
    """The disk-read parts of ``run``'s page (blocking: call from a worker thread)."""
    tracker: BaseProgressTracker | None = None
    config: dict[str, Any] = {}
    error = None
    try:
        config = monitor.config_for(run.work_dir)
        tracker = make_tracker(pm, run.progress.runner_type, run.work_dir, config)
    except Exception as exc:  # a config broken since the run was found: say so, show the rest
        error = f"{type(exc).__name__}: {exc}"
    if tracker is None:
        curves: dict[str, Any] = {"axis": None, "series": {}, "error": error}
    else:
        curves = _curves(tracker)
    # The logs the engine reads for the run: its tracker's and the config's log_files.
    named = (tracker.get_log_pattern(),) if tracker is not None else ()
    globs = log_globs(config, named) or named or DEFAULT_LOG_FILES
    directory = os.path.isdir(run.work_dir)
    # Where the engine reads them: the tracker's log_dir (Lightning: the job dir above the run).
    log_dir = tracker.log_dir() if tracker is not None else run.work_dir
    return {
        "curves": curves,
        "config": {"values": config, "error": error},
        "log": _log(log_dir, globs) if directory else None,
        "lease": _lease(run) if directory else None,
    }
