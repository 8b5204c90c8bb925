"""The core's own config keys, declared through the same hook plugins use."""

from __future__ import annotations

from typing import Any

from progresskit.config import ConfigSchema, ensure
from progresskit.hookspec import hookimpl

#: Seed 001's defaults: a run silent for a day is no longer running; finished runs whose
#: outputs are 30 days old are outdated.
DEFAULT_SLEEP_TIME = 86400
DEFAULT_OUTDATED_DAYS = 30


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
        default=8,
        help="How many directory levels below a root are searched for runs.",
        check=lambda v: ensure(v >= 0, "must be >= 0"),
    )
    schema.add(
        "sinks",
        list,
        default=[],
        help="Output sinks: a list of {type: NAME, ...options}. See `progresskit plugins`.",
    )
    schema.add(
        "disable_plugins",
        list,
        default=[],
        help="Plugin names not to load, like '-p no:NAME' on the command line.",
        check=lambda v: ensure(all(isinstance(n, str) for n in v), "expects a list of names"),
    )
