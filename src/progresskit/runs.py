"""Moved to :mod:`progresskit.engine.session`; this path works for one release."""

from progresskit._moved import moved

moved(__name__, "progresskit.engine.session")
