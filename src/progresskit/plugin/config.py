"""Configuration: which keys exist (declared by plugins), and loading and checking YAML.

A config is a plain top-level mapping, as seed 001's run configs are. Plugins declare the
keys they read through :func:`~progresskit.plugin.hookspec.progresskit_addconfig`; anything
else is refused with the file, the key and what was expected.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs

from progresskit.errors import ConfigError

__all__ = [
    "CONFIG_FILENAME",
    "Config",
    "ConfigKey",
    "ConfigSchema",
    "config_file",
    "ensure",
    "find_config_file",
    "load_yaml",
]

#: The file searched for in the work dir and its parents.
CONFIG_FILENAME = "progresskit.yaml"


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

    def validate(self, value: Any, where: str) -> None:
        """Raise :class:`ConfigError` when ``value`` does not fit this key."""
        if not _is_instance(value, self.types):
            raise ConfigError(
                f"{where}: key '{self.name}' expects {_type_names(self.types)}, "
                f"got {type(value).__name__} {value!r}"
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
    ) -> None:
        """Declare ``name``. Declaring a key another plugin owns is an error."""
        if name in self._keys and self._keys[name].owner != self._owner:
            raise ConfigError(
                f"config key '{name}' is declared by both '{self._keys[name].owner}' "
                f"and '{self._owner}'"
            )
        types_t = types if isinstance(types, tuple) else (types,)
        self._keys[name] = ConfigKey(name, types_t, default, help, self._owner, check)

    def __contains__(self, name: object) -> bool:
        return name in self._keys

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
    """Read a YAML config with ``safe_load``; raise :class:`ConfigError` naming the file."""
    # Imported here: a command or a query with no config file to read never loads PyYAML.
    import yaml

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read config file: {exc.strerror or exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{p}: invalid YAML{at}: {problem}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{p}: expected a mapping of keys to values at the top level, got {type(data).__name__}"
        )
    return data


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
