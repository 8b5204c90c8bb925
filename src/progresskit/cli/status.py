"""Show the status of one run, or of every run found under each directory.

What each target stands for is the engine's rule (:meth:`Tracking.runs_of
<progresskit.engine.session.Tracking.runs_of>`); this module reads the options, hands the
runs to the configured sinks and prints them: a table, or the ``--json`` document.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from progresskit.cli.options import (
    EXIT_OK,
    EXIT_UNHEALTHY,
    EXIT_USAGE,
    PIPED_WIDTH,
    Override,
    add_overrides,
    console,
    overrides,
    plain_stdout,
    print_error,
)
from progresskit.engine.session import Tracking
from progresskit.errors import ProgresskitError
from progresskit.formats import jsonio
from progresskit.model.core import RunStatus
from progresskit.model.unclaimed import Unrecognised
from progresskit.plugin.manager import PluginManager
from progresskit.plugin.sink import Sink, build_sinks

__all__ = [
    "OVERRIDES",
    "add_status_arguments",
    "run_status",
    "status_document",
    "unrecognised_text",
]

OVERRIDES = (
    Override(
        "--sleep-time", "sleep_time", "silence after which a run is no longer running"
    ),
    Override(
        "--outdated-days",
        "outdated_days",
        "age after which finished outputs are outdated",
        metavar="DAYS",
    ),
)


def add_status_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``progresskit status``."""
    parser.add_argument("targets", nargs="+", metavar="WORK_DIR", help="a run or a root of runs")
    parser.add_argument("--json", action="store_true", help="machine-readable output (docs/cli.md)")
    add_overrides(parser, OVERRIDES)


def run_status(pm: PluginManager, args: argparse.Namespace) -> int:
    """``progresskit status``: every target's runs, to the sinks and printed; the exit code."""
    tracking = Tracking(
        pm,
        config_path=args.config,
        overrides=overrides(pm, args, OVERRIDES),
        options=args,
        record_history=True,
    )
    # Sinks come from the config in force where the command runs; built before any run is
    # read so that a bad sink entry fails at once, not after a long scan.
    here = os.getcwd()
    config = tracking.config_for(here)
    sinks = build_sinks(config.get("sinks") or [], pm.sink_types, tracking.config_origin(here))

    runs: list[RunStatus] = []
    lost: list[Unrecognised] = []
    invalid: list[str] = []
    for target in args.targets:
        try:
            found = tracking.runs_of(target, strict=True)
        except ProgresskitError as exc:
            invalid.append(str(exc))
            continue
        runs += found
        lost += found.unrecognised
    _emit(sinks, runs)

    now = time.time()
    if args.json:
        document = status_document(runs, now, lost)
        document["errors"] = invalid
        print(jsonio.dumps(document, indent=2))
    else:
        if runs:
            from progresskit.builtin.table import plain_table, render_table

            # Piped, a plain table is written as rich would lay it out, without loading rich.
            text = plain_table(runs, now, PIPED_WIDTH) if plain_stdout() else None
            if text is None:
                render_table(runs, console(), now)
            else:
                sys.stdout.write(text)
        if lost:
            sys.stdout.write(unrecognised_text(lost))
        for message in invalid:
            print_error(message)
    if invalid:
        return EXIT_USAGE
    healthy = all(run.status.is_healthy for run in runs) and not lost
    return EXIT_OK if healthy else EXIT_UNHEALTHY


def unrecognised_text(lost: Sequence[Unrecognised]) -> str:
    """The table's section for run-like directories no tracker claims, with what the
    loaded trackers expect (once: it is the same list for every entry)."""
    lines = [f"{len(lost)} unrecognised (run-like, claimed by no tracker):"]
    from progresskit.builtin.table import escape_text  # names from disk reach a terminal

    lines += [f"  {escape_text(entry.path)}: {escape_text(entry.reason)}" for entry in lost]
    lines.append("  the loaded trackers expect:")
    lines += [f"    - {expected}" for expected in lost[0].expects]
    return "\n".join(lines) + "\n"


def status_document(
    runs: Sequence[RunStatus],
    now: float | None = None,
    unrecognised: Sequence[Unrecognised] = (),
) -> dict[str, Any]:
    """The stable machine format of ``progresskit status --json`` (docs/cli.md)."""
    # The converter loads cattrs, which the table does not need.
    from progresskit.model.converter import JSON_FORMAT_VERSION, unstructure

    counts = Counter(run.status.value for run in runs)
    return {
        "format": "progresskit.status",
        "version": JSON_FORMAT_VERSION,
        "generated_at": now or time.time(),
        "summary": {
            "total": len(runs),
            "by_status": dict(sorted(counts.items())),
            "unrecognised": len(unrecognised),
        },
        "runs": [unstructure(run) for run in runs],
        "unrecognised": [entry.document() for entry in unrecognised],
    }



def _emit(sinks: list[Sink], runs: list[RunStatus]) -> None:
    try:
        for sink in sinks:
            sink.emit(runs)
    finally:
        for sink in sinks:
            sink.close()
