"""What bounds the server's connections: how many, how long a request's headers may take,
and how often one resource failure is logged.

uvicorn times out only a keep-alive connection that has completed a request: a connection
that sends nothing, or half a request line, is kept forever, and ``limit_concurrency``
answers 503 to requests but still holds every idle socket. Enough of them exhaust the
process's file descriptors, and then every request, the monitor's file reads and the accept
loop fail. :func:`guarded_protocol` closes a connection that has not completed its headers
within ``header_timeout`` and refuses connections beyond ``max_connections`` at once;
:class:`ResourceLogThrottle` keeps a resource failure from logging a traceback per request.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import threading
import time
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from progresskit.server.settings import ServeSettings

__all__ = ["RESOURCE_ERRNOS", "ResourceLogThrottle", "guarded_protocol", "install_log_throttle"]

log = logging.getLogger(__name__)

#: Failures that mean the process or machine ran out of something, not that a request was bad.
RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
#: What asyncio's accept loop logs (without an errno in the message) when accept() fails so.
_ACCEPT_FAILURE = "out of system resource"
#: asyncio schedules one accept retry per failed accept (up to the backlog at each wake-up);
#: once the listening socket is closed, each of them fails in turn: the same failure's echo.
_ACCEPT_RETRY = "BaseSelectorEventLoop._start_serving"
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
    b"connection: close\r\ncontent-length: 52\r\n\r\n"
    b'{"error": "too many connections: try again shortly"}'
)
assert len(_BUSY.rsplit(b"\r\n\r\n", 1)[1]) == 52


def guarded_protocol(settings: ServeSettings) -> type[H11Protocol]:
    """uvicorn's h11 protocol with ``settings``' connection cap and header timeout."""

    class GuardedH11Protocol(H11Protocol):
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if len(self.connections) > settings.max_connections:
                transport.write(_BUSY)
                transport.close()
                _refused()
                return
            self._arm_header_timer()

        def data_received(self, data: bytes) -> None:
            if self._between_requests():
                self._arm_header_timer()  # a new request's first bytes: its clock starts
            super().data_received(data)
            if not self._between_requests():
                self._disarm_header_timer()  # headers complete (or upgraded to WebSocket)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if self._between_requests() and self.conn.trailing_data[0]:
                self._arm_header_timer()  # part of the next request came with the last one

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm_header_timer()
            super().connection_lost(exc)

        def _between_requests(self) -> bool:
            upgraded = self.transport.get_protocol() is not self
            return not upgraded and (self.cycle is None or self.cycle.response_complete)

        def _arm_header_timer(self) -> None:
            if self._header_timer is None:
                self._header_timer = self.loop.call_later(
                    settings.header_timeout, self._header_timed_out
                )

        def _disarm_header_timer(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _header_timed_out(self) -> None:
            self._header_timer = None
            if self._between_requests() and not self.transport.is_closing():
                self.transport.close()

    return GuardedH11Protocol


_refusals = 0
_refusals_logged_at = 0.0


def _refused() -> None:
    """Log refused connections at most once a minute, with how many there were."""
    global _refusals, _refusals_logged_at
    _refusals += 1
    now = time.monotonic()
    if now - _refusals_logged_at >= 60.0:
        log.warning("connection limit reached: %d connection(s) refused with 503", _refusals)
        _refusals, _refusals_logged_at = 0, now


def _resource_errno(record: logging.LogRecord) -> int | None:
    exc = record.exc_info[1] if record.exc_info else None
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno in RESOURCE_ERRNOS:
            return exc.errno
        exc = exc.__cause__ or exc.__context__
    message = record.getMessage()
    if _ACCEPT_FAILURE in message or _ACCEPT_RETRY in message:
        return errno.EMFILE
    return None


class ResourceLogThrottle(logging.Filter):
    """Passes the first record of each resource failure (per logger and errno) in every
    ``interval`` seconds, and says how many were held back; other records pass."""

    def __init__(self, interval: float):
        super().__init__()
        self.interval = interval
        self._lock = threading.Lock()
        #: (logger, errno) -> (when last passed, records held back since).
        self._seen: dict[tuple[str, int], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        code = _resource_errno(record)
        if code is None:
            return True
        key = (record.name, code)
        now = time.monotonic()
        with self._lock:
            last, held = self._seen.get(key, (-self.interval, 0))
            if now - last < self.interval:
                self._seen[key] = (last, held + 1)
                return False
            self._seen[key] = (now, 0)
        name = errno.errorcode.get(code, str(code))
        note = f" ({held} more like it held back)" if held else ""
        record.msg = f"{record.getMessage()} [{name}: logged once per {self.interval:g}s{note}]"
        record.args = None
        # One traceback per interval at most: the first tells the story.
        record.exc_info, record.exc_text = (record.exc_info if not held else None), None
        return True


def install_log_throttle(
    interval: float, loggers: tuple[str, ...] = ("", "uvicorn", "uvicorn.error")
) -> ResourceLogThrottle:
    """Throttle resource failures on every handler of ``loggers`` (the root's included)."""
    throttle = ResourceLogThrottle(interval)
    handlers: list[Any] = []
    for name in loggers:
        handlers += [h for h in logging.getLogger(name).handlers if h not in handlers]
    for handler in handlers:
        handler.addFilter(throttle)
    return throttle
