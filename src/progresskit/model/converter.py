"""The one cattrs converter: every JSON shape progresskit reads or writes lives here.

JSON text is written by :mod:`progresskit.formats.jsonio` (``to_json``), the one writer.

Reading is forgiving where history demands it (a ``progress.json`` holding only the four
original fields loads; keys written by a newer progresskit are ignored) and strict where a
wrong value would mislead (a percentage of 250 is an error naming the field).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from progresskit.errors import FormatError
from progresskit.model.core import (
    Cause,
    CompletedItem,
    ProcessInfo,
    ProgressInfo,
    RunStatus,
    Status,
)

__all__ = ["converter", "load_progress_file", "structure", "unstructure"]

T = TypeVar("T")

#: Version of the machine format of ``progresskit status --json`` (docs/cli.md).
JSON_FORMAT_VERSION = 1

converter = cattrs.Converter(forbid_extra_keys=False)

converter.register_unstructure_hook(Status, lambda s: s.value)
converter.register_structure_hook(Status, lambda v, _t: Status(v))
# ProgressInfo's ``warnings`` is a tuple in memory and a list on disk (seed 001 shape).
converter.register_unstructure_hook(
    ProgressInfo,
    make_dict_unstructure_fn(ProgressInfo, converter, _cattrs_omit_if_default=False),
)
converter.register_structure_hook(
    ProgressInfo,
    make_dict_structure_fn(
        ProgressInfo,
        converter,
        # Old and foreign writers put ``null`` where we keep empty containers.
        warnings=override(struct_hook=lambda v, _t: tuple(str(w) for w in v or ())),
        metrics=override(struct_hook=lambda v, _t: dict(v or {})),
        details=override(struct_hook=lambda v, _t: {str(k): str(x) for k, x in (v or {}).items()}),
    ),
)
for _cls in (Cause, CompletedItem, ProcessInfo, RunStatus):
    converter.register_structure_hook(_cls, make_dict_structure_fn(_cls, converter))


def unstructure(obj: Any) -> Any:
    """``obj`` as plain JSON-ready data (dicts, lists, strings, numbers, None)."""
    return converter.unstructure(obj)


def structure(data: Any, cls: type[T], *, where: str = "input") -> T:
    """Build a ``cls`` from plain data, or raise :class:`FormatError` saying what is wrong."""
    try:
        return converter.structure(data, cls)
    except Exception as exc:
        raise FormatError(f"{where}: not a valid {cls.__name__}: {_describe(exc)}") from exc


def load_progress_file(path: str | Path) -> ProgressInfo:
    """Read a ``progress.json`` written by any progresskit version, or by seed 001's code.

    Raises :class:`FormatError` naming the file when it is not valid JSON or its values are
    not a progress record; ``OSError`` when it cannot be read.
    """
    text = Path(path).read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FormatError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from exc
    if not isinstance(data, Mapping):
        raise FormatError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return structure(dict(data), ProgressInfo, where=str(path))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, cattrs.BaseValidationError):
        return "; ".join(cattrs.transform_error(exc, format_exception=_leaf_message))
    return str(exc) or type(exc).__name__


def _leaf_message(exc: BaseException, type_: Any) -> str:
    # cattrs' default says only "invalid value"; our validators' messages name the field
    # and the accepted range, which is what the reader needs.
    if isinstance(exc, KeyError):
        return f"required field missing: {exc}"
    expected = f" (expected {getattr(type_, '__name__', type_)})" if type_ is not None else ""
    return f"{exc}{expected}" if str(exc) else f"invalid value{expected}"
