"""How the server behaves: the ``progresskit serve`` options its parts share.

Needs no server dependency: the command line reads its defaults before the extra is known
to be installed."""

from __future__ import annotations

import attrs

from progresskit.server.metrics import DEFAULT_MAX_RUNS

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
    #: Origins besides the server's own pages allowed to open a stream or send a request
    #: carrying an ``Origin`` header (``--allow-origin``); CORS origins are allowed too.
    allowed_origins: tuple[str, ...] = ()
    #: Most bytes of a request body, on every route; beyond: 413 and the connection closed.
    max_body_bytes: int = 64 * 1024
    #: Most open connections (HTTP and WebSocket); a connection beyond is answered 503 and
    #: closed at once, so idle sockets cannot exhaust the process's file descriptors.
    max_connections: int = 256
    #: Most WebSocket clients over all streams; one more is closed with code 1013.
    max_ws_clients: int = 128
    #: Seconds a connection may take to send a request's headers (from its first byte, or
    #: from the connection's start); a half-sent request is then closed.
    header_timeout: float = 10.0
    #: Seconds an idle keep-alive connection is kept between requests.
    idle_timeout: float = 5.0
    #: Sink spools whose drop records ``/metrics`` reports besides the default spools
    #: (``--sink-spool``).
    sink_spools: tuple[str, ...] = ()
    #: Seconds between two log records of the same resource failure (EMFILE, ENOMEM...).
    resource_log_interval: float = 60.0
    #: Most runs with series of their own on ``/metrics`` (``--metrics-max-runs``), the
    #: most urgent first; the others are counted per status (docs/prometheus.md).
    metrics_max_runs: int = DEFAULT_MAX_RUNS
