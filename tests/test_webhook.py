"""The webhook sink against a real loopback receiver: flaky, down, slow, killed and restarted."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import queue
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers.cli import start_cli
from helpers.runs import make_evaluator_run
from helpers.webhook_receiver import Receiver, wait_for
from progresskit import Change, ConfigError, Monitor, RunStatus, get_plugin_manager, scan
from progresskit.builtin.droprecord import DROP_RECORD
from progresskit.builtin.webhook import WebhookSink, sign, verify
from progresskit.formats.fileio import atomic_write_text
from progresskit.plugin.sink import build_sinks

SECRET = "correct horse battery staple"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(secret=SECRET.encode())
    yield r
    r.stop()


@pytest.fixture(autouse=True)
def _secret_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PK_TEST_WEBHOOK_SECRET", SECRET)


def _sink(tmp_path: Path, url: str, **options: Any) -> WebhookSink:
    entry = {
        "type": "webhook",
        "url": url,
        "secret_env": "PK_TEST_WEBHOOK_SECRET",
        "spool_dir": str(tmp_path / "spool"),
        "retry_initial": 0.02,
        "retry_max": 0.3,
        **options,
    }
    (sink,) = build_sinks([entry], get_plugin_manager().sink_types, "test.yaml")
    assert isinstance(sink, WebhookSink)
    return sink


def _runs(tmp_path: Path, n: int = 2) -> list[RunStatus]:
    root = tmp_path / "runs"
    for i in range(n):
        make_evaluator_run(root / f"eval_{i}", scores={"acc": i / 10})
    return scan(root, {})


def _spooled(spool: Path) -> list[str]:
    """The events waiting in ``spool`` (not its drop record)."""
    return sorted(p.name for p in spool.glob("*.json") if p.name != DROP_RECORD)


def test_receiver_verifies_the_signature_over_the_raw_body(
    tmp_path: Path, receiver: Receiver
) -> None:
    sink = _sink(tmp_path, receiver.url)
    (run,) = _runs(tmp_path, 1)
    change = Change("changed", run, previous_status="running")
    sink.emit_changes([change])
    wait_for(lambda: change.id in receiver.accepted_ids(), what="the delivery")
    sink.close()
    assert receiver.bad_signatures == 0
    body = receiver.bodies[change.id][0]
    # What a receiver does (docs/watch.md): HMAC-SHA256 of the exact bytes, constant-time compare.
    header = sign(SECRET.encode(), body)
    assert header == "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert verify(SECRET.encode(), body, header)
    assert not verify(b"wrong secret", body, header)
    assert not verify(SECRET.encode(), body.replace(b"eval_0", b"eval_X"), header)
    assert not verify(SECRET.encode(), body, None)
    payload = json.loads(body)
    assert payload["event_id"] == change.id
    assert payload["kind"] == "changed" and payload["previous_status"] == "running"
    assert payload["format"] == "progresskit.change" and payload["run"]["work_dir"] == run.work_dir


def test_no_secret_no_signature_header(tmp_path: Path) -> None:
    seen: list[str | None] = []

    class Plain(Receiver):
        def _handle(self, request: Any) -> None:
            seen.append(request.headers.get("X-Progresskit-Signature"))
            super()._handle(request)

    r = Plain()
    try:
        sink = _sink(tmp_path, r.url, secret_env=None)
        sink.emit(_runs(tmp_path, 1))
        sink.close()
    finally:
        r.stop()
    assert seen == [None]


@pytest.mark.slow
def test_flaky_and_down_receiver_gets_every_change_with_stable_payloads(tmp_path: Path) -> None:
    """Half the requests fail (500, 503, or taken and then the connection dropped), and the
    receiver is down for whole periods: every change is still received, and duplicates of
    an event carry the same bytes."""
    receiver = Receiver(secret=SECRET.encode(), fail_rate=0.5)
    root = tmp_path / "runs"
    runs = [make_evaluator_run(root / f"eval_{i}", scores={"acc": 0.0}) for i in range(3)]
    config = {
        "watch_heartbeat": 0.7,
        "watch_poll_interval": 0.3,
        "sinks": [
            {
                "type": "webhook",
                "url": receiver.url,
                "secret_env": "PK_TEST_WEBHOOK_SECRET",
                "spool_dir": str(tmp_path / "spool"),
                "retry_initial": 0.02,
                "retry_max": 0.25,
                "flush_timeout": 60,
            }
        ],
    }
    monitor = Monitor(root, config)
    emitted: list[Change] = []
    monitor.subscribe(emitted.append)
    monitor.start()
    try:
        for step in range(40):
            if step in (8, 25):
                receiver.stop()  # down for a while: events pile up in the spool
            if step in (16, 32):
                receiver.start()
            run = runs[step % len(runs)]
            atomic_write_text(run / "evaluation_scores.json", json.dumps({"acc": step / 100}))
            time.sleep(0.06)
        wait_for(
            lambda: {c.id for c in emitted} <= receiver.accepted_ids(),
            timeout=120,
            what="every emitted change to be accepted",
        )
    finally:
        monitor.stop()
        receiver.stop()
    kinds = {c.kind for c in emitted}
    assert {"new", "changed"} <= kinds
    assert sum(c.kind == "changed" for c in emitted) >= 10
    receiver.check_duplicates_identical()
    assert receiver.bad_signatures == 0
    assert receiver.requests > len(emitted)  # failures really happened and were retried
    # Closing flushed what came after the wait (heartbeats): nothing is left behind.
    assert {c.id for c in emitted} <= receiver.accepted_ids()
    assert _spooled(tmp_path / "spool") == []


def test_outage_keeps_events_in_order_and_replays_after_reopen(tmp_path: Path) -> None:
    receiver = Receiver(secret=SECRET.encode())
    receiver.force_status = 503
    spool = tmp_path / "spool"
    sink = _sink(tmp_path, receiver.url, flush_timeout=0)
    runs = _runs(tmp_path, 3)
    changes = [Change("new", run) for run in runs]
    sink.emit_changes(changes)
    wait_for(lambda: receiver.requests >= 3, what="a few failed attempts")
    sink.close()
    assert len(_spooled(spool)) == 3  # nothing delivered, nothing lost
    receiver.force_status = None
    reopened = _sink(tmp_path, receiver.url)
    wait_for(lambda: reopened.pending == 0, what="the replay")
    reopened.close()
    # Oldest first, nothing lost. Delivery is at least once: a request the closing sink cut
    # off may still reach the receiver and be accepted, and its event is replayed too; such
    # a duplicate carries the same body.
    assert list(dict.fromkeys(receiver.accepted)) == [c.id for c in changes]
    for change in changes:
        assert len({json.dumps(p, sort_keys=True) for p in receiver.payloads(change.id)}) == 1
    assert _spooled(spool) == []
    receiver.stop()


def test_bounded_spool_drops_superseded_events_first_and_records_them(tmp_path: Path) -> None:
    receiver = Receiver(secret=SECRET.encode())
    receiver.force_status = 503
    sink = _sink(tmp_path, receiver.url, spool_max_events=3, flush_timeout=0)
    a, b = _runs(tmp_path, 2)
    first_a, first_b = Change("new", a), Change("new", b)
    later_a = [Change("changed", a) for _ in range(3)]
    sink.emit_changes([first_a, first_b, *later_a])
    assert sink.pending <= 3
    assert sink.dropped == 2
    sink.close()
    records = [json.loads(line) for line in (tmp_path / "spool" / "overflow.jsonl").open()]
    assert len(records) == 2
    assert all(r["run"] == a.config and "superseded" in r["why"] for r in records)
    receiver.force_status = None
    reopened = _sink(tmp_path, receiver.url)
    wait_for(lambda: reopened.pending == 0, what="the replay")
    reopened.close()
    accepted = receiver.accepted_ids()
    assert first_b.id in accepted and later_a[-1].id in accepted  # the newest state of each run
    receiver.stop()


def test_payload_rejected_by_the_endpoint_is_set_aside_and_the_rest_flows(tmp_path: Path) -> None:
    class Picky(Receiver):
        def _handle(self, request: Any) -> None:
            if request.headers["X-Progresskit-Event-Id"] == bad.id:
                request.rfile.read(int(request.headers["Content-Length"]))
                self._answer(request, 422)
                return
            super()._handle(request)

    receiver = Picky(secret=SECRET.encode())
    a, b = _runs(tmp_path, 2)
    bad, good = Change("new", a), Change("new", b)
    sink = _sink(tmp_path, receiver.url)
    sink.emit_changes([bad, good])
    wait_for(lambda: good.id in receiver.accepted_ids(), what="the event after the rejected one")
    sink.close()
    assert sink.rejected == 1
    assert [p.name.split("-", 1)[1] for p in (tmp_path / "spool" / "rejected").iterdir()] == [
        f"{bad.id}.json"
    ]
    receiver.stop()


def test_a_hanging_endpoint_blocks_neither_tracking_nor_other_sinks(tmp_path: Path) -> None:
    receiver = Receiver()
    receiver.delay = 30  # answers long after anyone cares
    root = tmp_path / "runs"
    run = make_evaluator_run(root / "eval", scores={"acc": 0.0})

    class Recording:
        def __init__(self) -> None:
            self.seen: list[float] = []

        def emit(self, statuses: list[RunStatus]) -> None:
            scores = [s.progress.latest_score for s in statuses]
            self.seen += [score["acc"] for score in scores if score]

        def close(self) -> None:
            pass

    webhook = _sink(tmp_path, receiver.url, secret_env=None, timeout=60, flush_timeout=0)
    other = Recording()
    monitor = Monitor(root, {"watch_heartbeat": 0}, sinks=[webhook, other])
    monitor.start()
    try:
        for value in (0.25, 0.5, 0.75):
            atomic_write_text(run / "evaluation_scores.json", json.dumps({"acc": value}))
            wait_for(lambda v=value: v in other.seen, what=f"score {value} in the other sink")
        assert webhook.pending >= 1  # still stuck on the first delivery
    finally:
        receiver.delay = 0
        monitor.stop()
        receiver.stop()


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"url": "ftp://example.com/x"}, "scheme must be http or https, got 'ftp'"),
        ({"url": "example.com/hook"}, "scheme must be http or https, got no scheme"),
        ({"url": "https://user:pw@example.com/"}, "credentials in the URL"),
        ({"url": "http://h/", "secret_env": "PK_TEST_UNSET_VAR"},
         "environment variable PK_TEST_UNSET_VAR (named by secret_env) is not set"),
        ({"url": "http://h/", "headers_env": {"Authorization": "PK_TEST_UNSET_VAR"}},
         "PK_TEST_UNSET_VAR (named by headers_env.Authorization) is not set"),
        ({"url": "http://h/", "headers": {"Authorization": "Bearer abc"}},
         "Authorization holds a credential"),
        ({"url": "http://h/", "headers": {"X-Team": "a\nInjected: 1"}},
         "values cannot hold line breaks"),
        ({"url": "http://h/", "retries": 3}, "unknown key 'retries'"),
        ({"url": "http://h/", "timeout": 0}, "key 'timeout': must be > 0 seconds"),
        ({"url": "http://h/", "retry_initial": 5, "retry_max": 1}, "retry_max (1) must be >="),
        ({}, "key 'url' is required"),
    ],
)
def test_bad_config_is_a_clear_start_up_error(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        build_sinks([{"type": "webhook", **entry}], get_plugin_manager().sink_types, "w.yaml")
    assert str(info.value).startswith("w.yaml: sinks[0]")
    assert message in str(info.value)


def test_unreachable_url_is_a_start_up_error_unless_told_otherwise(tmp_path: Path) -> None:
    r = Receiver()
    url = r.url
    r.stop()  # nothing listens on that port any more
    with pytest.raises(ConfigError, match=r"unreachable at start-up: .*startup_check: false"):
        _sink(tmp_path, url)
    sink = _sink(tmp_path, url, startup_check=False, flush_timeout=0)
    sink.emit(_runs(tmp_path, 1))
    sink.close()
    assert len(_spooled(tmp_path / "spool")) == 1


def test_one_spool_one_sink(tmp_path: Path, receiver: Receiver) -> None:
    first = _sink(tmp_path, receiver.url)
    try:
        with pytest.raises(ConfigError, match=f"pid {os.getpid()}; give each webhook sink"):
            _sink(tmp_path, receiver.url)
    finally:
        first.close()


def _start_watcher(root: Path, cwd: Path) -> tuple[subprocess.Popen[str], queue.Queue[str]]:
    return start_cli(
        "watch", str(root), "--json", cwd=cwd, env={"PK_TEST_WEBHOOK_SECRET": SECRET}
    )


def _ids(lines: queue.Queue[str], into: list[str]) -> list[str]:
    while True:
        try:
            into.append(json.loads(lines.get_nowait())["event_id"])
        except queue.Empty:
            return into


@pytest.mark.slow
def test_kill_9_mid_stream_then_restart_replays_the_spool(tmp_path: Path) -> None:
    receiver = Receiver(secret=SECRET.encode())
    receiver.force_status = 503  # the endpoint is failing while the watcher is killed
    root = tmp_path / "runs"
    runs = [make_evaluator_run(root / f"eval_{i}", scores={"acc": 0.0}) for i in range(2)]
    spool = tmp_path / "spool"
    config = {
        "watch_heartbeat": 0,
        "sinks": [
            {
                "type": "webhook",
                "url": receiver.url,
                "secret_env": "PK_TEST_WEBHOOK_SECRET",
                "spool_dir": str(spool),
                "retry_initial": 0.05,
                "retry_max": 0.3,
            }
        ],
    }
    (tmp_path / "progresskit.yaml").write_text(yaml.safe_dump(config))
    first, lines = _start_watcher(root, tmp_path)
    before: list[str] = []
    try:
        wait_for(lambda: len(_ids(lines, before)) >= 2, what="the first watcher's new runs")
        for step in range(1, 7):
            atomic_write_text(
                runs[step % 2] / "evaluation_scores.json", json.dumps({"acc": step / 10})
            )
            count = len(before)
            wait_for(lambda c=count: len(_ids(lines, before)) > c, what=f"change {step}")
    finally:
        first.kill()  # SIGKILL: no flush, no close, nothing
        first.wait(30)
    assert first.returncode == -signal.SIGKILL
    assert receiver.accepted_ids() == set()
    assert len(_spooled(spool)) >= len(before)  # everything printed was spooled first

    receiver.force_status = None
    second, lines = _start_watcher(root, tmp_path)
    after: list[str] = []
    try:
        wait_for(lambda: set(before) <= receiver.accepted_ids(), what="the replayed spool")
        wait_for(lambda: len(_ids(lines, after)) >= 2, what="the second watcher's new runs")
        wait_for(lambda: set(after) <= receiver.accepted_ids(), what="the second run's events")
    finally:
        second.send_signal(signal.SIGTERM)
        _out, err = second.communicate(timeout=60)
    assert second.returncode == 0, err
    assert "Traceback" not in err
    receiver.check_duplicates_identical()
    assert receiver.bad_signatures == 0
    assert _spooled(spool) == []
    # Replayed in the order they were made: each run's changes arrive in sequence.
    sequences = [receiver.payloads(i)[0]["sequence"] for i in before]
    assert sequences == sorted(sequences)
    receiver.stop()
