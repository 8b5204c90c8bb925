"""Moved to :mod:`progresskit.cli.listen`; this path works for one release."""

from progresskit._moved import moved

moved(__name__, "progresskit.cli.listen")
