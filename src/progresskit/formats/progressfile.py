"""progresskit's generic status file, ``progresskit-progress.json``: its name, fields and states.

Written by :func:`progresskit.track` and :class:`progresskit.Progress`
(:mod:`progresskit.producer.track`) for any loop; read by the builtin ``progress`` tracker
(:mod:`progresskit.builtin.progressfile`). Unlike Brush's ``training_status.json``
(:mod:`progresskit.formats.statusfile`) it carries any numeric metrics and nested loops.
This module is the one home of its field names; docs/producers.md has the field table.
"""

from __future__ import annotations

import math

__all__ = [
    "FINAL_STATES",
    "LEVEL_FIELDS",
    "PROGRESS_FIELDS",
    "PROGRESS_FILENAME",
    "PROGRESS_FORMAT",
    "PROGRESS_STATES",
    "PROGRESS_VERSION",
    "UPDATE_TIMES_KEPT",
    "update_times_of",
]

#: The file's name inside the run directory.
PROGRESS_FILENAME = "progresskit-progress.json"
#: The value of the ``format`` field, which tells this document from any other JSON file.
PROGRESS_FORMAT = "progresskit.progress"
#: 2 added ``update_times``; a reader takes version 1 documents as they are (no times).
PROGRESS_VERSION = 2
#: Writes whose times ``update_times`` keeps: enough gaps for the rhythm rule
#: (engine/rhythm.py needs 5 times, and its 90% quantile more), a few hundred bytes.
UPDATE_TIMES_KEPT = 32
#: ``running`` while the loop runs; how it ended otherwise (the lease's words, without
#: ``exited``: a document is closed only by the code that ran the loop).
PROGRESS_STATES = ("running", "finished", "failed", "cancelled")
FINAL_STATES = PROGRESS_STATES[1:]
#: Every field, in the order written.
PROGRESS_FIELDS = (
    "format",
    "version",
    "state",
    "desc",  # the outermost loop's description, or null
    "steps",  # the outermost loop's steps done (an integer >= 0)
    "total",  # its total, or null when unknown
    "unit",  # what a step is ("it", "batch", "sample"), tqdm's unit
    "fraction",  # of the whole run done, nested loops included, in [0, 1], or null
    "stage",  # what the run is doing now: stage(name), else the innermost loop's desc
    "levels",  # the open loops, outermost first: [{"desc", "steps", "total"}]
    "metrics",  # {name: number} set with set(**metrics)
    "rate",  # outermost steps per second since the first step, or null
    "eta_seconds",  # the writer's own remaining-time estimate, or null
    "started_at",  # Unix time the run started
    "updated_at",  # Unix time of this write
    "update_times",  # Unix times of the last UPDATE_TIMES_KEPT writes, this one last
    "ended_at",  # Unix time the run ended, or null
    "error",  # how a failed or cancelled run ended ("ValueError: bad batch"), or null
)
#: The fields of one entry of ``levels``.
LEVEL_FIELDS = ("desc", "steps", "total")


def update_times_of(value: object) -> tuple[float, ...] | None:
    """A document's ``update_times`` as Unix times, or ``None`` when it is not a list of
    finite numbers (the reader says so and uses the document's other fields)."""
    if not isinstance(value, list):
        return None
    times = tuple(
        float(v)
        for v in value
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    )
    return times if len(times) == len(value) else None
