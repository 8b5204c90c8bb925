"""Pylon's file helpers: epoch completeness, loadability, last updates.

Reads only. A ``.pt`` file is checked to be a complete ``torch.save`` archive without
unpickling it: unpickling executes code named by the file, and torch is not a dependency.
"""

from __future__ import annotations

import glob
import os
import pickletools
import zipfile
from collections.abc import Sequence
from typing import IO

from progresskit.compat.pylon.errors import PylonValueError
from progresskit.formats.fileio import read_json

__all__ = [
    "check_epoch_finished",
    "check_file_loadable",
    "get_epoch_last_update",
    "get_log_last_update",
]

DEFAULT_LOG_PATTERN = "train_val*.log"


def _complete_pickle(stream: IO[bytes]) -> None:
    """Walk one pickle's opcodes to its STOP; raises ``ValueError`` if it is cut or garbled.

    ``pickletools.genops`` decodes opcodes and arguments only: nothing is imported or run.
    """
    for opcode, _arg, _pos in pickletools.genops(stream):
        if opcode.name == "STOP":
            return
    raise ValueError("pickle has no STOP opcode")


def _torch_file_complete(path: str) -> bool:
    if zipfile.is_zipfile(path):
        # torch.save's default format since torch 1.6: a zip holding <name>/data.pkl and
        # the tensor storages; CRCs catch truncated or corrupted members.
        with zipfile.ZipFile(path) as archive:
            if archive.testzip() is not None:
                return False
            pickles = [n for n in archive.namelist() if n.endswith("data.pkl")]
            if len(pickles) != 1:
                return False
            with archive.open(pickles[0]) as member:
                _complete_pickle(member)
        return True
    # The legacy format (and a plain pickle.dump): pickles one after the other.
    with open(path, "rb") as fh:
        _complete_pickle(fh)
    return True


def check_file_loadable(filepath: str) -> bool:
    """Whether ``filepath`` (a ``.json`` or ``.pt`` file) holds a complete, readable value.

    Raises :class:`~progresskit.compat.pylon.errors.PylonValueError` (an
    ``AssertionError``, as Pylon raised) when the file does not exist or has another
    extension; any problem with the contents is ``False``.
    """
    if not os.path.isfile(filepath):
        raise PylonValueError(f"check_file_loadable: no such file: {filepath}")
    if not filepath.endswith((".json", ".pt")):
        raise PylonValueError(
            f"check_file_loadable: {filepath}: only .json and .pt files can be checked"
        )
    try:
        if filepath.endswith(".json"):
            read_json(filepath)  # the bounded reader: never a FIFO, a huge file, a RecursionError
            return True
        return _torch_file_complete(filepath)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return False


def check_epoch_finished(
    epoch_dir: str, expected_files: Sequence[str], check_load: bool | None = True
) -> bool:
    """Whether ``epoch_dir`` holds every expected file, non-empty, and (with
    ``check_load``, the default, as when Pylon's trainer resumes) loadable.

    A missing directory is ``False``. Files that are neither ``.json`` nor ``.pt`` have no
    format to check: non-empty is enough (Pylon raised on them).
    """
    if not os.path.isdir(epoch_dir):
        return False
    for name in expected_files:
        path = os.path.join(epoch_dir, name)
        if not os.path.isfile(path) or os.path.getsize(path) == 0:
            return False
        if check_load and path.endswith((".json", ".pt")) and not check_file_loadable(path):
            return False
    return True


def get_log_last_update(work_dir: str, log_pattern: str = DEFAULT_LOG_PATTERN) -> float | None:
    """Newest mtime of the logs matching ``log_pattern`` in ``work_dir``; ``None`` if none."""
    if not os.path.isdir(work_dir):
        return None
    times = []
    for path in glob.glob(os.path.join(glob.escape(work_dir), log_pattern)):
        try:
            times.append(os.path.getmtime(path))
        except OSError:  # removed between the listing and the stat
            continue
    return max(times) if times else None


def get_epoch_last_update(work_dir: str, expected_files: Sequence[str]) -> float | None:
    """Newest mtime of the expected files in ``work_dir``'s ``epoch_*`` directories.

    ``None`` when there are none, including when epoch directories exist but hold none of
    the expected files (Pylon before its job classes raised ``ValueError`` there).
    """
    if not os.path.isdir(work_dir):
        return None
    times = []
    for epoch_dir in glob.glob(os.path.join(glob.escape(work_dir), "epoch_*")):
        for name in expected_files:
            try:
                times.append(os.path.getmtime(os.path.join(epoch_dir, name)))
            except OSError:
                continue
    return max(times) if times else None
