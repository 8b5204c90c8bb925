"""Moved to :mod:`progresskit.plugin.sink`, and ``Change`` and the change kinds to
:mod:`progresskit.formats.change`; this path works for one release."""

from progresskit._moved import moved

moved(
    __name__,
    "progresskit.plugin.sink",
    also={name: "progresskit.formats.change" for name in ("CHANGE_KINDS", "Change")},
)
