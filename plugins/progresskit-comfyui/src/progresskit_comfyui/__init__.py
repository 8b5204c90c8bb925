"""Track, estimate and cancel ComfyUI generation jobs (progresskit plugin and library).

Library use (seed 003's StatusMonitor)::

    from progresskit_comfyui import StatusMonitor

    async with StatusMonitor("http://127.0.0.1:8188") as monitor:
        monitor.monitor_job(123, prompt_id, "video")
        update = await monitor.get_progress(123)

:class:`SyncStatusMonitor` offers the same without an event loop.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from progresskit_comfyui.backoff import Backoff
    from progresskit_comfyui.client import ComfyUIClient
    from progresskit_comfyui.job import ProgressStatus, ProgressUpdate
    from progresskit_comfyui.monitor import StatusMonitor
    from progresskit_comfyui.protocol import (
        ComfyUIError,
        ProtocolError,
        ServerSlow,
        ServerUnavailable,
    )
    from progresskit_comfyui.statistics import GenerationStatistics
    from progresskit_comfyui.sync import SyncStatusMonitor

#: The plugin's runner type: ComfyUI jobs are tracked, and kept in the run history, as it.
#: Here, not in ``job``, so that loading the plugin does not import the job model.
RUNNER_TYPE = "comfyui"

# Every progresskit command imports this package to load the plugin; httpx and websockets
# (a third of a second) are imported only when the library names are first used.
_HOMES = {
    "Backoff": "backoff",
    "ComfyUIClient": "client",
    "ComfyUIError": "protocol",
    "GenerationStatistics": "statistics",
    "ProgressStatus": "job",
    "ProgressUpdate": "job",
    "ProtocolError": "protocol",
    "ServerSlow": "protocol",
    "ServerUnavailable": "protocol",
    "StatusMonitor": "monitor",
    "SyncStatusMonitor": "sync",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)


__all__ = [
    "RUNNER_TYPE",
    "Backoff",
    "ComfyUIClient",
    "ComfyUIError",
    "GenerationStatistics",
    "ProgressStatus",
    "ProgressUpdate",
    "ProtocolError",
    "ServerSlow",
    "ServerUnavailable",
    "StatusMonitor",
    "SyncStatusMonitor",
]
