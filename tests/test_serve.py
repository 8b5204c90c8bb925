"""``progresskit serve`` against a real server on loopback: API, stream, metrics, cancel."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Origin

from helpers.runs import make_trainer_run
from helpers.serve import TOKEN, Server, add_epoch, serve, start_job
from progresskit.formats.change import Change
from progresskit.model.core import ProgressInfo, RunStatus, Status
from progresskit.server.channels.dashboard import DashboardChannel
from progresskit.server.hub import Hub
from progresskit.server.metrics import prometheus_text
from progresskit.server.settings import ServeSettings
from progresskit.server.views import run_id

HOUR = 3600.0


def _root(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    make_trainer_run(root / "alpha", 3, total=10)
    make_trainer_run(root / "beta", 10, total=10, age=2 * HOUR)
    return root


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server on an unchanging root, for tests that only read."""
    with serve(_root(tmp_path_factory.mktemp("served"))) as running:
        yield running


#: Messages received in a batch and not yet looked at, per connection.
_PENDING: dict[int, list[dict[str, Any]]] = {}


def _ws(server: Server, origin: str | None = None) -> ClientConnection:
    ws = connect(
        server.ws_url,
        proxy=None,
        open_timeout=10,
        max_size=None,
        origin=Origin(origin) if origin else None,
    )
    _PENDING[id(ws)] = []  # an id may be reused by a connection of an earlier test
    return ws


def _recv(ws: ClientConnection, kind: str, timeout: float = 20.0, **match: Any) -> dict[str, Any]:
    """The next message of type ``kind`` whose top-level fields equal ``match`` (the
    messages of a ``batch`` frame are looked at one by one)."""
    deadline = time.monotonic() + timeout
    pending = _PENDING.setdefault(id(ws), [])
    while True:
        if not pending:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {kind!r} message matching {match} within {timeout}s")
            message = json.loads(ws.recv(timeout=left))
            pending += message["messages"] if message["type"] == "batch" else [message]
            continue
        message = pending.pop(0)
        if message["type"] == kind and all(message.get(k) == v for k, v in match.items()):
            return dict(message)


# -- the HTTP API ----------------------------------------------------------------------------


def test_runs_are_listed_with_opaque_ids_and_filtered_by_status(server: Server) -> None:
    listing = server.json("/api/runs")
    assert listing["count"] == 2
    by_name = {view["name"]: view for view in listing["runs"]}
    assert set(by_name) == {"alpha", "beta"}
    alpha = by_name["alpha"]
    assert alpha["id"] == run_id(alpha["run"]["work_dir"])
    assert re.fullmatch(r"[0-9a-f]{16}", alpha["id"])
    assert (alpha["status"], alpha["active"]) == ("running", True)
    assert alpha["run"]["progress"]["completed_epochs"] == 3
    assert alpha["run"]["progress"]["progress_percentage"] == pytest.approx(30.0)

    assert [v["name"] for v in server.json("/api/runs?status=active")["runs"]] == ["alpha"]
    assert [v["name"] for v in server.json("/api/runs?status=finished")["runs"]] == ["beta"]
    assert server.json("/api/runs?status=running,finished")["count"] == 2
    assert server.json("/api/runs?runner_type=evaluator")["count"] == 0
    error = server.json("/api/runs?status=bogus", expect=400)["error"]
    assert "unknown status 'bogus'" in error and "active" in error and "running" in error


def test_one_run_has_its_full_status_and_history(server: Server) -> None:
    alpha = server.run_named("alpha")
    document = server.json(f"/api/runs/{alpha['id']}")["run"]
    assert document["id"] == alpha["id"]
    assert document["run"]["work_dir"] == alpha["run"]["work_dir"]
    assert document["history"], "the first evaluation is the first history point"
    point = document["history"][-1]
    assert point["pct"] == pytest.approx(30.0)
    assert point["values"]["loss"] == pytest.approx(0.98)


def test_stats_count_runs_per_status(server: Server) -> None:
    stats = server.json("/api/stats")
    assert stats["total"] == 2 and stats["active"] == 1
    assert stats["by_status"]["running"] == 1 and stats["by_status"]["finished"] == 1
    assert stats["by_runner_type"] == {"trainer": 2}
    assert stats["server"]["clients"] == 0


def test_metrics_are_prometheus_text(server: Server) -> None:
    status, headers, body = server.request("GET", "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain; version=0.0.4")
    text = body.decode()
    alpha = server.run_named("alpha")["id"]
    labels = f'run_id="{alpha}",name="alpha",runner_type="trainer"'
    assert f"progresskit_run_progress_ratio{{{labels}}} 0.3" in text
    assert f'progresskit_run_status{{{labels},status="running"}} 1' in text
    assert f'progresskit_run_status{{{labels},status="stuck"}} 0' in text
    assert f"progresskit_run_eta_seconds{{{labels}}} " in text
    assert f"progresskit_run_last_update_timestamp_seconds{{{labels}}} " in text
    assert 'progresskit_runs{status="finished"} 1' in text
    sample = re.compile(r'^[a-z_]+(\{([a-z_]+="(?:[^"\\]|\\.)*",?)+\})? [-+0-9.eInfNa]+$')
    assert "progresskit_stream_clients_dropped_total 0" in text
    for line in text.splitlines():
        assert line.startswith("# ") or sample.match(line), line


def test_metrics_escape_label_values() -> None:
    run = RunStatus('/r/we"ird\\na\nme', '/r/we"ird\\na\nme', ProgressInfo(), Status.RUNNING)
    text = prometheus_text([('we"ird\\na\nme', run)])
    assert 'name="we\\"ird\\\\na\\nme"' in text
    assert len(text.splitlines()) == text.count("\n"), "a raw newline split a sample"
    assert all(re.sub(r"\\.", "", line).count('"') % 2 == 0 for line in text.splitlines())


def test_seed_002_training_status_endpoint(server: Server) -> None:
    status = server.json("/api/training/status")
    assert set(status) >= {"running", "events"}
    assert len(status["events"]) <= 10
    if "run_id" in status:
        assert {"stage", "progress_pct", "current_target"} <= set(status)


def test_dashboard_and_its_files_are_served_with_a_strict_policy(server: Server) -> None:
    status, headers, body = server.request("GET", "/")
    assert status == 200 and b"/static/app.js" in body
    assert "default-src 'self'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY"
    assert "access-control-allow-origin" not in {k.lower() for k in headers}
    for name in ("app.js", "app.css"):
        status, _h, body = server.request("GET", f"/static/{name}")
        assert status == 200 and body


def test_no_cors_unless_configured(server: Server) -> None:
    status, headers, _body = server.request(
        "OPTIONS",
        "/api/runs",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
    )
    assert "access-control-allow-origin" not in {k.lower() for k in headers}
    assert status in (404, 405)


def test_a_configured_origin_gets_cors_and_the_stream(tmp_path: Path) -> None:
    origin = "https://grafana.example.org"
    with serve(_root(tmp_path), "--cors-origin", origin) as server:
        status, headers, _b = server.request("GET", "/api/stats", headers={"Origin": origin})
        assert status == 200 and headers["access-control-allow-origin"] == origin
        _s, headers, _b = server.request(
            "GET", "/api/stats", headers={"Origin": "https://x.example"}
        )
        assert "access-control-allow-origin" not in {k.lower() for k in headers}
        with _ws(server, origin) as ws:
            assert _recv(ws, "hello")["runs"]


def test_a_foreign_host_header_is_refused(server: Server) -> None:
    # DNS rebinding: a page on attacker.example resolving to 127.0.0.1 sends that Host.
    status, _h, _b = server.request("GET", "/api/runs", headers={"Host": "attacker.example"})
    assert status == 400


@pytest.mark.parametrize(
    "rid",
    [
        "..%2F..%2F..%2Fetc%2Fpasswd",
        "%2Fetc%2Fpasswd",
        "..",
        "alpha",
        "0123456789abcdef",
        run_id("/etc"),
        run_id("/"),
        "7dd106bc43154226%00",
        "A" * 5000,
    ],
)
def test_ids_never_reach_the_filesystem(server: Server, rid: str) -> None:
    status, _h, body = server.request("GET", f"/api/runs/{rid}")
    assert status == 404, body
    status, _h, body = server.request(
        "POST", f"/api/runs/{rid}/cancel", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert status in (404, 405), body


# -- schema fuzzing ------------------------------------------------------------------------

_SEGMENT = st.one_of(
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=40),
    st.sampled_from(["..", ".", "%2e%2e", "%00", "~", "static", "api", "runs", "cancel"]),
)


@settings(max_examples=150, deadline=None)
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"]),
    template=st.sampled_from(
        [
            "/api/runs",
            "/api/runs/{}",
            "/api/runs/{}/cancel",
            "/api/stats",
            "/metrics",
            "/api/training/status",
            "/static/{}",
            "/{}",
            "/api/{}/{}",
        ]
    ),
    segments=st.lists(_SEGMENT, min_size=2, max_size=2),
    query=st.dictionaries(
        st.sampled_from(["status", "runner_type", "x", "status[]"]),
        st.text(st.characters(blacklist_categories=("Cs",)), max_size=30),
        max_size=3,
    ),
    auth=st.sampled_from([None, "", "Bearer", f"Bearer {TOKEN}x", "Basic abc", "Bearer \u00e9"]),
)
def test_fuzzed_requests_never_fail_the_server(
    server: Server,
    method: str,
    template: str,
    segments: list[str],
    query: dict[str, str],
    auth: str | None,
) -> None:
    quoted = [urllib.parse.quote(s, safe="") for s in segments]
    path = template.format(*quoted) if "{}" in template else template
    if query:
        path += "?" + urllib.parse.urlencode(query)
    headers = {} if auth is None else {"Authorization": auth.encode("utf-8").decode("latin-1")}
    status, _headers, body = server.request(method, path, headers=headers)
    assert status < 500, (method, path, status, body[:300])
    if path.startswith("/api/") and method != "HEAD" and body:
        document = json.loads(body)
        if status >= 400:
            assert isinstance(document.get("error"), str) and document["error"]
    assert server.proc.poll() is None


# -- the WebSocket stream ---------------------------------------------------------------------


def test_stream_sends_state_then_changes_and_late_joiners_get_the_buffer(tmp_path: Path) -> None:
    root = _root(tmp_path)
    with serve(root) as server, _ws(server) as first:
        hello = _recv(first, "hello")
        assert hello["version"] == 1 and hello["root"] == str(root)
        names = {run["name"]: run for run in hello["runs"]}
        assert set(names) == {"alpha", "beta"}
        alpha_id = names["alpha"]["id"]
        assert names["alpha"]["history"]

        add_epoch(root / "alpha", 3)
        change = _recv(first, "change", run_id=alpha_id)
        assert change["kind"] == "changed"
        assert change["run"]["run"]["progress"]["completed_epochs"] == 4
        assert change["point"]["pct"] == pytest.approx(40.0)

        with _ws(server) as late:
            caught_up = _recv(late, "hello")
            events = {e["event_id"]: e for e in caught_up["recent_events"]}
            assert change["event_id"] in events
            late_alpha = next(r for r in caught_up["runs"] if r["id"] == alpha_id)
            assert late_alpha["run"]["progress"]["completed_epochs"] == 4
            assert [p["pct"] for p in late_alpha["history"]][-2:] == pytest.approx([30.0, 40.0])

            add_epoch(root / "alpha", 4)
            for ws in (first, late):
                again = _recv(ws, "change", run_id=alpha_id)
                assert again["run"]["run"]["progress"]["completed_epochs"] == 5


def test_stream_answers_requests_filters_and_pings(tmp_path: Path) -> None:
    root = _root(tmp_path)
    make_trainer_run(root / "gamma", 1, total=10)
    with serve(root, "--ping-interval", "0.5") as server, _ws(server) as ws:
        ids = {run["name"]: run["id"] for run in _recv(ws, "hello")["runs"]}
        _recv(ws, "ping", timeout=5)

        ws.send(json.dumps({"type": "get_job_progress", "job_id": ids["beta"]}))
        reply = _recv(ws, "run_progress")
        assert reply["run"]["id"] == ids["beta"] and reply["run"]["status"] == "finished"
        ws.send(json.dumps({"type": "get_run_progress", "run_id": "../../etc"}))
        assert "no run with id" in _recv(ws, "error")["message"]
        ws.send("not json")
        assert "not JSON" in _recv(ws, "error")["message"]
        ws.send(json.dumps({"type": "launch_missiles"}))
        assert "unknown message type" in _recv(ws, "error")["message"]

        ws.send(json.dumps({"type": "subscribe", "run_ids": [ids["gamma"]]}))
        _recv(ws, "subscribed")
        add_epoch(root / "alpha", 3)
        server.wait_for(
            "alpha's change to reach the API",
            lambda: server.run_named("alpha")["run"]["progress"]["completed_epochs"] == 4,
        )
        add_epoch(root / "gamma", 1)
        change = _recv(ws, "change")
        assert change["run_id"] == ids["gamma"], "a change of an unsubscribed run came through"


def test_cross_origin_stream_is_refused(server: Server) -> None:
    with (
        pytest.raises(InvalidStatus, match="403"),
        connect(server.ws_url, proxy=None, origin=Origin("https://evil.example")) as ws,
    ):
        ws.recv(timeout=5)


def test_a_client_that_cannot_keep_up_is_dropped_not_buffered() -> None:
    async def scenario() -> tuple[bool, int, int]:
        hub = Hub("/r")
        stream = DashboardChannel(hub, ServeSettings(token=TOKEN, client_queue=5))
        hub.channels.append(stream)
        slow, _hello = stream.connect()
        fast, _hello = stream.connect()
        for i in range(20):
            progress = ProgressInfo(completed_epochs=i, total_epochs=20, progress_percentage=5 * i)
            hub.apply(Change("changed", RunStatus("/r/a", "/r/a", progress, Status.RUNNING)))
            await fast.take(most=100, timeout=0)  # a client that reads as fast as changes come
        return slow.overflowed.is_set(), hub.dropped_clients, len(stream.clients)

    overflowed, dropped, left = asyncio.run(scenario())
    assert overflowed and dropped == 1 and left == 1


# -- cancelling ---------------------------------------------------------------------------------


def _job_run(server: Server, name: str, job: subprocess.Popen[bytes]) -> dict[str, Any]:
    return dict(
        server.wait_for(
            f"the server to see process {job.pid} working on {name}",
            lambda: (
                (v := server.run_named(name))["run"]["process_info"]
                and v["run"]["process_info"]["pid"] == job.pid
                and v
            ),
            timeout=30,
        )
    )


@pytest.mark.slow
def test_cancel_needs_the_token_and_stops_the_real_process(tmp_path: Path) -> None:
    root = _root(tmp_path)
    make_trainer_run(root / "stubborn", 2, total=10)
    polite = start_job(root / "alpha")  # its own session: the group is signalled
    stubborn = start_job(root / "stubborn", ignore_term=True, new_session=False)
    try:
        with serve(root, "--grace", "1") as server:
            alpha = _job_run(server, "alpha", polite)

            status, body = server.cancel(alpha["id"], token=None)
            assert status == 401 and "token" in body["error"]
            status, headers, _b = server.request("POST", f"/api/runs/{alpha['id']}/cancel")
            assert headers["www-authenticate"].startswith("Bearer")
            status, body = server.cancel(alpha["id"], token="wrong-token-0123456789")
            assert status == 403
            time.sleep(0.5)
            assert polite.poll() is None, "a refused cancel must not touch the job"

            status, body = server.cancel(alpha["id"])
            assert status == 202 and body == {
                "cancelled": True,
                "run_id": alpha["id"],
                "grace_seconds": 1.0,
            }
            assert polite.wait(10) == -signal.SIGTERM
            assert server.run_named("alpha")["cancel_requested_at"] is not None

            # SIGTERM ignored: killed after the grace period. The job shares our process
            # group, which must survive: only the job is signalled.
            target = _job_run(server, "stubborn", stubborn)
            status, body = server.cancel(target["id"])
            assert status == 202, body
            assert stubborn.wait(15) == -signal.SIGKILL

            beta = server.run_named("beta")
            status, body = server.cancel(beta["id"])
            assert status == 409 and "finished: nothing to cancel" in body["error"]
            assert "SIGKILL" in server.stderr or "did not exit" in server.stderr
    finally:
        for job in (polite, stubborn):
            if job.poll() is None:
                job.kill()
                job.wait()


def test_cancelling_a_run_without_a_known_process_says_why(tmp_path: Path) -> None:
    root = _root(tmp_path)
    with serve(root) as server:
        alpha = server.run_named("alpha")
        assert alpha["run"]["process_info"] is None
        status, body = server.cancel(alpha["id"])
        assert status == 409
        assert "no plugin can cancel this trainer run (no process is known for it)" in body["error"]


# -- the command --------------------------------------------------------------------------------


def test_serve_reports_a_missing_root_and_a_bad_token(tmp_path: Path, cli: Any) -> None:
    result = cli("serve", str(tmp_path / "nope"), "--port", "0")
    assert result.ret == 2 and "does not exist" in result.stderr
    (tmp_path / "short").write_text("abc\n")
    result = cli("serve", str(tmp_path), "--port", "0", "--token-file", str(tmp_path / "short"))
    assert result.ret == 2 and "at least 16 characters" in result.stderr
    result = cli("serve", str(tmp_path), "--port", "0", "--token-file", str(tmp_path / "none"))
    assert result.ret == 2 and "cannot be read" in result.stderr


def test_a_generated_token_is_printed_and_works(tmp_path: Path) -> None:
    root = _root(tmp_path)
    with serve(root, token=None) as server:
        match = re.search(r"cancel token \(random.*\): (\S+)", server.stderr)
        assert match, server.stderr
        alpha = server.run_named("alpha")
        assert server.cancel(alpha["id"], token=TOKEN)[0] == 403
        # The printed token is accepted: the refusal is about the missing process.
        assert server.cancel(alpha["id"], token=match.group(1))[0] == 409


def test_binding_beyond_loopback_warns_loudly(tmp_path: Path) -> None:
    with serve(
        _root(tmp_path), "--host", "0.0.0.0", "--allow-host", "0.0.0.0", token=None
    ) as server:
        assert "WARNING: listening on 0.0.0.0" in server.stderr
        assert "No token was configured" in server.stderr


def test_seed_002_training_stream_catches_up_then_follows(tmp_path: Path) -> None:
    from progresskit.producer.emitter import EventEmitter

    root = tmp_path / "runs"
    (root / "foxml").mkdir(parents=True)
    emitter = EventEmitter("foxml-1", event_file=str(root / "foxml" / "events.jsonl"))
    emitter.stage_change(None, "ranking")
    emitter.progress("ranking", 40.0, targets_total=2)
    with serve(root, "--ping-interval", "0.5") as server:
        server.wait_for("the run", lambda: server.json("/api/runs")["runs"])
        with connect(server.ws_url + "/training", proxy=None, open_timeout=10) as late:
            # A late joiner first gets the recent events, in seed 002's shape.
            first = json.loads(late.recv(timeout=10))
            assert first["event_type"] in {"stage_change", "progress"}
            assert first["run_id"] == "foxml" and "timestamp" in first

            emitter.progress(
                "training", 50.0, current_target="ret_5m", targets_complete=0, targets_total=2
            )
            emitter.target_complete("ret_5m", "success", models_trained=3, best_auc=0.66)
            emitter.run_complete("success")
            seen: list[dict[str, Any]] = []
            deadline = time.monotonic() + 20
            while not any(e.get("event_type") == "run_complete" for e in seen):
                assert time.monotonic() < deadline, f"no run_complete in {seen}"
                seen.append(json.loads(late.recv(timeout=20)))
            kinds = [e.get("event_type", e.get("type")) for e in seen]
            assert "stage_change" in kinds and "target_complete" in kinds
            done = next(e for e in seen if e.get("event_type") == "target_complete")
            assert (done["target"], done["status"], done["models_trained"], done["best_auc"]) == (
                "ret_5m",
                "success",
                3,
                0.66,
            )
            assert (
                next(e for e in seen if e.get("event_type") == "run_complete")["status"]
                == "success"
            )
            # Idle: seed 002's keep-alive.
            assert json.loads(late.recv(timeout=10)) == {"type": "ping"}
        status = server.json("/api/training/status")
        assert status["events"] and status["events"][-1]["event_type"] == "run_complete"
    emitter.close()


def test_seed_003_socket_at_the_bare_address(tmp_path: Path) -> None:
    root = _root(tmp_path)
    with serve(root, "--ping-interval", "0.5") as server:
        ids = {run["name"]: run["id"] for run in server.json("/api/runs")["runs"]}
        bare = "ws" + server.url[len("http") :]
        with connect(bare, proxy=None, open_timeout=10) as ws:
            ws.send(json.dumps({"type": "get_job_progress", "job_id": ids["beta"]}))
            beta = json.loads(ws.recv(timeout=10))
            assert beta["type"] == "progress_update"
            assert beta["data"]["job_id"] == ids["beta"]
            assert (beta["data"]["status"], beta["data"]["progress_percent"]) == (
                "completed",
                100.0,
            )
            ws.send(json.dumps({"type": "get_job_progress", "job_id": "../etc/passwd"}))
            assert "no job with id" in json.loads(ws.recv(timeout=10))["message"]

            add_epoch(root / "alpha", 3)
            deadline = time.monotonic() + 20
            while True:
                assert time.monotonic() < deadline, "no progress_update for alpha"
                message = json.loads(ws.recv(timeout=20))
                if (
                    message["type"] == "progress_update"
                    and message["data"]["job_id"] == ids["alpha"]
                ):
                    break
            assert message["data"]["status"] == "processing"
            assert message["data"]["progress_percent"] == pytest.approx(40.0)
        # The same address still serves the dashboard over HTTP.
        status, _headers, body = server.request("GET", "/")
        assert status == 200 and b"/static/app.js" in body
