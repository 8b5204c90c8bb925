"""Moved to :mod:`progresskit.plugin.coreconfig`; this path works for one release."""

from progresskit._moved import moved

moved(__name__, "progresskit.plugin.coreconfig")
