"""Brush's ``training_status.json`` (seed 000): its name, fields, statuses and timestamps.

Written by Brush's ``--save-status`` and by
:class:`~progresskit.producer.statusfile.StatusFileWriter`; read by the ``progresskit-brush``
plugin. Public for plugins: a reader of this document takes its vocabulary from here
(docs/brush.md has the field table).
"""

from __future__ import annotations

import re
import time

# ``update_times``: the same bound and reading as the progress file's, for the same rule.
from progresskit.formats.progressfile import UPDATE_TIMES_KEPT, update_times_of

__all__ = [
    "COMPLETED",
    "DEFAULT_STATUS_FILENAME",
    "ERROR",
    "LIVE_STATUSES",
    "STATUS_FIELDS",
    "STATUS_VALUES",
    "UPDATE_TIMES_KEPT",
    "format_timestamp",
    "parse_timestamp",
    "update_times_of",
]

#: Brush's default ``--status-filename``.
DEFAULT_STATUS_FILENAME = "training_status.json"
#: The statuses of a live process; each is also the phase it is in.
LIVE_STATUSES = ("starting", "training", "evaluating", "exporting")
#: The two final statuses.
COMPLETED, ERROR = "completed", "error"
#: Brush's six ``status`` values, in the order a run meets them (the ``brush`` entry of
#: :data:`progresskit.model.vocabulary.SOURCE_VOCABULARIES` maps each; a test checks they agree).
STATUS_VALUES = (*LIVE_STATUSES, COMPLETED, ERROR)
#: The seed's fields in the seed's order, then the two progresskit adds: the reason for
#: ``error``, which Brush lists as not implemented, and the times of the last writes
#: (:class:`~progresskit.producer.statusfile.StatusFileWriter` writes them, Brush does not;
#: the seed's readers take the fields they know and ignore others).
STATUS_FIELDS = (
    "current_iteration",
    "total_iterations",
    "progress_percentage",
    "elapsed_time_seconds",
    "estimated_remaining_seconds",
    "current_splat_count",
    "last_eval_psnr",
    "last_eval_ssim",
    "export_path",
    "current_export_file",
    "status",
    "last_updated",
    "error_message",
    "update_times",
)

_TIMESTAMP = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
    r"(?:[Zz]|([+-])(\d{2}):?(\d{2}))?"
)


def format_timestamp(unix_time: float) -> str:
    """``unix_time`` as Brush writes ``last_updated``: UTC, whole seconds, ``Z`` suffix."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(unix_time))


def parse_timestamp(text: str) -> float:
    """An ISO-8601 / RFC 3339 date-time as Unix time.

    Accepts what Rust's chrono and Python write: a ``Z`` or ``+HH:MM`` offset, and any
    number of fractional digits (chrono writes nanoseconds, which Python 3.10's
    ``fromisoformat`` refuses). A time without an offset is taken as UTC, Brush's zone.
    Raises ``ValueError`` saying what was expected.
    """
    import datetime as dt  # a reader's need: the writer, in a training job, never parses

    match = _TIMESTAMP.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"expected an ISO-8601 date-time like 2025-06-28T09:34:56Z, got {text!r}")
    year, month, day, hour, minute, second, fraction, sign, off_h, off_m = match.groups()
    offset = dt.timedelta(0)
    if sign is not None:
        offset = dt.timedelta(hours=int(off_h), minutes=int(off_m))
        offset = -offset if sign == "-" else offset
    try:
        moment = dt.datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second),
            tzinfo=dt.timezone(offset),
        )
    except ValueError as exc:
        raise ValueError(f"invalid date-time {text!r}: {exc}") from exc
    return moment.timestamp() + (float(f"0.{fraction}") if fraction else 0.0)
