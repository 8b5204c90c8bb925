"""Old module paths, kept for one release after the layered layout (docs/architecture.md)."""

from __future__ import annotations

import importlib
import sys
import warnings


def moved(old: str, new: str) -> None:
    """Make module ``old`` the very module ``new``, with a DeprecationWarning to the importer."""
    warnings.warn(
        f"{old} moved to {new}; the old path works until progresskit 0.3",
        DeprecationWarning,
        stacklevel=3,
    )
    sys.modules[old] = importlib.import_module(new)
