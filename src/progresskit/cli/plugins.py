"""List the loaded plugins: where each came from and what it provides."""

from __future__ import annotations

import argparse

from progresskit.cli.options import EXIT_OK, console
from progresskit.formats import jsonio
from progresskit.model.converter import unstructure
from progresskit.plugin.manager import PluginManager

__all__ = ["add_plugins_arguments", "run_plugins"]


def add_plugins_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``progresskit plugins``."""
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def run_plugins(pm: PluginManager, args: argparse.Namespace) -> int:
    """``progresskit plugins``: one row (or JSON object) per plugin, by name."""
    infos = pm.plugin_infos()
    if args.json:
        print(jsonio.dumps([unstructure(i) for i in infos], indent=2))
        return EXIT_OK
    from rich.table import Table

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
    console().print(table)
    return EXIT_OK
