"""A real HTTP webhook receiver on 127.0.0.1 that can fail on purpose, for the watch tests.

It verifies every request's signature the way docs/watch.md tells receivers to, keeps every
body received per event id, and counts an event as received only once it answered 2xx.
``fail_rate`` makes it fail that share of requests, each in one of the ways real endpoints
fail: a 500, a 503 with ``Retry-After: 0``, or (the nasty one) taking the event and then
dropping the connection before answering, so the sender must retry an event that did
arrive. :meth:`stop` and :meth:`start` take it down and bring it back on the same port.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Receiver:
    def __init__(self, *, secret: bytes | None = None, fail_rate: float = 0.0, seed: int = 7):
        self.secret = secret
        self.fail_rate = fail_rate
        #: Answer every request with this status instead (e.g. 503), when set.
        self.force_status: int | None = None
        #: Seconds to sleep before answering (a slow endpoint).
        self.delay = 0.0
        self._random = random.Random(seed)
        self.lock = threading.Lock()
        #: event id -> every body that arrived for it (accepted or not).
        self.bodies: dict[str, list[bytes]] = {}
        #: event ids answered 2xx, in order.
        self.accepted: list[str] = []
        self.bad_signatures = 0
        self.requests = 0
        self.port = 0
        self._server: ThreadingHTTPServer | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                receiver._handle(self)

            def log_message(self, *_args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        server.block_on_close = False  # stop() must not wait for a deliberately slow answer
        server.handle_error = lambda *_args: None  # type: ignore[method-assign]
        self.port = server.server_address[1]
        self._server = server
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        body = request.rfile.read(int(request.headers["Content-Length"]))
        event_id = request.headers["X-Progresskit-Event-Id"]
        with self.lock:
            self.requests += 1
            self.bodies.setdefault(event_id, []).append(body)
            if self.secret is not None:
                expected = "sha256=" + hmac.new(self.secret, body, hashlib.sha256).hexdigest()
                given = request.headers.get("X-Progresskit-Signature", "")
                if not hmac.compare_digest(expected, given):
                    self.bad_signatures += 1
            roll = self._random.random()
            how = self._random.choice(("500", "503", "taken-then-dropped"))
        if self.delay:
            time.sleep(self.delay)
        if self.force_status is not None:
            self._answer(request, self.force_status)
            return
        if roll < self.fail_rate:
            if how == "taken-then-dropped":
                with self.lock:
                    self.accepted.append(event_id)
                request.close_connection = True  # closed with no answer at all
                return
            self._answer(request, int(how), {"Retry-After": "0"} if how == "503" else {})
            return
        with self.lock:
            self.accepted.append(event_id)
        self._answer(request, 204)

    @staticmethod
    def _answer(request: BaseHTTPRequestHandler, code: int, headers: dict[str, str] | None = None
                ) -> None:
        request.send_response(code)
        for name, value in (headers or {}).items():
            request.send_header(name, value)
        request.send_header("Content-Length", "0")
        request.end_headers()

    def accepted_ids(self) -> set[str]:
        with self.lock:
            return set(self.accepted)

    def payloads(self, event_id: str) -> list[dict[str, Any]]:
        with self.lock:
            return [json.loads(b) for b in self.bodies[event_id]]

    def check_duplicates_identical(self) -> None:
        with self.lock:
            for event_id, bodies in self.bodies.items():
                assert len(set(bodies)) == 1, f"event {event_id} arrived with different bodies"


def wait_for(condition: Callable[[], bool], timeout: float = 60.0, what: str = "condition"
             ) -> None:
    """Poll ``condition`` until it holds; fail after ``timeout`` (generous: CI is loaded)."""
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.05)
