"""Moved to :mod:`progresskit.model.vocabulary`; this path works for one release."""

from progresskit._moved import moved

moved(__name__, "progresskit.model.vocabulary")
