"""How the server behaves: the ``progresskit serve`` options its parts share.

Needs no server dependency: the command line reads its defaults before the extra is known
to be installed."""

from __future__ import annotations

import attrs

__all__ = ["ServeSettings"]


@attrs.frozen
class ServeSettings:
    """How the server behaves (``progresskit serve`` options)."""

    token: str
    #: Seconds a cancelled job gets between SIGTERM (or its plugin's gentle stop) and kill.
    grace_seconds: float = 10.0
    #: Seconds of silence after which a WebSocket client gets a ``ping`` message.
    ping_interval: float = 15.0
    #: Origins allowed to call the API from another site (CORS) and to open the stream.
    cors_origins: tuple[str, ...] = ()
    #: Host names the server answers to (DNS-rebinding guard); ``("*",)`` for any.
    allowed_hosts: tuple[str, ...] = ("*",)
    #: Recent events a late joiner receives.
    buffer_size: int = 100
    #: History points kept per run.
    history_size: int = 100
    #: Messages a client may fall behind before it is dropped.
    client_queue: int = 512
