"""A watcher of a server URL (``progresskit watch URL``, ``serve URL``, ``Monitor(URL)``)
follows the server live: endings show within half a second, not at the next poll."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from progresskit_comfyui.live import follower_of

from comfyui_replay import ReplayThread, capture, recordings
from progresskit import Status
from progresskit.engine.monitor import Monitor
from progresskit.formats.change import Change

#: What issue 21 asks of status transitions: the server's word within 0.5 s.
WITHIN = 0.5


@pytest.fixture
def replay() -> Iterator[ReplayThread]:
    server = ReplayThread(speed=5.0)
    yield server
    server.close()


def post(replay: ReplayThread, name: str) -> str:
    """Submit a captured prompt as another application would (its own client id: this
    watcher gets no execution events of it, only the queue's ``status`` messages)."""
    reply = httpx.post(f"{replay.url}/prompt", json={
        "prompt": recordings()[name].graph, "client_id": "another-application"}, timeout=10)
    reply.raise_for_status()
    prompt_id: str = reply.json()["prompt_id"]
    return prompt_id


def wait_for(changes: queue.Queue[Change], prompt_id: str, status: Status,
             timeout: float = 30.0) -> float:
    """When the watcher first reported ``prompt_id`` with ``status`` (Unix time)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            change = changes.get(timeout=0.1)
        except queue.Empty:
            continue
        if change.run.work_dir.endswith(f"#{prompt_id}") and change.run.status is status:
            return change.at
    raise AssertionError(f"{prompt_id} never reported {status.value}")


def following(monitor: Monitor, target: str) -> None:
    """Wait until the watcher follows ``target`` live (after its first look)."""
    deadline = time.monotonic() + 20
    while follower_of(target) is None:
        assert time.monotonic() < deadline, f"{target} is never followed live"
        time.sleep(0.02)


def ended_at(replay: ReplayThread, prompt_id: str) -> float:
    """The server's own time of the prompt's end (its history's last message)."""
    entry = replay.run(replay.server.history.get, prompt_id)
    _kind, data = entry["status"]["messages"][-1]
    return float(data["timestamp"]) / 1000.0


def test_a_watcher_of_a_server_url_reports_endings_within_half_a_second(
        replay: ReplayThread) -> None:
    changes: queue.Queue[Change] = queue.Queue()
    # The default poll interval (2 s): without following the server, an ending would show
    # up to 2 s late.
    monitor = Monitor(replay.url, {"watch_heartbeat": 0})
    assert monitor.settings.poll_interval == 2.0
    monitor.subscribe(changes.put)
    monitor.start()
    following(monitor, replay.url)
    try:
        finished = post(replay, "ok")
        wait_for(changes, finished, Status.RUNNING)
        seen = wait_for(changes, finished, Status.FINISHED)
        assert seen - ended_at(replay, finished) <= WITHIN

        interrupted = post(replay, "long")
        wait_for(changes, interrupted, Status.RUNNING)
        time.sleep(0.3)
        httpx.post(f"{replay.url}/interrupt", json={"prompt_id": interrupted}, timeout=10)
        seen = wait_for(changes, interrupted, Status.CANCELLED)
        assert seen - ended_at(replay, interrupted) <= WITHIN
        # What the watcher shows is what one look at the server says.
        runs = {r.work_dir.rsplit("#", 1)[1]: r for r in monitor.runs}
        assert runs[finished].status is Status.FINISHED
        assert runs[interrupted].progress.details["detail"] == "interrupted"
    finally:
        monitor.stop(timeout=10)


def test_a_watcher_stops_following_when_it_stops(replay: ReplayThread) -> None:
    monitor = Monitor(replay.url, {"watch_heartbeat": 0})
    monitor.start()
    following(monitor, replay.url)
    live = follower_of(replay.url)
    assert live is not None
    monitor.stop(timeout=10)
    assert follower_of(replay.url) is None
    assert not live.monitor._running
    assert not any(t.name == f"comfyui-live {live.url}" for t in threading.enumerate())


def test_a_prompt_that_ran_between_two_looks_at_the_queue_is_listed(
        replay: ReplayThread) -> None:
    changes: queue.Queue[Change] = queue.Queue()
    monitor = Monitor(replay.url, {"watch_heartbeat": 0})
    monitor.subscribe(changes.put)
    monitor.start()
    following(monitor, replay.url)
    try:
        # A prompt that the follower never saw queued (it ended in milliseconds, as a fully
        # cached one does): only the server's history has it, as captured.
        finished = capture("B_get_history_prompt_3")["body"]
        replay.run(replay.server.history.update, finished)
        [prompt_id] = finished
        wait_for(changes, prompt_id, Status.FINISHED, timeout=10)
    finally:
        monitor.stop(timeout=10)
