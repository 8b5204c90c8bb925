"""Generation statistics outlive the process: a fresh process starts from what earlier ones
learned (the statistics file beside the ETA history), each job counted once."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from progresskit_comfyui.statistics import GenerationStatistics
from progresskit_comfyui.statstore import StatisticsFile, statistics_path

from comfyui_replay import ReplayThread

#: One process: follow prompts of the given captured recordings to their end, then print
#: the statistics its StatusMonitor had at the start and at the end.
WORKER = textwrap.dedent("""
    import asyncio, json, sys
    import httpx
    sys.path.insert(0, sys.argv[1])
    from comfyui_replay import recordings
    from progresskit_comfyui import StatusMonitor

    async def main(url, names):
        async with StatusMonitor(url, poll_interval=0.1) as monitor:
            start = (await monitor.get_queue_statistics())["generation_stats"]
            while not (await monitor.get_queue_statistics())["servers"][url]["websocket"]:
                await asyncio.sleep(0.02)
            async with httpx.AsyncClient() as client:
                for n, name in enumerate(names):
                    reply = await client.post(url + "/prompt", json={
                        "prompt": recordings()[name].graph, "client_id": monitor.client_id})
                    monitor.monitor_job(n, reply.json()["prompt_id"], "image")
            while not all(monitor.progress_now(n).status.is_terminal
                          for n in range(len(names))):
                await asyncio.sleep(0.05)
            end = (await monitor.get_queue_statistics())["generation_stats"]
        print(json.dumps({"start": start, "end": end}))

    asyncio.run(main(sys.argv[2], sys.argv[3:]))
""")


@pytest.fixture
def replay() -> Iterator[ReplayThread]:
    server = ReplayThread(speed=20.0)
    yield server
    server.close()


def process(replay: ReplayThread, *names: str) -> dict[str, Any]:
    """A real process of its own (the ETA history and statistics file of this test)."""
    done = subprocess.run(
        [sys.executable, "-c", WORKER, str(Path(__file__).parent), replay.url, *names],
        capture_output=True, text=True, timeout=120, check=True)
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_a_fresh_process_starts_from_what_earlier_processes_learned(
        replay: ReplayThread) -> None:
    first = process(replay, "ok", "fail")
    assert first["start"]["completion_times"] == {}
    assert first["start"]["failure_patterns"] == {}
    learned = first["end"]
    assert learned["completion_times"]["image"]["count"] == 1
    [pattern] = learned["failure_patterns"]
    assert pattern.startswith("image:") and learned["failure_patterns"][pattern] == 1

    second = process(replay, "ok_2")
    assert second["start"] == learned
    times = second["end"]["completion_times"]["image"]
    assert times["count"] == 2
    assert times["min"] < times["max"]  # the second captured run is the faster one
    assert second["end"]["failure_patterns"] == learned["failure_patterns"]
    assert second["end"]["average_step_duration"] is not None


def test_a_job_met_again_counts_once_and_processes_saving_together_lose_nothing(
        progresskit_history: Path) -> None:
    where = statistics_path()
    assert where is not None and where.parent == progresskit_history.parent
    first, second = GenerationStatistics(), GenerationStatistics()
    for stats in (first, second):
        StatisticsFile(where).load(stats)
    first.record_completion("image", 2.0, "http://a#1")
    second.record_completion("image", 2.0, "http://a#1")  # the same job, seen by both
    second.record_completion("image", 4.0, "http://a#2")
    second.record_failure("image", "CUDA out of memory", "http://a#3")
    StatisticsFile(where).save(first)
    StatisticsFile(where).save(second)  # read the file first: the first's records stay
    fresh = GenerationStatistics()
    StatisticsFile(where).load(fresh)
    summary = fresh.as_dict()
    assert summary["completion_times"]["image"]["count"] == 2
    assert summary["completion_times"]["image"]["median"] == 3.0
    assert summary["failure_patterns"] == {"image:CUDA out of memory": 1}
    assert second.as_dict() == summary  # a save also takes what others added


def test_the_file_is_bounded(progresskit_history: Path) -> None:
    where = statistics_path()
    assert where is not None
    stats = GenerationStatistics(window=5)
    for n in range(20):
        stats.record_completion("image", float(n), f"job{n}")
        stats.record_failure("image", f"error {n}", f"job{n}")
    StatisticsFile(where).save(stats)
    document = json.loads(where.read_text())
    assert [c[2] for c in document["completions"]] == [15.0, 16.0, 17.0, 18.0, 19.0]
    assert len(document["failures"]) == 20  # below FAILURE_WINDOW


@pytest.mark.parametrize("content", ["", "{not json", '{"version": 1}', "[1, 2]",
                                     '{"version": 1, "completions": [["image", "j", -1]],'
                                     ' "failures": [], "steps": [0, 0]}'])
def test_a_broken_file_is_ignored_with_a_warning(
        progresskit_history: Path, content: str, caplog: pytest.LogCaptureFixture) -> None:
    where = statistics_path()
    assert where is not None
    where.parent.mkdir(parents=True, exist_ok=True)
    where.write_text(content)
    stats = GenerationStatistics()
    with caplog.at_level(logging.WARNING, "progresskit_comfyui.statstore"):
        StatisticsFile(where).load(stats)
    assert stats.as_dict()["completion_times"] == {}
    assert str(where) in caplog.text
    stats.record_completion("image", 1.0, "job")
    StatisticsFile(where).save(stats)  # a save replaces it with a good one
    assert json.loads(where.read_text())["completions"] == [["image", "job", 1.0]]


def test_history_off_keeps_statistics_in_the_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROGRESSKIT_HISTORY", "off")
    assert statistics_path() is None
