"""What keeps the server to the pages and hosts it is meant for: security headers on every
page, the DNS-rebinding guard (Host and Origin), CORS, the origin check of the WebSocket
streams, and the cap on request bodies."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from progresskit.server.settings import ServeSettings

__all__ = ["BodyLimit", "OriginGuard", "SecurityHeaders", "middleware", "stream_origin_allowed"]

_CLOSE = (b"connection", b"close")
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data:; connect-src 'self'; "
        b"frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    ),
]


class SecurityHeaders:
    """Headers that keep the dashboard from being framed, sniffed or fed foreign scripts."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *_SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)


class _TooLarge(Exception):
    pass


async def _refuse(send: Send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                _CLOSE,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """At most ``limit`` bytes of request body on every route: a declared larger body is
    answered 413 before it is read, a chunked one once it passes the limit. A response
    that leaves the body unread (a 405, a GET) closes the connection: the server would
    otherwise read the rest, however long, to reach the next request."""

    def __init__(self, app: ASGIApp, limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length", b"").strip()
        too_large = f"request body over {self.limit} bytes"
        if declared and (not declared.isdigit() or int(declared) > self.limit):
            await _refuse(send, 413, too_large)
            return
        state = {
            "read": 0,
            "done": not declared and b"transfer-encoding" not in headers,
            "started": False,
        }

        async def limited_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                state["read"] += len(message.get("body", b""))
                if state["read"] > self.limit:
                    raise _TooLarge
                state["done"] = not message.get("more_body", False)
            return message

        async def closing_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["started"] = True
                if not state["done"]:
                    message["headers"] = [*message.get("headers", []), _CLOSE]
            await send(message)

        try:
            await self.app(scope, limited_receive, closing_send)
        except _TooLarge:
            if state["started"]:
                raise
            await _refuse(send, 413, too_large)


class OriginGuard:
    """Refuses (403) a state-changing request (not GET, HEAD or OPTIONS) from a page of a
    foreign origin: one that is neither the server's own pages (its ``Origin`` names the
    request's ``Host``) nor an allowed or CORS origin. Reads need no such guard: a foreign
    page cannot read an answer without CORS, which only the CORS origins get."""

    def __init__(self, app: ASGIApp, origins: tuple[str, ...]):
        self.app = app
        self.origins = origins

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] not in _SAFE_METHODS:
            headers = dict(scope["headers"])
            origin = headers.get(b"origin", b"").decode("latin-1")
            host = headers.get(b"host", b"").decode("latin-1")
            if not stream_origin_allowed(origin or None, host or None, self.origins):
                await _refuse(send, 403, f"origin {origin!r} not allowed (--allow-origin)")
                return
        await self.app(scope, receive, send)


def middleware(settings: ServeSettings) -> list[Middleware]:
    """The application's middleware, outermost first: the security headers, the body cap,
    the host and origin guards, and CORS for the configured origins only."""
    stack = [
        Middleware(SecurityHeaders),
        Middleware(BodyLimit, limit=settings.max_body_bytes),
        Middleware(TrustedHostMiddleware, allowed_hosts=list(settings.allowed_hosts)),
        Middleware(OriginGuard, origins=(*settings.allowed_origins, *settings.cors_origins)),
    ]
    if settings.cors_origins:
        stack.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(settings.cors_origins),
                allow_methods=["GET", "POST"],
                allow_headers=["authorization", "content-type"],
            )
        )
    return stack


def stream_origin_allowed(origin: str | None, host: str | None, origins: tuple[str, ...]) -> bool:
    """Whether a WebSocket opened (or a request sent) with ``Origin: origin`` (``None``:
    not a browser page) may connect: from the server's own pages (the origin names
    ``host``) or an allowed origin. Browsers do not apply CORS to WebSockets, so the server
    must."""
    if not origin:
        return True
    same = host is not None and urlsplit(origin).netloc.lower() == host.lower()
    return same or origin in origins
