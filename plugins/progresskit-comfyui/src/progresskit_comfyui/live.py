"""Servers followed live for a watching session (``progresskit_follow_target``).

``progresskit watch URL``, ``progresskit serve URL`` and ``Monitor(URL)`` would otherwise
ask the server again every poll interval (2 s), so an ending showed up to 2 s late. A
:class:`LiveServer` keeps a :class:`StatusMonitor` on the server (its event stream, and
its ``/queue`` and ``/history`` polls, early whenever the stream announces a queue
change) that follows every prompt the queue shows, tells the watcher whenever a job
changed, and answers the watcher's next look from what it knows, without asking again.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from progresskit_comfyui.job import ProgressUpdate
from progresskit_comfyui.monitor import StatusMonitor
from progresskit_comfyui.protocol import ComfyUIError, Workflow

__all__ = ["LIVE_POLL_GAP", "LiveServer", "follow", "follower_of"]

T = TypeVar("T")

#: The least time between two polls a queue change on the event stream asks for. Another
#: client's prompt sends this monitor no execution events, only ``status`` (the queue
#: changed): its ending is seen by the poll that such a message triggers.
LIVE_POLL_GAP = 0.1
#: Seconds to wait for the follower's thread (start-up asks the server for its history).
CALL_TIMEOUT = 30.0


class LiveServer:
    """A server's jobs, followed on an event loop of their own in a daemon thread."""

    def __init__(self, url: str, *, job_type: str | None, history_items: int, timeout: float,
                 changed: Callable[[], None]):
        self.url = url
        self.history_items = history_items
        self._job_type = job_type
        self._changed = changed
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever,
                                        name=f"comfyui-live {url}", daemon=True)
        self._thread.start()
        try:
            self.monitor = self._call(self._start(timeout))
        except BaseException:
            self._shutdown()
            raise

    def _type_of(self, workflow: Workflow) -> str:
        return self._job_type or workflow.kind

    async def _start(self, timeout: float) -> StatusMonitor:
        # A watcher is where the ETA history learns from: the jobs it sees complete are
        # recorded as they complete.
        # Finished jobs stay listed however old (one look lists the newest of /history too);
        # max_retained bounds them.
        monitor = StatusMonitor(self.url, http_timeout=timeout, min_poll_gap=LIVE_POLL_GAP,
                                adopt=self._type_of, retention=math.inf)
        self.monitor = monitor
        with contextlib.suppress(ComfyUIError):  # unreachable now: the polls retry
            await self._read_history()
            # The queue as it is now, before the first look is answered from what is known.
            await monitor.refresh()
        monitor.add_progress_callback(self._on_update)
        await monitor.start_monitoring()
        self._history_task = asyncio.ensure_future(self._history_loop(monitor.poll_interval))
        return monitor

    async def _read_history(self) -> None:
        """Follow the newest finished prompts not followed yet: at the start, and then for
        a prompt that ran from start to end between two looks at the queue (a fully cached
        prompt ends in milliseconds)."""
        if self.history_items <= 0:
            return
        monitor = self.monitor
        recent = await monitor.client(self.url).recent_history(self.history_items)
        new = [e for e in recent if monitor.progress_now(e.prompt_id) is None]
        for entry in new:
            monitor.monitor_job(entry.prompt_id, entry.prompt_id, self._type_of(entry.workflow))
        monitor.apply_history(new)

    async def _history_loop(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            with contextlib.suppress(ComfyUIError):
                await self._read_history()

    def _on_update(self, _update: ProgressUpdate) -> None:
        self._changed()

    def _call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(CALL_TIMEOUT)

    def updates(self) -> tuple[ProgressUpdate, ...]:
        """The server's jobs now: running, pending in queue order, the newest finished.

        Raises :class:`ComfyUIError` while the server cannot be reached (as one look at
        it would)."""
        return self._call(self._view())

    async def _view(self) -> tuple[ProgressUpdate, ...]:
        health = self.monitor.server_health(self.url)
        if health["state"] == "down":
            raise ComfyUIError(f"{self.url}: {health['last_error']}")
        return tuple(self.monitor.server_jobs(self.url, self.history_items))

    def close(self) -> None:
        if self._thread.is_alive():
            try:
                self._call(self._stop())
            finally:
                self._shutdown()

    async def _stop(self) -> None:
        self._history_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._history_task
        await self.monitor.stop_monitoring()

    def _shutdown(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(CALL_TIMEOUT)
        self._loop.close()


#: target -> the followers of it (several watchers of one target in one process).
_followers: dict[str, list[LiveServer]] = {}
_lock = threading.Lock()


def follow(target: str, server: LiveServer) -> Callable[[], None]:
    """Answer ``target``'s looks from ``server`` until the returned function is called."""
    with _lock:
        _followers.setdefault(target, []).append(server)

    def stop() -> None:
        with _lock:
            servers = _followers.get(target, [])
            if server in servers:
                servers.remove(server)
            if not servers:
                _followers.pop(target, None)
        server.close()

    return stop


def follower_of(target: str) -> LiveServer | None:
    with _lock:
        servers = _followers.get(target)
        return servers[0] if servers else None
