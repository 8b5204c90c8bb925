"""Cancel a run: stop its job, through the plugin that knows its system, or by signal once
the local process is proven to be the run's.

``TARGET`` is a run directory, or a target a plugin resolves (a ComfyUI server URL with a
prompt id, a ``slurm:`` job). The stop is the server's (:func:`progresskit.engine.cancel.
cancel_run`): the same checks, the same plugins. On a terminal the command asks first;
elsewhere it refuses without ``--yes``. Exit codes (docs/cancel.md): 0 stopped, 1 nothing
was stopped (refused, not active, no plugin can stop it, declined, or a process survived
SIGKILL), 2 a bad target or option.
"""

from __future__ import annotations

import argparse
import math
import os
import sys

from progresskit.builtin.local_process import wait_for_stops
from progresskit.cli.options import EXIT_OK, EXIT_UNHEALTHY, EXIT_USAGE, check_option, print_error
from progresskit.engine.cancel import CancelRefused, cancel_run
from progresskit.engine.session import Tracking
from progresskit.errors import ProgresskitError
from progresskit.model.core import RunStatus
from progresskit.plugin.config import ensure
from progresskit.plugin.manager import PluginManager
from progresskit.server.settings import ServeSettings

__all__ = ["add_cancel_arguments", "run_cancel"]

# The server's default, read off its settings rather than repeated here.
DEFAULT_GRACE = ServeSettings(token="").grace_seconds


def add_cancel_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``progresskit cancel``."""
    parser.add_argument(
        "target",
        metavar="TARGET",
        help="a run directory, or a target a plugin resolves (a ComfyUI server URL with a "
        "prompt id, slurm:JOB)",
    )
    parser.add_argument(
        "-y",
        "--yes",
        action="store_true",
        help="do not ask for confirmation (required when standard input is no terminal)",
    )
    parser.add_argument(
        "--grace",
        type=float,
        default=DEFAULT_GRACE,
        metavar="SECONDS",
        help="time a local job gets to exit after SIGTERM before it is killed "
        f"(default: {DEFAULT_GRACE:g})",
    )
    parser.add_argument(
        "--all",
        action="store_true",
        help="cancel every active run TARGET stands for (without it TARGET must stand for one)",
    )


def _runs(tracking: Tracking, target: str) -> list[RunStatus]:
    """The runs ``target`` stands for: what a plugin resolves it to, else the one run in
    that directory (a root of runs is no target: each run is cancelled by name)."""
    resolved = tracking.resolve_target(target)
    if resolved is not None:
        return resolved
    if not os.path.isdir(target):
        what = "does not exist" if not os.path.exists(target) else "is not a directory"
        raise ProgresskitError(f"{target}: {what}, and no plugin resolves it as a target")
    try:
        return [tracking.status(target)]
    except ProgresskitError:
        below = tracking.find_runs(target)
        if not below:
            raise
        names = ", ".join(work_dir for work_dir, _type, _problem in below[:5])
        more = f" and {len(below) - 5} more" if len(below) > 5 else ""
        raise ProgresskitError(
            f"{target} is no run but a directory of {len(below)} runs ({names}{more}): "
            "cancel one by its directory"
        ) from None


def _describe(run: RunStatus) -> str:
    text = f"{run.work_dir} ({run.status.value}, {run.progress.runner_type}"
    info = run.process_info
    if info is not None:
        cmd = f": {info.cmd}" if info.cmd else ""
        host = f" on {info.host}" if info.host else ""
        text += f"; process {info.pid}{host}{cmd}"
    return text + ")"


def _confirmed(runs: list[RunStatus], grace: float) -> bool:
    """Ask on the terminal; ``True`` for an answer of y or yes."""
    listing = "\n".join(f"  {_describe(run)}" for run in runs)
    sys.stderr.write(
        f"Cancel {'this run' if len(runs) == 1 else f'these {len(runs)} runs'}?\n{listing}\n"
        f"A local job gets SIGTERM, then SIGKILL after {grace:g}s; another job is stopped "
        "by its plugin. [y/N] "
    )
    sys.stderr.flush()
    answer = sys.stdin.readline()
    return answer.strip().lower() in ("y", "yes")


def run_cancel(pm: PluginManager, args: argparse.Namespace) -> int:
    """``progresskit cancel``: the exit code."""
    check_option(
        "--grace", args.grace, lambda v: ensure(math.isfinite(v) and v >= 0, "must be >= 0 seconds")
    )
    tracking = Tracking(pm, config_path=args.config, options=args)
    runs = _runs(tracking, args.target)
    active = [run for run in runs if run.status.is_active]
    if not active:
        if not runs:
            print_error(f"{args.target}: no runs: nothing to cancel")
        for run in runs:
            print_error(f"run {run.work_dir} is {run.status.value}: nothing to cancel")
        return EXIT_UNHEALTHY
    if len(active) > 1 and not args.all:
        listing = "".join(f"\n  {_describe(run)}" for run in active)
        print_error(
            f"{args.target} stands for {len(active)} active runs; name one, or pass --all to "
            f"cancel all of them:{listing}"
        )
        return EXIT_USAGE
    if not args.yes:
        if not sys.stdin.isatty():
            print_error(
                "refusing to cancel without confirmation: standard input is no terminal; "
                "pass --yes"
            )
            return EXIT_USAGE
        if not _confirmed(active, args.grace):
            print_error("not cancelled")
            return EXIT_UNHEALTHY
    code = EXIT_OK
    for run in active:
        try:
            cancel_run(pm, run, args.grace)
        except CancelRefused as exc:
            print_error(str(exc))
            code = EXIT_UNHEALTHY
            continue
        print(f"cancel requested: {run.work_dir}", flush=True)
    for stop in wait_for_stops():
        ended, line = stop.described()
        if ended:
            print(line)
        else:
            print_error(line)
            code = EXIT_UNHEALTHY
    return code
