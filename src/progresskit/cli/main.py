"""The ``progresskit`` command.

Exit codes (docs/cli.md): 0 every run is healthy (pending, running, finished, outdated,
cancelled); 1 at least one run is stuck, crashed, failed or unreadable; 2 the command
itself could not do its job (bad option, config or plugin; a target that does not exist
or that no single tracker claims).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from progresskit import __version__
from progresskit.cli.listen import add_listen_arguments, run_listen
from progresskit.cli.render import render_table, status_document
from progresskit.cli.watch import add_watch_arguments, run_watch
from progresskit.engine.session import Tracking
from progresskit.errors import ConfigError, NoTrackerError, ProgresskitError
from progresskit.model.converter import unstructure
from progresskit.model.core import RunStatus
from progresskit.plugin.config import find_config_file, load_yaml
from progresskit.plugin.manager import PluginManager, get_plugin_manager
from progresskit.plugin.sink import Sink, build_sinks
from progresskit.server.command import add_serve_arguments, run_serve

EXIT_OK, EXIT_UNHEALTHY, EXIT_USAGE = 0, 1, 2
#: What a shell reports for a command killed by SIGPIPE (128 + 13).
EXIT_BROKEN_PIPE = 141


def _add_global_options(parser: argparse.ArgumentParser, default: Any) -> None:
    parser.add_argument(
        "-p",
        dest="plugin_flags",
        action="append",
        default=default,
        metavar="no:NAME",
        help="disable the plugin NAME (like pytest's -p no:NAME); repeatable",
    )
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        default=default,
        help="config file for every run (default: the nearest progresskit.yaml of each run)",
    )


def _base_parser(add_help: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="progresskit",
        description="How far along are your jobs, are they healthy, when will they finish.",
        add_help=add_help,
    )
    parser.add_argument("--version", action="version", version=f"progresskit {__version__}")
    _add_global_options(parser, None)
    return parser


def _full_parser(pm: PluginManager) -> argparse.ArgumentParser:
    parser = _base_parser()
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    status = commands.add_parser(
        "status",
        help="status of one run, or of every run under a directory",
        description="Show the status of one run, or of every run found under each directory.",
    )
    _add_global_options(status, argparse.SUPPRESS)
    status.add_argument("targets", nargs="+", metavar="WORK_DIR", help="a run or a root of runs")
    status.add_argument("--json", action="store_true", help="machine-readable output (docs/cli.md)")
    status.add_argument(
        "--sleep-time",
        type=float,
        metavar="SECONDS",
        help="silence after which a run is no longer running (config: sleep_time)",
    )
    status.add_argument(
        "--outdated-days",
        type=float,
        metavar="DAYS",
        help="age after which finished outputs are outdated (config: outdated_days)",
    )
    group = status.add_argument_group("plugin options")
    pm.hook.progresskit_addoption(parser=group)

    plugins = commands.add_parser("plugins", help="list loaded plugins and what they provide")
    _add_global_options(plugins, argparse.SUPPRESS)
    plugins.add_argument("--json", action="store_true", help="machine-readable output")

    listen = commands.add_parser(
        "listen", help="receive emitters' events on a Unix socket, append them to an event file"
    )
    _add_global_options(listen, argparse.SUPPRESS)
    add_listen_arguments(listen)

    watch = commands.add_parser(
        "watch",
        help="watch every run under a directory; report each change to the configured sinks",
        description="Watch the runs under ROOT (new ones included) until Ctrl-C or SIGTERM: "
        "a live table on a terminal, JSON lines otherwise (docs/watch.md).",
    )
    _add_global_options(watch, argparse.SUPPRESS)
    add_watch_arguments(watch)
    pm.hook.progresskit_addoption(parser=watch.add_argument_group("plugin options"))

    serve = commands.add_parser(
        "serve",
        help="serve an HTTP API, a live WebSocket stream and a dashboard of the runs under ROOT",
        description="Serve the runs under ROOT until Ctrl-C or SIGTERM: JSON API, WebSocket "
        "stream, Prometheus metrics and a dashboard (docs/serve.md). Needs the 'server' extra.",
    )
    _add_global_options(serve, argparse.SUPPRESS)
    add_serve_arguments(serve)
    pm.hook.progresskit_addoption(parser=serve.add_argument_group("plugin options"))
    return parser


def _console() -> Console:
    console = Console()
    # Piped output is read by people too (CI logs, `| less`): don't fold rows at 80 columns.
    return console if console.is_terminal else Console(width=160)


def _disabled(flags: Sequence[str], config_file: Path | None) -> list[str]:
    names = []
    for flag in flags:
        if not flag.startswith("no:") or len(flag) == 3:
            raise ConfigError(f"-p {flag}: expected -p no:NAME to disable the plugin NAME")
        names.append(flag[3:])
    source = config_file or find_config_file(Path.cwd())
    if source is not None:
        listed = load_yaml(source).get("disable_plugins") or []
        if not isinstance(listed, list):
            raise ConfigError(f"{source}: key 'disable_plugins' expects a list of plugin names")
        names += [str(n) for n in listed]
    return names


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    logging.basicConfig(level=logging.WARNING, format="progresskit: %(levelname)s: %(message)s")
    args_list = list(sys.argv[1:] if argv is None else argv)
    err = Console(stderr=True, highlight=False)
    try:
        # Without -h: `progresskit COMMAND --help` is the full parser's to answer.
        early, _ = _base_parser(add_help=False).parse_known_args(args_list)
        pm = get_plugin_manager(disabled=_disabled(early.plugin_flags or [], early.config))
        args = _full_parser(pm).parse_args(args_list)
        if args.command == "plugins":
            return _plugins(pm, args)
        if args.command == "listen":
            return run_listen(args)
        if args.command == "watch":
            return run_watch(pm, args)
        if args.command == "serve":
            return run_serve(pm, args)
        return _status(pm, args)
    except ProgresskitError as exc:
        err.print(f"[bold red]error:[/] {exc}", markup=True, highlight=False, soft_wrap=True)
        return EXIT_USAGE
    except BrokenPipeError:
        # The reader (`| head`) left: say nothing more, and keep Python from complaining
        # about the unflushable stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


def _plugins(pm: PluginManager, args: argparse.Namespace) -> int:
    infos = pm.plugin_infos()
    if args.json:
        print(json.dumps([unstructure(i) for i in infos], indent=2))
        return EXIT_OK
    table = Table(show_edge=False, pad_edge=False)
    for column in ("plugin", "from", "runner types", "sinks", "hooks"):
        table.add_column(column, overflow="fold")
    for info in infos:
        origin = info.origin
        if info.distribution:
            origin += f" ({info.distribution} {info.version})"
        table.add_row(
            info.name,
            origin,
            ", ".join(info.runner_types),
            ", ".join(info.sink_types),
            ", ".join(h.removeprefix("progresskit_") for h in info.hooks),
        )
    _console().print(table)
    return EXIT_OK


def _status(pm: PluginManager, args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {}
    if args.sleep_time is not None:
        overrides["sleep_time"] = args.sleep_time
    if args.outdated_days is not None:
        overrides["outdated_days"] = args.outdated_days
    tracking = Tracking(pm, config_path=args.config, overrides=overrides, options=args)
    # Sinks come from the config in force where the command runs; built before any run is
    # read so that a bad sink entry fails at once, not after a long scan.
    config = tracking.config_for(str(Path.cwd()))
    sinks = build_sinks(config.get("sinks") or [], pm.sink_types, _config_origin(args.config))

    runs: list[RunStatus] = []
    invalid: list[str] = []
    for target in args.targets:
        try:
            runs += _runs_of(tracking, target)
        except ProgresskitError as exc:
            invalid.append(str(exc))
    _emit(sinks, runs)

    now = time.time()
    if args.json:
        document = status_document(runs, now)
        document["errors"] = invalid
        print(json.dumps(document, indent=2, allow_nan=False))
    else:
        if runs:
            render_table(runs, _console(), now)
        err = Console(stderr=True, highlight=False)
        for message in invalid:
            err.print(
                f"[bold red]error:[/] {message}", markup=True, highlight=False, soft_wrap=True
            )
    if invalid:
        return EXIT_USAGE
    return EXIT_OK if all(run.status.is_healthy for run in runs) else EXIT_UNHEALTHY


def _config_origin(path: Path | None) -> str:
    if path is not None:
        return str(path)
    found = find_config_file(Path.cwd())
    return str(found) if found else "config"


def _runs_of(tracking: Tracking, target: str) -> list[RunStatus]:
    """One run if a tracker claims ``target`` by its files; else every run below it; else
    one run if its config alone identifies it; else the detection error. A plugin may
    claim a target that is not a directory first (progresskit_resolve_target)."""
    resolved = tracking.pm.hook.progresskit_resolve_target(
        target=target, config=tracking.config_for(str(Path.cwd()))
    )
    if resolved is not None:
        return list(resolved)
    try:
        tracking.tracker_for(target, allow_config=False)
    except NoTrackerError:
        pass
    else:
        return [tracking.status(target)]
    runs = tracking.scan(target)
    if runs:
        return runs
    return [tracking.status(target)]


def _emit(sinks: list[Sink], runs: list[RunStatus]) -> None:
    try:
        for sink in sinks:
            sink.emit(runs)
    finally:
        for sink in sinks:
            sink.close()
