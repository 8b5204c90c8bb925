"""A real ``progresskit serve`` on loopback for tests, and the plain clients that talk to it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

TOKEN = "test-token-0123456789abcdef"
_DASHBOARD = re.compile(r"dashboard (http://\S+/)")
#: No proxy for loopback, whatever the environment says.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Server:
    """A running ``progresskit serve`` subprocess."""

    def __init__(self, proc: subprocess.Popen[str], url: str, lines: list[str]):
        self.proc = proc
        self.url = url
        self.ws_url = "ws" + url[len("http") :] + "ws"
        self.lines = lines

    @property
    def stderr(self) -> str:
        return "".join(self.lines)

    def request(
        self,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        """(status, headers, body) of one request; an HTTP error status is an answer too."""
        req = urllib.request.Request(
            self.url.rstrip("/") + path, data=body, method=method, headers=dict(headers or {})
        )
        try:
            with _OPENER.open(req, timeout=30) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read()

    def json(self, path: str, expect: int = 200) -> Any:
        status, _headers, body = self.request("GET", path)
        assert status == expect, f"GET {path}: {status} {body[:500]!r}"
        return json.loads(body)

    def cancel(self, run_id: str, token: str | None = TOKEN) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        status, _h, body = self.request("POST", f"/api/runs/{run_id}/cancel", headers=headers)
        return status, json.loads(body)

    def run_named(self, name: str) -> dict[str, Any]:
        for view in self.json("/api/runs")["runs"]:
            if view["name"] == name:
                return dict(view)
        raise AssertionError(f"no run named {name!r} in {self.json('/api/runs')}")

    def wait_for(self, what: str, predicate: Any, timeout: float = 20.0) -> Any:
        """Poll ``predicate()`` until it returns something true; fail saying ``what``."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}")
            time.sleep(0.1)


@contextmanager
def serve(
    root: Path,
    *args: str,
    env: Mapping[str, str] | None = None,
    token: str | None = TOKEN,
    preexec_fn: Callable[[], None] | None = None,
) -> Iterator[Server]:
    """Run ``progresskit serve ROOT --port 0 ARGS`` until the block ends (``preexec_fn``:
    run in the child before it starts, e.g. to lower its resource limits)."""
    full_env = {k: v for k, v in os.environ.items() if k != "PROGRESSKIT_TOKEN"}
    if token is not None:
        full_env["PROGRESSKIT_TOKEN"] = token
    full_env.update(env or {})
    with tempfile.TemporaryDirectory() as cwd:  # no progresskit.yaml above the cwd
        proc = subprocess.Popen(
            [sys.executable, "-m", "progresskit", "serve", str(root), "--port", "0", *args],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            cwd=cwd,
            env=full_env,
            preexec_fn=preexec_fn,
        )
        lines: list[str] = []
        ready = threading.Event()
        found: list[str] = []

        def read() -> None:
            assert proc.stderr is not None
            for line in proc.stderr:
                lines.append(line)
                match = _DASHBOARD.search(line)
                if match and not found:
                    found.append(match.group(1))
                    ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        try:
            ready.wait(60)
            if not found:
                proc.kill()
                proc.wait(10)
                raise AssertionError(f"progresskit serve did not start:\n{''.join(lines)}")
            server = Server(proc, found[0], lines)
            # The first evaluation has reached the API once the monitor reported something;
            # an empty root reports nothing, so that wait is bounded.
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not server.json("/api/runs")["runs"]:
                time.sleep(0.05)
            yield server
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)


def add_epoch(run: Path, epoch: int, scores: Mapping[str, float] | None = None) -> None:
    """Complete ``epoch_<epoch>`` of a trainer run at once (built aside, then renamed in),
    the way a trainer's checkpoint appears to a reader."""
    aside = Path(tempfile.mkdtemp(dir=run, prefix=".epoch"))
    (aside / "training_losses.pt").write_bytes(b"\x80\x04tensor")
    (aside / "optimizer_buffer.json").write_text(json.dumps({"lr": 0.1}))
    values = dict(scores or {"acc": 0.5 + 0.02 * epoch, "loss": 1.0 / (epoch + 1)})
    (aside / "validation_scores.json").write_text(
        json.dumps({"aggregated": values, "per_datapoint": {}})
    )
    os.rename(aside, run / f"epoch_{epoch}")
    (run / "train_val_0.log").write_text(f"epoch {epoch} done\n")


def start_job(
    run: Path, *, ignore_term: bool = False, new_session: bool = True
) -> subprocess.Popen[bytes]:
    """A real local job working in ``run`` (its cwd), as the psutil plugin finds jobs."""
    code = "import signal, time\n"
    if ignore_term:
        code += "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    code += "while True:\n    time.sleep(0.2)\n"
    return subprocess.Popen([sys.executable, "-c", code], cwd=run, start_new_session=new_session)
