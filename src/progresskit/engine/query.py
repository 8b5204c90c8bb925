"""Library queries: the status of one run or of every run under a root.

Queries never write: not the ETA history, not a cache file (docs/concepts.md). Their
sessions do not record finished runs; a caller that wants them recorded makes its own
:class:`~progresskit.engine.session.Tracking` with ``record_history=True``.
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from progresskit.engine.session import Tracking
from progresskit.errors import RunnerDetectionError
from progresskit.model.core import ProcessInfo, RunStatus
from progresskit.plugin.manager import default_plugin_manager

__all__ = ["scan", "session", "status"]

# Sessions keep trackers (and their caches) between calls; a few configs are enough for
# an agent that polls the same trees over and over.
_MAX_SESSIONS = 8
_sessions: OrderedDict[str, Tracking] = OrderedDict()


def session(
    config: Mapping[str, Any] | None, defaults: Mapping[str, Any] | None = None
) -> Tracking:
    """The shared session for ``config`` and ``defaults`` (a few are kept, least recent out)."""
    key = json.dumps([config, defaults], sort_keys=True, default=str)
    session = _sessions.get(key)
    if session is None:
        session = Tracking(default_plugin_manager(), config=config, defaults=defaults)
        _sessions[key] = session
        while len(_sessions) > _MAX_SESSIONS:
            _sessions.popitem(last=False)
    _sessions.move_to_end(key)
    return session


def status(
    target: str | os.PathLike[str],
    config: Mapping[str, Any] | None = None,
    *,
    process: ProcessInfo | None = None,
) -> RunStatus:
    """The status of one run. ``config=None`` uses the nearest ``progresskit.yaml``.

    ``target`` is what a plugin resolves it to when one does (a ComfyUI job's URL), else
    the run in that directory (:meth:`Tracking.runs_of
    <progresskit.engine.session.Tracking.runs_of>` says what a target is).

    Raises :class:`~progresskit.errors.RunnerDetectionError` when the target is not exactly
    one run; a run whose files are unreadable is a status (``unknown``), not an exception.
    """
    tracking = session(config)
    path = os.fspath(target)
    resolved = tracking.resolve_target(path)
    if resolved is None:
        return tracking.status(path, process=process)
    if len(resolved) != 1:
        raise RunnerDetectionError(
            f"{path}: a plugin resolves it to {len(resolved)} runs, not one; "
            "progresskit.scan() returns them all"
        )
    return resolved[0]


def scan(
    root: str | os.PathLike[str],
    config: Mapping[str, Any] | None = None,
    *,
    processes: Mapping[str, ProcessInfo] | None = None,
) -> list[RunStatus]:
    """The status of every run ``root`` stands for: what a plugin resolves it to (a
    ComfyUI server's URL: its jobs), else every run under the directory, sorted by path.
    See :meth:`Tracking.runs_of <progresskit.engine.session.Tracking.runs_of>`."""
    return session(config).runs_of(os.fspath(root), processes=processes)


