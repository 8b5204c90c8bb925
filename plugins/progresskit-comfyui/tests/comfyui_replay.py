"""A loopback ComfyUI that replays what a real ComfyUI 0.3.64 said (tests/data).

Every reply and event is a captured one: the ``/ws`` message sequences of real prompts
(success, run-time failure, a long prompt that runs until interrupted, a prompt posted
without a client id), their ``/history`` entries and the shapes of ``/queue``,
``/system_stats``, ``/interrupt`` and queue deletion. Only identities and clocks change:
each submission gets a fresh prompt id and number, and captured timestamps are moved to
now (and compressed by ``speed``).

The server follows ComfyUI's delivery rules, which the captures show: ``status`` goes to
every socket; the other events of a prompt go only to the socket of the client id it was
posted with; of a prompt posted without one, every socket gets ``progress``,
``progress_state`` and previews, and nobody gets ``execution_*``.

Run it in a thread (:class:`ReplayThread`) for tests, or as a process for the benchmark:
``python comfyui_replay.py --servers 2 --speed 100 --send-log FILE`` (from this folder) prints
one ``PORT`` line per server and serves until stdin closes (``--hold``: runs nothing until a
first line arrives on stdin).
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import struct
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, TextIO

from aiohttp import WSMsgType, web

CAPTURES = Path(__file__).parent / "data" / "captures"

#: Events a prompt posted without a client id still sends to every socket.
_BROADCAST_WITHOUT_CLIENT = {"progress", "progress_state"}
_TERMINAL = {"execution_success", "execution_error", "execution_interrupted"}


def capture(name: str) -> Any:
    return json.loads((CAPTURES / f"{name}.json").read_text())


class Recording:
    """One real prompt: what was posted, the events it caused, where it ended in history.

    ``hold_at_end``: the capture stops where the prompt was interrupted; replayed, the
    prompt keeps running at that point until someone interrupts it.
    """

    def __init__(self, name: str, post: str, ws: str, history: str, *,
                 prompt_id: str | None = None, hold_at_end: bool = False):
        posted = capture(post)
        self.name = name
        self.request: dict[str, Any] = posted["request"]["body"]
        self.prompt_id: str = prompt_id or posted["body"]["prompt_id"]
        self.hold_at_end = hold_at_end
        self.history: dict[str, Any] = capture(history)["body"].get(self.prompt_id, {})
        self.messages = list(self._messages(capture(ws)["messages"]))
        starts = [m for m in self.messages if m[1] == "execution_start"]
        self.t0 = (starts[0] if starts else self.messages[0])[0]
        self.ts0 = self._first_timestamp()

    def _messages(self, messages: list[dict[str, Any]]) -> Iterator[tuple[float, str, Any]]:
        """The prompt's own messages (and the previews sent while it ran), in order."""
        mine = False
        for m in messages:
            if m.get("binary"):
                if mine:
                    yield m["t"], "binary", m
                continue
            data = m.get("data") or {}
            if data.get("prompt_id") != self.prompt_id:
                continue
            if self.hold_at_end and m["type"] in _TERMINAL:
                break
            mine = not (m["type"] == "executing" and data.get("node") is None)
            yield m["t"], m["type"], data

    def _first_timestamp(self) -> float:
        for _, kind, data in self.messages:
            if kind == "execution_start":
                return float(data["timestamp"])
        for name, data in self.history.get("status", {}).get("messages", []):
            if name == "execution_start":
                return float(data["timestamp"])
        return 0.0

    @property
    def graph(self) -> dict[str, Any]:
        return dict(self.request["prompt"])


def recordings() -> dict[str, Recording]:
    e_ids = capture("E_ws_messages_cancel_interrupt")["prompt_ids"]
    return {
        r.name: r
        for r in (
            Recording("ok", "B_post_prompt_1_response", "B_ws_messages_tracker_client",
                      "B_get_history_prompt_1"),
            # The same workflow with another colour, run right after: other real timings.
            Recording("ok_2", "B_post_prompt_2_response", "B_ws_messages_tracker_client",
                      "B_get_history_prompt_2"),
            Recording("fail", "C_post_prompt_fail_response", "C_ws_messages_fail",
                      "C_get_history_fail"),
            Recording("fail_regex", "C2_post_prompt_fail_regex_response",
                      "C2_ws_messages_fail_regex", "C2_get_history_fail_regex"),
            Recording("long", "E_post_prompt_long1_response", "E_ws_messages_cancel_interrupt",
                      "E_get_history_interrupted", prompt_id=e_ids["long1_interrupted"],
                      hold_at_end=True),
            Recording("no_client", "F_post_prompt_without_client_id",
                      "F_ws_messages_observer_prompt_without_client_id",
                      "F_get_history_without_client_id"),
        )
    }


class _Prompt:
    def __init__(self, recording: Recording, prompt_id: str, number: int, client_id: str | None):
        self.recording = recording
        self.prompt_id = prompt_id
        self.number = number
        self.client_id = client_id
        self.interrupt = asyncio.Event()
        self.shift_ms = 0.0
        self.current: str | None = None
        self.executed: list[str] = []

    def queue_item(self) -> list[Any]:
        history = self.recording.history.get("prompt") or [None, None, {}, {}, []]
        extra = {"client_id": self.client_id} if self.client_id else {}
        return [self.number, self.prompt_id, self.recording.graph, extra, history[4]]

    def rewrite(self, data: Any, speed: float) -> Any:
        """``data`` with this prompt's id and timestamps moved to now."""
        text = json.dumps(data).replace(self.recording.prompt_id, self.prompt_id)
        out = json.loads(text)
        ts0 = self.recording.ts0
        for item in _timestamped(out):
            item["timestamp"] = int(self.shift_ms + (item["timestamp"] - ts0) / speed)
        return out


def _timestamped(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, dict):
        if isinstance(value.get("timestamp"), (int, float)):
            yield value
        for v in value.values():
            yield from _timestamped(v)
    elif isinstance(value, list):
        for v in value:
            yield from _timestamped(v)


class ReplayServer:
    """The fake ComfyUI. ``speed`` compresses recorded time (20 = twenty times faster);
    ``paused`` keeps queued prompts from running; ``http_delay`` stalls every HTTP reply
    (a server busy encoding previews, or frozen); ``event_lag`` delays every ``/ws`` text
    frame by that many seconds, in order (a stream backed up behind previews);
    ``before_delete`` (a coroutine function) runs when a queue deletion arrives, before it
    is applied (to stage a prompt starting meanwhile)."""

    def __init__(self, *, speed: float = 20.0, previews: bool = True,
                 send_log: TextIO | None = None):
        self.speed = speed
        self.previews = previews
        self.send_log = send_log
        self.recordings = recordings()
        self.by_graph = {json.dumps(r.graph, sort_keys=True): r for r in self.recordings.values()}
        self.pending: list[_Prompt] = []
        self.running: _Prompt | None = None
        self.history: dict[str, Any] = {}
        self.static_queue: dict[str, Any] | None = None
        self.sockets: dict[str, web.WebSocketResponse] = {}
        self.number = 0
        self.paused = False
        self.http_delay = 0.0
        self.event_lag = 0.0
        self.before_delete: Any = None
        self._lagged: asyncio.Queue[tuple[float, str | None, str | bytes]] | None = None
        self._lag_task: asyncio.Task[None] | None = None
        self.requests: list[tuple[str, str, Any]] = []
        self._work = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._worker: asyncio.Task[None] | None = None
        self.port = 0

    # -- lifecycle ------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get("/system_stats", self.system_stats)
        app.router.add_get("/queue", self.get_queue)
        app.router.add_post("/queue", self.post_queue)
        app.router.add_post("/prompt", self.post_prompt)
        app.router.add_get("/history", self.get_history)
        app.router.add_get("/history/{prompt_id}", self.get_history_one)
        app.router.add_post("/interrupt", self.post_interrupt)
        app.router.add_get("/ws", self.websocket)
        return app

    async def start(self, port: int = 0) -> int:
        self._runner = web.AppRunner(self.app(), handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port or self.port or 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        if self._worker is None:
            self._worker = asyncio.create_task(self._work_loop())
        return self.port

    async def stop(self) -> None:
        """Become unreachable (a network outage): sockets dropped, port closed. Prompts keep
        executing, so the history moves on while nobody can see it."""
        for ws in list(self.sockets.values()):
            await ws.close()
        self.sockets.clear()
        if self._runner is not None:
            await self._runner.cleanup()
        self._runner = None

    async def close(self) -> None:
        await self.stop()
        for task in (self._worker, self._lag_task):
            if task is not None:
                task.cancel()

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        body = await request.json() if request.can_read_body else None
        self.requests.append((request.method, request.path_qs, body))
        if self.http_delay and request.path != "/ws":
            await asyncio.sleep(self.http_delay)
        response: web.StreamResponse = await handler(request)
        return response

    # -- state set-up ---------------------------------------------------------------------

    def load_static(self, queue_capture: str, *history_captures: str) -> None:
        """Serve a captured ``/queue`` and ``/history`` entries as they were, frozen."""
        self.static_queue = capture(queue_capture)["body"]
        for name in history_captures:
            self.history.update(capture(name)["body"])
        self.paused = True

    # -- HTTP -----------------------------------------------------------------------------

    async def system_stats(self, request: web.Request) -> web.Response:
        return web.json_response(capture("A_get_system_stats")["body"])

    def _queue_body(self) -> dict[str, Any]:
        if self.static_queue is not None:
            return self.static_queue
        return {
            "queue_running": [self.running.queue_item()] if self.running else [],
            "queue_pending": [p.queue_item() for p in self.pending],
        }

    async def get_queue(self, request: web.Request) -> web.Response:
        return web.json_response(self._queue_body())

    async def post_queue(self, request: web.Request) -> web.Response:
        body = await request.json()
        if self.before_delete is not None and body.get("delete"):
            hook, self.before_delete = self.before_delete, None
            await hook()
        if body.get("clear"):
            self.pending.clear()
        for prompt_id in body.get("delete") or ():
            self.pending = [p for p in self.pending if p.prompt_id != prompt_id]
        await self._send_status()
        return web.Response(status=200)  # ComfyUI answers with an empty body

    async def post_prompt(self, request: web.Request) -> web.Response:
        body = await request.json()
        graph = body.get("prompt") if isinstance(body, Mapping) else None
        if graph is None:
            no_key = capture("D_post_prompt_no_prompt_key")
            return web.json_response(no_key["body"], status=no_key["status"])
        recording = self.by_graph.get(json.dumps(graph, sort_keys=True))
        if recording is None:
            unknown = capture("D_post_prompt_unknown_node")
            return web.json_response(unknown["body"], status=unknown["status"])
        prompt = _Prompt(recording, str(uuid.uuid4()), self.number, body.get("client_id"))
        self.number += 1
        self.pending.append(prompt)
        await self._send_status()
        self._work.set()
        return web.json_response(
            {"prompt_id": prompt.prompt_id, "number": prompt.number, "node_errors": {}}
        )

    async def get_history(self, request: web.Request) -> web.Response:
        items = list(self.history.items())
        if "max_items" in request.query:
            items = items[-int(request.query["max_items"]):]
        return web.json_response(dict(items))

    async def get_history_one(self, request: web.Request) -> web.Response:
        prompt_id = request.match_info["prompt_id"]
        found = self.history.get(prompt_id)
        return web.json_response({prompt_id: found} if found else {})

    async def post_interrupt(self, request: web.Request) -> web.Response:
        body = await request.json() if request.can_read_body else None
        target = body.get("prompt_id") if isinstance(body, Mapping) else None
        running = self.running
        # Interrupting a prompt that is not running silently does nothing.
        if running is not None and (target is None or target == running.prompt_id):
            running.interrupt.set()
        return web.Response(status=200)

    # -- /ws ------------------------------------------------------------------------------

    async def websocket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        sid = request.query.get("clientId") or uuid.uuid4().hex
        self.sockets[sid] = ws
        await ws.send_json({"type": "status", "data": {
            "status": {"exec_info": {"queue_remaining": self._remaining()}}, "sid": sid}})
        try:
            async for message in ws:
                if message.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
                    break
        finally:
            if self.sockets.get(sid) is ws:
                del self.sockets[sid]
        return ws

    def _remaining(self) -> int:
        body = self._queue_body()
        return len(body["queue_running"]) + len(body["queue_pending"])

    async def _send(self, sid: str | None, text: str | bytes) -> None:
        if self.event_lag > 0 or (self._lagged is not None and not self._lagged.empty()):
            if self._lagged is None:
                self._lagged = asyncio.Queue()
                self._lag_task = asyncio.create_task(self._deliver_lagged(self._lagged))
            self._lagged.put_nowait((time.monotonic() + self.event_lag, sid, text))
            return
        await self._send_now(sid, text)

    async def _deliver_lagged(self, lagged: asyncio.Queue[tuple[float, str | None, str | bytes]]
                              ) -> None:
        while True:
            due, sid, text = await lagged.get()
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            await self._send_now(sid, text)

    async def _send_now(self, sid: str | None, text: str | bytes) -> None:
        targets = list(self.sockets.values()) if sid is None else (
            [self.sockets[sid]] if sid in self.sockets else [])
        for ws in targets:
            try:
                if isinstance(text, bytes):
                    await ws.send_bytes(text)
                else:
                    await ws.send_str(text)
            except ConnectionError:
                pass  # a client that went away is not the server's problem

    async def _send_status(self) -> None:
        await self._send(None, json.dumps({"type": "status", "data": {
            "status": {"exec_info": {"queue_remaining": self._remaining()}}}}))

    async def _event(self, prompt: _Prompt, kind: str, data: Any) -> None:
        if prompt.client_id is None and kind not in _BROADCAST_WITHOUT_CLIENT:
            return
        sid = prompt.client_id
        if kind == "binary":
            if self.previews:
                # ComfyUI's preview frame: event type 1, image format 2 (PNG), then the image.
                size = max(8, int(data["len"]))
                await self._send(sid, struct.pack(">II", 1, 2) + bytes(size - 8))
            return
        await self._send(sid, json.dumps({"type": kind, "data": data}))
        if self.send_log is not None:
            self._log_steps(kind, data)

    def _log_steps(self, kind: str, data: Any) -> None:
        """``prompt node step send-time`` for every message announcing a sampler step."""
        assert self.send_log is not None
        sent = time.time()
        if kind == "progress":
            self.send_log.write(f"{data['prompt_id']} {data['node']} {data['value']} {sent:.6f}\n")
        elif kind == "progress_state":
            for node, state in data["nodes"].items():
                if state["state"] == "running" and state["max"] > 1:
                    self.send_log.write(
                        f"{data['prompt_id']} {node} {int(state['value'])} {sent:.6f}\n")

    # -- execution ------------------------------------------------------------------------

    async def _work_loop(self) -> None:
        while True:
            if self.paused or not self.pending or self.running is not None:
                self._work.clear()
                await self._work.wait()
                continue
            prompt = min(self.pending, key=lambda p: p.number)
            self.pending.remove(prompt)
            self.running = prompt
            await self._send_status()
            await self._execute(prompt)
            self.running = None

    def resume(self) -> None:
        self.paused = False
        self._work.set()

    async def _execute(self, prompt: _Prompt) -> None:
        recording = prompt.recording
        prompt.shift_ms = time.time() * 1000
        previous = recording.t0
        ended = False
        for t, kind, data in recording.messages:
            await asyncio.sleep(max(0.0, t - previous) / self.speed)
            previous = t
            if prompt.interrupt.is_set() and kind in ("progress", "executing", "progress_state"):
                await self._interrupted(prompt)
                return
            out = data if kind == "binary" else prompt.rewrite(data, self.speed)
            if kind == "executing" and out.get("node") is not None:
                if prompt.current is not None:
                    prompt.executed.append(prompt.current)
                prompt.current = out["node"]
            if kind in _TERMINAL:
                # ComfyUI writes the history before it sends the final event.
                self._write_history(prompt, recording.history)
                self.running = None
                ended = True
                await self._event(prompt, kind, out)
                await self._send_status()
                continue
            await self._event(prompt, kind, out)
        if recording.hold_at_end:
            await prompt.interrupt.wait()
            await self._interrupted(prompt)
        elif not ended:
            # Captured from an observer, who never sees execution_* events: the prompt ends
            # silently, as it did for the observer.
            self._write_history(prompt, recording.history)
            self.running = None
            await self._send_status()

    async def _interrupted(self, prompt: _Prompt) -> None:
        """End ``prompt`` as the captured interrupt did (E): the captured message and history
        shapes, for the node the replay had reached."""
        long = self.recordings["long"]
        entry = copy.deepcopy(capture("E_get_history_interrupted")["body"][long.prompt_id])
        start, cached, interrupted = (m[1] for m in entry["status"]["messages"])
        start["timestamp"] = cached["timestamp"] = int(prompt.shift_ms)
        interrupted.update({
            "node_id": prompt.current,
            "node_type": prompt.recording.graph.get(prompt.current or "", {}).get("class_type"),
            "executed": list(prompt.executed),
            "timestamp": int(time.time() * 1000),
        })
        entry["prompt"] = copy.deepcopy(prompt.recording.history["prompt"])
        entry["prompt"][0] = prompt.number
        entry["prompt"][3] = {"client_id": prompt.client_id} if prompt.client_id else {}
        text = json.dumps(entry).replace(long.prompt_id, prompt.prompt_id).replace(
            prompt.recording.prompt_id, prompt.prompt_id)
        final = json.loads(text)
        self.history[prompt.prompt_id] = final
        self.running = None
        await self._event(prompt, "execution_interrupted", final["status"]["messages"][-1][1])
        await self._send_status()
        await self._event(prompt, "executing", {"node": None, "prompt_id": prompt.prompt_id})

    def _write_history(self, prompt: _Prompt, recorded: dict[str, Any]) -> None:
        entry = prompt.rewrite(recorded, self.speed)
        entry["prompt"][0] = prompt.number
        entry["prompt"][3] = {"client_id": prompt.client_id} if prompt.client_id else {}
        self.history[prompt.prompt_id] = entry


class ReplayThread:
    """A :class:`ReplayServer` on its own event loop in a thread (for synchronous tests)."""

    def __init__(self, **options: Any):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server: ReplayServer = self.call(self._create(options))
        self.port = self.call(self.server.start())

    async def _create(self, options: dict[str, Any]) -> ReplayServer:
        return ReplayServer(**options)

    def call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(30)

    def run(self, function: Any, *args: Any) -> Any:
        async def call() -> Any:
            return function(*args)

        return self.call(call())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.call(self.server.stop())

    def start(self) -> None:
        self.call(self.server.start(self.port))

    def kill(self) -> None:
        """The process dies (kill -9): port closed, queue, history and running prompt gone."""
        self.call(self.server.close())

    def restart(self, **options: Any) -> None:
        """A new server process on the same port, with an empty queue and history."""
        self.server = self.call(self._create(options))
        self.call(self.server.start(self.port))

    def close(self) -> None:
        self.call(self.server.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--servers", type=int, default=1)
    parser.add_argument("--speed", type=float, default=20.0)
    parser.add_argument("--send-log", type=Path)
    parser.add_argument("--no-previews", action="store_true")
    parser.add_argument("--hold", action="store_true",
                        help="queue prompts but run none until a line arrives on stdin")
    args = parser.parse_args(argv)

    async def serve() -> None:
        log = args.send_log.open("w", buffering=1) if args.send_log else None
        servers = [ReplayServer(speed=args.speed, previews=not args.no_previews, send_log=log)
                   for _ in range(args.servers)]
        for server in servers:
            server.paused = args.hold
            print(await server.start(), flush=True)
        loop = asyncio.get_running_loop()
        if args.hold:
            await loop.run_in_executor(None, sys.stdin.readline)
            for server in servers:
                server.resume()
        # Serve until the parent closes our stdin.
        await loop.run_in_executor(None, sys.stdin.read)
        for server in servers:
            await server.close()
        if log is not None:
            log.close()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
