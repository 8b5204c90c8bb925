"""The ``progresskit`` command: builds the parser and runs one command.

The command ``NAME`` is the module ``progresskit.cli.NAME`` (``status``, ``plugins``,
``listen``, ``watch``, ``serve``, ``cancel``), with ``add_NAME_arguments(parser)`` and
``run_NAME(pm, args)`` returning the exit code (``run_NAME(args)`` for a command that
reads no run, hence loads no plugin). Only the module of the command being run is
imported, so each command pays for what it uses and ``progresskit --version`` for nothing.

Exit codes (docs/cli.md): 0 every run is healthy (pending, running, finished, outdated,
cancelled); 1 at least one run is stuck, crashed, failed or unreadable; 2 the command
itself could not do its job (bad option, config or plugin; a target that does not exist
or that no single tracker claims). ``cancel`` has its own (docs/cancel.md).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from progresskit import __version__
from progresskit.errors import ProgresskitError

if TYPE_CHECKING:
    from pathlib import Path

    from progresskit.plugin.manager import PluginManager

__all__ = ["COMMANDS", "Command", "main"]

#: What a shell reports for a command killed by SIGPIPE (128 + 13).
EXIT_BROKEN_PIPE = 141


class Command:
    """A command's entry in the parser."""

    __slots__ = ("help", "plugin_options", "plugins")

    def __init__(self, help: str, *, plugins: bool = True, plugin_options: bool = False):
        #: The one line ``progresskit --help`` shows.
        self.help = help
        #: Whether it reads runs, hence loads the plugins.
        self.plugins = plugins
        #: Whether the plugins' options (``progresskit_addoption``) are among its options.
        self.plugin_options = plugin_options


#: Every command, in ``progresskit --help`` order.
COMMANDS: dict[str, Command] = {
    "status": Command(
        "status of one run, or of every run under a directory", plugin_options=True
    ),
    "plugins": Command("list loaded plugins and what they provide"),
    "listen": Command(
        "receive emitters' events on a Unix socket, append them to an event file",
        plugins=False,
    ),
    "watch": Command(
        "watch every run under a directory; report each change to the configured sinks",
        plugin_options=True,
    ),
    "serve": Command(
        "serve an HTTP API, a live WebSocket stream and a dashboard of the runs under ROOT",
        plugin_options=True,
    ),
    "cancel": Command(
        "stop a run's job, once it is proven to be the run's (asks first on a terminal)",
        plugin_options=True,
    ),
}


def _path(text: str) -> Path:
    # pathlib is imported when --config is given, not by every command.
    from pathlib import Path

    return Path(text)


def _add_global_options(parser: argparse.ArgumentParser, default: object) -> None:
    """``-p no:NAME`` and ``--config FILE``, accepted before the command and after it
    (``default`` is ``argparse.SUPPRESS`` on a command, so it keeps what came before)."""
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
        type=_path,
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


def _parser(command: str | None, pm: PluginManager | None) -> argparse.ArgumentParser:
    """The full parser. Only ``command``'s own arguments are added (it is the only one that
    can be parsed); the other commands are listed by name and help."""
    parser = _base_parser()
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, entry in COMMANDS.items():
        sub = commands.add_parser(name, help=entry.help)
        _add_global_options(sub, argparse.SUPPRESS)
        if name != command:
            continue
        module = importlib.import_module(f"progresskit.cli.{name}")
        # The command's description is the first paragraph of its module's docstring.
        sub.description = (module.__doc__ or "").split("\n\n")[0] or None
        getattr(module, f"add_{name}_arguments")(sub)
        if entry.plugin_options and pm is not None:
            pm.hooks.addoption(sub.add_argument_group("plugin options"))
    return parser


def _command(rest: Sequence[str]) -> str | None:
    """The command named in what the global options left: its first word, if a command."""
    first = next((word for word in rest if not word.startswith("-")), None)
    return first if first in COMMANDS else None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    # Without -h: `progresskit COMMAND --help` is the full parser's to answer. `--version`
    # is answered here, before anything else is imported.
    early, rest = _base_parser(add_help=False).parse_known_args(args_list)
    import logging

    from progresskit.cli.options import EXIT_USAGE, disabled_plugins, print_error
    from progresskit.plugin.manager import get_plugin_manager

    logging.basicConfig(level=logging.WARNING, format="progresskit: %(levelname)s: %(message)s")
    try:
        command = _command(rest)
        pm = None
        if command is not None and COMMANDS[command].plugins:
            flags = early.plugin_flags or []
            pm = get_plugin_manager(disabled=disabled_plugins(flags, early.config))
        args = _parser(command, pm).parse_args(args_list)
        module = importlib.import_module(f"progresskit.cli.{args.command}")
        run = getattr(module, f"run_{args.command}")
        code: int = run(args) if pm is None else run(pm, args)
        return code
    except ProgresskitError as exc:
        print_error(str(exc))
        return EXIT_USAGE
    except BrokenPipeError:
        # The reader (`| head`) left: say nothing more, and keep Python from complaining
        # about the unflushable stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
