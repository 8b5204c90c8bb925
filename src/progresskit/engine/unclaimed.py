"""Which unclaimed directories look like runs: the evidence a scan reports instead of
silently skipping them (:class:`~progresskit.model.unclaimed.Unrecognised`)."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping

from progresskit.formats.lease import LEASE_FILENAME
from progresskit.model.unclaimed import Unrecognised
from progresskit.plugin.manager import PluginManager

__all__ = ["CHECKPOINT_PATTERNS", "CONFIG_NAMES", "run_like_files", "unrecognised"]

#: A training job's own config, next to its outputs.
CONFIG_NAMES = ("config.json", "config.yaml", "config.yml")
#: Files and directories that training frameworks write as checkpoints.
CHECKPOINT_PATTERNS = ("*.ckpt", "*.pt", "*.pth", "*.safetensors", "checkpoint*", "checkpoints")


def run_like_files(entries: Mapping[str, bool], log_patterns: Iterable[str]) -> tuple[str, ...]:
    """The entries of a directory that make it look like a run, sorted (``name/`` for a
    directory); empty when nothing does."""
    logs = tuple(log_patterns)
    found = []
    for name, is_dir in entries.items():
        if name.startswith("."):
            if name == LEASE_FILENAME and not is_dir:
                found.append(name)
            continue
        if any(fnmatch.fnmatchcase(name, p) for p in CHECKPOINT_PATTERNS):
            found.append(f"{name}/" if is_dir else name)
        elif not is_dir and (
            name in CONFIG_NAMES or any(fnmatch.fnmatchcase(name, p) for p in logs)
        ):
            found.append(name)
    return tuple(sorted(found))


def unrecognised(
    pm: PluginManager, path: str, entries: Mapping[str, bool]
) -> Unrecognised | None:
    """``path`` as an unrecognised run when its ``entries`` look like one."""
    descriptions = pm.runner_descriptions()
    patterns = {d.log_pattern for d in descriptions if d.log_pattern}
    files = run_like_files(entries, patterns)
    if not files:
        return None
    return Unrecognised(path, files, tuple(f"{d.runner_type}: {d.expects}" for d in descriptions))
