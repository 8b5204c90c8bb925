"""Output sinks: where run statuses go (a file per run, the terminal, a webhook...)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from progresskit.errors import ConfigError
from progresskit.model.core import RunStatus
from progresskit.plugin.config import ConfigKey, ConfigSchema

if TYPE_CHECKING:
    # The change document loads the converter (cattrs): a watch needs it, a query does not.
    from progresskit.formats.change import Change

__all__ = ["Sink", "SinkType", "build_sinks", "emit_changes"]

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
