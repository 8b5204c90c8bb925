"""``progresskit status`` on ComfyUI servers and on work dirs that name ComfyUI jobs,
through the real command in a subprocess against the replay server."""

from __future__ import annotations

import asyncio
import functools
import json
import sqlite3
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from progresskit_comfyui.protocol import ComfyUIError, parse_history

from comfyui_replay import ReplayThread, capture
from progresskit import record_finished_runs
from progresskit.engine.history import HistoryStore
from progresskit.engine.session import Tracking
from progresskit.plugin.manager import get_plugin_manager
from progresskit.testing import CliResult

Cli = Callable[..., CliResult]

RUNNING = "23a703c2-da46-4b83-9fec-20c63b10c7ad"
PENDING = ["b8cd6b1f-3a6b-4f92-bed6-a28f2d01949f", "9d1598f7-8769-46e7-80eb-7aa6da1455bf"]
SUCCESS = ["bb317afe-df5b-4a90-9479-b8a5a245efd5", "f466e618-292c-46b7-88ba-cc94b68776a5"]
FAILED = "a9ec8dfb-e09a-4250-86b3-f707eb206bc2"
INTERRUPTED = "80339cf1-23db-48c3-9729-c390d5a0f235"


@pytest.fixture(scope="module")
def server() -> Iterator[ReplayThread]:
    """A server frozen as captured: one prompt running, two pending, four finished."""
    replay = ReplayThread()
    replay.run(replay.server.load_static, "E_get_queue_running_plus_2_pending",
               "B_get_history_max_items_2", "C_get_history_fail",
               "E_get_history_interrupted_during_blur")
    yield replay
    replay.close()


@pytest.fixture
def cli(progresskit_cli: Cli) -> Cli:
    """The command in a subprocess, as a user's shell runs it."""
    return functools.partial(progresskit_cli, in_process=False)


def runs_by_prompt(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {run["work_dir"].rsplit("#", 1)[1]: run for run in document["runs"]}


def test_status_of_a_server_url_lists_its_jobs(server: ReplayThread, cli: Cli,
                                               tmp_path: Path) -> None:
    result = cli("status", server.url, "--json", cwd=tmp_path)
    assert result.ret == 1, result.stderr  # one job failed
    document = json.loads(result.stdout)
    assert document["errors"] == []
    runs = runs_by_prompt(document)
    assert list(runs) == [RUNNING, *PENDING, INTERRUPTED, FAILED, *reversed(SUCCESS)]
    statuses = {pid: run["status"] for pid, run in runs.items()}
    assert statuses == {
        RUNNING: "running", PENDING[0]: "pending", PENDING[1]: "pending",
        SUCCESS[0]: "finished", SUCCESS[1]: "finished", FAILED: "failed",
        INTERRUPTED: "cancelled",
    }
    running = runs[RUNNING]["progress"]
    assert running["runner_type"] == "comfyui"
    assert running["source_status"] == "processing"
    assert running["items_total"] == 2
    assert [runs[p]["progress"]["details"]["queue_position"] for p in PENDING] == ["0", "1"]
    # The pending prompt runs the same workflow as the finished ones: their median time,
    # once for itself, once per prompt ahead of it (the running one and one pending).
    entries = parse_history(capture("B_get_history_max_items_2")["body"]).values()
    median = statistics.median(e.generation_seconds or 0.0 for e in entries)
    # (The running one's share is counted down from when it was seen running.)
    assert runs[PENDING[1]]["progress"]["eta_seconds"] == pytest.approx(3 * median, rel=0.01)
    failed = runs[FAILED]["progress"]
    assert "Saving image outside the output folder" in failed["error_message"]
    assert runs[SUCCESS[0]]["progress"]["metrics"]["generation_seconds"] > 0
    assert runs[INTERRUPTED]["progress"]["source_status"] == "cancelled"


def test_status_of_a_server_as_a_table(server: ReplayThread, cli: Cli, tmp_path: Path) -> None:
    result = cli("status", server.url, cwd=tmp_path)
    assert result.ret == 1, result.stderr
    for word in ("running", "pending", "finished", "failed", "cancelled", "comfyui"):
        assert word in result.stdout


class _NotComfy(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_a_url_that_is_not_comfyui_is_a_clear_error(cli: Cli, tmp_path: Path) -> None:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _NotComfy)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}"
        result = cli("status", url, "--json", cwd=tmp_path)
    finally:
        httpd.shutdown()
    assert result.ret == 2
    error = json.loads(result.stdout)["errors"][0]
    assert error.startswith(f"{url}: not a usable ComfyUI server")
    assert "/system_stats: HTTP 404" in error


def test_an_unreachable_url_is_a_clear_error(cli: Cli, tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = cli("status", f"http://127.0.0.1:{port}", cwd=tmp_path)
    assert result.ret == 2
    assert "not a usable ComfyUI server" in result.stderr
    assert "ConnectError" in result.stderr


def _work_dir(root: Path, url: str, prompt_ids: list[str], name: str = "job") -> Path:
    work_dir = root / name
    work_dir.mkdir(parents=True)
    config = {"comfyui_url": url, "comfyui_prompt_ids": prompt_ids, "comfyui_job_type": "image"}
    (work_dir / "progresskit.yaml").write_text(yaml.safe_dump(config))
    return work_dir


def test_a_work_dir_tracks_the_prompts_its_config_names(server: ReplayThread, cli: Cli,
                                                        tmp_path: Path) -> None:
    work_dir = _work_dir(tmp_path, server.url, SUCCESS)
    result = cli("status", str(work_dir), "--json", cwd=tmp_path)
    assert result.ret == 0, result.stderr
    (run,) = json.loads(result.stdout)["runs"]
    assert run["status"] == "finished"
    progress = run["progress"]
    assert progress["runner_type"] == "comfyui"
    assert (progress["items_completed"], progress["items_total"]) == (2, 2)
    assert progress["progress_percentage"] == 100.0
    assert [i["name"] for i in progress["completed_items"]] == SUCCESS


def test_a_work_dir_trackers_update_times_are_its_jobs_starts_and_ends(
        server: ReplayThread, tmp_path: Path) -> None:
    from progresskit_comfyui.plugin import ComfyUIJobsTracker

    work_dir = _work_dir(tmp_path, server.url, SUCCESS)
    config = yaml.safe_load((work_dir / "progresskit.yaml").read_text())
    tracker = ComfyUIJobsTracker(work_dir, config)
    assert tracker.update_times() == ()
    tracker.get_progress()
    captured = parse_history(capture("B_get_history_max_items_2")["body"], "capture")
    expected = sorted(stamp / 1000.0 for prompt_id in SUCCESS
                      for stamp in (captured[prompt_id].started_ms, captured[prompt_id].ended_ms))
    assert list(tracker.update_times()) == expected
    assert tracker.update_times_recorded  # the server's timestamps, not files' mtimes


def test_a_work_dir_with_a_running_and_a_failed_prompt(server: ReplayThread, cli: Cli,
                                                       tmp_path: Path) -> None:
    work_dir = _work_dir(tmp_path, server.url, [RUNNING, PENDING[0]])
    active = json.loads(cli("status", str(work_dir), "--json", cwd=tmp_path).stdout)["runs"][0]
    assert active["status"] == "running"
    assert active["progress"]["source_status"] == "processing"
    (work_dir / "progresskit.yaml").write_text(yaml.safe_dump(
        {"comfyui_url": server.url, "comfyui_prompt_ids": [SUCCESS[0], FAILED]}))
    result = cli("status", str(work_dir), "--json", cwd=tmp_path)
    assert result.ret == 1
    run = json.loads(result.stdout)["runs"][0]
    assert run["status"] == "failed"
    assert FAILED in run["progress"]["error_message"]


def test_a_work_dir_naming_unknown_prompts_is_unknown_with_the_reason(
    server: ReplayThread, cli: Cli, tmp_path: Path
) -> None:
    work_dir = _work_dir(tmp_path, server.url, ["00000000-0000-0000-0000-000000000000"])
    result = cli("status", str(work_dir), "--json", cwd=tmp_path)
    assert result.ret == 1
    run = json.loads(result.stdout)["runs"][0]
    assert run["status"] == "unknown"
    assert "in neither the queue nor the history" in run["reason"]


def test_config_only_work_dirs_are_runs_in_a_scan_of_their_tree(
    server: ReplayThread, cli: Cli, tmp_path: Path
) -> None:
    # As docs/comfyui.md says to make them: a config, no other file, no runner_type.
    _work_dir(tmp_path / "tree", server.url, SUCCESS, "done")
    _work_dir(tmp_path / "tree", server.url, [RUNNING], "busy")
    result = cli("status", str(tmp_path / "tree"), "--json", cwd=tmp_path)
    runs = {Path(r["work_dir"]).name: r for r in json.loads(result.stdout)["runs"]}
    assert {name: r["status"] for name, r in runs.items()} == {
        "busy": "running", "done": "finished"}
    table = cli("status", str(tmp_path / "tree"), cwd=tmp_path).stdout
    # Nodes (and the running node's steps), not epochs.
    assert "2/2 prompts" in table and " ep" not in table


def test_a_server_url_row_is_named_by_its_workflow_and_counts_nodes(
    server: ReplayThread, cli: Cli, tmp_path: Path
) -> None:
    table = cli("status", server.url, cwd=tmp_path).stdout
    assert "SaveImage+SaveImageWebsocket" in table
    assert "/2 nodes" in table and " ep" not in table
    pm = get_plugin_manager()
    runs = pm.hooks.resolve_target(server.url, {"comfyui_listen_seconds": 0.0}) or []
    running = next(r for r in runs if r.status.value == "running")
    assert pm.hooks.can_cancel(running)


def test_bad_comfyui_config_values_are_refused(cli: Cli, tmp_path: Path) -> None:
    work_dir = tmp_path / "job"
    work_dir.mkdir()
    (work_dir / "progresskit.yaml").write_text(yaml.safe_dump(
        {"comfyui_url": "localhost:8188", "comfyui_prompt_ids": ["x"]}))
    result = cli("status", str(work_dir), cwd=tmp_path)
    assert result.ret == 2
    assert "comfyui_url" in result.stderr and "not an http(s):// URL" in result.stderr


def test_the_cancel_hook_stops_a_servers_running_and_pending_prompts() -> None:
    replay = ReplayThread()
    try:
        def post(name: str) -> str:
            graph = replay.server.recordings[name].graph
            reply = httpx.post(f"{replay.url}/prompt", json={"prompt": graph}, timeout=10)
            prompt_id: str = reply.raise_for_status().json()["prompt_id"]
            return prompt_id

        running, pending = post("long"), post("ok")
        pm = get_plugin_manager()
        runs = {r.work_dir.rsplit("#", 1)[1]: r
                for r in pm.hooks.resolve_target(replay.url, {}) or ()}
        # A run's work dir, URL#PROMPT_ID, is a target of its own: that one job (what
        # `progresskit cancel` is given).
        one = pm.hooks.resolve_target(f"{replay.url}#{pending}", {}) or []
        assert [r.work_dir for r in one] == [f"{replay.url}#{pending}"]
        assert (runs[running].status.value, runs[pending].status.value) == ("running", "pending")
        assert pm.hooks.cancel(runs[pending], 1.0) is True
        assert pm.hooks.cancel(runs[running], 1.0) is True
        requests = replay.server.requests
        assert ("POST", "/queue", {"delete": [pending]}) in requests
        assert ("POST", "/interrupt", {"prompt_id": running}) in requests
        deadline = time.monotonic() + 10
        while running not in replay.server.history:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        after = {r.work_dir.rsplit("#", 1)[1]: r.status.value
                 for r in pm.hooks.resolve_target(replay.url, {}) or ()}
        assert after == {running: "cancelled"}  # the deleted prompt left no trace...
        # ...but this process deleted it: asked for by id, it is cancelled, not unknown.
        deleted = pm.hooks.resolve_target(f"{replay.url}#{pending}", {}) or []
        assert [(r.status.value, r.progress.details.get("detail")) for r in deleted] == [
            ("cancelled", "deleted from the queue")]
        with pytest.raises(ComfyUIError, match="nothing to cancel"):
            pm.hooks.cancel(runs[running], 1.0)
    finally:
        replay.close()


def test_the_plugin_works_when_called_from_inside_an_event_loop(server: ReplayThread) -> None:
    # The tracker API is synchronous; an async application may still call it.
    async def inside() -> list[Any]:
        runs = get_plugin_manager().hooks.resolve_target(
            server.url, {"comfyui_listen_seconds": 0.0})
        return list(runs or ())

    runs = asyncio.run(inside())
    assert len(runs) == 7


def test_finished_jobs_are_recorded_only_by_a_query_that_records(
    server: ReplayThread, progresskit_history: Path, tmp_path: Path
) -> None:
    pm = get_plugin_manager()
    work_dir = _work_dir(tmp_path, server.url, SUCCESS)
    # Library queries (a session, a server URL through the plugin hook) write nothing.
    assert Tracking(pm).status(str(work_dir), discover_processes=False).status.value == "finished"
    assert len(pm.hooks.resolve_target(server.url, {"comfyui_listen_seconds": 0.0}) or ()) == 7
    assert not progresskit_history.exists()
    # The command line's kind of session records the jobs that completed, once.
    for _ in range(2):
        Tracking(pm, record_history=True).status(str(work_dir), discover_processes=False)
    recorded = HistoryStore(progresskit_history).runs("comfyui", "image")
    assert sorted(r.run_key.rsplit("@", 1)[0].rsplit("/", 1)[1] for r in recorded) == sorted(
        SUCCESS)


def test_jobs_finished_in_a_query_from_an_event_loop_reach_its_history_block(
    server: ReplayThread, progresskit_history: Path
) -> None:
    # From inside an event loop the plugin asks the server on a thread of its own: the
    # block that records must still see the jobs that finished.
    async def inside() -> None:
        with record_finished_runs():
            get_plugin_manager().hooks.resolve_target(server.url, {"comfyui_listen_seconds": 0.0})

    asyncio.run(inside())
    count = sqlite3.connect(progresskit_history).execute("SELECT COUNT(*) FROM runs").fetchone()
    assert count == (len(SUCCESS),)


def test_a_work_dir_tracker_asks_the_server_once_per_query(server: ReplayThread,
                                                           tmp_path: Path) -> None:
    work_dir = _work_dir(tmp_path, server.url, [SUCCESS[0], RUNNING])
    tracking = Tracking(get_plugin_manager())
    requests = server.server.requests

    def asked() -> list[str]:
        before = len(requests)
        run = tracking.status(str(work_dir), discover_processes=False)
        assert run.status.value == "running"
        return [path.split("=")[0] for _, path, _ in requests[before:]]

    # One look: is it ComfyUI, its queue, its recent history (which has the finished one),
    # and, a prompt running, its events for comfyui_listen_seconds.
    one_look = ["/system_stats", "/queue", "/history?max_items", "/ws?clientId"]
    assert asked() == one_look
    assert asked() == []  # the same query moment: nothing asked again
    time.sleep(1.1)
    assert asked() == one_look
