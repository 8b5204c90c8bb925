"""The entry points of one group, read from the installed distributions' metadata
directories without importing :mod:`importlib.metadata`.

``importlib.metadata`` (and the ``email``, ``zipfile``, ``inspect``, ``csv`` modules it
imports) costs a command more than all else it does before reading a run, so the common
layout is read here directly, with ``importlib.metadata``'s semantics:

- every entry of ``sys.path``, in order, is listed; each child whose name ends in
  ``.dist-info`` or ``.egg-info`` is a distribution, named by the part of its name before
  the first ``-``, normalised (PEP 503, dashes as underscores);
- the first distribution found for a name wins; a later one of the same name is ignored,
  even when the first has no ``entry_points.txt``;
- ``entry_points.txt`` is the ini-like file of ``[group]`` sections and ``name = value``
  lines (blank lines and ``#`` comments skipped);
- the distribution's name and version are the ``Name`` and ``Version`` fields of its
  ``METADATA`` (``PKG-INFO`` in an ``.egg-info``).

Anything else (a zip or an ``.egg`` on ``sys.path``, a metadata finder other than the
standard one on ``sys.meta_path``, a metadata file that is no directory, a header folded
over lines, a line that is not ``name = value``) is left to ``importlib.metadata``, whose
answer is then the answer.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterable, Sequence
from functools import reduce

__all__ = ["EntryPoint", "entry_points"]

_METADATA_SUFFIXES = (".dist-info", ".egg-info")


class EntryPoint:
    """One entry point: its ``name``, its ``value`` (``module[:attr.attr] [extras]``), its
    ``group`` and the distribution that declares it."""

    __slots__ = ("distribution", "group", "name", "value", "version")

    def __init__(
        self,
        name: str,
        value: str,
        group: str,
        distribution: str | None,
        version: str | None,
    ) -> None:
        self.name = name
        self.value = value
        self.group = group
        self.distribution = distribution
        self.version = version

    def __repr__(self) -> str:
        return (
            f"EntryPoint({self.name!r}, {self.value!r}, {self.group!r}, "
            f"{self.distribution!r}, {self.version!r})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, EntryPoint):
            return NotImplemented
        return self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def _fields(self) -> tuple[str, str, str, str | None, str | None]:
        return (self.name, self.value, self.group, self.distribution, self.version)

    def load(self) -> object:
        """The object the entry point names, as ``importlib.metadata.EntryPoint.load``
        resolves it: the module, then each attribute after the ``:``.

        :raises ValueError: when the value is not ``module[:attr] [extras]``.
        """
        spec = self.value.split("[", 1)[0].strip()  # extras do not change what is loaded
        module, _, attributes = (part.strip() for part in spec.partition(":"))
        names = [name for name in attributes.split(".") if name] if attributes else []
        if not _dotted(module) or not all(name.isidentifier() for name in names):
            raise ValueError(
                f"entry point '{self.name}': '{self.value}' is not module[:attribute]"
            )
        return reduce(getattr, names, importlib.import_module(module))


def _dotted(name: str) -> bool:
    return bool(name) and all(part.isidentifier() for part in name.split("."))


class _Unusual(Exception):
    """A layout this reader leaves to ``importlib.metadata``."""


def entry_points(group: str) -> list[EntryPoint]:
    """Every entry point of ``group`` of the distributions on ``sys.path``, in discovery
    order: what ``importlib.metadata.entry_points(group=group)`` gives."""
    try:
        return _read(group, sys.path)
    except (_Unusual, OSError, UnicodeDecodeError):
        return _from_importlib(group)


def _read(group: str, paths: Sequence[str]) -> list[EntryPoint]:
    _check_finders()
    found: list[EntryPoint] = []
    seen: set[str] = set()
    for root in paths:
        for name, info in _distributions(root):
            if name in seen:
                continue
            seen.add(name)
            text = _read_text(os.path.join(info, "entry_points.txt"))
            if text is None:
                continue
            pairs = list(_section(text, group))
            if not pairs:
                continue
            dist, version = _name_and_version(info)
            found += [EntryPoint(n, v, group, dist, version) for n, v in pairs]
    return found


def _check_finders() -> None:
    """Only the standard path finder may answer for distributions (an import hook that
    provides metadata of its own is left to ``importlib.metadata``)."""
    from importlib.machinery import PathFinder

    for finder in sys.meta_path:
        if finder is PathFinder:
            continue
        if getattr(finder, "find_distributions", None) is not None:
            raise _Unusual(f"{finder!r} finds distributions")


def _distributions(root: str) -> Iterable[tuple[str, str]]:
    """(normalised name, metadata directory) of every distribution in ``root``, grouped
    by name in order of first appearance, as ``importlib.metadata`` searches a path entry."""
    if not isinstance(root, str):
        raise _Unusual(f"sys.path entry {root!r} is no string")
    if os.path.basename(root).lower().endswith(".egg"):
        raise _Unusual(f"{root}: an egg")
    try:
        children = os.listdir(root or ".")
    except NotADirectoryError:
        raise _Unusual(f"{root}: a file (a zip?)") from None
    except OSError:
        return []  # a missing entry holds nothing, as for importlib.metadata
    groups: dict[str, list[str]] = {}
    for child in children:
        low = child.lower()
        if not low.endswith(_METADATA_SUFFIXES):
            continue
        if not child.endswith(_METADATA_SUFFIXES):
            # importlib.metadata names such a distribution by its METADATA, not its path.
            raise _Unusual(f"{child}: suffix not in lower case")
        info = os.path.join(root, child)
        if not os.path.isdir(info):
            raise _Unusual(f"{info}: metadata in a file")
        groups.setdefault(_normalize(low.rpartition(".")[0].partition("-")[0]), []).append(
            info
        )
    return [(name, info) for name, infos in groups.items() for info in infos]


def _normalize(name: str) -> str:
    """PEP 503 normalisation with dashes as underscores (``importlib.metadata``'s)."""
    for separator in "-.":
        name = name.replace(separator, "_")
    while "__" in name:
        name = name.replace("__", "_")
    return name.lower()


def _read_text(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError):
        return None


def _section(text: str, group: str) -> Iterable[tuple[str, str]]:
    """The (name, value) pairs of the ``[group]`` sections of an ``entry_points.txt``."""
    section = None
    for line in map(str.strip, text.splitlines()):
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line.strip("[]")
            continue
        if section is None:
            continue
        name, equals, value = line.partition("=")
        if not equals:
            raise _Unusual(f"entry point line {line!r} is not name = value")
        if section == group:
            yield name.strip(), value.strip()


def _name_and_version(info: str) -> tuple[str, str]:
    """The ``Name`` and ``Version`` fields of the distribution's metadata file."""
    text = _read_text(os.path.join(info, "METADATA")) or _read_text(
        os.path.join(info, "PKG-INFO")
    )
    if not text:
        raise _Unusual(f"{info}: no METADATA")
    fields: dict[str, str] = {}
    lines = text.splitlines()
    for number, line in enumerate(lines):
        if not line:
            break  # the headers end at the first empty line; the description follows
        if line[0] in " \t":
            continue  # the continuation of a folded field (a long Summary, a License)
        key, colon, value = line.partition(":")
        if not colon:
            raise _Unusual(f"{info}: header line {line!r} has no colon")
        key = key.lower()
        if key not in ("name", "version") or key in fields:
            continue
        following = lines[number + 1] if number + 1 < len(lines) else ""
        if following[:1] in (" ", "\t"):
            raise _Unusual(f"{info}: field {key} folded over lines")
        # As the email parser reads a field: blanks after the colon are not its value.
        fields[key] = value.lstrip(" \t")
    if "name" not in fields or "version" not in fields:
        raise _Unusual(f"{info}: no Name or Version")
    return fields["name"], fields["version"]


def _from_importlib(group: str) -> list[EntryPoint]:
    import importlib.metadata as md

    return [
        EntryPoint(
            ep.name,
            ep.value,
            group,
            None if ep.dist is None else ep.dist.name,
            None if ep.dist is None else ep.dist.version,
        )
        for ep in md.entry_points(group=group)
    ]
