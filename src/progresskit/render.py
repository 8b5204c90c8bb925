"""Moved to :mod:`progresskit.cli.render`; this path works for one release."""

from progresskit._moved import moved

moved(__name__, "progresskit.cli.render")
