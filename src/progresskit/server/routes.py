"""The HTTP API and the dashboard's pages (docs/serve.md "The API"), answered from the hub's
state: no handler takes a path from a URL, and only the run page's data
(``/api/runs/{id}/detail``) touches the disk, reading the files of a run the monitor found."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from progresskit.engine.monitor import Monitor
from progresskit.model.core import Status
from progresskit.plugin.manager import PluginManager
from progresskit.server import metrics
from progresskit.server.cancel import CancelRefused, Unauthorized, authorize, cancel
from progresskit.server.channels import Channel
from progresskit.server.detail import run_detail
from progresskit.server.hub import Hub
from progresskit.server.settings import ServeSettings
from progresskit.server.views import dumps

__all__ = ["STATIC_DIR", "Api", "error", "http_error"]

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
#: ``?status=`` words besides the canonical statuses.
_STATUS_GROUPS = {
    "active": {s for s in Status if s.is_active},
    "inactive": {s for s in Status if not s.is_active},
    "unhealthy": {s for s in Status if not s.is_healthy},
}


def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """An error answer: ``{"error": message}``, the shape of every API error."""
    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def http_error(_request: Request, exc: Exception) -> Response:
    """Starlette's HTTP errors (404, 405, a bad query) in the API's error shape."""
    assert isinstance(exc, HTTPException)
    return error(exc.status_code, str(exc.detail))


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


def _unknown(rid: str) -> JSONResponse:
    return error(404, f"no run with id {rid!r}; ids come from GET /api/runs")


class Api:
    """The HTTP endpoints over ``hub``; ``stream`` is the channel whose clients
    ``/api/stats`` counts (progresskit's own ``/ws``)."""

    def __init__(
        self,
        hub: Hub,
        monitor: Monitor,
        pm: PluginManager,
        settings: ServeSettings,
        stream: Channel,
    ):
        self._hub = hub
        self._monitor = monitor
        self._pm = pm
        self._settings = settings
        self._stream = stream

    def routes(self) -> list[BaseRoute]:
        """The API's routes and the dashboard page's."""
        return [
            Route("/", self.index),
            Route("/api/runs", self.list_runs),
            Route("/api/runs/{run_id}", self.get_run),
            Route("/api/runs/{run_id}/detail", self.run_detail),
            Route("/runs/{run_id}", self.run_page),
            Route("/api/runs/{run_id}/cancel", self.cancel_run, methods=["POST"]),
            Route("/api/stats", self.stats),
            Route("/api/unrecognised", self.unrecognised),
            Route("/metrics", self.prometheus),
        ]

    async def index(self, _request: Request) -> Response:
        """``GET /``: the dashboard."""
        return FileResponse(STATIC_DIR / "index.html", headers={"cache-control": "no-cache"})

    async def list_runs(self, request: Request) -> Response:
        """``GET /api/runs``, filtered by ``?status=`` and ``?runner_type=``."""
        wanted = _status_filter(request.query_params.get("status"))
        runner_type = request.query_params.get("runner_type")
        views = [
            e.view
            for e in self._hub.entries()
            if (wanted is None or e.run.status in wanted)
            and (runner_type is None or e.run.progress.runner_type == runner_type)
        ]
        return Response(dumps({"count": len(views), "runs": views}), media_type="application/json")

    async def get_run(self, request: Request) -> Response:
        """``GET /api/runs/{id}``: one run's view and history."""
        rid = request.path_params["run_id"]
        entry = self._hub.get(rid)
        if entry is None:
            return _unknown(rid)
        return Response(dumps({"run": entry.document()}), media_type="application/json")

    async def run_detail(self, request: Request) -> Response:
        """``GET /api/runs/{id}/detail``: the run page's data. Unlike the rest of the API it
        reads the disk (the run's own files, in a worker thread: server/detail.py)."""
        rid = request.path_params["run_id"]
        entry = self._hub.get(rid)
        if entry is None:
            return _unknown(rid)
        document = await run_in_threadpool(run_detail, self._monitor, self._pm, entry.run)
        # The hub's state as it is now: the run may have changed during the read.
        entry = self._hub.get(rid) or entry
        document["run"] = {**entry.document(), "statuses": list(entry.statuses)}
        return Response(dumps(document), media_type="application/json")

    async def run_page(self, request: Request) -> Response:
        """``GET /runs/{id}``: one run's page."""
        rid = request.path_params["run_id"]
        if self._hub.get(rid) is None:
            return _unknown(rid)
        return FileResponse(STATIC_DIR / "run.html", headers={"cache-control": "no-cache"})

    async def cancel_run(self, request: Request) -> Response:
        """``POST /api/runs/{id}/cancel``: with the token, ask the plugins to stop the job."""
        try:
            authorize(request.headers.get("authorization"), self._settings.token)
        except Unauthorized as exc:
            headers = {"www-authenticate": 'Bearer realm="progresskit"'}
            return error(exc.status, str(exc), headers if exc.status == 401 else None)
        rid = request.path_params["run_id"]
        entry = self._hub.get(rid)
        if entry is None:
            return _unknown(rid)
        grace = self._settings.grace_seconds
        try:
            await run_in_threadpool(cancel, self._pm, entry.run, grace)
        except CancelRefused as exc:
            return error(409, str(exc))
        self._hub.mark_cancel_requested(rid, time.time())
        log.warning("cancel requested for run %s (%s)", rid, entry.run.work_dir)
        return JSONResponse(
            {"cancelled": True, "run_id": rid, "grace_seconds": grace}, status_code=202
        )

    async def unrecognised(self, _request: Request) -> Response:
        """``GET /api/unrecognised``: run-like directories no tracker claims (docs/cli.md)."""
        entries = [entry.document() for entry in self._monitor.unrecognised]
        return JSONResponse({"count": len(entries), "unrecognised": entries})

    async def stats(self, _request: Request) -> Response:
        """``GET /api/stats``: counts, completion times and the server's own figures."""
        document = metrics.stats(e.run for e in self._hub.entries())
        document["server"] = {
            "started_at": self._hub.started_at,
            "clients": len(self._stream.clients),
            "dropped_clients": self._hub.dropped_clients,
            "watch_mode": self._monitor.mode,
        }
        return JSONResponse(document)

    async def prometheus(self, _request: Request) -> Response:
        """``GET /metrics``: Prometheus text."""
        runs = [(e.view["name"], e.run) for e in self._hub.entries()]
        text = metrics.prometheus_text(runs, self._settings.metrics_max_runs)
        text += self._hub.transitions.text()
        text += metrics.losses_text(self._hub.sink_drops, self._hub.dropped_clients)
        return Response(text, media_type=metrics.CONTENT_TYPE)
