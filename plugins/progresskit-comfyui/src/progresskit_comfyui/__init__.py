"""Track, estimate and cancel ComfyUI generation jobs (progresskit plugin and library).

Library use (seed 003's StatusMonitor)::

    from progresskit_comfyui import StatusMonitor

    async with StatusMonitor("http://127.0.0.1:8188") as monitor:
        monitor.monitor_job(123, prompt_id, "video")
        update = await monitor.get_progress(123)

:class:`SyncStatusMonitor` offers the same without an event loop.
"""

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

__all__ = [
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
