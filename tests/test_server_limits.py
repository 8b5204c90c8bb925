"""``progresskit serve`` stays up against hostile clients (issue 16, "The server stays up"):
idle and half-sent connections, too many connections and stream clients, endless bodies,
deeply nested messages, and forged Host and Origin headers. Every test talks to a real
server on loopback over real sockets."""

from __future__ import annotations

import contextlib
import errno
import http.client
import json
import logging
import resource
import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Origin

from helpers.runs import make_trainer_run
from helpers.serve import Server, serve
from progresskit.server.connections import ResourceLogThrottle


def _root(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    make_trainer_run(root / "alpha", 3, total=10)
    return root


def _address(server: Server) -> tuple[str, int]:
    host, port = server.url.split("//", 1)[1].rstrip("/").rsplit(":", 1)
    return host, int(port)


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the server closes ``sock`` within ``seconds`` (what it sends is read)."""
    sock.settimeout(0.2)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if not sock.recv(65536):
                return True
        except TimeoutError:
            continue
        except OSError:
            return True
    return False


def _get(server: Server, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection(*_address(server), timeout=10)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def _ws(server: Server, path: str = "ws", **headers: str) -> ClientConnection:
    origin = headers.pop("origin", None)
    return connect(
        server.url.replace("http", "ws", 1) + path,
        proxy=None,
        open_timeout=10,
        origin=Origin(origin) if origin else None,
        additional_headers=headers or None,
    )


def _hello(ws: ClientConnection) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(ws.recv(timeout=10))
    assert message["type"] == "hello"
    return message


@contextmanager
def _idle_sockets(
    server: Server, count: int, first_bytes: bytes = b""
) -> Iterator[list[socket.socket]]:
    with ExitStack() as stack:
        socks = []
        for _ in range(count):
            sock = stack.enter_context(socket.create_connection(_address(server), timeout=10))
            if first_bytes:
                sock.sendall(first_bytes)
            socks.append(sock)
        yield socks


def test_idle_and_half_sent_connections_are_closed_after_the_header_timeout(
    tmp_path: Path,
) -> None:
    with (
        serve(_root(tmp_path), "--header-timeout", "1") as server,
        _idle_sockets(server, 20) as silent,
        _idle_sockets(server, 20, b"GET /api/runs HTTP/1.1\r\nHost: 127.") as half,
    ):
        # A served request then a half-sent second one on the same connection.
        kept = socket.create_connection(_address(server), timeout=10)
        kept.sendall(
            b"GET /api/stats HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nGET /api/runs HTTP/1.1\r\n"
        )
        time.sleep(0.3)
        assert _get(server, "/api/runs")[0] == 200  # the others do not wait for them
        assert all(_closed_within(s, 6) for s in [*silent, *half, kept])
        kept.close()


def test_connections_beyond_the_limit_are_refused_at_once_and_the_server_recovers(
    tmp_path: Path,
) -> None:
    with serve(_root(tmp_path), "--max-connections", "10", "--header-timeout", "2") as server:
        with _idle_sockets(server, 10) as _held, _idle_sockets(server, 5) as extra:
            for sock in extra:
                sock.settimeout(5)
                answer = sock.recv(4096)
                assert answer.startswith(b"HTTP/1.1 503 "), answer
                assert b"too many connections" in answer
        deadline = time.monotonic() + 10
        while _get(server, "/api/runs")[0] != 200:
            assert time.monotonic() < deadline, "the server never recovered"
            time.sleep(0.2)
        assert "connection limit reached" in server.stderr


def _limit_open_files(limit: int) -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))


@pytest.mark.slow
def test_a_flood_of_idle_sockets_under_a_low_open_files_limit_neither_hangs_nor_floods_the_log(
    tmp_path: Path,
) -> None:
    """The issue's ``ulimit -n 1024`` with 1,100 idle sockets, scaled down: 160 open files,
    400 idle sockets."""
    with serve(
        _root(tmp_path), "--header-timeout", "1", preexec_fn=lambda: _limit_open_files(160)
    ) as server:
        assert "at most 80 connections" in server.stderr
        with _idle_sockets(server, 400):
            time.sleep(3)
            start = time.monotonic()
            status = 0
            while status != 200 and time.monotonic() - start < 15:
                try:
                    status = _get(server, "/api/runs")[0]
                except OSError:
                    time.sleep(0.2)
            assert status == 200
        time.sleep(2)
        assert _get(server, "/api/stats")[0] == 200
        assert server.proc.poll() is None
    log = server.stderr
    assert len(log) < 20_000, log[-3000:]
    assert log.count("Traceback") <= 2, log[-3000:]


@pytest.mark.slow
def test_running_out_of_file_descriptors_is_logged_once_not_per_accept(tmp_path: Path) -> None:
    """Told to allow more connections than it has descriptors for, the server runs out
    (EMFILE): asyncio's accept loop then logs a traceback per pending accept, and as many
    again at shutdown (megabytes in seconds). Logged once; the server recovers."""
    with serve(
        _root(tmp_path),
        "--max-connections",
        "1000",
        "--header-timeout",
        "3",
        preexec_fn=lambda: _limit_open_files(60),
    ) as server:
        assert "over half the open-files limit" in server.stderr
        with _idle_sockets(server, 150):
            time.sleep(5)
        deadline = time.monotonic() + 15
        while True:
            with contextlib.suppress(OSError):
                if _get(server, "/api/runs")[0] == 200:
                    break
            assert time.monotonic() < deadline, "the server never recovered"
            time.sleep(0.2)
    time.sleep(0.5)  # the last lines of a stopped server
    log = server.stderr
    assert "Too many open files" in log and "EMFILE: logged once per 60s" in log
    assert len(log) < 20_000, log[-3000:]
    assert log.count("Traceback") <= 2, log[-3000:]


def test_stream_clients_beyond_the_limit_are_told_to_come_back(tmp_path: Path) -> None:
    with serve(_root(tmp_path), "--max-stream-clients", "2") as server:
        with _ws(server) as first, _ws(server, "ws/training") as second:
            _hello(first)
            with _ws(server) as third, pytest.raises(ConnectionClosed) as closed:
                third.recv(timeout=10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013
            first.send(json.dumps({"type": "pong"}))
            second.close()
        with _ws(server) as again:  # room again once the others left
            _hello(again)


def test_request_bodies_are_capped_on_every_route(tmp_path: Path) -> None:
    with serve(_root(tmp_path), "--max-body", "1000") as server:
        rid = server.run_named("alpha")["id"]
        for method, path in (
            ("POST", f"/api/runs/{rid}/cancel"),
            ("POST", "/api/runs"),
            ("PUT", "/"),
            ("GET", "/metrics"),
        ):
            status, _headers, body = server.request(method, path, body=b"x" * 5000)
            assert status == 413, (method, path, status, body)
            assert "over 1000 bytes" in json.loads(body)["error"]
        status, _headers, _body = server.request("POST", f"/api/runs/{rid}/cancel", body=b"{}")
        assert status == 401  # a small body is no problem


def test_an_endless_chunked_body_to_a_405_route_is_cut_off(tmp_path: Path) -> None:
    with serve(_root(tmp_path)) as server:
        sock = socket.create_connection(_address(server), timeout=10)
        sock.sendall(
            b"POST /api/runs HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        chunk = b"%x\r\n%s\r\n" % (65536, b"z" * 65536)
        sent = 0
        start = time.monotonic()
        with pytest.raises(OSError):  # the server closed the connection
            while time.monotonic() - start < 15:
                sock.sendall(chunk)
                sent += len(chunk)
        assert sent < 64 * 1024 * 1024, f"the server read {sent} bytes of an unwanted body"
        sock.close()
        assert _get(server, "/api/runs")[0] == 200


def test_a_deeply_nested_stream_message_is_answered_with_an_error_on_an_open_socket(
    tmp_path: Path,
) -> None:
    with serve(_root(tmp_path)) as server:
        rid = server.run_named("alpha")["id"]
        for path, request in (
            ("ws", {"type": "get_run_progress", "run_id": rid}),
            ("", {"type": "get_job_progress", "job_id": rid}),
        ):
            with _ws(server, path) as ws:
                if path == "ws":
                    _hello(ws)
                ws.send("[" * 30_000 + "]" * 30_000)  # within the 64 KiB frame limit
                error = json.loads(ws.recv(timeout=10))
                assert error["type"] == "error" and "nested too deeply" in error["message"]
                ws.send(json.dumps(request))
                answer = json.loads(ws.recv(timeout=10))
                assert answer["type"] in ("run_progress", "progress_update"), answer


def test_binding_beyond_loopback_needs_the_host_names_to_answer(tmp_path: Path, cli: Any) -> None:
    result = cli("serve", str(_root(tmp_path)), "--host", "0.0.0.0", "--port", "0")
    assert result.ret == 2 and "--allow-host" in result.stderr
    result = cli("serve", str(tmp_path), "--allow-origin", "evil.example", "--port", "0")
    assert result.ret == 2 and "expected a web origin" in result.stderr


def test_dns_rebinding_is_refused_beyond_loopback(tmp_path: Path) -> None:
    with serve(
        _root(tmp_path),
        "--host",
        "0.0.0.0",
        "--allow-host",
        "0.0.0.0",
        "--allow-host",
        "monitor.example.org",
        "--allow-origin",
        "https://grafana.example.org",
    ) as server:
        port = _address(server)[1]
        assert _get(server, "/api/runs", {"Host": f"monitor.example.org:{port}"})[0] == 200
        # The attacker's name resolves to this machine: the browser sends its Host.
        rebound = f"rebind.attacker.example:{port}"
        assert _get(server, "/api/runs", {"Host": rebound})[0] == 400
        with socket.create_connection(_address(server), timeout=10) as sock:
            sock.sendall(
                f"GET /ws HTTP/1.1\r\nHost: {rebound}\r\nOrigin: http://{rebound}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n".encode()
            )
            answer = sock.recv(4096)
            assert not answer.startswith(b"HTTP/1.1 101"), answer
        # A foreign page may not act, nor open the stream, through an allowed name.
        status, _h, body = server.request(
            "POST",
            f"/api/runs/{server.run_named('alpha')['id']}/cancel",
            headers={"Origin": "https://evil.example", "Authorization": "Bearer x"},
        )
        assert status == 403 and "not allowed" in json.loads(body)["error"]
        with pytest.raises(InvalidStatus, match="403"):  # refused before the handshake
            _ws(server, origin="https://evil.example").close()
        with _ws(server, origin="https://grafana.example.org") as ws:
            _hello(ws)


def test_a_resource_failure_is_logged_once_per_interval_with_what_was_held_back() -> None:
    throttle = ResourceLogThrottle(interval=0.5)

    def record(message: str, exc: BaseException | None = None) -> logging.LogRecord:
        info = (type(exc), exc, None) if exc is not None else None
        return logging.LogRecord("uvicorn.error", logging.ERROR, __file__, 1, message, None, info)

    emfile = OSError(errno.EMFILE, "Too many open files")
    first = record("accept failed", emfile)
    assert throttle.filter(first) and first.exc_info is not None  # the first tells the story
    held = [record("accept failed", emfile) for _ in range(49)]
    held.append(record("socket.accept() out of system resource"))  # asyncio's words for it
    assert not any(throttle.filter(r) for r in held)
    assert throttle.filter(record("an ordinary error"))
    assert throttle.filter(record("accept failed", OSError(errno.ENOSPC, "No space left")))
    time.sleep(0.6)
    again = record("accept failed", emfile)
    assert throttle.filter(again)
    assert "50 more like it held back" in again.getMessage() and again.exc_info is None
