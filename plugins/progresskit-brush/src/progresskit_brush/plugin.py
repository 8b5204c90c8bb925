"""The progresskit hooks of the Brush plugin (entry point ``brush``)."""

from __future__ import annotations

import os

from progresskit import ConfigSchema, Target, TrackerSpec, ensure, hookimpl
from progresskit.formats.statusfile import DEFAULT_STATUS_FILENAME
from progresskit_brush.tracker import (
    DEFAULT_REREAD_DELAY,
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


def _claims(target: Target) -> bool:
    config = target.config
    filename = config.get("status_filename") or DEFAULT_STATUS_FILENAME
    if target.has_file(filename) or _under_export_path(target):
        return True
    # A single explicit target whose config names Brush's files: a run not started yet.
    return bool(target.use_config and (config.get("status_filename") or config.get("export_path")))


tracker = TrackerSpec(
    BrushProgressTracker,
    claim=_claims,
    expects=f"{DEFAULT_STATUS_FILENAME} file (or config 'status_filename'), in the directory "
    "or under config 'export_path'",
)
progresskit_detect_runner, progresskit_make_tracker, progresskit_describe_runner = tracker.hooks
