"""The ``stdout`` sink: a table for people or JSON lines for programs."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any

from progresskit.formats.jsonio import to_json
from progresskit.model.core import RunStatus
from progresskit.plugin.config import ConfigSchema, ensure
from progresskit.plugin.hookspec import hookimpl
from progresskit.plugin.sink import SinkType

FORMATS = ("table", "jsonl")


class StdoutSink:
    """Writes every query's statuses to standard output."""

    def __init__(self, options: Mapping[str, Any]):
        self.format = options["format"]

    def emit(self, statuses: Sequence[RunStatus]) -> None:
        if self.format == "jsonl":
            for run in statuses:
                sys.stdout.write(to_json(run) + "\n")
            sys.stdout.flush()
        else:
            # rich is loaded by the table's first print, not by every command that loads
            # the plugins.
            from rich.console import Console

            from progresskit.builtin.table import render_table

            render_table(statuses, Console())

    def close(self) -> None:
        sys.stdout.flush()


def _options(schema: ConfigSchema) -> None:
    schema.add(
        "format",
        str,
        default="table",
        help="'table' for people, 'jsonl' for programs.",
        check=lambda v: ensure(v in FORMATS, f"must be one of {', '.join(FORMATS)}"),
    )


@hookimpl
def progresskit_sink_types() -> list[SinkType]:
    return [SinkType("stdout", "Print statuses: a table or JSON lines.", StdoutSink, _options)]
