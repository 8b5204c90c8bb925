"""The Starlette application: the HTTP API, the WebSocket stream and the dashboard."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from progresskit.engine.monitor import Monitor
from progresskit.formats.change import Change
from progresskit.model.core import Status
from progresskit.plugin.manager import PluginManager
from progresskit.server import metrics
from progresskit.server.cancel import CancelRefused, Unauthorized, authorize, cancel
from progresskit.server.hub import Client, Hub
from progresskit.server.views import dumps

__all__ = ["STATIC_DIR", "ServeSettings", "create_app"]

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
#: ``?status=`` words besides the canonical statuses.
_STATUS_GROUPS = {
    "active": {s for s in Status if s.is_active},
    "inactive": {s for s in Status if not s.is_active},
    "unhealthy": {s for s in Status if not s.is_healthy},
}
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


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class _SecurityHeaders:
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


def _status_filter(value: str | None) -> set[Status] | None:
    if not value:
        return None
    wanted: set[Status] = set()
    for word in (w.strip().lower() for w in value.split(",")):
        if word in _STATUS_GROUPS:
            wanted |= _STATUS_GROUPS[word]
            continue
        try:
            wanted.add(Status(word))
        except ValueError:
            choices = ", ".join([*_STATUS_GROUPS, *(s.value for s in Status)])
            raise HTTPException(
                400,
                f"?status={value}: unknown status {word!r}; expected a comma-separated "
                f"list of: {choices}",
            ) from None
    return wanted


def _same_origin(origin: str, host: str | None) -> bool:
    return host is not None and urlsplit(origin).netloc.lower() == host.lower()


def create_app(monitor: Monitor, pm: PluginManager, settings: ServeSettings) -> Starlette:
    """The application serving ``monitor``'s runs. Its lifespan starts the monitor (if it
    is not running yet) and stops it on shutdown."""
    hub = Hub(
        monitor.root,
        buffer_size=settings.buffer_size,
        history_size=settings.history_size,
        client_queue=settings.client_queue,
    )

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        unsubscribe = hub.attach(monitor, asyncio.get_running_loop())
        for run in monitor.runs:  # a monitor started before us: its runs are not news to it
            hub.apply(Change("new", run))
        monitor.start()
        try:
            yield
        finally:
            unsubscribe()
            await run_in_threadpool(monitor.stop, 10.0)

    async def index(_request: Request) -> Response:
        return FileResponse(STATIC_DIR / "index.html", headers={"cache-control": "no-cache"})

    async def list_runs(request: Request) -> Response:
        wanted = _status_filter(request.query_params.get("status"))
        runner_type = request.query_params.get("runner_type")
        views = [
            e.view
            for e in hub.entries()
            if (wanted is None or e.run.status in wanted)
            and (runner_type is None or e.run.progress.runner_type == runner_type)
        ]
        return Response(dumps({"count": len(views), "runs": views}), media_type="application/json")

    async def get_run(request: Request) -> Response:
        rid = request.path_params["run_id"]
        entry = hub.get(rid)
        if entry is None:
            return _error(404, f"no run with id {rid!r}; ids come from GET /api/runs")
        return Response(dumps({"run": entry.document()}), media_type="application/json")

    async def cancel_run(request: Request) -> Response:
        try:
            authorize(request.headers.get("authorization"), settings.token)
        except Unauthorized as exc:
            headers = {"www-authenticate": 'Bearer realm="progresskit"'}
            return _error(exc.status, str(exc), headers if exc.status == 401 else None)
        rid = request.path_params["run_id"]
        entry = hub.get(rid)
        if entry is None:
            return _error(404, f"no run with id {rid!r}; ids come from GET /api/runs")
        try:
            await run_in_threadpool(cancel, pm, entry.run, settings.grace_seconds)
        except CancelRefused as exc:
            return _error(409, str(exc))
        hub.mark_cancel_requested(rid, time.time())
        log.warning("cancel requested for run %s (%s)", rid, entry.run.work_dir)
        return JSONResponse(
            {"cancelled": True, "run_id": rid, "grace_seconds": settings.grace_seconds},
            status_code=202,
        )

    async def get_stats(_request: Request) -> Response:
        document = metrics.stats(e.run for e in hub.entries())
        document["server"] = {
            "started_at": hub.started_at,
            "clients": hub.client_count,
            "dropped_clients": hub.dropped_clients,
            "watch_mode": monitor.mode,
        }
        return JSONResponse(document)

    async def prometheus(_request: Request) -> Response:
        text = metrics.prometheus_text([(e.view["name"], e.run) for e in hub.entries()])
        return Response(text, media_type=metrics.CONTENT_TYPE)

    async def training_status(_request: Request) -> Response:
        # Seed 002's bridge endpoint, answered from the newest change.
        events = [json.loads(text) for text in hub.recent_training_events()[-10:]]
        entry = hub.get(hub.latest) if hub.latest else None
        if entry is None:
            return JSONResponse({"running": False, "events": events})
        progress = entry.run.progress
        document = {
            "running": entry.run.status.is_active,
            "run_id": entry.view["id"],
            "stage": progress.current_stage,
            "progress_pct": progress.progress_percentage,
            "current_target": progress.current_item,
            "events": events,
        }
        return Response(dumps(document), media_type="application/json")

    async def accepted(websocket: WebSocket) -> bool:
        origin = websocket.headers.get("origin")
        if (
            origin
            and not _same_origin(origin, websocket.headers.get("host"))
            and origin not in settings.cors_origins
        ):
            await websocket.close(code=1008, reason="cross-origin WebSocket not allowed")
            return False
        await websocket.accept()
        return True

    async def training_stream(websocket: WebSocket) -> None:
        # Seed 002's /ws/training: the recent events one by one, then each new one, and a
        # {"type": "ping"} when idle; what the client sends is not read for meaning.
        if not await accepted(websocket):
            return
        client, recent = hub.connect_training()
        ping = settings.ping_interval
        await _attend(
            websocket,
            client,
            hub,
            recent,
            lambda: _plain_send_loop(websocket, client, ping),
            lambda: _until_closed(websocket),
        )

    async def jobs_stream(websocket: WebSocket) -> None:
        # Seed 003's StatusMonitor socket, at the bare ws://HOST:PORT its clients open:
        # progress_update for every change, and answers to get_job_progress.
        if not await accepted(websocket):
            return
        client = hub.connect_jobs()
        ping = settings.ping_interval
        await _attend(
            websocket,
            client,
            hub,
            [],
            lambda: _plain_send_loop(websocket, client, ping),
            lambda: _job_requests(websocket, client, hub),
        )

    async def stream(websocket: WebSocket) -> None:
        if not await accepted(websocket):
            return
        client, hello = hub.connect()
        ping = settings.ping_interval
        await _attend(
            websocket,
            client,
            hub,
            [hello],
            lambda: _send_loop(websocket, client, ping),
            lambda: _receive_loop(websocket, client, hub),
        )

    async def http_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return _error(exc.status_code, str(exc.detail))

    middleware = [
        Middleware(_SecurityHeaders),
        Middleware(TrustedHostMiddleware, allowed_hosts=list(settings.allowed_hosts)),
    ]
    if settings.cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(settings.cors_origins),
                allow_methods=["GET", "POST"],
                allow_headers=["authorization", "content-type"],
            )
        )
    app = Starlette(
        routes=[
            Route("/", index),
            Route("/api/runs", list_runs),
            Route("/api/runs/{run_id}", get_run),
            Route("/api/runs/{run_id}/cancel", cancel_run, methods=["POST"]),
            Route("/api/stats", get_stats),
            Route("/api/training/status", training_status),
            Route("/metrics", prometheus),
            WebSocketRoute("/ws", stream),
            WebSocketRoute("/ws/training", training_stream),
            WebSocketRoute("/", jobs_stream),
            Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
        ],
        middleware=middleware,
        exception_handlers={HTTPException: http_error},
        lifespan=lifespan,
    )
    app.state.hub = hub
    return app


async def _attend(
    websocket: WebSocket,
    client: Client,
    hub: Hub,
    greeting: Sequence[str],
    sender: Callable[[], Coroutine[Any, Any, None]],
    receiver: Callable[[], Coroutine[Any, Any, None]],
) -> None:
    """One WebSocket client's life, whatever the protocol: the greeting, then ``sender`` and
    ``receiver`` until either ends or the client falls too far behind (closed with 1013);
    always unregistered from ``hub``."""
    tasks: list[asyncio.Task[Any]] = []
    try:
        for text in greeting:
            await websocket.send_text(text)
        tasks = [
            asyncio.create_task(sender()),
            asyncio.create_task(receiver()),
            asyncio.create_task(client.overflowed.wait()),
        ]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        await _cancel(tasks)  # no send may be under way while the socket closes
        if client.overflowed.is_set():
            await websocket.close(code=1013, reason="too slow to follow: reconnect")
    except (WebSocketDisconnect, RuntimeError, OSError):
        pass  # the client left
    finally:
        hub.disconnect(client)
        await _cancel(tasks)


async def _cancel(tasks: list[asyncio.Task[Any]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


#: Most messages one ``batch`` frame carries.
_BATCH_MAX = 256


async def _send_loop(websocket: WebSocket, client: Client, ping_interval: float) -> None:
    while True:
        try:
            text = await asyncio.wait_for(client.queue.get(), ping_interval)
        except asyncio.TimeoutError:
            text = dumps({"type": "ping", "server_time": time.time()})
        if not client.queue.empty():
            # One evaluation of the root reports its changes together: a frame per client
            # for all of them, not one per change, keeps the fan-out cheap.
            texts = [text]
            while not client.queue.empty() and len(texts) < _BATCH_MAX:
                texts.append(client.queue.get_nowait())
            text = '{"type":"batch","messages":[' + ",".join(texts) + "]}"
        await websocket.send_text(text)


async def _plain_send_loop(websocket: WebSocket, client: Client, ping_interval: float) -> None:
    """One message per frame (no batches: the seeds' clients parse each frame as one
    message), and ``{"type": "ping"}`` when idle."""
    while True:
        try:
            text = await asyncio.wait_for(client.queue.get(), ping_interval)
        except asyncio.TimeoutError:
            text = '{"type":"ping"}'
        await websocket.send_text(text)


async def _job_requests(websocket: WebSocket, client: Client, hub: Hub) -> None:
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        hub.send(client, hub.job_request(message.get("text") or ""))


async def _until_closed(websocket: WebSocket) -> None:
    while (await websocket.receive())["type"] != "websocket.disconnect":
        pass


async def _receive_loop(websocket: WebSocket, client: Client, hub: Hub) -> None:
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        text = message.get("text")
        if text is None:
            reply: str | None = dumps({"type": "error", "message": "send text frames (JSON)"})
        else:
            reply = hub.request(client, text)
        if reply is not None:
            hub.send(client, reply)
