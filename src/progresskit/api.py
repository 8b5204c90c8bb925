"""The library entry points: seed 001's functions, kept, and the modern ``status``/``scan``."""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from progresskit.detection import detect, make_tracker
from progresskit.errors import ProgresskitError
from progresskit.history import deferred_records
from progresskit.model import ProcessInfo, RunStatus
from progresskit.plugins import default_plugin_manager
from progresskit.runs import Tracking, broken_status
from progresskit.tracker import BaseProgressTracker

__all__ = [
    "create_progress_tracker",
    "detect_runner_type",
    "get_all_run_status",
    "get_run_status",
    "get_work_dir",
    "scan",
    "status",
]

_CONFIG_SUFFIXES = (".py", ".yaml", ".yml", ".json")
# Sessions keep trackers (and their caches) between calls; a few configs are enough for
# an agent that polls the same trees over and over.
_MAX_SESSIONS = 8
_sessions: OrderedDict[str, Tracking] = OrderedDict()


def _session(
    config: Mapping[str, Any] | None, defaults: Mapping[str, Any] | None = None
) -> Tracking:
    key = json.dumps([config, defaults], sort_keys=True, default=str)
    session = _sessions.get(key)
    if session is None:
        session = Tracking(default_plugin_manager(), config=config, defaults=defaults)
        _sessions[key] = session
        while len(_sessions) > _MAX_SESSIONS:
            _sessions.popitem(last=False)
    _sessions.move_to_end(key)
    return session


def detect_runner_type(
    work_dir: str | os.PathLike[str], config: Mapping[str, Any] | None = None
) -> str:
    """The runner type of ``work_dir`` (seed 001's API).

    Raises :class:`~progresskit.errors.RunnerDetectionError` (a ``ValueError``) listing the
    files seen, the config keys and every plugin's expected pattern when no tracker claims
    the directory, or naming both when two do.
    """
    pm = default_plugin_manager()
    values = pm.schema.validate(config or {}, "config")
    return detect(pm, os.fspath(work_dir), values)


def create_progress_tracker(
    work_dir: str | os.PathLike[str], config: Mapping[str, Any] | None = None
) -> BaseProgressTracker:
    """A new tracker for ``work_dir`` of the detected runner type (seed 001's API)."""
    pm = default_plugin_manager()
    values = pm.schema.validate(config or {}, "config")
    path = os.fspath(work_dir)
    return make_tracker(pm, detect(pm, path, values), path, values)


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
    return _session(config).status(os.fspath(target), process=process)


def scan(
    root: str | os.PathLike[str],
    config: Mapping[str, Any] | None = None,
    *,
    processes: Mapping[str, ProcessInfo] | None = None,
) -> list[RunStatus]:
    """The status of every run under ``root``, sorted by path. See :meth:`Tracking.scan`."""
    return _session(config).scan(os.fspath(root), processes=processes)


def get_work_dir(config: str) -> str:
    """A run's work dir from its config path, Pylon's way: ``configs/a/b.py`` -> ``logs/a/b``.

    A directory is its own work dir.
    """
    if os.path.isdir(config):
        return config
    path = Path(config)
    if path.suffix not in _CONFIG_SUFFIXES or "configs" not in path.parts:
        raise ValueError(
            f"cannot derive a work dir from config {config!r}: expected a directory, or a "
            f"config file ({', '.join(_CONFIG_SUFFIXES)}) under a 'configs' directory"
        )
    parts = list(path.with_suffix("").parts)
    parts[parts.index("configs")] = "logs"
    return str(Path(*parts))


def _legacy_defaults(
    expected_files: Sequence[str] | None, epochs: int | None, sleep_time: int, outdated_days: int
) -> dict[str, Any]:
    defaults: dict[str, Any] = {"sleep_time": sleep_time, "outdated_days": outdated_days}
    if epochs is not None:
        defaults["epochs"] = epochs
    if expected_files:
        defaults["expected_files"] = list(expected_files)
    return defaults


def get_run_status(
    config: str,
    expected_files: Sequence[str] | None,
    epochs: int | None,
    config_to_process_info: Mapping[str, ProcessInfo] | None,
    sleep_time: int = 86400,
    outdated_days: int = 30,
) -> RunStatus:
    """Seed 001's signature. ``status`` is in seed 001's five-word vocabulary.

    ``expected_files`` and ``epochs`` apply where the run's ``progresskit.yaml`` does not
    say otherwise.
    """
    session = _session(None, _legacy_defaults(expected_files, epochs, sleep_time, outdated_days))
    process = (config_to_process_info or {}).get(config)
    result = session.status(
        get_work_dir(config), key=config, process=process, discover_processes=False
    )
    return _legacy(result)


def get_all_run_status(
    config_files: Sequence[str],
    expected_files: Sequence[str] | None,
    epochs: int | None,
    sleep_time: int = 86400,
    outdated_days: int = 30,
    config_to_process_info: Mapping[str, ProcessInfo] | None = None,
) -> dict[str, RunStatus]:
    """Seed 001's signature: config -> :class:`RunStatus`, in seed 001's vocabulary.

    A config whose run cannot be detected or read is a ``failed`` entry with the reason,
    never an exception that hides the other runs.
    """
    session = _session(None, _legacy_defaults(expected_files, epochs, sleep_time, outdated_days))
    processes = config_to_process_info or {}
    results: dict[str, RunStatus] = {}
    with deferred_records():
        for config in config_files:
            try:
                work_dir = get_work_dir(config)
                result = session.status(
                    work_dir, key=config, process=processes.get(config), discover_processes=False
                )
            except (ProgresskitError, ValueError) as exc:
                result = broken_status(config, config, str(exc), process=processes.get(config))
            results[config] = _legacy(result)
    return results


def _legacy(result: RunStatus) -> RunStatus:
    return attrs.evolve(result, status=result.status.legacy)
