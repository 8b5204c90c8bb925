"""The Starlette application: the hub, the HTTP API, the channels and the dashboard's files,
behind the security middleware."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from progresskit.builtin.droprecord import read_drop_record
from progresskit.builtin.webhook import default_spool_root
from progresskit.engine.monitor import Monitor
from progresskit.formats.change import Change
from progresskit.plugin.manager import PluginManager
from progresskit.server.channels import Channel
from progresskit.server.channels.dashboard import DashboardChannel
from progresskit.server.channels.jobs import JobsChannel
from progresskit.server.channels.training import TrainingChannel
from progresskit.server.hub import Hub
from progresskit.server.routes import STATIC_DIR, Api, http_error
from progresskit.server.security import middleware
from progresskit.server.settings import ServeSettings

__all__ = ["SEED_CHANNELS", "STATIC_DIR", "ServeSettings", "create_app"]

#: The seeds' WebSocket protocols, served beside progresskit's own ``/ws`` for the seeds'
#: clients (docs/serve.md). Another protocol is another :class:`Channel` here.
SEED_CHANNELS: tuple[type[Channel], ...] = (TrainingChannel, JobsChannel)
#: Seconds between two reads of the sinks' drop records (``/metrics``).
DROPS_REFRESH_SECONDS = 5.0


def _drop_records(spools: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """The drop records of ``spools`` and of the default webhook spools, by spool."""
    root = default_spool_root()
    try:
        defaults = [os.path.join(root, name) for name in sorted(os.listdir(root))]
    except OSError:
        defaults = []
    records = {}
    for spool in dict.fromkeys([*spools, *defaults]):
        record = read_drop_record(spool)
        if record is not None:
            records[spool] = record
    return records


async def _refresh_drops(hub: Hub, spools: tuple[str, ...]) -> None:
    # Read off the event loop: the handlers answer from the hub and never touch the disk.
    while True:
        await asyncio.sleep(DROPS_REFRESH_SECONDS)
        hub.sink_drops = await run_in_threadpool(_drop_records, spools)


def create_app(monitor: Monitor, pm: PluginManager, settings: ServeSettings) -> Starlette:
    """The application serving ``monitor``'s runs. Its lifespan starts the monitor (if it
    is not running yet) and stops it on shutdown."""
    hub = Hub(monitor.root, history_size=settings.history_size, can_cancel=pm.hooks.can_cancel)
    dashboard = DashboardChannel(hub, settings)
    hub.channels += [dashboard, *(make(hub, settings) for make in SEED_CHANNELS)]

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        unsubscribe = hub.attach(monitor, asyncio.get_running_loop())
        for run in monitor.runs:  # a monitor started before us: its runs are not news to it
            hub.apply(Change("new", run))
        monitor.start()
        # Read once before serving: the first /metrics already tells what a sink dropped.
        hub.sink_drops = await run_in_threadpool(_drop_records, settings.sink_spools)
        drops = asyncio.create_task(_refresh_drops(hub, settings.sink_spools))
        try:
            yield
        finally:
            drops.cancel()
            unsubscribe()
            await run_in_threadpool(monitor.stop, 10.0)

    app = Starlette(
        routes=[
            *Api(hub, monitor, pm, settings, stream=dashboard).routes(),
            *(route for channel in hub.channels for route in channel.routes()),
            Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
        ],
        middleware=middleware(settings),
        exception_handlers={HTTPException: http_error},
        lifespan=lifespan,
    )
    app.state.hub = hub
    return app
