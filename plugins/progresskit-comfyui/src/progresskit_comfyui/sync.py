"""A blocking facade over :class:`StatusMonitor` for code without an event loop.

The monitor runs on its own event loop in a daemon thread; every call is handed to that
loop, so the monitor's state is only ever touched by one thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Hashable, Mapping
from datetime import datetime
from typing import Any, TypeVar

from progresskit_comfyui.job import ProgressUpdate
from progresskit_comfyui.monitor import ProgressCallback, StatusMonitor

__all__ = ["SyncStatusMonitor"]

T = TypeVar("T")


class SyncStatusMonitor:
    """Same arguments and methods as :class:`StatusMonitor`, blocking; starts at once.

    Callbacks run on the monitor's thread: hand work to your own thread if it is slow.
    """

    def __init__(self, *args: Any, call_timeout: float = 60.0, **kwargs: Any):
        self._timeout = call_timeout
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="comfyui-monitor",
                                        daemon=True)
        self._thread.start()

        async def create() -> StatusMonitor:
            monitor = StatusMonitor(*args, **kwargs)
            await monitor.start_monitoring()
            return monitor

        try:
            self.monitor = self._call(create())
        except BaseException:
            self._shutdown()
            raise

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(self._timeout)

    def _run(self, function: Any, *args: Any, **kwargs: Any) -> Any:
        async def call() -> Any:
            return function(*args, **kwargs)

        return self._call(call())

    def monitor_job(self, job_id: Hashable, prompt_id: str, job_type: str = "default", *,
                    server: str | None = None, prompt: Mapping[str, Any] | None = None) -> bool:
        result: bool = self._run(self.monitor.monitor_job, job_id, prompt_id, job_type,
                                 server=server, prompt=prompt)
        return result

    def add_progress_callback(self, callback: ProgressCallback) -> None:
        self._run(self.monitor.add_progress_callback, callback)

    def get_progress(self, job_id: Hashable) -> ProgressUpdate | None:
        return self._call(self.monitor.get_progress(job_id))

    def estimate_completion(self, job_id: Hashable) -> datetime | None:
        return self._call(self.monitor.estimate_completion(job_id))

    def get_queue_statistics(self) -> dict[str, Any]:
        return self._call(self.monitor.get_queue_statistics())

    def cancel_job(self, job_id: Hashable) -> bool:
        return self._call(self.monitor.cancel_job(job_id))

    def close(self) -> None:
        """Stop monitoring and the thread."""
        if self._thread.is_alive():
            try:
                self._call(self.monitor.stop_monitoring())
            finally:
                self._shutdown()

    def _shutdown(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=self._timeout)
        self._loop.close()

    def __enter__(self) -> SyncStatusMonitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
