"""The ``json_file`` sink: each run's progress (or full status) as a JSON file, atomically.

Its usual target is ``{work_dir}/progress.json``, seed 001's cache, which the trainer
tracker trusts only while it is newer than the epochs it summarises. A run whose
directory is read-only is skipped with one warning: a status query must still work there.
"""

from __future__ import annotations

import logging
import os
import string
from collections.abc import Mapping, Sequence
from typing import Any

from progresskit.formats.fileio import atomic_write_text, read_bytes
from progresskit.formats.jsonio import to_json
from progresskit.model.core import RunStatus
from progresskit.plugin.config import ConfigSchema, ensure
from progresskit.plugin.hookspec import hookimpl
from progresskit.plugin.sink import SinkType

log = logging.getLogger(__name__)

CONTENTS = ("progress", "status")
#: The fields a path template may name.
TEMPLATE_FIELDS = ("work_dir", "name")


class JsonFileSink:
    """Writes one JSON file per run, only when its content changed."""

    def __init__(self, options: Mapping[str, Any]):
        self.template: str = options["path"]
        self.contents: str = options["contents"]
        self._failed: set[str] = set()

    def path_for(self, run: RunStatus) -> str:
        return self.template.format(work_dir=run.work_dir, name=os.path.basename(run.work_dir))

    def emit(self, statuses: Sequence[RunStatus]) -> None:
        for run in statuses:
            path = self.path_for(run)
            text = to_json(run.progress if self.contents == "progress" else run, indent=2) + "\n"
            encoded = text.encode("utf-8")
            try:
                # The central reader: a FIFO or a huge file in the run dir is never read.
                if read_bytes(path, limit=len(encoded))[0] == encoded:
                    continue
            except OSError:
                pass
            try:
                atomic_write_text(path, text)
            except OSError as exc:
                if path not in self._failed:
                    self._failed.add(path)
                    log.warning("json_file sink: cannot write %s: %s", path, exc.strerror or exc)

    def close(self) -> None:
        """Nothing is buffered: every write is complete when emit returns."""


def _check_template(value: str) -> None:
    """A template :meth:`JsonFileSink.path_for` can fill for every run: plain
    ``{work_dir}``/``{name}`` fields only (no attribute, index, conversion or format spec)."""
    try:
        parts = [(f, spec, conv) for _text, f, spec, conv in string.Formatter().parse(value)]
    except ValueError as exc:  # a lone "{" or "}"
        raise ValueError(
            f"is not a valid template ({exc}); write {{{{ and }}}} for braces"
        ) from None
    fields = [f for f, _spec, _conv in parts if f is not None]
    known = ", ".join(f"{{{f}}}" for f in TEMPLATE_FIELDS)
    for field, spec, conv in parts:
        if field is None:
            continue
        ensure(field in TEMPLATE_FIELDS, f"unknown field {{{field}}} in {value!r} (known: {known})")
        ensure(not spec and conv is None, f"{{{field}}} takes no format spec or conversion")
    ensure(
        bool(set(fields) & set(TEMPLATE_FIELDS)),
        "must contain {work_dir} or {name}, or every run would overwrite the same file",
    )


def _options(schema: ConfigSchema) -> None:
    schema.add(
        "path",
        str,
        default="{work_dir}/progress.json",
        help="Where to write; {work_dir} and {name} (its last component) are replaced.",
        check=_check_template,
    )
    schema.add(
        "contents",
        str,
        default="progress",
        help="'progress' (the ProgressInfo, progress.json's shape) or 'status' (the RunStatus).",
        check=lambda v: ensure(v in CONTENTS, f"must be one of {', '.join(CONTENTS)}"),
    )


@hookimpl
def progresskit_sink_types() -> list[SinkType]:
    return [
        SinkType("json_file", "One JSON file per run, written atomically.", JsonFileSink, _options)
    ]
