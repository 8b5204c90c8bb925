"""``progresskit status slurm:`` end to end, on replayed captures (slurm_replay.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from progresskit.testing import run_cli
from slurm_replay import Replay, env_with, sacct_text, squeue_jobs

SCENE = ("ok/after.squeue.json", "fail/after.squeue.json", "oom/after.squeue.json",
         "cancel_running/after.squeue.json", "pending/held.squeue.json",
         "array/after.squeue.json", "preempt/high.squeue.json")


@pytest.fixture
def replay(tmp_path: Path) -> Replay:
    replay = Replay(tmp_path / "bin")
    replay.squeue(squeue_jobs(*SCENE))
    replay.sacct(sacct_text("cancel_running/after.sacct.txt"))
    return replay


def test_status_of_a_users_jobs(replay: Replay, tmp_path: Path) -> None:
    result = run_cli("status", "slurm:?user=root", "--json", cwd=tmp_path, env=env_with(replay))
    assert result.ret == 1, result.stderr  # unhealthy runs among them: exit 1
    runs = {r["config"]: r for r in result.json()["runs"]}
    assert {k: r["status"] for k, r in runs.items()} == {
        "slurm:ci:2": "finished",
        "slurm:ci:3": "failed",
        "slurm:ci:4": "failed",
        "slurm:ci:7": "cancelled",
        "slurm:ci:13": "pending",
        "slurm:ci:16": "failed",
        "slurm:ci:16_0": "finished",
        "slurm:ci:16_1": "finished",
        "slurm:ci:16_2": "finished",
        "slurm:ci:16_3": "failed",
        "slurm:ci:24": "running",
    }
    assert runs["slurm:ci:4"]["progress"]["source_status"] == "OUT_OF_MEMORY"
    assert "out of memory (limit 50M)" in runs["slurm:ci:4"]["reason"]
    assert "cancelled by uid 0" in runs["slurm:ci:7"]["reason"]
    assert runs["slurm:ci:16"]["progress"]["items_total"] == 4
    # One squeue for every job, one sacct (job 7's canceller).
    assert (replay.count("squeue"), replay.count("sacct")) == (1, 1)


def test_partition_filter_and_slurm_user_option(replay: Replay, tmp_path: Path) -> None:
    result = run_cli("status", "slurm:?partition=high", "--json", cwd=tmp_path,
                     env=env_with(replay))
    assert [r["config"] for r in result.json()["runs"]] == ["slurm:ci:24"]
    result = run_cli("status", "slurm:", "--slurm-user", "nobody-here", "--json", cwd=tmp_path,
                     env=env_with(replay))
    assert result.ret == 0 and result.json()["runs"] == []


def test_table(replay: Replay, tmp_path: Path) -> None:
    result = run_cli("status", "slurm:?user=root", cwd=tmp_path, env=env_with(replay))
    assert "OUT_OF_MEMORY: out of memory (limit 50M)" in result.stdout
    assert "PENDING (JobHeldUser)" in result.stdout


def test_bad_target_and_no_slurm(replay: Replay, tmp_path: Path) -> None:
    result = run_cli("status", "slurm:?colour=red", cwd=tmp_path, env=env_with(replay))
    assert result.ret == 2 and "unknown key 'colour'" in result.stderr
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    result = run_cli("status", "slurm:", cwd=tmp_path, env={"PATH": str(empty)})
    assert result.ret == 2
    assert "squeue: not found on PATH; is the Slurm client installed?" in result.stderr


def test_poll_interval_below_the_minimum_is_refused(replay: Replay, tmp_path: Path) -> None:
    (tmp_path / "progresskit.yaml").write_text("slurm_poll_seconds: 0.2\n")
    result = run_cli("status", "slurm:", cwd=tmp_path, env=env_with(replay))
    assert result.ret == 2
    assert "slurm_poll_seconds" in result.stderr and "at least 1" in result.stderr
