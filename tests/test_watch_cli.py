"""``progresskit watch`` as a real subprocess: JSON lines, the live view, signals, errors."""

from __future__ import annotations

import json
import os
import pty
import queue
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from helpers.cli import run_cli, start_cli
from helpers.runs import make_evaluator_run, make_trainer_run
from helpers.webhook_receiver import wait_for


def _collect(lines: queue.Queue[str], into: list[dict[str, Any]]) -> list[dict[str, Any]]:
    while True:
        try:
            into.append(json.loads(lines.get_nowait()))
        except queue.Empty:
            return into


def _has(events: list[dict[str, Any]], lines: queue.Queue[str],
         test: Callable[[dict[str, Any]], bool]) -> bool:
    return any(test(e) for e in _collect(lines, events))


@pytest.mark.parametrize("stop_with", [signal.SIGTERM, signal.SIGINT])
def test_json_lines_pick_up_a_new_run_and_a_signal_stops_cleanly(
    tmp_path: Path, isolated_cwd: Path, stop_with: signal.Signals
) -> None:
    root = tmp_path / "runs"
    make_evaluator_run(root / "a", scores={"acc": 0.1})
    process, lines = start_cli("watch", str(root), "--heartbeat", "0", cwd=isolated_cwd)
    events: list[dict[str, Any]] = []
    try:
        wait_for(lambda: _has(events, lines, lambda e: e["kind"] == "new"), what="run a")
        make_trainer_run(root / "b", 1, total=3)
        wait_for(
            lambda: _has(events, lines, lambda e: e["run"]["work_dir"] == str(root / "b")),
            what="the new run b",
        )
    finally:
        process.send_signal(stop_with)
        _out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert "Traceback" not in err
    assert f"watching {root}" in err
    first, second = events[0], next(e for e in events if e["run"]["work_dir"] == str(root / "b"))
    assert first["format"] == "progresskit.change" and first["run"]["status"] == "finished"
    assert second["kind"] == "new" and second["run"]["progress"]["runner_type"] == "trainer"
    assert len({e["event_id"] for e in events}) == len(events)


def test_flags_override_the_config_and_are_checked_like_it(
    tmp_path: Path, isolated_cwd: Path
) -> None:
    (tmp_path / "runs").mkdir()
    result = run_cli("watch", str(tmp_path / "runs"), "--poll-interval", "0", cwd=isolated_cwd)
    assert result.ret == 2
    assert "--poll-interval: key 'watch_poll_interval': must be > 0 seconds" in result.stderr
    missing = run_cli("watch", str(tmp_path / "nope"), cwd=isolated_cwd)
    assert missing.ret == 2
    assert "nope: does not exist" in missing.stderr and "Traceback" not in missing.stderr


def test_bad_sink_config_fails_at_start_up(tmp_path: Path, isolated_cwd: Path) -> None:
    root = tmp_path / "runs"
    root.mkdir()
    (isolated_cwd / "progresskit.yaml").write_text(
        "sinks:\n  - type: webhook\n    url: http://127.0.0.1:9/x\n    secret_env: PK_NOT_SET_X\n"
    )
    result = run_cli("watch", str(root), "--config", str(isolated_cwd / "progresskit.yaml"),
                     cwd=isolated_cwd)
    assert result.ret == 2
    assert "sinks[0]: environment variable PK_NOT_SET_X (named by secret_env) is not set" in (
        result.stderr
    )


def test_live_view_on_a_terminal(tmp_path: Path, isolated_cwd: Path) -> None:
    root = tmp_path / "runs"
    make_trainer_run(root / "train_a", 2, total=4)
    master, slave = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "progresskit", "watch", str(root), "--heartbeat", "0"],
        stdin=slave,
        stdout=slave,
        stderr=subprocess.PIPE,
        cwd=isolated_cwd,
        env={**os.environ, "COLUMNS": "160", "LINES": "40", "TERM": "xterm-256color"},
    )
    os.close(slave)
    screen = bytearray()

    def read_available() -> str:
        while select.select([master], [], [], 0.05)[0]:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            screen.extend(chunk)
        return screen.decode("utf-8", "replace")

    try:
        wait_for(lambda: "train_a" in read_available() and "running" in read_available(),
                 what="the live table")
        make_evaluator_run(root / "eval_b", scores={"acc": 0.4})
        wait_for(lambda: "eval_b" in read_available(), what="the new run in the live table")
    finally:
        process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 60
        while process.poll() is None and time.monotonic() < deadline:
            read_available()  # keep the terminal drained so the child never blocks on it
        assert process.stderr is not None
        err = process.stderr.read().decode()
        os.close(master)
    assert process.returncode == 0, err
    text = screen.decode("utf-8", "replace")
    assert "50.0%" in text and "2/4 ep" in text and "finished" in text
    assert "\x1b[" in text  # colour: the status word is styled, not plain
