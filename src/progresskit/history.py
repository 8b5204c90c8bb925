"""Moved to :mod:`progresskit.engine.history`; this path works for one release."""

from progresskit._moved import moved

moved(__name__, "progresskit.engine.history")
