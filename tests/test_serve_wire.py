"""The server's wire, byte for byte: every endpoint's answer and every frame of the three
WebSocket protocols, for one scripted session, against ``tests/data/serve_wire.txt``.

The application runs in this test's event loop (a minimal ASGI driver, no sockets), so the
order of frames is deterministic: changes delivered in one step of the loop reach a
dashboard client as one ``batch`` frame. The clock is fixed; the two values that cannot be
(the ids and times of the changes the application makes itself for a monitor's existing
runs) are replaced by placeholders. Regenerate the file after an intended change of the
wire with ``PROGRESSKIT_UPDATE_GOLDEN=1`` and review its diff.
"""

from __future__ import annotations

import asyncio
import difflib
import os
import re
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, cast
from urllib.parse import unquote

import pytest
from starlette.types import ASGIApp, Message

from progresskit.engine.monitor import Monitor
from progresskit.errors import ProgresskitError
from progresskit.formats.change import Change
from progresskit.model.core import CompletedItem, ProcessInfo, ProgressInfo, RunStatus, Status
from progresskit.plugin.manager import PluginManager
from progresskit.server.app import ServeSettings, create_app

GOLDEN = Path(__file__).parent / "data" / "serve_wire.txt"
TOKEN = "wire-token-0123456789abcdef"
CLOCK = 1234567890.25
ROOT = "/data/runs"
#: Headers that depend on the static files on disk, not on the server.
_FILE_HEADERS = {"etag", "last-modified", "content-length"}
#: A time taken from the real clock (the fixed one and the runs' are in 2009).
_REAL_TIME = re.compile(r"\b1[7-9]\d{8}(?:\.\d+)?(?:e\+?\d+)?\b")
_REAL_STAMP = re.compile(r"(?!2009)\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?\+00:00")
_UUID = re.compile(r'"event_id":"([0-9a-f]{32})"')


def _run(name: str, status: Status, root: str = ROOT, **progress: Any) -> RunStatus:
    work_dir = f"{root}/{name}"
    process = progress.pop("process_info", None)
    return RunStatus(
        work_dir, work_dir, ProgressInfo(**progress), status, process, reason=f"{name} says hi"
    )


ALPHA = {
    "completed_epochs": 3,
    "total_epochs": 10,
    "progress_percentage": 30.0,
    "start_time": 1234560000.0,
    "last_update_time": 1234567000.0,
    "latest_score": {"acc": 0.61, "loss": float("nan")},
    "metrics": {"lr": 0.1, "grad_norm": float("inf")},
    "elapsed_seconds": 7000.0,
    "eta_seconds": 16333.5,
    "eta_low_seconds": 15000.0,
    "eta_high_seconds": 18000.0,
    "process_info": ProcessInfo(4242, "ml", "python train.py", 1234560000.0, "gpu-7"),
}
FOXML = {
    "runner_type": "multi_stage",
    "current_stage": "ranking",
    "progress_percentage": 10.0,
    "items_total": 3,
    "items_completed": 0,
    "last_update_time": 1234567100.0,
}


def _alpha(epochs: int, status: Status = Status.RUNNING) -> RunStatus:
    fields = {**ALPHA, "completed_epochs": epochs, "progress_percentage": 10.0 * epochs}
    return _run("alpha", status, **fields)


def _foxml(stage: str, done: int, status: Status = Status.RUNNING, pct: float = 10.0) -> RunStatus:
    items = [
        CompletedItem(f"target_{i}", "success", {"models_trained": 4, "best_auc": 0.6 + i / 100})
        for i in range(done)
    ]
    fields = {
        **FOXML,
        "current_stage": stage,
        "items_completed": done,
        "completed_items": items,
        "current_item": f"target_{done}" if done < 3 else None,
        "progress_percentage": pct,
    }
    return _run("foxml", status, **fields)


BETA = _run(
    "beta",
    Status.FINISHED,
    completed_epochs=10,
    total_epochs=10,
    progress_percentage=100.0,
    elapsed_seconds=3600.0,
    last_update_time=1234500000.0,
)
GAMMA = _run("gamma", Status.STUCK, progress_percentage=20.0)
OLD = _run("nested/old", Status.OUTDATED, progress_percentage=100.0, elapsed_seconds=60.0)
COMFY = _run(
    "job",
    Status.PENDING,
    root="/elsewhere",
    runner_type="comfyui",
    completed_steps=2,
    total_steps=20,
    progress_percentage=10.0,
    eta_seconds=90.0,
    details={"prompt_id": "p-1"},
    error_message=None,
)


class CancelPlugin:
    """Stops alpha, refuses the comfyui job, declines everything else."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, float]] = []

    def progresskit_cancel(self, run: RunStatus, grace_seconds: float) -> bool | None:
        self.calls.append((run.work_dir, grace_seconds))
        if run.progress.runner_type == "comfyui":
            raise ProgresskitError("ComfyUI at 127.0.0.1:8188 refused the interrupt")
        return True if run.work_dir.endswith("/alpha") else None


class FakeMonitor:
    """What the server uses of a :class:`Monitor`, with changes delivered by the test."""

    root = ROOT
    mode = "poll"

    def __init__(self, runs: Iterable[RunStatus]):
        self.runs = list(runs)
        self.subscribers: list[Callable[[Change], None]] = []
        self.started = self.stopped = False

    def subscribe(self, callback: Callable[[Change], None]) -> Callable[[], None]:
        self.subscribers.append(callback)
        return lambda: self.subscribers.remove(callback)

    def start(self) -> None:
        self.started = True

    def stop(self, timeout: float | None = None) -> None:
        self.stopped = True

    def report(self, *changes: Change) -> None:
        """Deliver ``changes`` from "the monitor's thread", all before the loop runs again."""
        for change in changes:
            for callback in list(self.subscribers):
                callback(change)


class Transcript:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, line: str) -> None:
        self.lines.append(line)

    def text(self) -> str:
        ids: dict[str, str] = {}

        def event_id(match: re.Match[str]) -> str:
            value = match.group(1)
            if value.startswith("e0"):  # the test's own, fixed ids
                return match.group(0)
            return f'"event_id":"<uuid {ids.setdefault(value, str(len(ids) + 1))}>"'

        text = "\n".join(self.lines) + "\n"
        text = _REAL_STAMP.sub("<now iso>", _UUID.sub(event_id, text))
        return _REAL_TIME.sub("<now>", text)


async def _settle() -> None:
    """Let every task that can run, run (the application does no real I/O here)."""
    for _ in range(5):
        await asyncio.sleep(0.01)


class Asgi:
    """A minimal ASGI server in the current event loop: lifespan, HTTP, WebSocket."""

    def __init__(self, app: ASGIApp, transcript: Transcript, host: str = "testserver"):
        self.app = app
        self.log = transcript
        self.host = host
        self._lifespan: asyncio.Queue[Message] = asyncio.Queue()
        self._lifespan_out: asyncio.Queue[Message] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Asgi:
        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
        self._task = asyncio.create_task(
            self.app(scope, self._lifespan.get, self._lifespan_out.put)  # type: ignore[arg-type]
        )
        await self._lifespan.put({"type": "lifespan.startup"})
        assert (await self._lifespan_out.get())["type"] == "lifespan.startup.complete"
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._lifespan.put({"type": "lifespan.shutdown"})
        assert (await self._lifespan_out.get())["type"] == "lifespan.shutdown.complete"
        assert self._task is not None
        await self._task

    def _scope(self, kind: str, target: str, headers: dict[str, str]) -> dict[str, Any]:
        path, _, query = target.partition("?")
        all_headers = {"host": self.host, **{k.lower(): v for k, v in headers.items()}}
        return {
            "type": kind,
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "scheme": "http" if kind == "http" else "ws",
            "path": unquote(path),
            "raw_path": path.encode(),
            "query_string": query.encode(),
            "root_path": "",
            "headers": [(k.lower().encode(), v.encode("latin-1")) for k, v in all_headers.items()],
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8329),
        }

    async def http(
        self, method: str, target: str, headers: dict[str, str] | None = None, *, body: bool = True
    ) -> tuple[int, bytes]:
        """One request, written to the transcript (``body=False``: the status and headers)."""
        scope = {**self._scope("http", target, headers or {}), "method": method}
        sent: list[Message] = []
        requested = False

        async def receive() -> Message:
            nonlocal requested
            if not requested:
                requested = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await asyncio.Event().wait()  # the client stays connected
            raise AssertionError("unreachable")

        async def send(message: Message) -> None:
            sent.append(message)

        await self.app(scope, receive, send)  # type: ignore[arg-type]
        start = sent[0]
        content = b"".join(m.get("body", b"") for m in sent[1:])
        shown = sorted(
            (k.decode(), v.decode("latin-1"))
            for k, v in start["headers"]
            if k.decode() not in _FILE_HEADERS
        )
        self.log.add(f"> {method} {target} {headers or ''}".rstrip())
        self.log.add(f"< {start['status']} " + "; ".join(f"{k}: {v}" for k, v in shown))
        if body:
            self.log.add("< " + content.decode())
        return start["status"], content

    def socket(self, path: str, label: str, headers: dict[str, str] | None = None) -> Socket:
        return Socket(self, self._scope("websocket", path, headers or {}), label)


class Socket:
    """One WebSocket session; what the server sends is written to the transcript."""

    def __init__(self, server: Asgi, scope: dict[str, Any], label: str):
        self.server = server
        self.label = label
        self._in: asyncio.Queue[Message] = asyncio.Queue()
        self._out: asyncio.Queue[Message] = asyncio.Queue()
        self._task = asyncio.create_task(
            server.app(scope, self._in.get, self._out.put)  # type: ignore[arg-type]
        )
        self.closed = False

    async def open(self) -> None:
        await self._in.put({"type": "websocket.connect"})
        message = await asyncio.wait_for(self._out.get(), 5)
        if message["type"] == "websocket.close":
            self.closed = True
            self.server.log.add(f"{self.label} refused {message['code']} {message['reason']!r}")
        else:
            assert message["type"] == "websocket.accept", message
            self.server.log.add(f"{self.label} accepted")

    async def send(self, text: str | None = None, data: bytes | None = None) -> None:
        shown = text if text is not None else f"<binary {data!r}>"
        self.server.log.add(f"{self.label} > {shown}")
        await self._in.put({"type": "websocket.receive", "text": text, "bytes": data})

    async def ask(self, text: str | None = None, data: bytes | None = None) -> None:
        """Send one frame and record what comes back."""
        await self.send(text, data)
        await _settle()
        self.frames()

    async def closing(self, timeout: float) -> tuple[str, int, str]:
        """The close the server sends (after any frames), within ``timeout`` seconds."""
        while True:
            message = await asyncio.wait_for(self._out.get(), timeout)
            if message["type"] == "websocket.close":
                self.closed = True
                return self.label, message["code"], message.get("reason", "")

    def frames(self, *, record: bool = True) -> list[str]:
        """What the server sent since the last look (after letting it run)."""
        texts: list[str] = []
        while not self._out.empty():
            message = self._out.get_nowait()
            if message["type"] == "websocket.close":
                self.closed = True
                self.server.log.add(
                    f"{self.label} closed {message['code']} {message.get('reason')!r}"
                )
                continue
            assert message["type"] == "websocket.send", message
            texts.append(message["text"])
            if record:
                self.server.log.add(f"{self.label} < {message['text']}")
        return texts

    async def expect_silence(self) -> None:
        await _settle()
        assert not self.frames(), f"{self.label}: unexpected frames"

    async def close(self) -> None:
        await self._in.put({"type": "websocket.disconnect", "code": 1000})
        await asyncio.wait_for(self._task, 5)


def _change(kind: str, run: RunStatus, n: int, previous: Status | None = None) -> Change:
    return Change(kind, run, previous, id=f"e{n:031d}", at=CLOCK + n)


async def _deliver(monitor: FakeMonitor, socks: Iterable[Socket], *changes: Change) -> None:
    """Report ``changes`` in one step, and record what each of ``socks`` is sent."""
    monitor.report(*changes)
    await _settle()
    for sock in socks:
        sock.frames()


async def _main_session(log: Transcript, monitor: FakeMonitor, plugin: CancelPlugin) -> None:
    pm = PluginManager()
    pm.register_plugin(plugin, "wire-cancel")
    settings = ServeSettings(
        token=TOKEN, grace_seconds=2.5, ping_interval=3600.0, buffer_size=4, history_size=3
    )
    app = create_app(cast(Monitor, monitor), pm, settings)
    async with Asgi(app, log) as server:
        assert monitor.started
        log.add("## HTTP, the monitor's existing runs")
        await server.http("GET", "/", body=False)
        await server.http("GET", "/static/app.css", body=False)
        alpha_id = _id_of(await server.http("GET", "/api/runs"), "alpha")
        await server.http("GET", "/api/runs?status=active")
        await server.http("GET", "/api/runs?status=unhealthy,%20FINISHED")
        await server.http("GET", "/api/runs?runner_type=comfyui")
        await server.http("GET", "/api/runs?status=bogus")
        await server.http("GET", "/api/runs?status=")
        await server.http("GET", f"/api/runs/{alpha_id}")
        await server.http("GET", "/api/runs/..%2F..%2Fetc")
        await server.http("GET", "/api/stats")
        await server.http("GET", "/metrics")
        await server.http("GET", "/api/training/status")
        await server.http("GET", "/nowhere")
        await server.http("GET", "/api/runs/x/cancel")
        await server.http("DELETE", "/api/runs")

        log.add("## the three streams connect")
        dash = server.socket("/ws", "ws")
        training = server.socket("/ws/training", "training")
        jobs = server.socket("/", "jobs")
        for sock in (dash, training, jobs):
            await sock.open()
        await _settle()
        for sock in (dash, training, jobs):
            sock.frames()

        log.add("## one change")
        await _deliver(
            monitor, (dash, training, jobs), _change("changed", _alpha(4), 1, Status.RUNNING)
        )

        log.add("## changes of one step: one batch frame; a heartbeat is not announced")
        await _deliver(
            monitor,
            (dash, training, jobs),
            _change("new", _foxml("ranking", 0), 2),
            _change("changed", _foxml("training", 2, pct=60.0), 3, Status.RUNNING),
            _change("heartbeat", _alpha(4), 4),
            _change("new", COMFY, 5),
        )

        log.add("## a run ends, another is removed")
        await _deliver(
            monitor,
            (dash, training, jobs),
            _change("changed", _foxml("training", 3, Status.FINISHED, 100.0), 6, Status.RUNNING),
        )
        await _deliver(monitor, (dash, training, jobs), _change("removed", OLD, 7, Status.OUTDATED))

        log.add("## what a dashboard client may ask")
        foxml_id = _id_of(await server.http("GET", "/api/runs?status=finished"), "foxml")
        for text in (
            f'{{"type":"get_run_progress","run_id":"{alpha_id}"}}',
            f'{{"type":"get_job_progress","job_id":"{foxml_id}"}}',
            '{"type":"get_run_progress","run_id":"../../etc"}',
            '{"type":"get_run_progress","run_id":7}',
            '{"type":"get_run_progress"}',
            "not json",
            "[1, 2]",
            '{"no":"type"}',
            '{"type":"launch_missiles"}',
            '{"type":"subscribe","run_ids":"all"}',
            '{"type":"subscribe","run_ids":[1]}',
            '{"type":"pong"}',
            f'{{"type":"subscribe","run_ids":["{foxml_id}"]}}',
        ):
            await dash.ask(text)
        await dash.ask(data=b"\x00binary")
        await _deliver(
            monitor,
            (dash, training, jobs),
            _change("changed", _alpha(5), 8, Status.RUNNING),
            _change("changed", _foxml("training", 3, Status.FINISHED, 100.0), 9, Status.FINISHED),
        )
        await dash.ask('{"type":"subscribe","run_ids":null}')

        log.add("## what a seed-003 client may ask; seed 002's clients are not listened to")
        for text in (
            f'{{"type":"get_job_progress","job_id":"{alpha_id}"}}',
            '{"type":"get_job_progress","job_id":"../etc/passwd"}',
            '{"type":"get_job_progress"}',
            f'{{"type":"get_run_progress","run_id":"{alpha_id}"}}',
            "not json",
        ):
            await jobs.ask(text)
        await jobs.ask(data=b"\x01")
        await training.send('{"type":"get_job_progress"}')
        await training.expect_silence()

        log.add("## late joiners: the bounded buffer and history")
        late = server.socket("/ws", "late-ws")
        late_training = server.socket("/ws/training", "late-training")
        for sock in (late, late_training):
            await sock.open()
        await _settle()
        for sock in (late, late_training):
            sock.frames()

        log.add("## cancelling")
        comfyui = await server.http("GET", "/api/runs?runner_type=comfyui")
        comfy_id = _id_of(comfyui, "/elsewhere/job")
        beta_id = _id_of(await server.http("GET", "/api/runs?status=finished"), "beta")
        gamma_id = _id_of(await server.http("GET", "/api/runs?status=stuck"), "gamma")
        cancel = f"/api/runs/{alpha_id}/cancel"
        await server.http("POST", cancel)
        await server.http("POST", cancel, {"Authorization": "Basic abc"})
        await server.http("POST", cancel, {"Authorization": "Bearer "})
        await server.http("POST", cancel, {"Authorization": "Bearer wrong-token-0123456789"})
        await server.http("POST", "/api/runs/0123456789abcdef/cancel", _bearer())
        await server.http("POST", f"/api/runs/{beta_id}/cancel", _bearer())
        await server.http("POST", f"/api/runs/{comfy_id}/cancel", _bearer())
        await server.http("POST", f"/api/runs/{gamma_id}/cancel", _bearer())
        await _deliver(
            monitor,
            (dash, late, training, jobs, late_training),
            _change("changed", _alpha(5, Status.STUCK), 10, Status.RUNNING),
        )
        assert plugin.calls == [("/elsewhere/job", 2.5), (f"{ROOT}/gamma", 2.5)], (
            "only active runs reach the plugins"
        )
        await server.http("POST", cancel, {"Authorization": f"bearer  {TOKEN} "})
        await _settle()
        for sock in (dash, late, training, jobs, late_training):
            sock.frames()
        await server.http("GET", f"/api/runs/{alpha_id}")
        await _deliver(monitor, (dash, late, jobs), _change("changed", _alpha(6), 11, Status.STUCK))

        log.add("## the state now")
        await server.http("GET", "/api/stats")
        await server.http("GET", "/api/training/status")
        await server.http("GET", "/metrics")
        await server.http("GET", "/api/runs?status=inactive")
        for sock in (dash, training, jobs, late, late_training):
            await sock.close()
        await server.http("GET", "/api/stats")
    assert monitor.stopped and not monitor.subscribers


def _bearer() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


def _id_of(answer: tuple[int, bytes], name: str) -> str:
    match = re.search(rf'"id":"([0-9a-f]{{16}})","name":"{re.escape(name)}"', answer[1].decode())
    assert match, answer
    return match.group(1)


async def _guarded_session(log: Transcript) -> None:
    """CORS, the host guard, the stream's origin check and the pings."""
    monitor = FakeMonitor([BETA])
    settings = ServeSettings(
        token=TOKEN,
        ping_interval=0.05,
        cors_origins=("https://grafana.example.org",),
        allowed_hosts=("127.0.0.1", "localhost", "::1", "[::1]"),
    )
    app = create_app(cast(Monitor, monitor), PluginManager(), settings)
    grafana = {"Origin": "https://grafana.example.org"}
    async with Asgi(app, log, host="127.0.0.1:8329") as server:
        await server.http("GET", "/api/stats", grafana)
        await server.http("GET", "/api/stats", {"Origin": "https://evil.example"})
        preflight = {"Access-Control-Request-Method": "POST"}
        await server.http("OPTIONS", "/api/runs", {**grafana, **preflight})
        await server.http(
            "OPTIONS",
            "/api/runs/x/cancel",
            {**grafana, **preflight, "Access-Control-Request-Headers": "authorization"},
        )
        await server.http("OPTIONS", "/api/runs", {"Origin": "https://evil.example", **preflight})
        await server.http("GET", "/api/runs", {"Host": "attacker.example"})
        await server.http("GET", "/", {"Host": "localhost:8329"}, body=False)

        for path in ("/ws", "/ws/training", "/"):
            evil = server.socket(path, f"evil{path}", {"Origin": "https://evil.example"})
            await evil.open()
            assert evil.closed
        for path, origin in (
            ("/ws", "https://grafana.example.org"),
            ("/ws/training", "http://127.0.0.1:8329"),
            ("/", None),
        ):
            sock = server.socket(path, f"ping{path}", {"Origin": origin} if origin else None)
            await sock.open()
            await asyncio.sleep(0.12)
            texts = sock.frames(record=False)
            pings = [t for t in texts if '"ping"' in t]
            assert pings, texts
            server.log.add(f"ping{path} < {pings[0]}")
            await sock.close()


def test_a_client_too_slow_to_follow_is_closed_on_every_protocol() -> None:
    # Each protocol's client falls behind in one step of the loop. The seeds' clients used
    # to be left connected, told nothing but pings, on Python < 3.12 (asyncio.wait_for kept
    # their sender alive through its cancellation).
    async def scenario() -> tuple[list[tuple[str, int, str]], str]:
        log = Transcript()
        monitor = FakeMonitor([])
        settings = ServeSettings(token=TOKEN, ping_interval=3600.0, client_queue=2)
        app = create_app(cast(Monitor, monitor), PluginManager(), settings)
        async with Asgi(app, log) as server:
            socks = [server.socket(p, p) for p in ("/ws", "/ws/training", "/")]
            for sock in socks:
                await sock.open()
            await _settle()
            monitor.report(*(_change("changed", _alpha(i), 20 + i) for i in range(4)))
            closes = [await sock.closing(timeout=5) for sock in socks]
            stats = (await server.http("GET", "/api/stats"))[1].decode()
            for sock in socks:
                await sock.close()
        return closes, stats

    closes, stats = asyncio.run(scenario())
    reason = "too slow to follow: reconnect"
    assert closes == [("/ws", 1013, reason), ("/ws/training", 1013, reason), ("/", 1013, reason)]
    assert '"clients":0,"dropped_clients":3' in stats


def test_the_wire_is_what_it_was(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(time, "time", lambda: CLOCK)
    # No webhook spool of this machine's user in /metrics.
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    log = Transcript()
    plugin = CancelPlugin()
    log.add("# main session")
    asyncio.run(_main_session(log, FakeMonitor([_alpha(3), BETA, GAMMA, OLD]), plugin))
    log.add("# guards and pings")
    asyncio.run(_guarded_session(log))
    actual = log.text()
    if os.environ.get("PROGRESSKIT_UPDATE_GOLDEN"):
        GOLDEN.write_text(actual, encoding="utf-8")
    expected = GOLDEN.read_text(encoding="utf-8")
    if actual != expected:
        diff = difflib.unified_diff(
            expected.splitlines(), actual.splitlines(), "golden", "now", lineterm="", n=1
        )
        pytest.fail("the wire changed:\n" + "\n".join(diff))
