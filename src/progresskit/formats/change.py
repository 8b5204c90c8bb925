"""The change document: one event of a watch (``watch`` JSON lines, webhook bodies, the
server's stream), and what makes two statuses of a run differ.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import attrs

from progresskit.model.converter import JSON_FORMAT_VERSION, unstructure
from progresskit.model.core import RunStatus, Status

__all__ = ["CHANGE_FORMAT", "CHANGE_KINDS", "Change", "change_document", "change_key"]

#: ``new``: first seen by this watcher; ``changed``: status or progress differs from what was
#: last emitted; ``removed``: no longer found under the root; ``heartbeat``: periodic
#: restatement of an unchanged run; ``snapshot``: a one-off query (``progresskit status``).
CHANGE_KINDS = ("new", "changed", "removed", "heartbeat", "snapshot")


def _check_kind(_inst: object, _attribute: attrs.Attribute[Any], value: str) -> None:
    if value not in CHANGE_KINDS:
        raise ValueError(f"change kind must be one of {', '.join(CHANGE_KINDS)}, got {value!r}")


@attrs.frozen
class Change:
    """One event of a watch, as sinks with ``emit_changes`` and ``Monitor`` subscribers get it."""

    kind: str = attrs.field(validator=_check_kind)
    run: RunStatus
    #: The status last emitted for this run (``changed`` and ``removed`` only).
    previous_status: Status | None = attrs.field(
        default=None, converter=attrs.converters.optional(Status)
    )
    #: Unique per event; sinks use it as the idempotency key of a delivery.
    id: str = attrs.field(factory=lambda: uuid.uuid4().hex)
    #: Unix time the change was seen.
    at: float = attrs.field(factory=time.time)



#: Fields that change while nothing happens: they never make a change on their own.
_VOLATILE_RUN = ("reason", "last_activity")
_VOLATILE_PROGRESS = (
    "last_update_time",
    "elapsed_seconds",
    "eta_seconds",
    "eta_low_seconds",
    "eta_high_seconds",
    "source_eta_seconds",
)
#: The ``format`` field of a change document (``watch`` JSON lines, webhook payloads).
CHANGE_FORMAT = "progresskit.change"


def change_document(change: Change) -> dict[str, Any]:
    """A change as JSON-ready data: the shape of ``watch``'s JSON lines and webhook bodies."""
    return {
        "format": CHANGE_FORMAT,
        "version": JSON_FORMAT_VERSION,
        "event_id": change.id,
        "kind": change.kind,
        "at": change.at,
        "previous_status": unstructure(change.previous_status),
        "run": unstructure(change.run),
    }


def change_key(run: RunStatus) -> str:
    """What must differ between two statuses of a run for the second to be a change."""
    data = unstructure(run)
    for name in _VOLATILE_RUN:
        data.pop(name, None)
    for name in _VOLATILE_PROGRESS:
        data["progress"].pop(name, None)
    return json.dumps(data, sort_keys=True, default=str)


