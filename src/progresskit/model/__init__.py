"""Layer 0, the model: what progresskit knows about a run (attrs only, no I/O).

The JSON shapes of these classes are owned by :mod:`progresskit.model.converter` (cattrs),
which is imported only by the layers that read or write documents.
"""

from progresskit.model.core import (
    Cause,
    CompletedItem,
    ProcessInfo,
    ProgressInfo,
    RunStatus,
    Status,
)

__all__ = ["Cause", "CompletedItem", "ProcessInfo", "ProgressInfo", "RunStatus", "Status"]
