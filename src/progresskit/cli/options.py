"""What the commands share: exit codes, the plugins the command line disables, the one
path by which a command-line option overrides a config key, and the consoles (rich is
loaded only when something is printed through them).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from progresskit.builtin.runorder import SORT_KEYS, parse_statuses
from progresskit.errors import ConfigError
from progresskit.model.core import Status
from progresskit.plugin.config import config_file, load_yaml

if TYPE_CHECKING:
    from rich.console import Console

    from progresskit.plugin.manager import PluginManager

__all__ = [
    "EXIT_OK",
    "EXIT_UNHEALTHY",
    "EXIT_USAGE",
    "PIPED_WIDTH",
    "Override",
    "add_overrides",
    "add_view_arguments",
    "check_option",
    "console",
    "disabled_plugins",
    "overrides",
    "piped_width",
    "plain_stdout",
    "print_error",
]

EXIT_OK, EXIT_UNHEALTHY, EXIT_USAGE = 0, 1, 2
#: The width of what is printed to a pipe or a file, unless ``$COLUMNS`` says otherwise.
PIPED_WIDTH = 160


def piped_width() -> int:
    """The width of what is printed to a pipe or a file: ``$COLUMNS`` when it is a whole
    number >= 20 (``COLUMNS=100 progresskit status runs > table.txt``), else
    :data:`PIPED_WIDTH`: piped output is read by people too (CI logs, ``| less``), and 80
    columns would drop most of the table."""
    text = os.environ.get("COLUMNS", "")
    return int(text) if text.isdigit() and int(text) >= 20 else PIPED_WIDTH


def _statuses(text: str) -> frozenset[Status]:
    try:
        return parse_statuses(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return int(text)


def add_view_arguments(parser: argparse.ArgumentParser, *, limit: bool = True) -> None:
    """Which runs a view shows, and in which order: ``--status``, ``--active``, ``--sort``
    and (``limit``) ``--limit`` (docs/cli.md)."""
    parser.add_argument(
        "--status",
        type=_statuses,
        metavar="LIST",
        help="only runs in these statuses, comma-separated (crashed,failed,stuck)",
    )
    parser.add_argument(
        "--active", action="store_true", help="only active runs (pending, running, stuck)"
    )
    parser.add_argument(
        "--sort",
        choices=SORT_KEYS,
        help="row order (default: urgency: crashed, failed, stuck, unknown, running by ETA, "
        "pending, cancelled, finished, outdated)",
    )
    if limit:
        parser.add_argument(
            "--limit", type=_positive, metavar="N", help="at most N runs, after sorting"
        )


def disabled_plugins(flags: Sequence[str], explicit: Path | None) -> list[str]:
    """The plugin names not to load: each ``-p no:NAME``, then ``disable_plugins`` of the
    config file in force in the current directory.

    :raises ConfigError: for a ``-p`` flag that is not ``no:NAME``, or a
        ``disable_plugins`` that is not a list.
    """
    names = []
    for flag in flags:
        if not flag.startswith("no:") or len(flag) == 3:
            raise ConfigError(f"-p {flag}: expected -p no:NAME to disable the plugin NAME")
        names.append(flag[3:])
    source = config_file(os.getcwd(), explicit)
    if source is not None:
        listed = load_yaml(source).get("disable_plugins") or []
        if not isinstance(listed, list):
            raise ConfigError(f"{source}: key 'disable_plugins' expects a list of plugin names")
        names += [str(n) for n in listed]
    return names


@attrs.frozen
class Override:
    """A command-line option that overrides a config key (``--sleep-time`` -> ``sleep_time``)."""

    flag: str
    key: str
    help: str
    #: Turns the option's text into the value the key takes.
    parse: Callable[[str], Any] = float
    metavar: str | None = "SECONDS"
    choices: tuple[str, ...] | None = None

    @property
    def dest(self) -> str:
        return self.flag.removeprefix("--").replace("-", "_")


def add_overrides(parser: argparse.ArgumentParser, options: Sequence[Override]) -> None:
    """Add each of ``options`` to ``parser``; its help names the config key it overrides."""
    for option in options:
        parser.add_argument(
            option.flag,
            dest=option.dest,
            type=option.parse,
            choices=option.choices,
            metavar=None if option.choices else option.metavar,
            help=f"{option.help} (config: {option.key})",
        )


def overrides(
    pm: PluginManager, args: argparse.Namespace, options: Sequence[Override]
) -> dict[str, Any]:
    """Config key -> value of each of ``options`` given on the command line, each checked
    by the config schema exactly as the key it overrides is in a file.

    :raises ConfigError: naming the option, for a value its key refuses (``--sleep-time -5``).
    """
    values: dict[str, Any] = {}
    for option in options:
        value = getattr(args, option.dest, None)
        if value is not None:
            pm.schema.validate({option.key: value}, option.flag)
            values[option.key] = value
    return values


def check_option(flag: str, value: Any, check: Callable[[Any], None]) -> None:
    """Check the value of an option that is no config key (``--grace``) as a config key's
    ``check`` is run: ``check`` raises ``ValueError`` with the reason.

    :raises ConfigError: ``"FLAG: reason"``.
    """
    try:
        check(value)
    except ValueError as exc:
        raise ConfigError(f"{flag}: {exc}, got {value!r}") from None


def console() -> Console:
    """The console for standard output."""
    from rich.console import Console

    out = Console()
    # Piped output is read by people too (CI logs, `| less`): don't fold rows at 80 columns.
    return out if out.is_terminal else Console(width=piped_width())


def plain_stdout() -> bool:
    """Whether :func:`console` would print to no terminal, without colour, in UTF-8, so that
    text laid out as rich lays it out may be written to standard output as it is (rich's
    own test, :attr:`rich.console.Console.is_terminal`, needs rich: this one does not, and
    says False whenever the environment asks rich for anything else)."""
    if sys.platform == "win32" or "FORCE_COLOR" in os.environ:
        return False
    if os.environ.get("TTY_COMPATIBLE") == "1":
        return False
    stdout = sys.stdout
    try:
        if stdout is None or stdout.isatty():
            return False
    except ValueError:  # closed
        return False
    encoding = (getattr(stdout, "encoding", None) or "").lower().replace("-", "")
    return encoding == "utf8"


def print_error(message: str) -> None:
    """``error: message`` on standard error (in red on a terminal)."""
    from rich.console import Console
    from rich.text import Text

    err = Console(stderr=True, highlight=False)
    # A Text, not markup: a message holding "[...]" (a listing, a path) prints as it is.
    err.print(Text.assemble(("error:", "bold red"), " ", message), soft_wrap=True)
