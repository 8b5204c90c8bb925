"""Moved to :mod:`progresskit.producer.statusfile`, the document's vocabulary to
:mod:`progresskit.formats.statusfile`; this path works for one release."""

from progresskit._moved import moved

moved(
    __name__,
    "progresskit.producer.statusfile",
    also=dict.fromkeys(
        ("DEFAULT_STATUS_FILENAME", "LIVE_STATUSES", "STATUS_FIELDS", "STATUS_VALUES",
         "format_timestamp", "parse_timestamp"),
        "progresskit.formats.statusfile",
    ),
)
