"""Score dictionaries: how nested score files become flat ``{name: number}`` maps."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["flatten_scores"]


def flatten_scores(data: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """The finite numbers in ``data``, nested keys joined with dots.

    Lists (per-datapoint or per-class arrays) and non-numbers are left out: a score summary
    holds scalars only.
    """
    flat: dict[str, float] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_scores(value, f"{name}."))
        elif (
            isinstance(value, (int, float))
            and not isinstance(value, bool)
            and math.isfinite(value)
        ):
            flat[name] = float(value)
    return flat
