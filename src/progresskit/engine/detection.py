"""Fail-fast runner detection: exactly one tracker must claim a directory, or we say why not."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from progresskit.errors import AmbiguousRunnerError, NoTrackerError
from progresskit.formats.lease import LEASE_FILENAME
from progresskit.plugin.manager import PluginManager
from progresskit.plugin.tracker import BaseProgressTracker, Target, list_entries

__all__ = ["LEASE_ONLY_RUNNER", "claims", "detect", "make_tracker"]

_MAX_LISTED = 40
#: The runner type of a directory whose only evidence is a liveness lease (a job that calls
#: heartbeat() and writes nothing progresskit reads): a run, of liveness only.
LEASE_ONLY_RUNNER = "heartbeat"


def claims(pm: PluginManager, target: Target) -> dict[str, list[str]]:
    """Runner type -> the plugins that claim ``target`` for it (kept for callers of 0.1)."""
    return pm.hooks.detect_runner(target)


def detect(
    pm: PluginManager,
    work_dir: str,
    config: Mapping[str, Any],
    *,
    entries: Mapping[str, bool] | None = None,
    allow_config: bool = True,
    files_unclaimed: bool = False,
) -> str:
    """The runner type of ``work_dir``, decided by the loaded plugins.

    File evidence is asked first; config keys count only when no file evidence claims the
    directory and ``allow_config`` is set (seed 001's order: files, then config).
    ``runner_type`` pinned in the config wins over both. ``files_unclaimed``: the caller
    already asked for file evidence (``allow_config=False``) and no tracker claimed the
    directory, so only config evidence is asked: each question is asked once.
    """
    pinned = config.get("runner_type")
    if pinned:
        return str(pinned)
    if entries is None:
        if not os.path.isdir(work_dir):
            what = "does not exist" if not os.path.exists(work_dir) else "is not a directory"
            raise NoTrackerError(f"Cannot detect runner type for work_dir: {work_dir} ({what})")
        entries = list_entries(work_dir)
    found: dict[str, list[str]] = {}
    if not files_unclaimed:
        found = pm.hooks.detect_runner(Target(work_dir, config, entries, use_config=False))
    if not found and allow_config:
        found = pm.hooks.detect_runner(Target(work_dir, config, entries, use_config=True))
    if len(found) == 1:
        return next(iter(found))
    if not found and _lease_only(pm, work_dir, config, entries, allow_config):
        return LEASE_ONLY_RUNNER
    if not found:
        raise NoTrackerError(_no_match_message(pm, work_dir, config, entries))
    described = "; ".join(
        f"'{rt}' (plugin {', '.join(repr(p) for p in plugins)})" for rt, plugins in found.items()
    )
    raise AmbiguousRunnerError(
        f"Ambiguous runner type for work_dir: {work_dir}: claimed as {described}. "
        f"Pin one with 'runner_type: <type>' in {work_dir}/progresskit.yaml or the config."
    )


def _lease_only(
    pm: PluginManager,
    work_dir: str,
    config: Mapping[str, Any],
    entries: Mapping[str, bool],
    config_asked: bool,
) -> bool:
    """Whether an unclaimed ``work_dir`` is a run by its lease alone.

    The lease is the weakest evidence: every producer leaves one. So it counts only when
    neither the files nor the config claim the directory (the config is asked here when the
    caller did not, so that a run its config identifies keeps its runner type), and only
    while a loaded plugin provides :data:`LEASE_ONLY_RUNNER` (``-p no:heartbeat`` turns it
    off).
    """
    if entries.get(LEASE_FILENAME) is not False:  # absent, or a directory of that name
        return False
    if not any(d.runner_type == LEASE_ONLY_RUNNER for d in pm.runner_descriptions()):
        return False
    return config_asked or not pm.hooks.detect_runner(
        Target(work_dir, config, entries, use_config=True)
    )


def _no_match_message(
    pm: PluginManager, work_dir: str, config: Mapping[str, Any], entries: Mapping[str, bool]
) -> str:
    names = sorted(f"{n}/" if is_dir else n for n, is_dir in entries.items())
    shown = names[:_MAX_LISTED] + (
        [f"... {len(names) - _MAX_LISTED} more"] if len(names) > _MAX_LISTED else []
    )
    # Keys the user set, not every declared default: that is what tells runs apart.
    defaults = {key.name: key.default for key in pm.schema.declared()}
    keys = sorted(k for k, v in config.items() if v not in (None, [], {}) and v != defaults.get(k))
    lines = [
        f"Cannot detect runner type for work_dir: {work_dir}",
        f"Available files: {shown}",
        f"Config keys: {keys}" if keys else "No config provided",
        "Expected patterns (from every loaded tracker plugin):",
    ]
    descriptions = pm.runner_descriptions()
    lines += [f"  - {d.runner_type}: {d.expects}" for d in descriptions]
    if not descriptions:
        lines.append("  (no tracker plugin is loaded: check `progresskit plugins`)")
    lines.append(
        "No installed tracker claims this directory; install the plugin for its "
        "runner, or pin 'runner_type' in the config."
    )
    return "\n".join(lines)


def make_tracker(
    pm: PluginManager, runner_type: str, work_dir: str, config: Mapping[str, Any]
) -> BaseProgressTracker:
    """The tracker for ``runner_type``; an error naming the loaded types if none provides it."""
    tracker = pm.hooks.make_tracker(runner_type, work_dir, config)
    if tracker is None:
        known = sorted(d.runner_type for d in pm.runner_descriptions())
        raise NoTrackerError(
            f"No loaded plugin provides runner type '{runner_type}' for {work_dir} "
            f"(loaded runner types: {known})"
        )
    return tracker
