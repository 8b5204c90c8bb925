"""The core's own config keys, declared through the same hook plugins use, and their
defaults: the one place each is written (the engine, the seed APIs and the command line
read them from here)."""

from __future__ import annotations

from typing import Any

from progresskit.plugin.config import ConfigSchema, ensure
from progresskit.plugin.hookspec import hookimpl

#: Seed 001's defaults: a run silent for a day is no longer running; finished runs whose
#: outputs are 30 days old are outdated.
DEFAULT_SLEEP_TIME = 86400
DEFAULT_OUTDATED_DAYS = 30
#: How many directory levels below a root are searched for runs.
DEFAULT_SCAN_MAX_DEPTH = 8
#: How ``progresskit watch`` learns that files changed.
WATCH_MODES = ("auto", "notify", "poll")
DEFAULT_WATCH_MODE = "auto"
#: Seconds between a watcher's full re-evaluations.
DEFAULT_WATCH_POLL_INTERVAL = 2.0
#: Seconds between a watcher's heartbeats restating every run.
DEFAULT_WATCH_HEARTBEAT = 60.0


def _check_runner(value: Any) -> None:
    if isinstance(value, dict):
        ensure(isinstance(value.get("class"), str), "expects a mapping with a string 'class'")


@hookimpl
def progresskit_addconfig(schema: ConfigSchema) -> None:
    schema.add(
        "runner_type",
        (str, type(None)),
        help="Pin the runner type (skips detection; resolves two trackers claiming a run).",
    )
    schema.add(
        "runner",
        (str, dict, type(None)),
        help="The runner class name, or {class: NAME}; 'Trainer'/'Evaluator' in it is "
        "evidence for detection when a directory has no files yet.",
        check=_check_runner,
    )
    schema.add(
        "sleep_time",
        (int, float),
        default=DEFAULT_SLEEP_TIME,
        help="Seconds without a sign of life after which a run is no longer running.",
        check=lambda v: ensure(v > 0, "must be > 0 seconds"),
    )
    schema.add(
        "outdated_days",
        (int, float),
        default=DEFAULT_OUTDATED_DAYS,
        help="Days after which a finished run's outputs are outdated.",
        check=lambda v: ensure(v > 0, "must be > 0 days"),
    )
    schema.add(
        "scan_max_depth",
        int,
        default=DEFAULT_SCAN_MAX_DEPTH,
        help="How many directory levels below a root are searched for runs.",
        check=lambda v: ensure(v >= 0, "must be >= 0"),
    )
    schema.add(
        "scan_external_links",
        bool,
        default=False,
        help="Follow directory symlinks that lead out of the scanned root (off: they are "
        "skipped, so a link to / does not scan the whole filesystem). Loops are never "
        "followed either way.",
    )
    schema.add(
        "sinks",
        list,
        default=[],
        help="Output sinks: a list of {type: NAME, ...options}. See `progresskit plugins`. "
        "Only from a config file you trust (docs/security.md).",
        trusted_only=True,
    )
    schema.add(
        "watch_mode",
        str,
        default=DEFAULT_WATCH_MODE,
        help="`progresskit watch`: 'notify' (OS file notifications), 'poll' (for NFS and "
        "other filesystems that do not notify), or 'auto' (poll on network filesystems).",
        check=lambda v: ensure(v in WATCH_MODES, f"must be one of {', '.join(WATCH_MODES)}"),
    )
    schema.add(
        "watch_poll_interval",
        (int, float),
        default=DEFAULT_WATCH_POLL_INTERVAL,
        help="`progresskit watch`: seconds between full re-evaluations (the polling period; "
        "with notifications, what catches changes no file write announces).",
        check=lambda v: ensure(v > 0, "must be > 0 seconds"),
    )
    schema.add(
        "watch_heartbeat",
        (int, float),
        default=DEFAULT_WATCH_HEARTBEAT,
        help="`progresskit watch`: seconds between heartbeats restating every run; 0: none.",
        check=lambda v: ensure(v >= 0, "must be >= 0 seconds (0 turns heartbeats off)"),
    )
    schema.add(
        "eta_history",
        (str, type(None)),
        help="ETA history database (SQLite) of finished runs' pace; 'off' disables it. "
        "$PROGRESSKIT_HISTORY overrides it; default "
        "$XDG_STATE_HOME/progresskit/history.sqlite3 (~/.local/state/...). See docs/eta.md.",
        check=lambda v: ensure(bool(v.strip()), "must be a path or 'off'"),
        trusted_only=True,
    )
    schema.add(
        "eta_group",
        (str, type(None)),
        help="Which finished runs a run's ETA learns from (with its runner type); default: "
        "the tracker's choice (the work dir's name for trainer runs, the job type for ComfyUI).",
        check=lambda v: ensure(bool(v.strip()), "must be a non-empty name"),
    )
    schema.add(
        "disable_plugins",
        list,
        default=[],
        help="Plugin names not to load, like '-p no:NAME' on the command line.",
        check=lambda v: ensure(all(isinstance(n, str) for n in v), "expects a list of names"),
    )
