"""The WebSocket protocols the server speaks: one channel each, behind one interface.

The hub tells every channel each announced change of its state (:meth:`Channel.publish`);
the channel turns it into its protocol's messages and queues them for its clients.
:func:`~progresskit.server.streams.attend` runs each client's life and asks the channel for
the greeting, the frames, the keep-alive and the replies to what the client sends. A new
protocol is a new :class:`Channel` subclass, listed in :mod:`progresskit.server.app`.

- :mod:`~progresskit.server.channels.dashboard`: ``/ws``, progresskit's own stream;
- :mod:`~progresskit.server.channels.training`: seed 002's ``/ws/training`` and its
  ``/api/training/status``;
- :mod:`~progresskit.server.channels.jobs`: seed 003's StatusMonitor socket at ``/``.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

from starlette.routing import BaseRoute, WebSocketRoute
from starlette.websockets import WebSocket

from progresskit.server.settings import ServeSettings
from progresskit.server.streams import Client, Clients, attend
from progresskit.server.views import dumps

if TYPE_CHECKING:
    from progresskit.server.hub import Hub, News

__all__ = ["Channel"]


class Channel(abc.ABC):
    """One WebSocket protocol: its clients, and what it tells them."""

    #: The path its clients open.
    path: ClassVar[str]
    #: Most messages one frame carries; 1: one message per frame.
    batch_max: ClassVar[int] = 1

    def __init__(self, hub: Hub, settings: ServeSettings, *, catch_up: int = 0):
        """A channel over ``hub``'s state; ``catch_up``: the messages kept for late joiners."""
        self.hub = hub
        self.settings = settings
        self.clients = Clients(settings.client_queue, catch_up)

    def routes(self) -> list[BaseRoute]:
        """What the protocol serves: its WebSocket endpoint, and its HTTP endpoints if any."""
        return [WebSocketRoute(self.path, self.serve)]

    async def serve(self, websocket: WebSocket) -> None:
        """The WebSocket endpoint."""
        await attend(websocket, self, self.settings)

    # -- told by the hub (event loop only) -------------------------------------------------

    @abc.abstractmethod
    def publish(self, news: News) -> None:
        """Queue for the clients what ``news`` (a new, changed or removed run) means in
        this protocol."""

    def cancel_requested(self, rid: str, at: float) -> None:  # noqa: B027 (a default, not abstract)
        """A cancel of run ``rid`` was requested at ``at``; told only where the protocol
        has a message for it."""

    # -- a client's life (streams.attend) ----------------------------------------------------

    def connect(self) -> tuple[Client, Sequence[str]]:
        """Register a new client; returns it and its greeting, in one step of the event
        loop, so that no message falls between them."""
        return self.clients.add(), ()

    def disconnect(self, client: Client) -> None:
        """Forget ``client`` (it left or was dropped)."""
        self.clients.discard(client)

    def answer(self, client: Client, text: str | None) -> str | None:
        """The reply to one frame from ``client`` (``text``: ``None`` for a binary frame),
        or ``None`` for none. What a client sends is ignored unless the protocol says."""
        return None

    def frame(self, texts: Sequence[str]) -> str:
        """The frame that carries ``texts`` (1 to :attr:`batch_max` messages)."""
        return texts[0]

    def ping(self) -> str:
        """What a client gets after ``ping_interval`` seconds of silence."""
        return '{"type":"ping"}'

    @staticmethod
    def error(message: str) -> str:
        """A reply telling the client what was wrong with its message (every protocol
        here has this shape)."""
        return dumps({"type": "error", "message": message})
