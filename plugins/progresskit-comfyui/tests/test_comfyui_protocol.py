"""Parsing what ComfyUI 0.3.64 really answered (tests/data/captures)."""

from __future__ import annotations

import pytest
from progresskit_comfyui.backoff import Backoff
from progresskit_comfyui.protocol import (
    ProtocolError,
    normalise_url,
    parse_history,
    parse_queue,
    parse_system_stats,
)
from progresskit_comfyui.statistics import GenerationStatistics

from comfyui_replay import capture
from progresskit.model.core import Status
from progresskit.model.vocabulary import canonical_status


def test_queue_with_a_running_and_two_pending_prompts() -> None:
    queue = parse_queue(capture("E_get_queue_running_plus_2_pending")["body"])
    assert [e.prompt_id for e in queue.running] == ["23a703c2-da46-4b83-9fec-20c63b10c7ad"]
    assert queue.find("23a703c2-da46-4b83-9fec-20c63b10c7ad") == ("running", 0)
    assert queue.find("9d1598f7-8769-46e7-80eb-7aa6da1455bf") == ("pending", 1)
    assert queue.find("00000000-0000-0000-0000-000000000000") is None
    running = queue.running[0]
    assert running.client_id == "tracker-1a88b477"
    assert running.workflow.nodes == {"1": "EmptyImage", "2": "SaveImageWebsocket"}
    assert running.workflow.outputs == ("2",)
    assert running.workflow.kind == "EmptyImage+SaveImageWebsocket"


def test_idle_queue_and_empty_history_answers() -> None:
    queue = parse_queue(capture("A_get_queue_idle")["body"])
    assert queue.running == () and queue.pending == ()
    # While a prompt runs, and for unknown ids, ComfyUI answers {}.
    assert parse_history(capture("B_get_history_while_running")["body"]) == {}
    assert parse_history(capture("A_get_history_unknown_id")["body"]) == {}


def test_history_of_a_success() -> None:
    body = capture("B_get_history_prompt_1")["body"]
    entry = parse_history(body)["e9c77c30-73d4-464f-86d7-4293d36b4227"]
    assert entry.outcome == "success" and entry.error is None
    assert entry.generation_seconds == pytest.approx(6.876)
    assert entry.client_id == "tracker-06c64665"
    assert entry.workflow.class_of("3") == "SaveImageWebsocket"


def test_history_of_a_runtime_failure_keeps_the_error() -> None:
    body = capture("C_get_history_fail")["body"]
    entry = next(iter(parse_history(body).values()))
    assert entry.outcome == "error"
    assert entry.error is not None
    assert entry.error.node_type == "SaveImage" and entry.error.node_id == "3"
    assert entry.error.summary == "ERROR: Saving image outside the output folder is not allowed."
    assert entry.executed == ("2", "1")
    regex = next(iter(parse_history(capture("C2_get_history_fail_regex")["body"]).values()))
    assert regex.error is not None and regex.error.exception_type == "re.error"
    assert regex.error.summary == "missing ), unterminated subpattern at position 0"


def test_an_interrupt_is_told_apart_from_an_error() -> None:
    # History says "error" for an interrupt; its last message says what really happened.
    entry = next(iter(parse_history(capture("E_get_history_interrupted")["body"]).values()))
    assert entry.status_str == "error"
    assert entry.outcome == "interrupted"
    assert entry.error is None


def test_the_whole_history_at_the_end() -> None:
    entries = parse_history(capture("Z_get_history_all_end")["body"])
    outcomes = sorted(e.outcome for e in entries.values())
    assert outcomes.count("success") == 6
    assert outcomes.count("interrupted") == 2
    assert outcomes.count("error") == 2


def test_system_stats_identifies_comfyui() -> None:
    assert parse_system_stats(capture("A_get_system_stats")["body"]) == "0.3.64"


@pytest.mark.parametrize(
    "body",
    [
        {"status": "ok"},
        [],
        {"queue_running": [], "queue_pending": "none"},
        {"queue_running": [["not", "a", "valid", "entry"], 5], "queue_pending": []},
    ],
)
def test_a_queue_in_another_shape_is_a_clear_error(body: object) -> None:
    with pytest.raises(ProtocolError, match="GET /queue: expected"):
        parse_queue(body)


def test_history_without_status_and_stats_of_another_server_are_clear_errors() -> None:
    with pytest.raises(ProtocolError, match=r"status\.status_str"):
        parse_history({"abc": {"outputs": {}}})
    with pytest.raises(ProtocolError, match="does not answer like a ComfyUI server"):
        parse_system_stats({"system": {"os": "posix"}})


def test_comfyui_words_map_into_the_canonical_vocabulary() -> None:
    assert canonical_status("comfyui", "cancelled") is Status.CANCELLED
    assert canonical_status("comfyui", "timeout") is Status.CRASHED
    assert canonical_status("comfyui", "failed") is Status.FAILED
    assert canonical_status("comfyui", "completing") is Status.RUNNING


def test_urls_are_normalised_and_other_schemes_refused() -> None:
    assert normalise_url("http://127.0.0.1:8188/") == "http://127.0.0.1:8188"
    assert normalise_url(" https://gpu.lan/comfy/ ") == "https://gpu.lan/comfy"
    for bad in ("127.0.0.1:8188", "ftp://host", "http://"):
        with pytest.raises(ValueError, match="not an http"):
            normalise_url(bad)


def test_backoff_grows_exponentially_within_jittered_bounds_and_caps() -> None:
    draws = iter([0.0, 0.999, 0.5, 0.0, 0.999, 0.25])
    backoff = Backoff(base=1.0, factor=2.0, cap=8.0, random=lambda: next(draws))
    delays = [backoff.delay(n) for n in range(6)]
    assert delays[0] == 0.5  # never below half the bound: no tight loop
    assert delays[1] == pytest.approx(1.999)
    assert delays[2] == pytest.approx(3.0)
    assert delays[3] == 4.0  # bound 8 (capped), lowest draw
    assert delays[4] == pytest.approx(7.996)
    assert delays[5] == pytest.approx(5.0)
    assert Backoff(cap=60).bound(10_000) == 60  # no overflow for a server down for days
    with pytest.raises(ValueError, match="base > 0"):
        Backoff(base=0)


def test_statistics_summarise_per_job_type_and_stay_bounded() -> None:
    stats = GenerationStatistics(window=3)
    for seconds in (10.0, 30.0, 20.0):
        stats.record_completion("video", seconds)
    stats.record_completion("image", 2.0)
    stats.record_step(0.5)
    stats.record_step(1.5)
    stats.record_failure("video", "CUDA out of memory")
    stats.record_failure("video", "CUDA out of memory")
    summary = stats.as_dict()
    assert summary["completion_times"]["video"] == {
        "count": 3, "median": 20.0, "mean": 20.0, "min": 10.0, "max": 30.0,
    }
    assert summary["average_step_duration"] == 1.0
    assert summary["failure_patterns"] == {"video:CUDA out of memory": 2}
    stats.record_completion("video", 100.0)  # the oldest (10) drops out of the window
    assert stats.as_dict()["completion_times"]["video"]["count"] == 3
    assert stats.median("video") == 30.0
    assert stats.median("audio") is None


def test_a_nodes_typical_time_stays_between_two_groups_of_runs() -> None:
    from progresskit_comfyui.statistics import middle_mean

    # The two captured runs' node 2 (seconds), alternating: the median would be either.
    fast, slow = 3.24, 4.37
    runs = [slow, fast, slow, fast, slow, fast]
    typical = [middle_mean(runs[:n]) for n in range(2, len(runs) + 1)]
    assert all(fast < t < slow for t in typical)
    assert typical[-1] == pytest.approx((fast + slow) / 2)
    assert middle_mean([1.0] * 7 + [100.0]) == 1.0  # an outlier is trimmed
