"""Issue 21's live behaviour, against the replay of real captures: a frozen final record,
status changes confirmed by polling while the event stream lags, the delete race, restarts
and frozen servers, and time-weighted progress whose ETA counts down with no events.

Scenarios recombine what the real server said (comfyui_replay.py): its captured messages,
in captured order and timing, with lag, freezes and restarts added around them.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import pytest
from progresskit_comfyui import ProgressStatus, ProgressUpdate, StatusMonitor

from comfyui_replay import ReplayThread
from progresskit.model.core import Status
from test_comfyui_monitor import SPEED, run, submit, until, until_status


@pytest.fixture
def replay() -> Any:
    server = ReplayThread(speed=SPEED)
    yield server
    server.close()


def late_events(replay: ReplayThread, prompt_id: str) -> list[str]:
    """The captured successful prompt's own mid-run messages (node 3, its steps), as its
    socket would carry them for ``prompt_id``."""
    recording = replay.server.recordings["ok"]
    out = []
    for _t, kind, data in recording.messages:
        if kind in ("progress", "executing") and data.get("node") is not None:
            text = json.dumps({"type": kind, "data": data})
            out.append(text.replace(recording.prompt_id, prompt_id))
    return out[:20]


def test_a_finished_job_is_frozen_and_called_back_once(replay: ReplayThread) -> None:
    async def scenario() -> None:
        updates: list[ProgressUpdate] = []
        async with StatusMonitor(replay.url, poll_interval=0.2) as monitor:
            monitor.add_progress_callback(updates.append)
            await until(lambda: monitor.client_id in replay.server.sockets, what="/ws")
            prompt_id = submit(replay, "ok", monitor.client_id)
            monitor.monitor_job(1, prompt_id, "image")
            final = await until_status(monitor, 1, ProgressStatus.COMPLETED)
            # The stream carries the prompt's events again, late (a lagging stream).
            for text in late_events(replay, prompt_id):
                replay.call(replay.server._send_now(monitor.client_id, text))
            await asyncio.sleep(0.5)
            after = await monitor.get_progress(1)
        assert after is not None
        assert (after.status, after.current_node, after.current_step, after.progress_percent) \
            == (ProgressStatus.COMPLETED, None, final.current_step, 100.0)
        finals = [u for u in updates if u.status.is_terminal]
        assert len(finals) == 1

    run(scenario)


def test_an_interrupt_is_confirmed_by_polling_while_the_stream_lags(replay: ReplayThread) -> None:
    async def scenario() -> None:
        async with StatusMonitor(replay.url, poll_interval=2.0) as monitor:
            await until(lambda: monitor.client_id in replay.server.sockets, what="/ws")
            prompt_id = submit(replay, "long", monitor.client_id)
            monitor.monitor_job(1, prompt_id, "long")
            await until_status(monitor, 1, ProgressStatus.PROCESSING)
            replay.run(setattr, replay.server, "event_lag", 5.0)
            assert await monitor.cancel_job(1)
            await until(lambda: prompt_id in replay.server.history, what="the interrupt")
            stopped = time.monotonic()
            final = await until_status(monitor, 1, ProgressStatus.CANCELLED, timeout=3)
            confirmed = time.monotonic() - stopped
        assert confirmed < 0.5, confirmed
        assert final.detail == "interrupted"
        assert final.canonical_status is Status.CANCELLED

    run(scenario)


def test_a_delete_that_lost_the_race_is_an_interrupt_with_that_cause(
    replay: ReplayThread,
) -> None:
    async def scenario() -> None:
        async with StatusMonitor(replay.url, poll_interval=0.2) as monitor:
            first = submit(replay, "long")
            second = submit(replay, "long")
            monitor.monitor_job("b", second, "long")
            await until_status(monitor, "b", ProgressStatus.QUEUED)
            server = replay.server

            async def first_ends_and_second_starts() -> None:
                assert server.running is not None and server.running.prompt_id == first
                server.running.interrupt.set()
                while server.running is None or server.running.prompt_id != second:
                    await asyncio.sleep(0.005)

            replay.run(setattr, server, "before_delete", first_ends_and_second_starts)
            assert await monitor.cancel_job("b")
            final = await until_status(monitor, "b", ProgressStatus.CANCELLED)
        assert final.detail == "interrupted (it started before the deletion from the queue)"

    run(scenario)


def test_a_deleted_pending_job_is_cancelled(replay: ReplayThread) -> None:
    async def scenario() -> None:
        async with StatusMonitor(replay.url, poll_interval=0.2) as monitor:
            submit(replay, "long")
            pending = submit(replay, "ok")
            monitor.monitor_job("p", pending, "image")
            await until_status(monitor, "p", ProgressStatus.QUEUED)
            assert await monitor.cancel_job("p")
            final = await monitor.get_progress("p")
            replay.run(replay.server.running.interrupt.set)
        assert final is not None
        assert (final.status, final.detail) == (ProgressStatus.CANCELLED, "deleted from the queue")

    run(scenario)


@pytest.mark.slow
def test_a_restart_mid_job_fails_its_lost_jobs_and_reconnects_fast(replay: ReplayThread) -> None:
    async def scenario() -> None:
        async with StatusMonitor(replay.url, poll_interval=0.5) as monitor:
            await until(lambda: monitor.client_id in replay.server.sockets, what="/ws")
            running = submit(replay, "long", monitor.client_id)
            pending = submit(replay, "ok", monitor.client_id)
            monitor.monitor_job("r", running, "long")
            monitor.monitor_job("p", pending, "image")
            await until_status(monitor, "r", ProgressStatus.PROCESSING)
            await until_status(monitor, "p", ProgressStatus.QUEUED)
            replay.kill()
            await asyncio.sleep(3.0)  # the monitor backs off meanwhile
            replay.restart(speed=SPEED)
            back = time.monotonic()
            await until(lambda: monitor.client_id in replay.server.sockets, timeout=2.5,
                        what="the event stream reconnected")
            reconnected = time.monotonic() - back
            lost = await until_status(monitor, "r", ProgressStatus.FAILED, timeout=5)
            other = await until_status(monitor, "p", ProgressStatus.FAILED, timeout=1)
            failed_after = time.monotonic() - back
            stats = await monitor.get_queue_statistics()
        assert reconnected < 2.0, reconnected
        assert failed_after < 5.0, failed_after
        assert lost.detail == other.detail == "server restarted"
        server = stats["servers"][replay.url]
        assert (server["state"], server["restarts"]) == ("up", 1)

    run(scenario)


@pytest.mark.slow
def test_a_frozen_server_is_stalled_not_up(replay: ReplayThread) -> None:
    async def scenario() -> None:
        async with StatusMonitor(replay.url, poll_interval=0.2, stall_after=1.0,
                                 http_timeout=30) as monitor:
            prompt_id = submit(replay, "long")
            monitor.monitor_job(1, prompt_id, "long")
            await until_status(monitor, 1, ProgressStatus.PROCESSING)
            replay.run(setattr, replay.server, "http_delay", 4.0)  # answers nothing meanwhile
            await asyncio.sleep(1.6)
            stats = await monitor.get_queue_statistics()
            frozen = await monitor.get_progress(1)
            replay.run(setattr, replay.server, "http_delay", 0.0)
            replay.run(replay.server.running.interrupt.set)
        assert stats["servers"][replay.url]["state"] == "stalled"
        assert frozen is not None and frozen.status is ProgressStatus.PROCESSING
        assert frozen.detail is not None and frozen.detail.startswith("server stalled")

    run(scenario)


async def _two_looks_without_events(
    monitor: StatusMonitor, replay: ReplayThread, job: int, pause: float
) -> tuple[ProgressUpdate | None, ProgressUpdate | None]:
    """``monitor.progress_now(job)`` twice, ``pause`` seconds apart, once node 2 runs and the
    replayed stream is frozen (no event reaches the monitor in between)."""
    await until(lambda: (u := monitor.progress_now(job)) is not None
                and u.current_node == "2", what="node 2 running")
    replay.run(setattr, replay.server, "event_lag", 60.0)
    first = monitor.progress_now(job)
    await asyncio.sleep(pause)
    return first, monitor.progress_now(job)


def test_progress_is_time_weighted_and_the_eta_counts_down_with_no_events() -> None:
    replay = ReplayThread(speed=5.0)  # node 2 runs 0.9 s: time to watch it count down

    async def scenario() -> None:
        async with StatusMonitor(replay.url, poll_interval=5.0) as monitor:
            await until(lambda: monitor.client_id in replay.server.sockets, what="/ws")
            first = submit(replay, "ok", monitor.client_id)
            monitor.monitor_job(1, first, "image")
            done = await until_status(monitor, 1, ProgressStatus.COMPLETED)
            assert done.generation_time is not None
            second = submit(replay, "ok", monitor.client_id)
            monitor.monitor_job(2, second, "image", prompt=replay.server.recordings["ok"].graph)
            # Node 2 (ImageBlur) runs most of the job's time; once it runs, freeze the stream.
            a, b = await _two_looks_without_events(monitor, replay, 2, 0.1)
        assert a is not None and b is not None
        assert a.eta_seconds is not None and b.eta_seconds is not None
        assert a.eta_as_of is not None and b.eta_as_of is not None
        # No event in between, yet it counts down, and the predicted end stays put.
        assert b.eta_seconds < a.eta_seconds
        assert abs((b.eta_as_of + b.eta_seconds) - (a.eta_as_of + a.eta_seconds)) < 0.05
        assert b.progress_percent > a.progress_percent
        assert a.nodes_completed == 1

    try:
        run(scenario)
    finally:
        replay.close()


_FRESH_PROCESS = """
import asyncio, json, sys
from progresskit_comfyui import StatusMonitor

async def main():
    url, pending = sys.argv[1], sys.argv[2]
    monitor = StatusMonitor(url, use_websocket=False)
    try:
        stored = monitor.node_times.expected("image", "ImageBlur")
        monitor.monitor_job(2, pending, "image")
        await monitor.refresh()
        update = await monitor.get_progress(2)
    finally:
        await monitor.stop_monitoring()
    print(json.dumps([stored, update.status.value, update.eta_seconds]))

asyncio.run(main())
"""


def test_node_times_reach_another_process_through_the_history_store(
    replay: ReplayThread,
) -> None:
    async def scenario() -> tuple[float | None, list[Any]]:
        async with StatusMonitor(replay.url, poll_interval=0.5) as monitor:
            await until(lambda: monitor.client_id in replay.server.sockets, what="/ws")
            monitor.monitor_job(1, submit(replay, "ok", monitor.client_id), "image")
            await until_status(monitor, 1, ProgressStatus.COMPLETED)
            # Ended before a poll saw its graph, maybe: then the history names its nodes.
            await until(lambda: monitor.node_times.expected("image", "ImageBlur") is not None,
                        what="node times learned")
            learned = monitor.node_times.expected("image", "ImageBlur")
        submit(replay, "long")  # keeps the next one queued
        pending = submit(replay, "ok")
        fresh = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _FRESH_PROCESS, replay.url, pending,
            stdout=asyncio.subprocess.PIPE)
        out, _ = await fresh.communicate()
        replay.run(replay.server.running.interrupt.set)
        return learned, json.loads(out)

    learned, (stored, status, eta) = asyncio.run(scenario())
    assert learned is not None and stored == pytest.approx(learned, rel=0.01)
    # A queued job gets an ETA in a fresh process, from what earlier processes learned.
    assert status == "queued" and eta is not None and eta > 0


def test_a_jobs_update_times_are_when_the_server_reported_its_progress(
        replay: ReplayThread) -> None:
    async def scenario() -> None:
        async with StatusMonitor(replay.url, poll_interval=0.2) as monitor:
            await until(lambda: monitor.client_id in replay.server.sockets, what="/ws")
            monitor.monitor_job(1, submit(replay, "ok", monitor.client_id), "image")
            running = await until_status(monitor, 1, ProgressStatus.PROCESSING)
            final = await until_status(monitor, 1, ProgressStatus.COMPLETED)
        times = final.update_times
        assert list(times) == sorted(times) and len(times) >= 16  # every step, at least
        assert set(running.update_times) <= set(times)
        # The server's own timestamps where its messages have one: its start and its end.
        assert final.started_at in times and final.ended_at in times
        assert times[0] == final.started_at

    run(scenario)


def test_events_that_arrive_before_monitor_job_are_applied_when_it_comes(
        replay: ReplayThread) -> None:
    async def scenario() -> None:
        async with StatusMonitor(replay.url, poll_interval=5.0) as monitor:
            await until(lambda: monitor.client_id in replay.server.sockets, what="/ws")
            replay.run(setattr, replay.server, "speed", 5.0)  # node 1 runs 0.28 s
            prompt_id = submit(replay, "ok", monitor.client_id)
            # ComfyUI started it at once; its first node ends before it is registered.
            await asyncio.sleep(0.6)
            graph = replay.server.recordings["ok"].graph
            monitor.monitor_job(1, prompt_id, "image", prompt=graph)
            now = monitor.progress_now(1)
            final = await until_status(monitor, 1, ProgressStatus.COMPLETED)
        assert now is not None and now.status is ProgressStatus.PROCESSING
        assert now.started_at == final.started_at  # execution_start, seen before
        assert now.nodes_completed >= 1
        assert final.generation_time is not None

    run(scenario)


def test_a_slow_jobs_eta_counts_down_second_by_second_with_no_events() -> None:
    """The job's own pace scales what is expected of its nodes, never the time the running
    node has already run: the predicted end of a job slower than the typical one stays put
    while its long node runs without events."""
    replay = ReplayThread(speed=5.0)

    async def scenario() -> None:
        async with StatusMonitor(replay.url, poll_interval=5.0) as monitor:
            await until(lambda: monitor.client_id in replay.server.sockets, what="/ws")
            # Learn from the faster captured run, then follow the slower one.
            monitor.monitor_job(1, submit(replay, "ok_2", monitor.client_id), "image")
            await until_status(monitor, 1, ProgressStatus.COMPLETED)
            monitor.monitor_job(2, submit(replay, "ok", monitor.client_id), "image",
                                prompt=replay.server.recordings["ok"].graph)
            a, b = await _two_looks_without_events(monitor, replay, 2, 0.3)
        assert a is not None and b is not None
        assert a.eta_seconds is not None and b.eta_seconds is not None
        assert a.eta_as_of is not None and b.eta_as_of is not None
        # Node 1 ran 1.6x its typical time: the job is slow, and the ETA says so...
        assert a.eta_seconds > 1.2 * (monitor.node_times.expected("image", "ImageBlur") or 0)
        # ...yet it falls by the time that passed, not 1.4 times that.
        assert abs((b.eta_as_of + b.eta_seconds) - (a.eta_as_of + a.eta_seconds)) < 0.03

    try:
        run(scenario)
    finally:
        replay.close()
