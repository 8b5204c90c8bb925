"""Moved to :mod:`progresskit.model.converter`, and ``to_json`` to
:mod:`progresskit.formats.jsonio`; this path works for one release."""

from progresskit._moved import moved

moved(__name__, "progresskit.model.converter", also={"to_json": "progresskit.formats.jsonio"})
