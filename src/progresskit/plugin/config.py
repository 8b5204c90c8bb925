"""Configuration: which keys exist (declared by plugins), and loading and checking YAML.

A config is a plain top-level mapping, as seed 001's run configs are. Plugins declare the
keys they read through :func:`~progresskit.plugin.hookspec.progresskit_addconfig`; anything
else is refused with the file, the key and what was expected.
"""

from __future__ import annotations

import argparse
import logging
import os
import reprlib
import stat
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs

from progresskit.errors import ConfigError
from progresskit.formats.fileio import read_bytes

__all__ = [
    "CONFIG_FILENAME",
    "MAX_CONFIG_BYTES",
    "MAX_YAML_ALIASES",
    "MAX_YAML_DEPTH",
    "MAX_YAML_NODES",
    "Config",
    "ConfigKey",
    "ConfigSchema",
    "config_file",
    "distrust",
    "ensure",
    "find_config_file",
    "load_yaml",
    "short_repr",
    "trusted_values",
]

log = logging.getLogger(__name__)

#: The file searched for in the work dir and its parents.
CONFIG_FILENAME = "progresskit.yaml"
#: Limits on a config file, which anyone who can write a run's directory (or a parent of
#: it) can plant (docs/security.md): its size, its aliases (``*name``: each may stand for a
#: whole tree, so a few dozen expand to billions of nodes, the "billion laughs") and the
#: values they expand to, and its nesting (PyYAML builds nested collections by recursion).
MAX_CONFIG_BYTES = 1 << 20
MAX_YAML_ALIASES = 100
MAX_YAML_DEPTH = 64
MAX_YAML_NODES = 100_000

#: Values in messages are shown this short: a value built from aliases may be huge.
_repr = reprlib.Repr()
_repr.maxstring = _repr.maxother = 80
_repr.maxlevel = 3


def short_repr(value: Any) -> str:
    """``repr(value)`` for a message, cut short (``...``) however large ``value`` is."""
    return _repr.repr(value)


def _type_names(types: tuple[type, ...]) -> str:
    names = {
        int: "integer",
        float: "number",
        str: "string",
        bool: "boolean",
        list: "list",
        dict: "mapping",
        type(None): "null",
    }
    return " or ".join(names.get(t, t.__name__) for t in types)


@attrs.frozen
class ConfigKey:
    """One declared config key."""

    name: str
    types: tuple[type, ...]
    default: Any
    help: str
    owner: str
    #: Extra check for what the type alone cannot judge; raises ValueError with the reason.
    check: Callable[[Any], None] | None = None
    #: A key with side effects (writes files, sends data): taken from a config file only
    #: when the user trusts it (:func:`trusted_values`).
    trusted_only: bool = False

    def validate(self, value: Any, where: str) -> None:
        """Raise :class:`ConfigError` when ``value`` does not fit this key."""
        if not _is_instance(value, self.types):
            raise ConfigError(
                f"{where}: key '{self.name}' expects {_type_names(self.types)}, "
                f"got {type(value).__name__} {short_repr(value)}"
            )
        if self.check is not None:
            try:
                self.check(value)
            except (ValueError, TypeError) as exc:
                raise ConfigError(f"{where}: key '{self.name}': {exc}") from exc


def _is_instance(value: Any, types: tuple[type, ...]) -> bool:
    # bool is an int in Python, but `epochs: true` is a mistake, not 1.
    if isinstance(value, bool):
        return bool in types
    if isinstance(value, int) and float in types:
        return True
    return isinstance(value, types)


class ConfigSchema:
    """The registry of known config keys, filled by ``progresskit_addconfig``."""

    def __init__(self) -> None:
        self._keys: dict[str, ConfigKey] = {}
        self._owner = "progresskit"

    def for_owner(self, owner: str) -> ConfigSchema:
        """A view that records ``owner`` as the declaring plugin (used by the manager)."""
        view = ConfigSchema.__new__(ConfigSchema)
        view._keys = self._keys
        view._owner = owner
        return view

    def add(
        self,
        name: str,
        types: type | tuple[type, ...],
        *,
        default: Any = None,
        help: str,
        check: Callable[[Any], None] | None = None,
        trusted_only: bool = False,
    ) -> None:
        """Declare ``name``. Declaring a key another plugin owns is an error.

        ``trusted_only``: the key has side effects (sinks, files written), so a config file
        that others could have written does not set it (:func:`trusted_values`)."""
        if name in self._keys and self._keys[name].owner != self._owner:
            raise ConfigError(
                f"config key '{name}' is declared by both '{self._keys[name].owner}' "
                f"and '{self._owner}'"
            )
        types_t = types if isinstance(types, tuple) else (types,)
        self._keys[name] = ConfigKey(
            name, types_t, default, help, self._owner, check, trusted_only
        )

    def __contains__(self, name: object) -> bool:
        return name in self._keys

    def get(self, name: str) -> ConfigKey | None:
        """The declared key ``name``, or ``None``."""
        return self._keys.get(name)

    def declared(self) -> list[ConfigKey]:
        """Every declared key, sorted by name."""
        return sorted(self._keys.values(), key=lambda k: k.name)

    def validate(
        self, values: Mapping[str, Any], where: str, base: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Check ``values`` and return them laid over ``base`` and the declared defaults."""
        if not isinstance(values, Mapping):
            raise ConfigError(
                f"{where}: expected a mapping of keys to values, got {type(values).__name__}"
            )
        for name, value in values.items():
            key = self._keys.get(str(name))
            if key is None:
                known = ", ".join(sorted(self._keys))
                raise ConfigError(f"{where}: unknown key '{name}' (known keys: {known})")
            if value is not None or type(None) not in key.types:
                key.validate(value, where)
        result = {k.name: k.default for k in self._keys.values() if k.default is not None}
        result.update(base or {})
        result.update({k: v for k, v in values.items() if v is not None})
        return result


@attrs.frozen
class Config:
    """A validated configuration, as handed to ``progresskit_configure``."""

    #: Every key with its value (defaults filled in): the plain mapping trackers receive.
    values: Mapping[str, Any]
    #: The YAML file the values came from, if any.
    path: Path | None = None
    #: Parsed command-line options (``None`` for library use).
    options: argparse.Namespace | None = None

    def get(self, key: str, default: Any = None) -> Any:
        """The value of ``key``, or ``default``."""
        return self.values.get(key, default)


def load_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a YAML config with a safe loader; raise :class:`ConfigError` naming the file.

    The file is untrusted input: regular files only, at most :data:`MAX_CONFIG_BYTES`,
    UTF-8 or UTF-16/32 with a byte-order mark (YAML's encodings), at most
    :data:`MAX_YAML_ALIASES` aliases and :data:`MAX_YAML_DEPTH` levels of nesting.
    Anything else is an error saying which limit, never a hang or a traceback.
    """
    p = Path(path)
    try:
        raw, _st = read_bytes(os.fspath(p), MAX_CONFIG_BYTES)
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read config file: {exc.strerror or exc}") from exc
    data = _parse_yaml(raw, p)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{p}: expected a mapping of keys to values at the top level, got {type(data).__name__}"
        )
    return data


def _parse_yaml(raw: bytes, p: Path) -> Any:
    # Imported here: a command or a query with no config file to read never loads PyYAML.
    import yaml

    try:
        return yaml.load(raw, Loader=_loader())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{p}: invalid YAML{at}: {_cut(str(problem))}") from exc
    except _LimitError as exc:
        raise ConfigError(f"{p}: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{p}: invalid YAML: nested too deeply") from None
    except ValueError as exc:  # a value the constructor refuses: an integer of 5,000 digits
        raise ConfigError(f"{p}: invalid YAML value: {_cut(str(exc))}") from exc


def _cut(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


class _LimitError(ValueError):
    """A config file beyond one of the limits of :func:`load_yaml`."""


_LOADER: type | None = None


def _loader() -> type:
    """yaml's SafeLoader, counting aliases and nesting as it composes the document."""
    global _LOADER
    if _LOADER is not None:
        return _LOADER
    import yaml

    class Loader(yaml.SafeLoader):
        def __init__(self, stream: Any) -> None:
            super().__init__(stream)
            self._aliases = 0
            self._depth = 0
            #: Nodes of the document with every alias expanded: what a reader walks.
            self._expanded = 0
            self._sizes: dict[int, int] = {}
            #: Anchors of the collections being composed: an alias to one is a cycle.
            self._open: list[str | None] = []

        def compose_node(self, parent: Any, index: Any) -> Any:
            event = self.peek_event()  # type: ignore[no-untyped-call]
            if isinstance(event, yaml.AliasEvent):
                self._alias(event)
                return super().compose_node(parent, index)
            self._depth += 1
            self._open.append(getattr(event, "anchor", None))
            try:
                if self._depth > MAX_YAML_DEPTH:
                    raise _LimitError(f"nested more than {MAX_YAML_DEPTH} levels deep: refused")
                self._grow(1)
                return super().compose_node(parent, index)
            finally:
                self._depth -= 1
                self._open.pop()

        def _alias(self, event: Any) -> None:
            self._aliases += 1
            if self._aliases > MAX_YAML_ALIASES:
                raise _LimitError(
                    f"more than {MAX_YAML_ALIASES} YAML aliases (*name): refused"
                )
            if event.anchor in self._open:
                raise _LimitError(f"alias *{event.anchor} refers to itself: refused")
            node = self.anchors.get(event.anchor)
            if node is not None:
                self._grow(self._size(node))

        def _size(self, node: Any) -> int:
            known = self._sizes.get(id(node))
            if known is None:
                if isinstance(node, yaml.SequenceNode):
                    known = 1 + sum(self._size(n) for n in node.value)
                elif isinstance(node, yaml.MappingNode):
                    known = 1 + sum(self._size(k) + self._size(v) for k, v in node.value)
                else:
                    known = 1
                self._sizes[id(node)] = known
            return known

        def _grow(self, nodes: int) -> None:
            self._expanded += nodes
            if self._expanded > MAX_YAML_NODES:
                raise _LimitError(
                    f"more than {MAX_YAML_NODES} values once its aliases (*name) are "
                    "expanded: refused (a \"billion laughs\" document?)"
                )

    _LOADER = Loader
    return Loader


def distrust(path: str | os.PathLike[str]) -> str | None:
    """Why a config file found by search may not set side effects, or ``None`` when it may:
    it is owned by the user or root and writable by neither group nor others."""
    try:
        st = os.stat(path)
    except OSError as exc:
        return f"cannot stat it: {exc.strerror or exc}"
    if hasattr(os, "getuid") and st.st_uid not in (os.getuid(), 0):
        return f"it is owned by uid {st.st_uid}, neither you nor root"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return "it is writable by group or others"
    return None


def trusted_values(
    values: Mapping[str, Any], path: str | os.PathLike[str], schema: ConfigSchema
) -> dict[str, Any]:
    """``values`` read from ``path``, a config file found by search (not named with
    ``--config``), without the keys with side effects (:attr:`ConfigKey.trusted_only`:
    ``sinks``, ``eta_history``) when the file is not the user's to trust
    (:func:`distrust`); a warning names the file and the keys ignored."""
    risky = [k for k in values if (key := schema.get(str(k))) is not None and key.trusted_only]
    if not risky:
        return dict(values)
    reason = distrust(path)
    if reason is None:
        return dict(values)
    log.warning(
        "%s: ignoring %s: %s (a config file others could have written sets no side "
        "effects; name it with --config to use it anyway)",
        path,
        ", ".join(repr(k) for k in risky),
        reason,
    )
    return {k: v for k, v in values.items() if k not in risky}


def find_config_file(
    start: str | os.PathLike[str], cache: dict[str, str | None] | None = None
) -> Path | None:
    """The nearest ``progresskit.yaml`` in ``start`` or one of its parents.

    ``cache`` (directory -> the file in force there, or ``None``) is filled for every
    directory looked at and consulted first: the runs of one tree share their parents, so a
    scan looks at each parent once instead of once per run.
    """
    directory = os.path.abspath(start)
    visited: list[str] = []
    found: str | None = None
    while True:
        if cache is not None and directory in cache:
            found = cache[directory]
            break
        visited.append(directory)
        candidate = os.path.join(directory, CONFIG_FILENAME)
        if os.path.isfile(candidate):
            found = candidate
            break
        parent = os.path.dirname(directory)
        if parent == directory:
            break
        directory = parent
    if cache is not None:
        for seen in visited:
            cache[seen] = found
    return None if found is None else Path(found)


def config_file(
    directory: str | os.PathLike[str],
    explicit: str | os.PathLike[str] | None = None,
    cache: dict[str, str | None] | None = None,
) -> Path | None:
    """The config file in force for ``directory``, the one rule every caller follows:
    ``explicit`` (``--config FILE``) when given, else the nearest ``progresskit.yaml`` in
    ``directory`` or a parent (``cache``: see :func:`find_config_file`), else none (the
    declared defaults apply)."""
    if explicit is not None:
        return Path(explicit)
    return find_config_file(directory, cache)


def ensure(condition: bool, message: str) -> None:
    """Raise ``ValueError(message)`` unless ``condition``; for ``ConfigKey.check``."""
    if not condition:
        raise ValueError(message)
