"""Old module paths, kept for one release after the layered layout (docs/architecture.md)."""

from __future__ import annotations

import importlib
import sys
import types
import warnings
from collections.abc import Mapping


def moved(old: str, new: str, *, also: Mapping[str, str] | None = None) -> None:
    """Make module ``old`` the very module ``new``, with a DeprecationWarning to the importer.

    ``also`` names the attributes of ``old`` that moved elsewhere (name -> their new
    module): ``old`` is then a module of its own holding ``new``'s names and those.
    """
    warnings.warn(
        f"{old} moved to {new}; the old path works until progresskit 0.3",
        DeprecationWarning,
        stacklevel=3,
    )
    module = importlib.import_module(new)
    if also:
        alias = types.ModuleType(old, module.__doc__)
        alias.__dict__.update(
            {k: v for k, v in vars(module).items() if not k.startswith("__")}
        )
        for name, home in also.items():
            setattr(alias, name, getattr(importlib.import_module(home), name))
        module = alias
    sys.modules[old] = module
