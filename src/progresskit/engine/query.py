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
from progresskit.model.unclaimed import ScanResult
from progresskit.plugin.manager import default_plugin_manager

__all__ = ["scan", "session", "status"]

# Sessions keep trackers (and their caches) between calls; a few configs are enough for
# an agent that polls the same trees over and over.
_MAX_SESSIONS = 8
_sessions: OrderedDict[str, Tracking] = OrderedDict()


def session(
    config: Mapping[str, Any] | None,
    defaults: Mapping[str, Any] | None = None,
    *,
    rhythm: bool = True,
) -> Tracking:
    """The shared session for ``config`` and ``defaults`` (a few are kept, least recent out).

    Values are layered: the core's and plugins' defaults < ``defaults`` < each run's own
    ``progresskit.yaml`` < ``config``, so a caller's mapping changes only the keys it names
    (docs/watch.md). ``rhythm``: see :attr:`Tracking.rhythm
    <progresskit.engine.session.Tracking.rhythm>`."""
    key = json.dumps([config, defaults, rhythm], sort_keys=True, default=str)
    session = _sessions.get(key)
    if session is None:
        session = Tracking(
            default_plugin_manager(), overrides=config, defaults=defaults, rhythm=rhythm
        )
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
    """The status of one run. ``config``, when given, is layered over the run's own
    (nearest) ``progresskit.yaml``: the keys it names win, the file's others still apply.

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
) -> ScanResult:
    """The status of every run ``root`` stands for: what a plugin resolves it to (a
    ComfyUI server's URL: its jobs), else every run under the directory, sorted by path.
    See :meth:`Tracking.runs_of <progresskit.engine.session.Tracking.runs_of>`.

    The answer is a list of :class:`RunStatus`; its ``unrecognised`` attribute lists the
    directories that look like runs but that no tracker claims
    (:class:`~progresskit.model.unclaimed.Unrecognised`), which are not in the list."""
    return session(config).runs_of(os.fspath(root), processes=processes)


