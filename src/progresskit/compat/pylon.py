"""Seed 001 (Pylon): its function names, signatures and return types, kept for its callers.

Statuses returned here are in seed 001's five-word vocabulary (``Status.legacy``). These are
library queries: they write nothing, not even the ETA history.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from progresskit.engine.detection import detect, make_tracker
from progresskit.engine.query import session as _session
from progresskit.engine.session import broken_status
from progresskit.errors import ProgresskitError
from progresskit.model.core import ProcessInfo, RunStatus
from progresskit.plugin.coreconfig import DEFAULT_OUTDATED_DAYS, DEFAULT_SLEEP_TIME
from progresskit.plugin.manager import default_plugin_manager
from progresskit.plugin.tracker import BaseProgressTracker

__all__ = [
    "create_progress_tracker",
    "detect_runner_type",
    "get_all_run_status",
    "get_run_status",
    "get_work_dir",
]

_CONFIG_SUFFIXES = (".py", ".yaml", ".yml", ".json")


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
    sleep_time: int = DEFAULT_SLEEP_TIME,
    outdated_days: int = DEFAULT_OUTDATED_DAYS,
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
    sleep_time: int = DEFAULT_SLEEP_TIME,
    outdated_days: int = DEFAULT_OUTDATED_DAYS,
    config_to_process_info: Mapping[str, ProcessInfo] | None = None,
) -> dict[str, RunStatus]:
    """Seed 001's signature: config -> :class:`RunStatus`, in seed 001's vocabulary.

    A config whose run cannot be detected or read is a ``failed`` entry with the reason,
    never an exception that hides the other runs.
    """
    session = _session(None, _legacy_defaults(expected_files, epochs, sleep_time, outdated_days))
    processes = config_to_process_info or {}
    results: dict[str, RunStatus] = {}
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
