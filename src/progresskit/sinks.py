"""Output sinks: where run statuses go (a file per run, the terminal, a webhook...)."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import attrs

from progresskit.config import ConfigKey, ConfigSchema
from progresskit.errors import ConfigError
from progresskit.model import RunStatus, Status

__all__ = ["CHANGE_KINDS", "Change", "Sink", "SinkType", "build_sinks", "emit_changes"]

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


class Sink(Protocol):
    """A destination for run statuses."""

    def emit(self, statuses: Sequence[RunStatus]) -> None:
        """Deliver the statuses of one query (every run, changed or not)."""

    def close(self) -> None:
        """Flush and release resources; called once, also after an error."""


def emit_changes(sink: Sink, changes: Sequence[Change]) -> None:
    """Hand a watch's ``changes`` to ``sink``.

    A sink that defines ``emit_changes(changes)`` gets the :class:`Change` events (kind,
    id, previous status); any other sink gets ``emit()`` with the changed runs' statuses,
    removed runs left out (no call when nothing is left).
    """
    method = getattr(sink, "emit_changes", None)
    if callable(method):
        method(changes)
    else:
        runs = [c.run for c in changes if c.kind != "removed"]
        if runs:
            sink.emit(runs)


@attrs.frozen
class SinkType:
    """A kind of sink a config's ``sinks:`` list selects by ``type: <name>``."""

    name: str
    help: str
    #: Builds a sink from validated options (defaults filled in).
    factory: Callable[[Mapping[str, Any]], Sink]
    #: Declares the options of a ``sinks:`` entry, like ``progresskit_addconfig`` does.
    declare_options: Callable[[ConfigSchema], None] = lambda _schema: None

    def options(self) -> list[ConfigKey]:
        """The declared options of this sink type."""
        schema = ConfigSchema().for_owner(self.name)
        self.declare_options(schema)
        return schema.declared()

    def validate(self, entry: Mapping[str, Any], where: str) -> dict[str, Any]:
        """Check one ``sinks:`` entry (without its ``type`` key) and fill in defaults."""
        schema = ConfigSchema().for_owner(self.name)
        self.declare_options(schema)
        return schema.validate(entry, where)


def build_sinks(
    entries: Sequence[Mapping[str, Any]], types: Mapping[str, SinkType], where: str
) -> list[Sink]:
    """Validate every ``sinks:`` entry, then build the sinks (nothing is built on error).

    A factory may raise :class:`ConfigError` for what only it can judge (an unset
    environment variable, an unreachable URL); the sinks already built are closed then.
    """
    validated: list[tuple[SinkType, dict[str, Any], str]] = []
    for index, entry in enumerate(entries):
        here = f"{where}: sinks[{index}]"
        if not isinstance(entry, Mapping) or "type" not in entry:
            raise ConfigError(f"{here}: expected a mapping with a 'type' key, got {entry!r}")
        name = entry["type"]
        sink_type = types.get(name)
        if sink_type is None:
            known = ", ".join(sorted(types)) or "none loaded"
            raise ConfigError(f"{here}: unknown sink type '{name}' (known: {known})")
        options = {k: v for k, v in entry.items() if k != "type"}
        validated.append((sink_type, sink_type.validate(options, here), here))
    sinks: list[Sink] = []
    for sink_type, options, here in validated:
        try:
            sinks.append(sink_type.factory(options))
        except ConfigError as exc:
            for built in sinks:
                with contextlib.suppress(Exception):
                    built.close()
            raise ConfigError(f"{here}: {exc}") from exc
    return sinks
