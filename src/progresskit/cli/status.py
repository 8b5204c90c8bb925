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
from collections.abc import Mapping, Sequence
from typing import Any

from progresskit.builtin.runorder import display_name, relative_name, select_runs, sort_runs
from progresskit.cli.options import (
    EXIT_OK,
    EXIT_UNHEALTHY,
    EXIT_USAGE,
    Override,
    add_overrides,
    add_view_arguments,
    console,
    overrides,
    piped_width,
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
    "reasons_text",
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
    parser.add_argument(
        "--format",
        choices=("table", "tsv", "json"),
        default="table",
        help="table (default; fitted to the terminal, or to $COLUMNS or 160 columns when "
        "piped), tsv (one tab-separated line per run) or json (as --json)",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="every reason in full below the table"
    )
    add_view_arguments(parser)
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
    names: dict[str, str] = {}  # config -> the name shown: relative to its target
    for target in args.targets:
        try:
            found = tracking.runs_of(target, strict=True)
        except ProgresskitError as exc:
            invalid.append(str(exc))
            continue
        runs += found
        lost += found.unrecognised
        names.update((run.config, relative_name(run.config, target)) for run in found)
    _emit(sinks, runs)

    now = time.time()
    shown = _shown(runs, names, args, now)
    if args.json or args.format == "json":
        document = status_document(runs, now, lost, shown)
        document["errors"] = invalid
        print(jsonio.dumps(document, indent=2))
    elif args.format == "tsv":
        from progresskit.builtin.tsv import tsv_table

        sys.stdout.write(tsv_table(shown, now, names))
        for message in invalid:
            print_error(message)
    else:
        from progresskit.builtin.table import status_summary

        summary = status_summary(runs, len(lost))
        if len(shown) < len(runs):
            summary += f"; {len(shown)} shown"
        if shown:
            _print_table(shown, now, names, summary)
        elif runs:
            print(summary)
        elif not lost and not invalid:
            print("no runs")  # an empty root, an idle ComfyUI server: said, exit 0
        if args.verbose:
            sys.stdout.write(reasons_text(shown, names))
        if lost:
            sys.stdout.write(unrecognised_text(lost))
        for message in invalid:
            print_error(message)
    if invalid:
        return EXIT_USAGE
    healthy = all(run.status.is_healthy for run in runs) and not lost
    return EXIT_OK if healthy else EXIT_UNHEALTHY


def _shown(
    runs: Sequence[RunStatus], names: Mapping[str, str], args: argparse.Namespace, now: float
) -> list[RunStatus]:
    """The runs the options select, in their order: urgency by default, except in
    ``--json``, which keeps each target's path order unless ``--sort`` is given."""

    def name(run: RunStatus) -> str:
        return display_name(run, names)

    shown = select_runs(runs, args.status, active=args.active, name=name)
    as_json = args.json or args.format == "json"
    key = args.sort or (None if as_json else "urgency")
    if key is not None:
        shown = sort_runs(shown, key, now, name)
    return shown[: args.limit] if args.limit else shown


def _print_table(
    runs: Sequence[RunStatus], now: float, names: Mapping[str, str], summary: str
) -> None:
    from progresskit.builtin.table import plain_table, render_table

    # Piped, a plain table is written as rich would lay it out, without loading rich.
    text = plain_table(runs, now, piped_width(), names, summary) if plain_stdout() else None
    if text is None:
        render_table(runs, console(), now, names, summary)
    else:
        sys.stdout.write(text)


def reasons_text(runs: Sequence[RunStatus], names: Mapping[str, str]) -> str:
    """``--verbose``: each run's reason in full, every line of it, below the table (the
    table shows its first line)."""
    from progresskit.builtin.table import escape_text

    lines = []
    for run in runs:
        if not run.reason:
            continue
        first, *more = run.reason.strip().splitlines() or [""]
        lines.append(f"{escape_text(display_name(run, names))}: {escape_text(first)}")
        lines += [f"    {escape_text(line)}" for line in more]
    return "".join(f"{line}\n" for line in (["reasons:", *lines] if lines else []))


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
    shown: Sequence[RunStatus] | None = None,
) -> dict[str, Any]:
    """The stable machine format of ``progresskit status --json`` (docs/cli.md): the
    summary counts ``runs``; the document lists ``shown`` (what ``--status``, ``--active``,
    ``--sort`` and ``--limit`` select from them), all of ``runs`` when not given."""
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
            "shown": len(runs if shown is None else shown),
        },
        "runs": [unstructure(run) for run in (runs if shown is None else shown)],
        "unrecognised": [entry.document() for entry in unrecognised],
    }



def _emit(sinks: list[Sink], runs: list[RunStatus]) -> None:
    try:
        for sink in sinks:
            sink.emit(runs)
    finally:
        for sink in sinks:
            sink.close()
