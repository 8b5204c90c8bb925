"""Moved to :mod:`progresskit.engine.monitor`, and the change document to
:mod:`progresskit.formats.change`; this path works for one release."""

from progresskit._moved import moved

moved(
    __name__,
    "progresskit.engine.monitor",
    also={name: "progresskit.formats.change" for name in ("CHANGE_FORMAT", "change_document")},
)
