"""Errors of the Pylon compatibility layer.

Pylon checked its arguments with bare ``assert`` statements, so its callers and tests
catch ``AssertionError``; progresskit raises errors that are that *and* the specific
built-in error the mistake deserves, with a message saying what was wrong.
"""

from __future__ import annotations

__all__ = ["PylonTypeError", "PylonValueError"]


class PylonTypeError(AssertionError, TypeError):
    """An argument of the wrong type (Pylon: a failed ``assert isinstance(...)``)."""


class PylonValueError(AssertionError, ValueError):
    """An argument of the right type with a bad value (Pylon: a failed ``assert``)."""
