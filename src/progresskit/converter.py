"""Moved to :mod:`progresskit.model.converter`; this path works for one release."""

from progresskit._moved import moved

moved(__name__, "progresskit.model.converter")
