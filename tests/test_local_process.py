"""The builtin ``local_process`` cancel plugin, on real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from progresskit import get_plugin_manager
from progresskit.builtin import local_process
from progresskit.errors import ProgresskitError
from progresskit.model.core import ProcessInfo, ProgressInfo, RunStatus, Status


def _run(tmp_path: Path, info: ProcessInfo | None, status: Status = Status.RUNNING) -> RunStatus:
    return RunStatus(str(tmp_path), str(tmp_path), ProgressInfo(), status, info)


def _job(tmp_path: Path, *, new_session: bool = True) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", "import time\nwhile True: time.sleep(0.2)"],
        cwd=tmp_path,
        start_new_session=new_session,
    )


def _info(job: subprocess.Popen[bytes], **changes: object) -> ProcessInfo:
    proc = psutil.Process(job.pid)
    values: dict[str, object] = {
        "pid": job.pid, "start_time": proc.create_time(), "host": os.uname().nodename
    }
    values.update(changes)
    return ProcessInfo(**values)  # type: ignore[arg-type]


def test_the_hook_is_installed_and_answers_last() -> None:
    pm = get_plugin_manager()
    impls = pm.hook.progresskit_cancel.get_hookimpls()
    assert any(i.plugin_name == "local_process" for i in impls)
    assert next(i for i in impls if i.plugin_name == "local_process").trylast


def test_a_group_leader_job_and_its_children_get_sigterm(tmp_path: Path) -> None:
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
    try:
        assert job.stdout is not None
        child = psutil.Process(int(job.stdout.readline()))
        assert local_process.progresskit_cancel(_run(tmp_path, _info(job)), 5.0) is True
        assert job.wait(10) == -signal.SIGTERM
        psutil.wait_procs([child], timeout=10)
        assert not child.is_running(), "the job's group (its child too) must be signalled"
    finally:
        job.kill()
        job.wait()


def test_a_reused_pid_is_not_signalled(tmp_path: Path) -> None:
    job = _job(tmp_path)
    try:
        info = _info(job, start_time=psutil.Process(job.pid).create_time() - 3600)
        with pytest.raises(ProgresskitError, match="now belongs to another process"):
            local_process.progresskit_cancel(_run(tmp_path, info), 1.0)
        assert job.poll() is None
    finally:
        job.kill()
        job.wait()


def test_an_exited_job_and_other_hosts_are_reported_or_declined(tmp_path: Path) -> None:
    job = _job(tmp_path)
    info = _info(job)
    job.kill()
    job.wait()
    with pytest.raises(ProgresskitError, match="has already exited"):
        local_process.progresskit_cancel(_run(tmp_path, info), 1.0)
    elsewhere = ProcessInfo(pid=1, host="another-host.example")
    assert local_process.progresskit_cancel(_run(tmp_path, elsewhere), 1.0) is None
    assert local_process.progresskit_cancel(_run(tmp_path, None), 1.0) is None
