"""The life of a WebSocket client, whatever its protocol (its channel).

A client is accepted from the server's own pages or a configured origin only; it is
registered with its channel and greeted in one step of the event loop, so no message falls
between the greeting and the first news; then a sender and a receiver serve it until either
ends. Each client has a bounded outbox, filled once per message by its channel's fan-out
(:class:`Clients`). A client whose outbox is full is too slow to follow: it is dropped and
closed with code 1013 (it reconnects and gets the current state), so it can neither stall
the others nor make the server's memory grow.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from progresskit.server.security import stream_origin_allowed
from progresskit.server.settings import ServeSettings

if TYPE_CHECKING:
    from progresskit.server.channels import Channel

__all__ = ["Client", "Clients", "attend"]

log = logging.getLogger(__name__)


class Client:
    """One WebSocket connection's outbox: a bounded queue of message texts."""

    def __init__(self, limit: int):
        self._texts: collections.deque[str] = collections.deque()
        self._limit = limit
        self._ready = asyncio.Event()
        #: Set when the client fell too far behind and must be closed.
        self.overflowed = asyncio.Event()

    def put(self, text: str) -> bool:
        """Queue ``text``; ``False`` when the outbox is full (nothing is queued)."""
        if len(self._texts) >= self._limit:
            return False
        self._texts.append(text)
        self._ready.set()
        return True

    async def take(self, most: int, timeout: float) -> list[str]:
        """The oldest queued texts, at most ``most``, after waiting up to ``timeout``
        seconds for one; ``[]`` when none came."""
        if not self._texts:
            # Not asyncio.wait_for: before Python 3.12 it returns a result that arrives in
            # the step its task is cancelled in, and a dropped client was then never closed.
            timer = asyncio.get_running_loop().call_later(timeout, self._ready.set)
            try:
                await self._ready.wait()
            finally:
                timer.cancel()
        self._ready.clear()
        return [self._texts.popleft() for _ in range(min(most, len(self._texts)))]


class Clients:
    """The connected clients of one channel, the drop of those too slow to follow, and the
    newest messages, which a late joiner catches up from."""

    def __init__(self, queue_size: int, catch_up: int = 0):
        self._queue_size = queue_size
        self._clients: set[Client] = set()
        #: The newest ``catch_up`` messages broadcast, oldest first.
        self.recent: collections.deque[str] = collections.deque(maxlen=catch_up)
        #: Clients dropped for being too slow, since start (``/api/stats``).
        self.dropped = 0

    def add(self) -> Client:
        """A new client, registered."""
        client = Client(self._queue_size)
        self._clients.add(client)
        return client

    def discard(self, client: Client) -> None:
        """Unregister ``client`` (no-op if it was dropped)."""
        self._clients.discard(client)

    def send(self, client: Client, text: str) -> None:
        """Queue ``text`` for ``client``; a client with a full queue is dropped."""
        if client.put(text) or client not in self._clients:
            return
        self._clients.discard(client)
        self.dropped += 1
        client.overflowed.set()
        log.warning("a WebSocket client fell %d messages behind: dropped", self._queue_size)

    def broadcast(self, text: str, wanted: Callable[[Client], bool] | None = None) -> None:
        """Queue ``text`` for every client (that is ``wanted``), and keep it for late joiners."""
        self.recent.append(text)
        for client in self:
            if wanted is None or wanted(client):
                self.send(client, text)

    def __iter__(self) -> Iterator[Client]:
        # A copy: sending may drop a client.
        return iter(list(self._clients))

    def __len__(self) -> int:
        return len(self._clients)


async def attend(websocket: WebSocket, channel: Channel, settings: ServeSettings) -> None:
    """Serve one WebSocket client of ``channel`` until it leaves or falls too far behind
    (closed with 1013); a page of a foreign origin is refused (closed with 1008), and so is a
    client beyond ``max_ws_clients`` over all channels (closed with 1013)."""
    headers = websocket.headers
    origins = (*settings.allowed_origins, *settings.cors_origins)
    if not stream_origin_allowed(headers.get("origin"), headers.get("host"), origins):
        await websocket.close(code=1008, reason="cross-origin WebSocket not allowed")
        return
    if sum(len(c.clients) for c in channel.hub.channels) >= settings.max_ws_clients:
        await websocket.accept()  # a close before accepting is a bare 403 the client cannot read
        await websocket.close(code=1013, reason="too many stream clients: try again later")
        log.warning("stream client refused: %d clients connected", settings.max_ws_clients)
        return
    await websocket.accept()
    client, greeting = channel.connect()
    tasks: list[asyncio.Task[Any]] = []
    try:
        for text in greeting:
            await websocket.send_text(text)
        tasks = [
            asyncio.create_task(_send(websocket, client, channel, settings.ping_interval)),
            asyncio.create_task(_receive(websocket, client, channel)),
            asyncio.create_task(client.overflowed.wait()),
        ]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        await _cancel(tasks)  # no send may be under way while the socket closes
        if client.overflowed.is_set():
            await websocket.close(code=1013, reason="too slow to follow: reconnect")
    except (WebSocketDisconnect, RuntimeError, OSError):
        pass  # the client left
    finally:
        channel.disconnect(client)
        await _cancel(tasks)


async def _cancel(tasks: list[asyncio.Task[Any]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _send(
    websocket: WebSocket, client: Client, channel: Channel, ping_interval: float
) -> None:
    while True:
        texts = await client.take(channel.batch_max, ping_interval)
        await websocket.send_text(channel.frame(texts) if texts else channel.ping())


async def _receive(websocket: WebSocket, client: Client, channel: Channel) -> None:
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        try:
            reply = channel.answer(client, message.get("text"))
        except RecursionError:
            # json's parser recurses per nesting level: a message nested deeper than the
            # interpreter's limit is a bad message, not the end of the connection.
            reply = channel.error("message nested too deeply: send a flat JSON object")
        if reply is not None:
            channel.clients.send(client, reply)
