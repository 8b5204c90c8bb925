"""``progresskit cancel TARGET``: real jobs, a real terminal, a real plugin's target."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers.cli import run_cli
from helpers.jobs import forge_lease, lease_state, start_producer, start_sleeper, stop
from helpers.runs import make_trainer_run

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="proving a process is the run's reads /proc"
)


def test_cancel_stops_the_runs_own_job(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    job, [child] = start_producer(run, children=1)
    try:
        result = run_cli("cancel", str(run), "--yes", cwd=tmp_path)
        assert result.ret == 0, result.stderr
        assert f"process {job.pid} of run {run} and 1 process(es) it started: exited after " \
               "SIGTERM" in result.stdout
        assert job.wait(10) == -signal.SIGTERM
        assert lease_state(run)["state"] == "cancelled"
    finally:
        stop(job, child)


def test_a_job_that_ignores_sigterm_is_killed_after_the_grace_period(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    job, _ = start_producer(run, ignore_term=True)
    try:
        result = run_cli("cancel", str(run), "--yes", "--grace", "0.5", cwd=tmp_path)
        assert result.ret == 0, result.stderr
        assert "killed with SIGKILL after 0.5s" in result.stdout
        assert job.wait(10) == -signal.SIGKILL
    finally:
        stop(job)


def test_without_yes_and_without_a_terminal_nothing_is_touched(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    job, _ = start_producer(run)
    try:
        completed = subprocess.run(
            [sys.executable, "-m", "progresskit", "cancel", str(run)],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, cwd=tmp_path, timeout=60,
        )
        assert completed.returncode == 2
        assert "standard input is no terminal; pass --yes" in completed.stderr
        time.sleep(0.3)
        assert job.poll() is None
    finally:
        stop(job)


def _on_a_terminal(args: list[str], answer: bytes, cwd: Path) -> tuple[int, str]:
    """Run ``progresskit ARGS`` on a pseudo-terminal, answer its question; (exit code, all
    it printed)."""
    main, secondary = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "progresskit", *args],
        stdin=secondary, stdout=secondary, stderr=secondary, cwd=cwd,
        env={**os.environ, "COLUMNS": "200"},
    )
    os.close(secondary)
    seen = b""
    answered = False
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([main], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(main, 4096)
            except OSError:  # the other side closed: the command ended
                break
            if not chunk:
                break
            seen += chunk
        if not answered and b"[y/N]" in seen:
            os.write(main, answer)
            answered = True
        if proc.poll() is not None and not ready:
            break
    os.close(main)
    return proc.wait(30), seen.decode(errors="replace")


def test_on_a_terminal_it_asks_first(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    job, _ = start_producer(run)
    try:
        code, text = _on_a_terminal(["cancel", str(run)], b"n\n", tmp_path)
        assert code == 1 and "not cancelled" in text, text
        assert f"{run} (running, heartbeat; process {job.pid}" in text
        assert job.poll() is None
        code, text = _on_a_terminal(["cancel", str(run)], b"y\n", tmp_path)
        assert code == 0 and "exited after SIGTERM" in text, text
        assert job.wait(10) == -signal.SIGTERM
    finally:
        stop(job)


def test_a_forged_lease_is_refused_and_the_process_left_alone(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    bystander = start_sleeper(cwd=tmp_path)
    try:
        forge_lease(run, bystander.pid)
        result = run_cli("cancel", str(run), "--yes", cwd=tmp_path)
        assert result.ret == 1
        assert "cannot prove the process is the run's" in result.stderr
        time.sleep(0.3)
        assert bystander.poll() is None
    finally:
        stop(bystander)


def test_bad_targets_and_options_exit_2_and_an_inactive_run_exits_1(tmp_path: Path) -> None:
    missing = run_cli("cancel", str(tmp_path / "nope"), "--yes", cwd=tmp_path)
    assert missing.ret == 2 and "does not exist, and no plugin resolves it" in missing.stderr
    root = tmp_path / "root"
    make_trainer_run(root / "a", 2, total=2)
    make_trainer_run(root / "b", 2, total=2)
    several = run_cli("cancel", str(root), "--yes", cwd=tmp_path)
    assert several.ret == 2 and "is no run but a directory of 2 runs" in several.stderr
    grace = run_cli("cancel", str(root / "a"), "--yes", "--grace", "-1", cwd=tmp_path)
    assert grace.ret == 2 and "--grace: must be >= 0 seconds" in grace.stderr
    done = run_cli("cancel", str(root / "a"), "--yes", cwd=tmp_path)
    assert done.ret == 1 and "is finished: nothing to cancel" in done.stderr


#: A third-party plugin, installed the real way (a dist-info with an entry point): its
#: targets are ``demo:ID,ID...``, one running run each; cancelling one writes its id to a
#: file, or refuses for the id ``stubborn``.
DEMO_PLUGIN = """\
import os
from progresskit import ProgressInfo, ProgresskitError, RunStatus, Status, hookimpl

@hookimpl
def progresskit_resolve_target(target, config):
    if not target.startswith("demo:"):
        return None
    return [RunStatus(f"demo:{job}", f"demo:{job}", ProgressInfo(runner_type="demo"),
                      Status.RUNNING) for job in target[5:].split(",")]

@hookimpl
def progresskit_cancel(run, grace_seconds):
    if run.progress.runner_type != "demo":
        return None
    job = run.work_dir[5:]
    if job == "stubborn":
        raise ProgresskitError(f"demo job {job} cannot be stopped")
    with open(os.environ["DEMO_CANCELLED"], "a") as fh:
        fh.write(f"{job} {grace_seconds:g}\\n")
    return True
"""


def test_a_target_a_plugin_resolves_is_cancelled_by_that_plugin(tmp_path: Path) -> None:
    site = tmp_path / "site"
    info = site / "pk_demo-1.0.dist-info"
    info.mkdir(parents=True)
    (site / "pk_demo.py").write_text(DEMO_PLUGIN)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: pk_demo\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[progresskit]\npk_demo = pk_demo\n")
    marker = tmp_path / "cancelled.txt"
    env = {"PYTHONPATH": str(site), "DEMO_CANCELLED": str(marker)}

    one = run_cli("cancel", "demo:7", "--yes", "--grace", "3", cwd=tmp_path, env=env)
    assert one.ret == 0, one.stderr
    assert "cancel requested: demo:7" in one.stdout
    assert marker.read_text() == "7 3\n"

    several = run_cli("cancel", "demo:8,9", "--yes", cwd=tmp_path, env=env)
    assert several.ret == 2 and "stands for 2 active runs" in several.stderr
    assert marker.read_text() == "7 3\n"
    every = run_cli("cancel", "demo:8,stubborn,9", "--yes", "--all", cwd=tmp_path, env=env)
    assert every.ret == 1 and "demo job stubborn cannot be stopped" in every.stderr
    assert marker.read_text() == "7 3\n8 10\n9 10\n"
