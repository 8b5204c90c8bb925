"""The ``json_file`` sink: each run's progress (or full status) as a JSON file, atomically.

Its usual target is ``{work_dir}/progress.json``, seed 001's cache, which the trainer
tracker trusts only while it is newer than the epochs it summarises. A run whose
directory is read-only is skipped with one warning: a status query must still work there.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

from progresskit.formats.fileio import atomic_write_text
from progresskit.formats.jsonio import to_json
from progresskit.model.core import RunStatus
from progresskit.plugin.config import ConfigSchema, ensure
from progresskit.plugin.hookspec import hookimpl
from progresskit.plugin.sink import SinkType

log = logging.getLogger(__name__)

CONTENTS = ("progress", "status")


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
            try:
                with open(path, encoding="utf-8") as fh:
                    if fh.read() == text:
                        continue
            except (OSError, UnicodeDecodeError):
                pass
            try:
                atomic_write_text(path, text)
            except OSError as exc:
                if path not in self._failed:
                    self._failed.add(path)
                    log.warning("json_file sink: cannot write %s: %s", path, exc.strerror or exc)

    def close(self) -> None:
        """Nothing is buffered: every write is complete when emit returns."""


def _options(schema: ConfigSchema) -> None:
    schema.add(
        "path",
        str,
        default="{work_dir}/progress.json",
        help="Where to write; {work_dir} and {name} (its last component) are replaced.",
        check=lambda v: ensure(
            "{work_dir}" in v or "{name}" in v,
            "must contain {work_dir} or {name}, or every run would overwrite the same file",
        ),
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
