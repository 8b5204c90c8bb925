"""The builtin ``local_process`` cancel plugin, on real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.jobs import alive, start_producer, start_sleeper, started, stop, wait_until
from progresskit import get_plugin_manager
from progresskit.builtin import local_process
from progresskit.errors import ProgresskitError
from progresskit.formats.lease import read_proc_stat
from progresskit.model.core import ProcessInfo, ProgressInfo, RunStatus, Status

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="proving a process is the run's reads /proc"
)


def _run(tmp_path: Path, info: ProcessInfo | None, status: Status = Status.RUNNING) -> RunStatus:
    return RunStatus(str(tmp_path), str(tmp_path), ProgressInfo(), status, info)


def _info(pid: int, **changes: object) -> ProcessInfo:
    values: dict[str, object] = {
        "pid": pid, "start_time": read_proc_stat(pid).start_time, "host": os.uname().nodename
    }
    values.update(changes)
    return ProcessInfo(**values)  # type: ignore[arg-type]


def test_the_hook_is_installed_and_answers_last() -> None:
    pm = get_plugin_manager()
    impls = pm.hook.progresskit_cancel.get_hookimpls()
    assert any(i.plugin_name == "local_process" for i in impls)
    assert next(i for i in impls if i.plugin_name == "local_process").trylast


def test_a_job_working_in_the_run_and_its_children_get_sigterm(tmp_path: Path) -> None:
    code = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    job = subprocess.Popen(
        [sys.executable, "-c", code], cwd=tmp_path, start_new_session=True,
        stdout=subprocess.PIPE, text=True,
    )
    child = None
    try:
        assert job.stdout is not None
        child = int(job.stdout.readline())
        assert local_process.progresskit_cancel(_run(tmp_path, _info(job.pid)), 5.0) is True
        assert job.wait(10) == -signal.SIGTERM
        wait_until("the child to get SIGTERM too", lambda: not alive(child))
        stops = local_process.wait_for_stops(10)
        stopped = next(s for s in stops if s.members[0].pid == job.pid)
        assert stopped.outcome == "terminated" and len(stopped.members) == 2
    finally:
        stop(job, child)


def test_a_reused_pid_is_not_signalled(tmp_path: Path) -> None:
    job = start_sleeper(cwd=tmp_path)
    try:
        info = _info(job.pid, start_time=read_proc_stat(job.pid).start_time - 3600)
        with pytest.raises(ProgresskitError, match="now belongs to another process"):
            local_process.progresskit_cancel(_run(tmp_path, info), 1.0)
        assert job.poll() is None
    finally:
        stop(job)


def test_an_exited_job_and_other_hosts_are_reported_or_declined(tmp_path: Path) -> None:
    job = start_sleeper(cwd=tmp_path)
    info = _info(job.pid)
    stop(job)
    with pytest.raises(ProgresskitError, match="has already exited"):
        local_process.progresskit_cancel(_run(tmp_path, info), 1.0)
    elsewhere = ProcessInfo(pid=1, host="another-host.example")
    assert local_process.progresskit_cancel(_run(tmp_path, elsewhere), 1.0) is None
    assert local_process.progresskit_cancel(_run(tmp_path, None), 1.0) is None


def test_a_job_writing_a_file_of_the_run_is_proven_by_that_file(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    with open(run / "train.log", "ab") as log:
        job = start_sleeper(cwd=tmp_path, stdout=log)  # the way `job > run/train.log` is
    try:
        assert local_process.progresskit_cancel(_run(run, _info(job.pid)), 5.0) is True
        assert job.wait(10) == -signal.SIGTERM
    finally:
        stop(job)


def test_onlookers_pid_1_and_the_cancellers_parents_are_never_signalled(tmp_path: Path) -> None:
    (tmp_path / "train.log").write_text("epoch 1\n")
    tail = started(subprocess.Popen(["tail", "-f", "train.log"], cwd=tmp_path), "tail")
    try:
        with pytest.raises(ProgresskitError, match="onlooker"):
            local_process.progresskit_cancel(_run(tmp_path, _info(tail.pid)), 1.0)
        assert tail.poll() is None
    finally:
        stop(tail)
    with pytest.raises(ProgresskitError, match="pid 1"):
        local_process.progresskit_cancel(_run(tmp_path, _info(1)), 1.0)
    with pytest.raises(ProgresskitError, match="parent processes"):
        local_process.progresskit_cancel(_run(tmp_path, _info(os.getppid())), 1.0)


@pytest.mark.skipif(os.getuid() != 0, reason="starting another user's process needs root")
def test_another_users_process_only_when_configured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"
    run.mkdir()
    os.chmod(run, 0o777)
    with open(run / "train.log", "ab") as log:
        # A system program: the user nobody may not run this checkout's interpreter.
        job = started(subprocess.Popen(["sleep", "120"], cwd="/", stdout=log, user=65534), "120")
    try:
        with pytest.raises(ProgresskitError, match="belongs to uid 65534"):
            local_process.progresskit_cancel(_run(run, _info(job.pid)), 1.0)
        assert job.poll() is None
        monkeypatch.setenv(local_process.ALLOWED_USERS_ENV, "65534")
        assert local_process.progresskit_cancel(_run(run, _info(job.pid)), 5.0) is True
        assert job.wait(10) == -signal.SIGTERM
        monkeypatch.setenv(local_process.ALLOWED_USERS_ENV, "no-such-user-here")
        with pytest.raises(ProgresskitError, match="no user named 'no-such-user-here'"):
            local_process.progresskit_cancel(_run(run, _info(os.getpid())), 1.0)
    finally:
        stop(job)


def test_sigkill_rechecks_each_process_first(tmp_path: Path) -> None:
    # A member whose pid now belongs to another process (its start differs) is never
    # killed, even when the first process is still alive after the grace period.
    run = tmp_path / "run"
    run.mkdir()
    job, _ = start_producer(run, ignore_term=True)
    try:
        ticks = read_proc_stat(job.pid).start_ticks
        stale = local_process.Member(job.pid, ticks + 1)
        escalation = local_process.Stop([stale], 0.0, "a stale process", {os.getuid()})
        escalation.thread.start()
        escalation.thread.join(10)
        assert job.poll() is None, "a process that is not the one proven was killed"
        current = local_process.Stop(
            [local_process.Member(job.pid, ticks)], 0.2, "the job", {os.getuid()}
        )
        current.thread.start()
        current.thread.join(10)
        assert current.outcome == "killed" and job.wait(10) == -signal.SIGKILL
    finally:
        stop(job)
