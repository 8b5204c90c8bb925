"""The notify sink: rules, pace and messages, sent by Apprise to a real loopback endpoint
through its ``json://`` scheme (what Apprise POSTs is what the endpoint keeps)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from progresskit_notify.rules import Pacer, Rule, parse_rules
from progresskit_notify.sink import NotifySink

from notify_receiver import Receiver
from progresskit import (
    Change,
    ConfigError,
    Monitor,
    ProgressInfo,
    RunStatus,
    Status,
    get_plugin_manager,
)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.stop()


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def run(work_dir: str, status: str, reason: str = "why") -> RunStatus:
    progress = ProgressInfo(runner_type="trainer", completed_epochs=3, total_epochs=10,
                            progress_percentage=30.0)
    return RunStatus(work_dir, work_dir, progress, Status(status), None, reason)


def moved(work_dir: str, before: str, after: str, reason: str = "why") -> Change:
    return Change("changed", run(work_dir, after, reason), previous_status=Status(before))


def make_sink(options: dict[str, Any]) -> NotifySink:
    sink_type = get_plugin_manager().sink_types["notify"]
    sink = sink_type.factory(sink_type.validate(options, "test"))
    assert isinstance(sink, NotifySink)
    return sink


def test_a_run_that_fails_is_one_message_at_the_endpoint(receiver: Receiver) -> None:
    sink = make_sink({"urls": [receiver.url()]})
    try:
        sink.emit_changes([
            Change("new", run("/data/runs/a", "running")),  # start-up: not news
            moved("/data/runs/a", "running", "running"),  # progress only
            moved("/data/runs/a", "running", "failed", "incomplete, no sign of life for 2h"),
            Change("heartbeat", run("/data/runs/a", "failed")),
        ])
        wait_for(lambda: len(receiver.received) == 1, "the message")
    finally:
        sink.close()
    (path, body), = receiver.received
    assert path == "/hook"
    assert body["title"] == "a: failed"
    assert body["type"] == "failure"
    assert "/data/runs/a" in body["message"]
    assert "running -> failed: incomplete, no sign of life for 2h" in body["message"]
    assert "progress: 30.0% (epoch 3/10)" in body["message"]


def test_rules_choose_statuses_and_runs_first_rule_deciding() -> None:
    pacer = Pacer(parse_rules([
        {"statuses": ["finished"], "runs": ["/data/sweep/*"], "every_minutes": 0},
        {"statuses": "crashed", "runs": ["keep-*"], "every_minutes": 0},
    ]))
    def sent(change: Change) -> bool:
        return pacer.offer(change, 0.0) is not None
    assert sent(moved("/data/sweep/x", "running", "finished"))
    assert not sent(moved("/data/other/x", "running", "finished"))
    assert sent(moved("/data/other/keep-1", "running", "crashed"))  # any depth
    assert not sent(moved("/data/other/drop-1", "running", "crashed"))
    assert not sent(moved("/data/sweep/x", "running", "crashed"))  # not this rule's status
    assert not sent(Change("new", run("/data/sweep/y", "finished")))  # notify_new is off
    assert Pacer(pacer.rules, notify_new=True).offer(
        Change("new", run("/data/sweep/y", "finished")), 0.0) is not None


def test_the_pace_holds_changes_then_sends_the_newest() -> None:
    pacer = Pacer([Rule(every_minutes=1)])
    assert pacer.offer(moved("/r", "running", "stuck"), 0.0) is not None
    assert pacer.offer(moved("/r", "stuck", "crashed"), 10.0) is None
    assert pacer.offer(moved("/r", "crashed", "failed"), 20.0) is None
    assert pacer.offer(moved("/other", "running", "failed"), 20.0) is not None  # per run
    assert pacer.due(59.0) == [] and pacer.next_due() == 60.0
    (message,) = pacer.due(60.0)
    assert message.change.run.status is Status.FAILED and message.held == 1
    # Held again, but the run recovers before its time: nothing is sent.
    assert pacer.offer(moved("/r", "failed", "stuck"), 70.0) is None
    assert pacer.held == 1
    assert pacer.offer(moved("/r", "stuck", "running"), 80.0) is None
    assert pacer.held == 0 and pacer.due(1000.0) == []


def test_a_held_message_reaches_the_endpoint_when_its_time_comes(receiver: Receiver) -> None:
    sink = make_sink({"urls": [receiver.url()], "rules": [{"every_minutes": 0.01}]})
    try:
        sink.emit_changes([moved("/runs/a", "running", "stuck")])
        sink.emit_changes([moved("/runs/a", "stuck", "crashed")])
        wait_for(lambda: len(receiver.received) == 2, "the held message, 0.6 s later")
    finally:
        sink.close()
    first, second = receiver.bodies()
    assert (first["title"], second["title"]) == ("a: stuck", "a: crashed")
    assert "held back" not in second["message"]  # the one change held is this one


def test_an_endpoint_that_fails_is_logged_and_the_sink_goes_on(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.status = 500
    sink = make_sink({"urls": [receiver.url()], "rules": [{"every_minutes": 0}]})
    try:
        sink.emit_changes([moved("/runs/a", "running", "failed")])
        wait_for(lambda: sink.failed == 1, "the failure")
        receiver.status = 200
        sink.emit_changes([moved("/runs/b", "running", "failed")])
        wait_for(lambda: sink.sent == 1, "the next message")
    finally:
        sink.close()
    assert "'a: failed' was not delivered" in caplog.text


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "needs at least one URL"),
        ({"urls": ["bogus://token"]}, "urls[0]: Apprise does not accept this URL (scheme 'bogus'"),
        ({"urls_env": "PROGRESSKIT_TEST_UNSET"}, "PROGRESSKIT_TEST_UNSET is not set"),
        ({"urls": ["json://127.0.0.1/"], "rules": [{"statuses": ["dead"]}]},
         "rules[0].statuses: unknown status 'dead' (expected: pending, running"),
        ({"urls": ["json://127.0.0.1/"], "rules": [{"every": 5}]},
         "rules[0]: unknown key(s) 'every' (expected: statuses, runs, every_minutes)"),
        ({"urls": ["json://127.0.0.1/"], "rules": [{"every_minutes": -1}]},
         "rules[0].every_minutes: expected a number >= 0, got -1"),
        ({"urls": ["json://127.0.0.1/"], "rules": []}, "expected a non-empty list of rules"),
    ],
)
def test_bad_options_say_what_and_where(
    options: dict[str, Any], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PROGRESSKIT_TEST_UNSET", raising=False)
    with pytest.raises(ConfigError) as info:
        make_sink(options)
    assert message in str(info.value)


def test_urls_from_the_environment(receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_URLS", f"{receiver.url('/one')}, {receiver.url('/two')}\n")
    sink = make_sink({"urls_env": "NOTIFY_URLS", "rules": [{"every_minutes": 0}]})
    try:
        sink.emit_changes([moved("/runs/a", "running", "crashed")])
        wait_for(lambda: len(receiver.received) == 2, "one message per URL")
    finally:
        sink.close()
    assert sorted(path for path, _ in receiver.received) == ["/one", "/two"]


JOB = textwrap.dedent("""
    import os, sys, time
    import progresskit
    with progresskit.Progress(total=10, run_dir=sys.argv[1], interval=0.05) as progress:
        progress.update()
        while not os.path.exists(sys.argv[2]):  # the test says when to fail
            time.sleep(0.02)
        raise RuntimeError("CUDA out of memory")
""")


def test_a_watched_job_that_raises_notifies(tmp_path: Path, receiver: Receiver) -> None:
    """End to end: a real job (a subprocess using progresskit.Progress) raises while a
    Monitor configured by YAML watches its tree; the endpoint gets the failure."""
    root = tmp_path / "runs"
    root.mkdir()
    config = tmp_path / "progresskit.yaml"
    config.write_text(yaml.safe_dump({
        "watch_heartbeat": 0,
        "sinks": [{"type": "notify", "urls": [receiver.url()],
                   "rules": [{"statuses": ["failed", "crashed"], "runs": ["job-*"]}]}],
    }))
    monitor = Monitor(root, config_path=config)
    seen: list[Change] = []
    monitor.subscribe(seen.append)
    go = tmp_path / "go"
    with monitor:
        job = subprocess.Popen([sys.executable, "-c", JOB, str(root / "job-1"), str(go)],
                               stderr=subprocess.PIPE, text=True)
        try:
            wait_for(lambda: any(c.run.status is Status.RUNNING for c in seen), "running")
            go.touch()
            _out, err = job.communicate(timeout=60)
        finally:
            job.kill()
        assert "CUDA out of memory" in err
        wait_for(lambda: len(receiver.received) == 1, "the failure message")
    assert [c.kind for c in seen][-1] == "changed"
    (body,) = receiver.bodies()
    assert body["title"] == "job-1: failed" and body["type"] == "failure"
    assert "RuntimeError: CUDA out of memory" in body["message"]
