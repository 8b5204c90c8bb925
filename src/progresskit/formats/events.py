"""The FoxML training event log (seed 002): one JSON object per line.

Every place that writes or reads these events takes their shape from here: the emitter
(:mod:`progresskit.producer.emitter`), the ``multi_stage`` tracker that folds a log
(:mod:`progresskit.builtin.multistage`), ``progresskit listen`` (the destinations' environment
variables) and the server's ``/ws/training`` stream
(:mod:`progresskit.server.channels.training`).

Wire format (docs/multistage.md): UTF-8 JSON, one object per ``\\n``-terminated line, holding
the event's own fields in the order of its builder below, then ``run_id``, then
``timestamp`` (ISO-8601 with a UTC offset), exactly as the seed's ``TrainingEventEmitter``
writes them, so that logs written by either are read by the same tracker.
"""

from __future__ import annotations

from collections.abc import Mapping

from progresskit.formats.jsonio import dumps

TYPE_CHECKING = False  # typing's, without importing typing: see progresskit/__init__.py
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "DEFAULT_EVENT_FILE",
    "ENV_EVENT_FILE",
    "ENV_EVENT_SOCKET",
    "EVENT_TYPES",
    "RUN_OUTCOMES",
    "SEED_ENV_EVENT_FILE",
    "SEED_ENV_EVENT_SOCKET",
    "TARGET_OUTCOMES",
    "encode_event",
    "error_event",
    "format_timestamp",
    "parse_timestamp",
    "progress_event",
    "run_complete_event",
    "stage_change_event",
    "stamp",
    "target_complete_event",
]

#: The five event types.
EVENT_TYPES = ("progress", "stage_change", "target_complete", "run_complete", "error")
#: ``run_complete``'s status words (``canonical_status("foxml", ...)`` maps them).
RUN_OUTCOMES = ("success", "failed", "cancelled")
#: ``target_complete``'s status words (kept verbatim as the target's status).
TARGET_OUTCOMES = ("success", "failed", "skipped")
#: The event log's name in a run's work dir, unless the ``event_file`` config key says otherwise.
DEFAULT_EVENT_FILE = "events.jsonl"

#: Environment variables naming the destinations; the seed's names are honoured after ours.
ENV_EVENT_FILE = "PROGRESSKIT_EVENT_FILE"
ENV_EVENT_SOCKET = "PROGRESSKIT_EVENT_SOCKET"
SEED_ENV_EVENT_FILE = "FOXML_TRAINING_EVENT_FILE"
SEED_ENV_EVENT_SOCKET = "FOXML_TRAINING_EVENT_SOCKET"


# -- the events: their own fields, in the seed's order ----------------------------------------


def progress_event(
    stage: str | None,
    progress_pct: float,
    current_target: str | None = None,
    targets_complete: int = 0,
    targets_total: int = 0,
) -> dict[str, Any]:
    """Progress within ``stage``: ``progress_pct`` in [0, 100] of that stage; a
    ``targets_total`` of 0 means "not known yet"."""
    return {
        "event_type": "progress",
        "stage": stage,
        "progress_pct": progress_pct,
        "current_target": current_target,
        "targets_complete": targets_complete,
        "targets_total": targets_total,
    }


def stage_change_event(previous_stage: str | None, new_stage: str) -> dict[str, Any]:
    """Leaving ``previous_stage`` (done; ``None`` for the first stage) for ``new_stage``."""
    return {"event_type": "stage_change", "previous_stage": previous_stage, "new_stage": new_stage}


def target_complete_event(
    target: str,
    status: str,
    models_trained: int = 0,
    best_auc: float | None = None,
    metrics: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """A finished target (``status``: one of :data:`TARGET_OUTCOMES`). ``metrics`` extends the
    seed's event with a ``metrics`` object, left out when empty (seed readers ignore it)."""
    event: dict[str, Any] = {
        "event_type": "target_complete",
        "target": target,
        "status": status,
        "models_trained": models_trained,
        "best_auc": best_auc,
    }
    if metrics:
        event["metrics"] = dict(metrics)
    return event


def run_complete_event(status: str = "success") -> dict[str, Any]:
    """The end of the run (``status``: one of :data:`RUN_OUTCOMES`)."""
    return {"event_type": "run_complete", "status": status}


def error_event(
    error_message: str, error_type: str = "unknown", recoverable: bool = True
) -> dict[str, Any]:
    """An error; ``recoverable=False`` means the run cannot go on."""
    return {
        "event_type": "error",
        "error_message": error_message,
        "error_type": error_type,
        "recoverable": recoverable,
    }


# -- the envelope and the encoding ------------------------------------------------------------


def format_timestamp(at: float | None = None) -> str:
    """Unix time ``at`` (default: now) as events carry it:
    ``datetime.now(timezone.utc).isoformat()``, e.g. ``2026-01-21T10:00:00.000123+00:00``."""
    # Imported here, with the first event: datetime is a tenth of the producer's import time.
    from datetime import datetime, timezone

    moment = datetime.now(timezone.utc) if at is None else datetime.fromtimestamp(at, timezone.utc)
    return moment.isoformat()


def parse_timestamp(text: str) -> float:
    """An event's ``timestamp`` as Unix time. A ``Z`` suffix is accepted and a time without
    an offset is taken as UTC (other writers do both). Raises ``ValueError``."""
    from datetime import datetime, timezone

    # Python 3.10's fromisoformat does not take the "Z" suffix.
    moment = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def stamp(event: dict[str, Any], run_id: str, at: float | None = None) -> None:
    """Add the two fields every event ends with: ``run_id``, then ``timestamp`` (of ``at``,
    default now)."""
    event["run_id"] = run_id
    event["timestamp"] = format_timestamp(at)


def _plain(value: Any) -> Any:
    """JSON fallback: numpy/torch scalars (``.item()``), other numbers (``Decimal``), else text.

    Training code passes ``best_auc=np.float32(...)`` as often as a float; it must arrive
    as a number, or the reader rejects the event.
    """
    item = getattr(value, "item", None)
    if callable(item):
        result = item()
        if isinstance(result, (int, float, str, bool)) or result is None:
            return result
    if hasattr(value, "__float__"):
        return float(value)
    return str(value)


def encode_event(event: Mapping[str, Any]) -> bytes:
    """``event`` as one line of the log. NaN and infinities are written as ``null``: they
    are not JSON, and the seed's dashboard (serde_json) would reject the whole event."""
    return (dumps(event, default=_plain) + "\n").encode("utf-8")
