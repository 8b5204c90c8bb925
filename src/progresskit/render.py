"""Moved to :mod:`progresskit.builtin.table`, and ``status_document`` to
:mod:`progresskit.cli.status`; this path works for one release."""

from progresskit._moved import moved

moved(__name__, "progresskit.builtin.table", also={"status_document": "progresskit.cli.status"})
