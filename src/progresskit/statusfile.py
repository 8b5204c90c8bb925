"""Moved to :mod:`progresskit.producer.statusfile`; this path works for one release."""

from progresskit._moved import moved

moved(__name__, "progresskit.producer.statusfile")
