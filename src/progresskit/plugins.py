"""Moved to :mod:`progresskit.plugin.manager`; this path works for one release."""

from progresskit._moved import moved

moved(__name__, "progresskit.plugin.manager")
