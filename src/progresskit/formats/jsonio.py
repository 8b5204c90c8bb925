"""The one JSON writer: every JSON text progresskit writes (``status --json``, ``watch``
JSON lines, webhook bodies, the server's API and stream, ``progress.json``) is made here.

JSON has no NaN or infinity, and a diverged loss must not cost anyone a whole document or
end a command in a traceback: non-finite numbers become ``null``. Documents without one
(nearly all) are written in a single ``json.dumps`` pass; only a document that holds one
pays for a second pass.

Stdlib only at import, so the producer side can write with it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable

TYPE_CHECKING = False  # typing's, without importing typing: see progresskit/__init__.py
if TYPE_CHECKING:
    from typing import Any

__all__ = ["dumps", "finite", "to_json"]


def finite(value: Any) -> Any:
    """``value`` (JSON-ready data) with every NaN or infinity replaced by ``None``."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def dumps(
    document: Any,
    *,
    indent: int | None = None,
    sort_keys: bool = False,
    compact: bool = False,
    default: Callable[[Any], Any] | None = None,
) -> str:
    """``document`` as JSON text, non-finite numbers written as ``null``.

    :param indent: as :func:`json.dumps`; ``None`` writes one line.
    :param sort_keys: as :func:`json.dumps`.
    :param compact: no spaces after ``,`` and ``:`` (the server's wire format).
    :param default: as :func:`json.dumps`: turns objects JSON does not know into data.
    :raises TypeError: for an object that is not JSON-ready and that ``default`` does not
        convert.
    """
    separators = (",", ":") if compact else None
    options: dict[str, Any] = {"indent": indent, "sort_keys": sort_keys, "separators": separators}
    try:
        return json.dumps(document, allow_nan=False, default=default, **options)
    except ValueError:
        pass  # a NaN or an infinity somewhere
    # Through text first, so that what ``default`` makes of an object (a numpy NaN scalar)
    # is cleaned too; the stdlib reads back the NaN and Infinity tokens it wrote.
    plain = json.loads(json.dumps(document, default=default))
    return json.dumps(finite(plain), allow_nan=False, **options)


def to_json(obj: Any, *, indent: int | None = None) -> str:
    """``obj`` (a model object, or plain data holding some) as a JSON document: its
    :func:`~progresskit.model.converter.unstructure` shape, keys sorted when indented."""
    # Imported here: the converter loads cattrs, which a producer writing plain documents
    # with :func:`dumps` never needs.
    from progresskit.model.converter import unstructure

    return dumps(unstructure(obj), indent=indent, sort_keys=indent is not None)
