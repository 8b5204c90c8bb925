"""Moved to :mod:`progresskit.formats.fileio`; this path works for one release."""

from progresskit._moved import moved

moved(__name__, "progresskit.formats.fileio")
