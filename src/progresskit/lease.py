"""Split into :mod:`progresskit.formats.lease` (the document),
:mod:`progresskit.producer.heartbeat` (the producer) and :mod:`progresskit.engine.liveness`
(the reader); this path works for one release."""

from progresskit._moved import moved

_DOCUMENT = "progresskit.formats.lease"
_READER = "progresskit.engine.liveness"

moved(
    __name__,
    "progresskit.producer.heartbeat",
    also={
        **dict.fromkeys(
            ("LEASE_FILENAME", "LEASE_FORMAT", "LEASE_STATES", "LEASE_VERSION", "Lease",
             "load_lease", "this_host"),
            _DOCUMENT,
        ),
        **dict.fromkeys(
            ("GRACE_SECONDS", "PROCESS_STATES", "START_TIME_TOLERANCE", "LeaseCheck", "observe"),
            _READER,
        ),
    },
)
