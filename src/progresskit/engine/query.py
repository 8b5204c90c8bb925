"""Library queries: the status of one run or of every run under a root.

Queries never write: not the ETA history, not a cache file (docs/concepts.md).
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from progresskit.engine.session import Tracking
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

    Raises :class:`~progresskit.errors.RunnerDetectionError` when the target is not exactly
    one tracker's run; a run whose files are unreadable is a status (``unknown``), not an
    exception.
    """
    return session(config).status(os.fspath(target), process=process)


def scan(
    root: str | os.PathLike[str],
    config: Mapping[str, Any] | None = None,
    *,
    processes: Mapping[str, ProcessInfo] | None = None,
) -> list[RunStatus]:
    """The status of every run under ``root``, sorted by path. See :meth:`Tracking.scan`."""
    return session(config).scan(os.fspath(root), processes=processes)


