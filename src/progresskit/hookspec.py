"""Moved to :mod:`progresskit.plugin.hookspec`; this path works for one release."""

from progresskit._moved import moved

moved(__name__, "progresskit.plugin.hookspec")
