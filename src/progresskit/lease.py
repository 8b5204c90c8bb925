"""Moved to :mod:`progresskit.producer.heartbeat`; this path works for one release."""

from progresskit._moved import moved

moved(__name__, "progresskit.producer.heartbeat")
