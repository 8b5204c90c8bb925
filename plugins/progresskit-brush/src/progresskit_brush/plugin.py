"""The progresskit hooks of the Brush plugin (entry point ``brush``)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from progresskit import hookimpl
from progresskit.plugin.config import ConfigSchema, ensure
from progresskit.plugin.tracker import BaseProgressTracker, RunnerDescription, Target
from progresskit.producer.statusfile import DEFAULT_STATUS_FILENAME
from progresskit_brush.tracker import (
    DEFAULT_REREAD_DELAY,
    RUNNER_TYPE,
    BrushProgressTracker,
    status_file_candidates,
)


def _check_filename(value: str) -> None:
    ensure(bool(value) and os.path.basename(value) == value and value not in (".", ".."),
           "must be a file name without a directory (Brush's --status-filename)")


@hookimpl
def progresskit_addconfig(schema: ConfigSchema) -> None:
    schema.add(
        "status_filename",
        (str, type(None)),
        help=f"Name of a Brush run's status file (Brush's --status-filename; default "
        f"{DEFAULT_STATUS_FILENAME}).",
        check=_check_filename,
    )
    schema.add(
        "export_path",
        (str, type(None)),
        help="Brush's --export-path, relative to the run's directory: the status file is "
        "looked for there when the directory itself does not hold it.",
        check=lambda v: ensure(bool(v), "must not be empty"),
    )
    schema.add(
        "brush_reread_delay",
        (int, float),
        default=DEFAULT_REREAD_DELAY,
        help="Seconds to wait before reading an empty or half-written Brush status file "
        "a second time.",
        check=lambda v: ensure(0 <= v <= 5, "must be between 0 and 5 seconds"),
    )


def _under_export_path(target: Target) -> bool:
    """Whether the status file exists under a relative ``export_path`` of ``target``.

    Only a directory holding the export directory pays the one ``stat``; an absolute or
    upward ``export_path`` names one place for every directory, so it is no evidence.
    """
    export = target.config.get("export_path")
    if not export or os.path.isabs(export):
        return False
    first = os.path.normpath(export).split(os.sep)[0]
    if first in (".", "..") or not target.has_dir(first):
        return False
    return any(os.path.isfile(p) for p in status_file_candidates(target.path, target.config)[1:])


@hookimpl
def progresskit_detect_runner(target: Target) -> str | None:
    filename = target.config.get("status_filename") or DEFAULT_STATUS_FILENAME
    if target.has_file(filename) or _under_export_path(target):
        return RUNNER_TYPE
    # A single explicit target whose config names Brush's files: a run not started yet.
    config = target.config
    if target.use_config and (config.get("status_filename") or config.get("export_path")):
        return RUNNER_TYPE
    return None


@hookimpl
def progresskit_make_tracker(
    runner_type: str, work_dir: str, config: Mapping[str, Any]
) -> BaseProgressTracker | None:
    return BrushProgressTracker(work_dir, config) if runner_type == RUNNER_TYPE else None


@hookimpl
def progresskit_describe_runner() -> RunnerDescription:
    return RunnerDescription(
        RUNNER_TYPE,
        f"{DEFAULT_STATUS_FILENAME} file (or config 'status_filename'), in the directory or "
        "under config 'export_path'",
    )
