"""A malicious or broken ComfyUI server (issue 16): replies too deep, too long, too slow, or
with values no server means (NaN, 10**400 timestamps), and histories that ignore
``max_items``. Each is a clear error or a bounded answer, quickly, never a traceback or a
hang. The replies are real captured ones with one thing made hostile."""

from __future__ import annotations

import asyncio
import copy
import json
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from aiohttp import web
from progresskit_comfyui import ComfyUIClient, ProtocolError, ServerSlow, StatusMonitor

from comfyui_replay import capture

ENTRY_ID = "e9c77c30-73d4-464f-86d7-4293d36b4227"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _entry() -> dict[str, Any]:
    entry: dict[str, Any] = capture("B_get_history_prompt_1")["body"][ENTRY_ID]
    return entry


def _with_timestamp(raw: str) -> str:
    """The captured history with its start timestamp replaced by ``raw`` JSON text."""
    text = json.dumps({ENTRY_ID: _entry()})
    stamp = str(_entry()["status"]["messages"][0][1]["timestamp"])
    return text.replace(stamp, raw, 1)


async def _text(body: str) -> web.Response:
    return web.Response(text=body, content_type="application/json")


async def deep(request: web.Request) -> web.Response:
    return await _text("[" * 200_000 + "]" * 200_000)


async def nan_stamp(request: web.Request) -> web.Response:
    return await _text(_with_timestamp("NaN"))


async def huge_stamp(request: web.Request) -> web.Response:
    return await _text(_with_timestamp("1" + "0" * 400))


async def far_stamp(request: web.Request) -> web.Response:
    return await _text(_with_timestamp("1e300"))


async def many(request: web.Request) -> web.Response:
    # Ignores max_items: 10000 real entries under fresh ids (24 MB; 200k would be refused
    # by size, like any enormous reply).
    entry = _entry()
    body = {f"{n:08d}-0000-0000-0000-000000000000": entry for n in range(10_000)}
    return await _text(json.dumps(body))


async def trickle(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    for char in json.dumps(capture("A_get_queue_idle")["body"]):
        await response.write(char.encode())
        await asyncio.sleep(0.2)
    return response


async def enormous(request: web.Request) -> web.StreamResponse:
    # 1.5 GB announced, streamed until the client hangs up.
    response = web.StreamResponse(headers={"Content-Type": "application/json",
                                           "Content-Length": str(1_500_000_000)})
    await response.prepare(request)
    chunk = b" " * 65536
    for _ in range(1_500_000_000 // 65536):
        await response.write(chunk)
    return response


async def endless(request: web.Request) -> web.StreamResponse:
    # No length announced: chunked, megabytes of a never-ending list.
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    await response.write(b"[")
    chunk = b"0," * 32768
    for _ in range(1_500_000_000 // len(chunk)):
        await response.write(chunk)
    return response


async def system_stats(request: web.Request) -> web.Response:
    return web.json_response(capture("A_get_system_stats")["body"])


ROUTES: dict[str, Handler] = {
    "/deep": deep, "/nan": nan_stamp, "/huge": huge_stamp, "/far": far_stamp,
    "/many": many, "/trickle": trickle, "/enormous": enormous, "/endless": endless,
}


def _app() -> web.Application:
    app = web.Application()
    app.router.add_get("/system_stats", system_stats)
    for path, handler in ROUTES.items():
        # Each hostile reply under every path the client asks.
        app.router.add_get(f"{path}/queue", handler)
        app.router.add_get(f"{path}/history", handler)
        app.router.add_get(f"{path}/history/{{prompt_id}}", handler)
        app.router.add_get(f"{path}/system_stats", system_stats)
    return app


@pytest.fixture
def hostile() -> Iterator[str]:
    """The hostile server on its own event loop in a thread (the client gets the test's)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def start() -> web.AppRunner:
        runner = web.AppRunner(_app(), handle_signals=False, shutdown_timeout=0.5)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        return runner

    runner = asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


async def _bounded(call: Awaitable[Any], seconds: float = 5.0) -> float:
    began = time.monotonic()
    await asyncio.wait_for(call, seconds)
    return time.monotonic() - began


@pytest.mark.parametrize("path, words", [
    ("/deep", "nested too deeply"),
    ("/nan", "NaN is not a JSON value"),
    ("/huge", "not a time"),
])
def test_bad_json_values_are_a_bad_reply(hostile: str, path: str, words: str) -> None:
    async def scenario() -> None:
        async with ComfyUIClient(hostile + path, timeout=5) as client:
            with pytest.raises(ProtocolError, match=words):
                await _bounded(client.history(ENTRY_ID))

    asyncio.run(scenario())


def test_a_timestamp_that_is_no_time_is_a_bad_reply(hostile: str) -> None:
    async def scenario() -> None:
        async with ComfyUIClient(hostile + "/far", timeout=5) as client:
            with pytest.raises(ProtocolError, match="not a time"):
                await client.history(ENTRY_ID)

    asyncio.run(scenario())


def test_a_history_that_ignores_max_items_gives_only_max_items(hostile: str) -> None:
    async def scenario() -> None:
        async with ComfyUIClient(hostile + "/many", timeout=20) as client:
            entries = await client.recent_history(2)
        assert len(entries) == 2

    asyncio.run(scenario())


def test_a_trickled_reply_ends_within_the_timeout(hostile: str) -> None:
    async def scenario() -> None:
        async with ComfyUIClient(hostile + "/trickle", timeout=1.0) as client:
            began = time.monotonic()
            with pytest.raises(ServerSlow):
                await client.queue()
            assert time.monotonic() - began < 2.0

    asyncio.run(scenario())


@pytest.mark.parametrize("path", ["/enormous", "/endless"])
def test_an_enormous_reply_is_refused_without_reading_it(hostile: str, path: str) -> None:
    async def scenario() -> None:
        async with ComfyUIClient(hostile + path, timeout=20,
                                 max_reply_bytes=4 * 1024 * 1024) as client:
            began = time.monotonic()
            with pytest.raises(ProtocolError, match="bytes"):
                await client.queue()
            assert time.monotonic() - began < 5.0

    asyncio.run(scenario())


def test_a_monitor_of_a_hostile_server_reports_it_and_goes_on(hostile: str) -> None:
    async def scenario() -> None:
        async with StatusMonitor(hostile + "/deep", poll_interval=0.1,
                                 use_websocket=False) as monitor:
            await asyncio.sleep(0.5)
            stats = await monitor.get_queue_statistics()
        server = stats["servers"][hostile + "/deep"]
        assert server["state"] == "down"
        assert "nested too deeply" in server["last_error"]

    asyncio.run(scenario())


def test_entries_keep_their_shape_when_a_copy_is_hostile() -> None:
    # The fixture's replies really are the capture with one value changed.
    assert json.loads(_with_timestamp("1")) != {ENTRY_ID: _entry()}
    same = copy.deepcopy(_entry())
    same["status"]["messages"][0][1]["timestamp"] = 1
    assert json.loads(_with_timestamp("1")) == {ENTRY_ID: same}
