"""The JSON shapes of the server: a run's view, its history points, opaque run ids.

A run id is a hash of the run's directory: stable across restarts, meaningless to a
client, and resolvable only by looking it up among the runs the monitor discovered, so no
path ever comes from a URL.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from typing import Any

from progresskit.formats import jsonio
from progresskit.model.converter import unstructure
from progresskit.model.core import RunStatus

__all__ = ["RUN_ID_PATTERN", "dumps", "history_point", "run_id", "run_view"]

#: What every run id looks like; anything else is an unknown run without a lookup.
RUN_ID_PATTERN = re.compile(r"[0-9a-f]{16}")


def run_id(work_dir: str) -> str:
    """The opaque id of the run in ``work_dir``."""
    return hashlib.sha256(work_dir.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def dumps(document: Any) -> str:
    """``document`` (JSON-ready data) as compact JSON text; a NaN or an infinity is
    ``null``, so a diverged loss never breaks the stream for every client."""
    return jsonio.dumps(document, compact=True)


def _name(work_dir: str, root: str) -> str:
    try:
        inside = os.path.commonpath([work_dir, root]) == root
    except ValueError:  # one relative, the other absolute: not below the root
        inside = False
    if not inside:
        return work_dir
    relative = os.path.relpath(work_dir, root)
    return os.path.basename(root) if relative == "." else relative


def _created_at(run: RunStatus) -> float | None:
    if run.progress.start_time is not None:
        return run.progress.start_time
    if run.process_info is not None:
        return run.process_info.started_at
    return None


def run_view(
    run: RunStatus,
    root: str,
    cancel_requested_at: float | None = None,
    *,
    can_cancel: bool = False,
) -> dict[str, Any]:
    """What the API and the stream say about one run: its id, a display name relative to
    the served root, whether a plugin could cancel it (``can_cancel``: active, and the
    ``progresskit_can_cancel`` hook said so), and the full :class:`RunStatus` under
    ``run``."""
    return {
        "id": run_id(run.work_dir),
        "name": _name(run.work_dir, root),
        "runner_type": run.progress.runner_type,
        "status": run.status.value,
        "active": run.status.is_active,
        "can_cancel": can_cancel and run.status.is_active,
        "created_at": _created_at(run),
        "cancel_requested_at": cancel_requested_at,
        "run": unstructure(run),
    }


def history_point(run: RunStatus, at: float) -> dict[str, Any]:
    """One point of a run's history: when, how far, and its scores and metrics then."""
    values: dict[str, float] = {}
    values.update(run.progress.latest_score or {})
    values.update(run.progress.metrics)
    return {
        "t": at,
        "status": run.status.value,
        "pct": run.progress.progress_percentage,
        "values": {k: v for k, v in values.items() if math.isfinite(v)},
    }
