"""The HTTP and WebSocket client of one ComfyUI server.

Errors are sorted into what the monitor must do about them: :class:`ServerUnavailable`
(back off and retry), :class:`ServerSlow` (busy, keep waiting, not a failure) and
:class:`ProtocolError` (the answer is not ComfyUI's).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from websockets.asyncio.client import connect

from progresskit_comfyui.protocol import (
    HistoryEntry,
    ProtocolError,
    QueueSnapshot,
    ServerSlow,
    ServerUnavailable,
    loads,
    normalise_url,
    parse_history,
    parse_queue,
    parse_system_stats,
    system_of,
)

__all__ = ["ComfyUIClient", "normalise_url"]

#: Large executed-output and preview frames are legitimate; 1 MiB (the library default)
#: would close the socket on a big preview.
_MAX_FRAME = 64 * 1024 * 1024
#: The largest HTTP reply read (bytes): a ``/queue`` of hundreds of prompts or a
#: ``/history`` of 10000 is a few MiB; a 1.5 GB body is not a reply worth reading.
MAX_REPLY_BYTES = 32 * 1024 * 1024


class ComfyUIClient:
    """Requests to one server. ``timeout`` bounds a reply; connecting gets less (a refused
    or unroutable address should be known quickly, a busy server may take its time)."""

    def __init__(self, url: str, *, timeout: float = 30.0, connect_timeout: float = 5.0,
                 max_reply_bytes: int = MAX_REPLY_BYTES):
        self.url = normalise_url(url)
        self.timeout = timeout
        self.max_reply_bytes = max_reply_bytes
        self._http = httpx.AsyncClient(
            base_url=self.url,
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            # A monitor holds one connection per server; a proxy from the environment
            # would only add a hop for a loopback or LAN server.
            trust_env=False,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> ComfyUIClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- requests -------------------------------------------------------------------------

    async def _request(self, method: str, path: str, body: Any = None) -> Any:
        what = f"{method} {self.url}{path}"
        try:
            # The whole exchange, body included, within the timeout: a server trickling
            # its reply byte by byte never resets a per-read timeout.
            status, reason, content = await asyncio.wait_for(
                self._exchange(method, path, body, what), self.timeout)
        except httpx.ConnectTimeout as exc:
            raise ServerUnavailable(f"{what}: no connection within the time limit") from exc
        except (httpx.TimeoutException, asyncio.TimeoutError) as exc:
            raise ServerSlow(f"{what}: no reply within {self.timeout:g}s (server busy)") from exc
        except (httpx.TransportError, OSError) as exc:
            raise ServerUnavailable(f"{what}: {type(exc).__name__}: {exc}") from exc
        if status != 200:
            raise ProtocolError(
                f"{what}: HTTP {status} {reason} (expected 200): {content[:200]!r}"
            )
        if not content:
            # /interrupt and the queue deletion answer 200 with an empty body.
            return None
        return loads(content, what)

    async def _exchange(self, method: str, path: str, body: Any,
                        what: str) -> tuple[int, str, bytes]:
        async with self._http.stream(method, path, json=body) as response:
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > self.max_reply_bytes:
                raise ProtocolError(f"{what}: reply of {int(declared)} bytes, more than the "
                                    f"{self.max_reply_bytes} a ComfyUI reply may have")
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > self.max_reply_bytes:
                    raise ProtocolError(f"{what}: reply longer than the {self.max_reply_bytes} "
                                        f"bytes a ComfyUI reply may have")
                chunks.append(chunk)
            return response.status_code, response.reason_phrase, b"".join(chunks)

    async def system_identity(self) -> dict[str, Any]:
        """``/system_stats``'s ``system`` object (what says which server process it is)."""
        return system_of(await self._request("GET", "/system_stats"),
                         f"GET {self.url}/system_stats")

    async def system_stats(self) -> str:
        """The server's ComfyUI version; :class:`ProtocolError` if it is not ComfyUI."""
        return parse_system_stats(await self._request("GET", "/system_stats"),
                                  f"GET {self.url}/system_stats")

    async def queue(self) -> QueueSnapshot:
        return parse_queue(await self._request("GET", "/queue"), f"GET {self.url}/queue")

    async def history(self, prompt_id: str) -> HistoryEntry | None:
        """The finished prompt, or ``None`` while it is queued, running or unknown."""
        path = f"/history/{prompt_id}"
        found = parse_history(await self._request("GET", path), f"GET {self.url}{path}")
        return found.get(prompt_id)

    async def recent_history(self, max_items: int) -> list[HistoryEntry]:
        """The newest ``max_items`` finished prompts, oldest first (the server's order)."""
        path = f"/history?max_items={int(max_items)}"
        body = await self._request("GET", path)
        # A server that ignores max_items still gives only the newest max_items.
        return list(parse_history(body, f"GET {self.url}{path}", limit=max_items).values())

    async def interrupt(self, prompt_id: str) -> None:
        """Interrupt ``prompt_id`` if it is the running prompt (the server ignores others)."""
        await self._request("POST", "/interrupt", {"prompt_id": prompt_id})

    async def delete_pending(self, prompt_ids: Sequence[str]) -> None:
        """Remove pending prompts from the queue (a running one is not affected)."""
        await self._request("POST", "/queue", {"delete": list(prompt_ids)})

    # -- events ---------------------------------------------------------------------------

    def websocket_url(self, client_id: str) -> str:
        parts = urlsplit(self.url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        return urlunsplit((scheme, parts.netloc, parts.path + "/ws", f"clientId={client_id}", ""))

    def events(self, client_id: str) -> Any:
        """An async context manager yielding the ``/ws`` connection for ``client_id``.

        Pings are patient: a server blocked encoding previews answers late, and that is
        not a dead connection.
        """
        return connect(
            self.websocket_url(client_id),
            open_timeout=self.timeout,
            ping_interval=30,
            ping_timeout=120,
            close_timeout=2,
            max_size=_MAX_FRAME,
            proxy=None,
        )

