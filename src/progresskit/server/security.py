"""What keeps the server to the pages and hosts it is meant for: security headers on every
page, the DNS-rebinding guard, CORS, and the origin check of the WebSocket streams."""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from progresskit.server.settings import ServeSettings

__all__ = ["SecurityHeaders", "middleware", "stream_origin_allowed"]

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


def middleware(settings: ServeSettings) -> list[Middleware]:
    """The application's middleware, outermost first: the security headers, the host
    guard, and CORS for the configured origins only."""
    stack = [
        Middleware(SecurityHeaders),
        Middleware(TrustedHostMiddleware, allowed_hosts=list(settings.allowed_hosts)),
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


def stream_origin_allowed(
    origin: str | None, host: str | None, cors_origins: tuple[str, ...]
) -> bool:
    """Whether a WebSocket opened with ``Origin: origin`` (``None``: not a browser page)
    may connect: from the server's own pages (the origin names ``host``) or a configured
    origin. Browsers do not apply CORS to WebSockets, so the server must."""
    if not origin:
        return True
    same = host is not None and urlsplit(origin).netloc.lower() == host.lower()
    return same or origin in cors_origins
