"""The monitor against a loopback ComfyUI replaying real captured sessions.

Every request goes through the plugin's real HTTP and WebSocket client; the server side
replays what ComfyUI 0.3.64 said (see comfyui_replay.py).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from progresskit_comfyui import (
    Backoff,
    ProgressStatus,
    ProgressUpdate,
    StatusMonitor,
    SyncStatusMonitor,
)
from progresskit_comfyui.statstore import statistics_path

from comfyui_replay import ReplayThread
from progresskit import record_finished_runs
from progresskit.engine.history import store_for
from progresskit.model.core import Status

SPEED = 20.0
#: Seconds of execution of the captured successful prompt (history timestamps).
OK_SECONDS = 6.876


@pytest.fixture
def replay() -> Iterator[ReplayThread]:
    server = ReplayThread(speed=SPEED)
    yield server
    server.close()


def pause(replay: ReplayThread) -> None:
    replay.run(setattr, replay.server, "paused", True)


def resume(replay: ReplayThread) -> None:
    replay.run(replay.server.resume)


def submit(replay: ReplayThread, name: str, client_id: str | None = None) -> str:
    """POST the captured workflow ``name`` like an application would; its prompt id."""
    body: dict[str, Any] = {"prompt": replay.server.recordings[name].graph}
    if client_id is not None:
        body["client_id"] = client_id
    response = httpx.post(f"{replay.url}/prompt", json=body, timeout=10)
    response.raise_for_status()
    prompt_id: str = response.json()["prompt_id"]
    return prompt_id


async def until(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        await asyncio.sleep(0.02)


async def status_of(monitor: StatusMonitor, job_id: Any) -> ProgressStatus | None:
    update = await monitor.get_progress(job_id)
    return None if update is None else update.status


async def until_status(monitor: StatusMonitor, job_id: Any, status: ProgressStatus,
                       timeout: float = 10.0) -> ProgressUpdate:
    deadline = time.monotonic() + timeout
    while True:
        update = await monitor.get_progress(job_id)
        if update is not None and update.status is status:
            return update
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id!r} is {update and update.status}, not {status}")
        await asyncio.sleep(0.02)


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(scenario())


# -- following jobs ---------------------------------------------------------------------------


def test_a_successful_job_is_followed_node_by_node(
    replay: ReplayThread, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        updates: list[ProgressUpdate] = []

        def broken(update: ProgressUpdate) -> None:
            raise RuntimeError("callback bug")

        async with StatusMonitor(replay.url, poll_interval=0.5) as monitor:
            monitor.add_progress_callback(broken)
            monitor.add_progress_callback(updates.append)
            await until(lambda: replay.server.sockets, what="the monitor's /ws")
            pause(replay)
            prompt_id = submit(replay, "ok", monitor.client_id)
            assert monitor.monitor_job(7, prompt_id, "image")
            assert not monitor.monitor_job(7, prompt_id, "image")  # already followed
            # Seen in the queue: its graph names the node classes.
            await until_status(monitor, 7, ProgressStatus.QUEUED)
            resume(replay)
            final = await until_status(monitor, 7, ProgressStatus.COMPLETED)
            stats = await monitor.get_queue_statistics()

        statuses = [u.status for u in updates]
        assert statuses[0] is ProgressStatus.INITIALIZING
        assert ProgressStatus.PROCESSING in statuses
        # Node 3 (SaveImageWebsocket) reports 16 steps; progress says 0..15, never 16.
        stepping = [u for u in updates if u.current_node == "3" and u.total_steps == 16]
        assert stepping and stepping[0].current_node_class == "SaveImageWebsocket"
        assert max(u.current_step for u in stepping) == 15
        running = [u.progress_percent for u in updates if u.status is ProgressStatus.PROCESSING]
        assert running == sorted(running) and max(running) < 100.0
        assert final.progress_percent == 100.0
        assert final.nodes_completed == final.nodes_total == 5
        assert final.generation_time == pytest.approx(OK_SECONDS / SPEED, abs=0.002)
        assert final.canonical_status is Status.FINISHED
        assert final.comfyui_prompt_id == prompt_id
        assert stats["generation_stats"]["completion_times"]["image"]["count"] == 1
        assert stats["generation_stats"]["average_step_duration"] > 0
        assert stats["servers"][replay.url]["websocket"] is True
        # The raising callback was logged for every update and stopped nothing.
        logged = [r for r in caplog.records if r.exc_text and "callback bug" in r.exc_text]
        assert len(logged) == len(updates)

    run(scenario)


def test_a_runtime_failure_is_failed_with_the_error_and_counted(replay: ReplayThread) -> None:
    async def scenario() -> None:
        async with StatusMonitor(replay.url, poll_interval=0.5) as monitor:
            await until(lambda: replay.server.sockets, what="the monitor's /ws")
            pause(replay)
            monitor.monitor_job("f", submit(replay, "fail", monitor.client_id), "image")
            resume(replay)
            final = await until_status(monitor, "f", ProgressStatus.FAILED)
            stats = await monitor.get_queue_statistics()
        assert final.canonical_status is Status.FAILED
        assert final.error_message is not None
        assert "Saving image outside the output folder is not allowed" in final.error_message
        assert "node 3 (SaveImage)" in final.error_message
        assert final.nodes_completed == 2  # EmptyImage and ImageBlur ran before the failure
        assert stats["generation_stats"]["failure_patterns"] == {
            "image:ERROR: Saving image outside the output folder is not allowed.": 1
        }
        assert stats["generation_stats"]["completion_times"] == {}

    run(scenario)


def test_polling_alone_follows_a_job_to_its_history(
    replay: ReplayThread, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        seen: list[ProgressStatus] = []

        async def async_callback(update: ProgressUpdate) -> None:
            await asyncio.sleep(0)
            seen.append(update.status)
            if update.status is ProgressStatus.COMPLETED:
                raise RuntimeError("async callback bug")

        async with StatusMonitor(replay.url, poll_interval=0.05, min_poll_gap=0.01,
                                 use_websocket=False) as monitor:
            monitor.add_progress_callback(async_callback)
            monitor.monitor_job(1, submit(replay, "ok", "someone-else"), "image")
            final = await until_status(monitor, 1, ProgressStatus.COMPLETED)
            await until(lambda: ProgressStatus.COMPLETED in seen, what="the async callback")
        assert ProgressStatus.PROCESSING in seen
        assert any("async progress callback failed" in r.getMessage() for r in caplog.records)
        # From the history's server timestamps, not from when we happened to poll.
        assert final.generation_time == pytest.approx(OK_SECONDS / SPEED, abs=0.002)
        assert final.ended_at is not None and final.started_at is not None

    run(scenario)


def test_a_job_followed_from_mid_run_gets_its_full_time_from_the_history(
    replay: ReplayThread,
) -> None:
    async def scenario() -> None:
        seen: list[ProgressStatus] = []
        client_id = "progresskit-mid-run"
        replay.run(setattr, replay.server, "speed", 5.0)
        prompt_id = submit(replay, "ok", client_id)
        await until(lambda: replay.server.running is not None, what="the prompt to start")
        await asyncio.sleep(0.3)
        # The monitor connects now: execution_start and the first nodes went to nobody.
        async with StatusMonitor(replay.url, poll_interval=0.5, client_id=client_id) as monitor:
            monitor.add_progress_callback(lambda u: seen.append(u.status))
            await until(lambda: client_id in replay.server.sockets, what="the monitor's /ws")
            monitor.monitor_job(1, prompt_id, "image")
            final = await until_status(monitor, 1, ProgressStatus.COMPLETED)
            stats = await monitor.get_queue_statistics()
        # The success event alone cannot time a job whose start was missed: the history can.
        assert ProgressStatus.COMPLETING in seen
        assert final.generation_time == pytest.approx(OK_SECONDS / 5.0, abs=0.01)
        assert stats["generation_stats"]["completion_times"]["image"]["count"] == 1

    run(scenario)


def test_a_prompt_posted_without_client_id_shows_nodes_through_broadcast_progress(
    replay: ReplayThread,
) -> None:
    async def scenario() -> None:
        updates: list[ProgressUpdate] = []
        async with StatusMonitor(replay.url, poll_interval=0.2) as monitor:
            monitor.add_progress_callback(updates.append)
            await until(lambda: replay.server.sockets, what="the monitor's /ws")
            pause(replay)
            monitor.monitor_job("n", submit(replay, "no_client"), "image")
            resume(replay)
            await until_status(monitor, "n", ProgressStatus.COMPLETED)
        assert any(u.current_node is not None and u.status is ProgressStatus.PROCESSING
                   for u in updates)

    run(scenario)


def test_several_servers_at_once() -> None:
    first, second = ReplayThread(speed=SPEED), ReplayThread(speed=SPEED)
    try:
        async def scenario() -> None:
            async with StatusMonitor([first.url, second.url], poll_interval=0.2) as monitor:
                await until(lambda: first.server.sockets and second.server.sockets)
                monitor.monitor_job("a", submit(first, "ok", monitor.client_id), "image")
                monitor.monitor_job("b", submit(second, "fail", monitor.client_id), "image",
                                    server=second.url)
                a = await until_status(monitor, "a", ProgressStatus.COMPLETED)
                b = await until_status(monitor, "b", ProgressStatus.FAILED)
                stats = await monitor.get_queue_statistics()
            assert (a.server, b.server) == (first.url, second.url)
            assert set(stats["servers"]) == {first.url, second.url}

        run(scenario)
    finally:
        first.close()
        second.close()


def test_the_sync_facade(replay: ReplayThread) -> None:
    with SyncStatusMonitor(replay.url, poll_interval=0.1) as monitor:
        monitor.monitor_job(1, submit(replay, "ok"), "image")
        deadline = time.monotonic() + 10
        while (update := monitor.get_progress(1)) is None or not update.status.is_terminal:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert update.status is ProgressStatus.COMPLETED
        assert monitor.estimate_completion(1) is None  # done: nothing to estimate
        stats = monitor.get_queue_statistics()
        assert stats["generation_stats"]["completion_times"]["image"]["count"] == 1


# -- estimates --------------------------------------------------------------------------------


def test_eta_is_the_type_median_scaled_by_progress_and_queue(replay: ReplayThread) -> None:
    async def scenario() -> None:
        async with StatusMonitor(replay.url, poll_interval=0.1) as monitor:
            await until(lambda: replay.server.sockets, what="the monitor's /ws")
            for seconds in (8.0, 10.0, 30.0):
                monitor.statistics.record_completion("image", seconds)
            monitor.monitor_job("long", submit(replay, "long", monitor.client_id), "image")
            monitor.monitor_job("next", submit(replay, "ok", monitor.client_id), "image")
            await until_status(monitor, "next", ProgressStatus.QUEUED)
            running = await until_status(monitor, "long", ProgressStatus.PROCESSING)
            queued = await monitor.get_progress("next")
            assert queued is not None and queued.queue_position == 0
            # One median for the running job ahead, one for itself.
            assert queued.eta_seconds == pytest.approx(20.0)
            assert running.eta_seconds == pytest.approx(10.0 * (1 - running.progress_percent / 100))
            when = await monitor.estimate_completion("next")
            assert when is not None and 15 < when.timestamp() - time.time() <= 20.5
            assert await monitor.estimate_completion("no such job") is None
            await monitor.cancel_job("long")

    run(scenario)


def test_a_completed_job_teaches_the_next_ones_eta_through_the_run_history(
    replay: ReplayThread,
) -> None:
    async def scenario() -> None:
        async with StatusMonitor(replay.url, poll_interval=0.1) as first:
            await until(lambda: replay.server.sockets, what="the monitor's /ws")
            first.monitor_job(1, submit(replay, "ok", first.client_id), "image")
            await until_status(first, 1, ProgressStatus.COMPLETED)
        recorded = store_for().runs("comfyui", "image")  # type: ignore[union-attr]
        assert len(recorded) == 1
        # Without the statistics file a new monitor has no completion times (seed 003's
        # median is unknown): an ETA at the very start of a job can only come from the run
        # history.
        where = statistics_path()
        assert where is not None and where.exists()
        where.unlink()
        async with StatusMonitor(replay.url, poll_interval=0.1) as second:
            await until(lambda: replay.server.sockets, what="the monitor's /ws")
            assert second.statistics.median("image") is None
            second.monitor_job(2, submit(replay, "ok", second.client_id), "image")
            running = await until_status(second, 2, ProgressStatus.PROCESSING)
            assert running.eta_seconds is not None
            assert 0 < running.eta_seconds <= 3 * OK_SECONDS / SPEED

    run(scenario)


def test_a_monitor_that_does_not_record_leaves_its_jobs_to_the_callers_block(
    replay: ReplayThread, progresskit_history: Path
) -> None:
    async def complete_one(job_id: int) -> None:
        async with StatusMonitor(replay.url, poll_interval=0.1, record_history=False) as monitor:
            await until(lambda: replay.server.sockets, what="the monitor's /ws")
            monitor.monitor_job(job_id, submit(replay, "ok", monitor.client_id), "image")
            await until_status(monitor, job_id, ProgressStatus.COMPLETED)

    run(lambda: complete_one(1))
    assert not progresskit_history.exists()
    with record_finished_runs():  # e.g. the status query of a session that records
        run(lambda: complete_one(2))
    assert len(store_for().runs("comfyui", "image")) == 1  # type: ignore[union-attr]


# -- cancel -----------------------------------------------------------------------------------


def test_cancel_a_running_job_interrupts_it_and_it_ends_cancelled(replay: ReplayThread) -> None:
    async def scenario() -> None:
        async with StatusMonitor(replay.url, poll_interval=0.2) as monitor:
            await until(lambda: replay.server.sockets, what="the monitor's /ws")
            prompt_id = submit(replay, "long", monitor.client_id)
            monitor.monitor_job("long", prompt_id, "video")
            await until(lambda: (u := monitor.progress_now("long")) is not None
                        and u.current_step >= 2, what="steps")
            assert await monitor.cancel_job("long")
            final = await until_status(monitor, "long", ProgressStatus.CANCELLED)
            stats = await monitor.get_queue_statistics()
            assert not await monitor.cancel_job("long")  # already over
        assert final.canonical_status is Status.CANCELLED
        assert final.detail == "interrupted"
        assert ("POST", "/interrupt", {"prompt_id": prompt_id}) in replay.server.requests
        assert stats["generation_stats"]["failure_patterns"] == {}

    run(scenario)


def test_cancel_a_pending_job_deletes_it_from_the_queue(replay: ReplayThread) -> None:
    async def scenario() -> None:
        async with StatusMonitor(replay.url, poll_interval=0.2) as monitor:
            await until(lambda: replay.server.sockets, what="the monitor's /ws")
            monitor.monitor_job("long", submit(replay, "long", monitor.client_id), "video")
            second = submit(replay, "ok", monitor.client_id)
            third = submit(replay, "ok", monitor.client_id)
            monitor.monitor_job("second", second, "image")
            monitor.monitor_job("third", third, "image")
            await until_status(monitor, "third", ProgressStatus.QUEUED)
            assert await monitor.cancel_job("second")
            # No need to wait: a deleted prompt is gone for good.
            assert await status_of(monitor, "second") is ProgressStatus.CANCELLED
            await until(lambda: (u := monitor.progress_now("third")) is not None
                        and u.queue_position == 0, what="third moving up")
            await monitor.cancel_job("long")
            await until_status(monitor, "third", ProgressStatus.COMPLETED)
        assert ("POST", "/queue", {"delete": [second]}) in replay.server.requests
        assert second not in replay.server.history

    run(scenario)


# -- vanishing, eviction ----------------------------------------------------------------------


def test_a_prompt_the_server_never_had_is_an_unknown_prompt_not_a_failure(
    replay: ReplayThread,
) -> None:
    async def scenario() -> None:
        calls: list[ProgressUpdate] = []
        async with StatusMonitor(replay.url, poll_interval=0.05, min_poll_gap=0.01,
                                 unknown_timeout=0.3) as monitor:
            monitor.add_progress_callback(calls.append)
            monitor.monitor_job(1, "00000000-0000-0000-0000-000000000000", "image")
            assert await status_of(monitor, 1) is ProgressStatus.INITIALIZING
            final = await until_status(monitor, 1, ProgressStatus.UNKNOWN)
            await asyncio.sleep(0.3)
            stats = await monitor.get_queue_statistics()
        assert final.canonical_status is Status.UNKNOWN
        assert final.detail == "unknown prompt"
        # A mistyped id is no job that failed: the statistics do not count it.
        assert stats["generation_stats"]["failure_patterns"] == {}
        assert [u.status for u in calls].count(ProgressStatus.UNKNOWN) == 1

    run(scenario)


def test_a_job_deleted_by_someone_else_vanishes_and_times_out(replay: ReplayThread) -> None:
    async def scenario() -> None:
        seen: list[ProgressStatus] = []
        async with StatusMonitor(replay.url, poll_interval=0.05, min_poll_gap=0.01,
                                 vanish_timeout=0.5) as monitor:
            monitor.add_progress_callback(lambda u: seen.append(u.status))
            long = submit(replay, "long")
            victim = submit(replay, "ok")
            monitor.monitor_job("victim", victim, "image")
            await until_status(monitor, "victim", ProgressStatus.QUEUED)
            httpx.post(f"{replay.url}/queue", json={"delete": [victim]}).raise_for_status()
            await until_status(monitor, "victim", ProgressStatus.COMPLETING)
            final = await until_status(monitor, "victim", ProgressStatus.TIMEOUT)
            httpx.post(f"{replay.url}/interrupt", json={"prompt_id": long}).raise_for_status()
        assert final.detail is not None and "left the queue" in final.detail
        assert seen[-3:] == [ProgressStatus.QUEUED, ProgressStatus.COMPLETING,
                             ProgressStatus.TIMEOUT]

    run(scenario)


def test_finished_jobs_are_evicted_after_retention_and_beyond_the_bound(
    replay: ReplayThread,
) -> None:
    async def scenario() -> None:
        async with StatusMonitor(replay.url, poll_interval=0.05, min_poll_gap=0.01,
                                 unknown_timeout=0.05, retention=3600, max_retained=2) as monitor:
            for n in range(4):
                monitor.monitor_job(n, f"never-submitted-{n}", "image")
            await until(lambda: len(monitor.job_ids) == 2, what="eviction beyond the bound")
            assert monitor.job_ids == [2, 3]  # the oldest finished went first
            assert await monitor.get_progress(0) is None
        async with StatusMonitor(replay.url, poll_interval=0.05, min_poll_gap=0.01,
                                 unknown_timeout=0.05, retention=0.2) as monitor:
            monitor.monitor_job("x", "never-submitted", "image")
            await until_status(monitor, "x", ProgressStatus.UNKNOWN)
            ended = time.monotonic()
            await until(lambda: not monitor.job_ids, what="eviction after retention")
            assert time.monotonic() - ended >= 0.15

    run(scenario)


# -- connection trouble -----------------------------------------------------------------------


@pytest.mark.slow
def test_server_down_then_back(replay: ReplayThread, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="progresskit_comfyui.monitor")

    async def scenario() -> None:
        backoff = Backoff(base=0.05, cap=0.2)
        async with StatusMonitor(replay.url, poll_interval=0.1, backoff=backoff) as monitor:
            await until(lambda: replay.server.sockets, what="the monitor's /ws")
            replay.run(setattr, replay.server, "speed", 4.0)
            monitor.monitor_job(1, submit(replay, "ok", monitor.client_id), "image")
            await until_status(monitor, 1, ProgressStatus.PROCESSING)
            replay.stop()
            await until(lambda: monitor._links[replay.url].up is False, what="down")
            during = await monitor.get_progress(1)
            stats = await monitor.get_queue_statistics()
            # Still running as far as anyone knows; the outage is said, not hidden.
            assert during is not None and during.status is ProgressStatus.PROCESSING
            assert during.detail is not None and "server unreachable" in during.detail
            assert stats["servers"][replay.url]["state"] == "down"
            assert "ConnectError" in stats["servers"][replay.url]["last_error"]
            await asyncio.sleep(2.0)  # the prompt ends while nobody can see the server
            replay.start()
            final = await until_status(monitor, 1, ProgressStatus.COMPLETED)
            await until(lambda: monitor._links[replay.url].websocket, what="/ws again")
        assert final.generation_time == pytest.approx(OK_SECONDS / 4.0, abs=0.01)
        messages = [r.getMessage() for r in caplog.records]
        assert sum("retrying with backoff" in m for m in messages) == 1  # said once, not per try
        assert any("reachable again" in m for m in messages)

    run(scenario)


def test_a_slow_answer_is_not_a_dead_server(
    replay: ReplayThread, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="progresskit_comfyui.monitor")

    async def scenario() -> None:
        async with StatusMonitor(replay.url, poll_interval=0.05, min_poll_gap=0.01,
                                 http_timeout=0.1, use_websocket=False) as monitor:
            replay.run(setattr, replay.server, "http_delay", 0.3)
            monitor.monitor_job(1, submit(replay, "ok"), "image")
            await until(lambda: any("server busy" in r.getMessage() for r in caplog.records),
                        what="a slow reply")
            stats = await monitor.get_queue_statistics()
            assert stats["servers"][replay.url]["failures"] == 0
            assert stats["servers"][replay.url]["state"] != "down"
            replay.run(setattr, replay.server, "http_delay", 0.0)
            await until_status(monitor, 1, ProgressStatus.COMPLETED)

    run(scenario)


def test_retries_back_off_exponentially_with_an_injected_clock(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    now = [1000.0]
    delays: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        delays.append(seconds)
        now[0] += seconds
        await asyncio.sleep(0)

    async def scenario() -> None:
        monitor = StatusMonitor(
            f"http://127.0.0.1:{port}", use_websocket=False, clock=lambda: now[0],
            sleep=fake_sleep, backoff=Backoff(base=1.0, factor=2.0, cap=8.0, random=lambda: 0.5),
            vanish_timeout=5.0,
        )
        monitor.monitor_job(1, "some-prompt", "image")
        await monitor.start_monitoring()
        await until(lambda: len(delays) >= 6, what="six retries")
        update = await monitor.get_progress(1)
        await monitor.stop_monitoring()
        # 0.75 x the bound (1, 2, 4, 8, 8, 8): exponential, capped, never zero.
        assert delays[:6] == [0.75, 1.5, 3.0, 6.0, 6.0, 6.0]
        # An unreachable server proves nothing about the job: no timeout for it.
        assert update is not None and update.status is ProgressStatus.INITIALIZING
        assert update.detail is not None and "server unreachable" in update.detail

    run(scenario)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "retrying with backoff" in warnings[0].getMessage()


def test_bad_registrations_are_refused_clearly(replay: ReplayThread) -> None:
    monitor = StatusMonitor(replay.url)
    with pytest.raises(ValueError, match="prompt_id must be a non-empty string"):
        monitor.monitor_job(1, "", "image")
    monitor.monitor_job(1, "p1", "image")
    with pytest.raises(ValueError, match="already monitored as prompt p1"):
        monitor.monitor_job(1, "p2", "image")
    with pytest.raises(ValueError, match="already monitored as job 1"):
        monitor.monitor_job(2, "p1", "image")
    with pytest.raises(ValueError, match="not an http"):
        StatusMonitor("localhost:8188")
