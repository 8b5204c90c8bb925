"""What the lease records besides liveness: the exact start, the token and its registration
(what cancelling checks, docs/cancel.md) and the Slurm job (docs/liveness.md)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from helpers.jobs import start_sleeper, stop
from progresskit import Tracking, get_plugin_manager, heartbeat
from progresskit.builtin import local_process
from progresskit.engine.liveness import observe
from progresskit.formats.lease import (
    LEASE_FILENAME,
    REGISTRATION_NAME,
    Lease,
    SlurmJob,
    dump_lease,
    load_lease,
    read_proc_stat,
    read_registration,
)
from progresskit.model.core import ProgressInfo, RunStatus, Status

DATA = Path(__file__).parent / "data" / "slurm_env"
#: The Slurm plugin (when installed) would ask this machine's Slurm about the captured job
#: ids, which name other jobs here: what is tested is what the engine itself does.
NO_SLURM = ["slurm"]
linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the registration is a Linux memfd"
)


def _batch_environment() -> dict[str, str]:
    """Job 25's batch-script environment, as Slurm set it (the capture's first section)."""
    text = (DATA / "env-25.out").read_text()
    section = text.split("--- batch script environment (SLURM_*)\n")[1].split("\n---")[0]
    return dict(line.split("=", 1) for line in section.splitlines() if "=" in line)


def _array_task_environment() -> dict[str, str]:
    """Task 0 of array job 16 (job id 17), over job 25's batch environment."""
    line = (DATA / "array-17.out").read_text()
    found = re.match(r"array job (\d+) task (\d+) \(job id (\d+)\)", line)
    assert found, line
    array_job, task, job = found.groups()
    env = _batch_environment()
    env.update(SLURM_ARRAY_JOB_ID=array_job, SLURM_ARRAY_TASK_ID=task, SLURM_JOB_ID=job,
               SLURM_JOBID=job)
    return env


#: Every producer that writes a lease, each in its own run directory under sys.argv[1].
PRODUCERS = textwrap.dedent("""\
    import os, sys
    from progresskit import EventEmitter, Progress, StatusFileWriter, heartbeat, track
    root = sys.argv[1]
    def run(name):
        path = os.path.join(root, name)
        os.makedirs(path)
        return path
    with heartbeat(run("heartbeat"), expect_every=60) as hb:
        hb.beat()
    with StatusFileWriter(os.path.join(run("statusfile"), "training_status.json"),
                          total_iterations=10, interval=0) as status:
        status.update(3)
    for _ in track(range(2), run_dir=run("track")):
        pass
    with EventEmitter("r", event_file=os.path.join(run("events"), "events.jsonl")) as events:
        events.run_complete("success")
    """)


def _run_producers(tmp_path: Path, env: dict[str, str]) -> dict[str, dict[str, object]]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SLURM")}
    completed = subprocess.run(
        [sys.executable, "-c", PRODUCERS, str(tmp_path)],
        env={**clean, **env}, capture_output=True, text=True, timeout=60,
    )
    assert completed.returncode == 0, completed.stderr
    return {
        name: json.loads((tmp_path / name / LEASE_FILENAME).read_text())
        for name in ("heartbeat", "statusfile", "track", "events")
    }


def test_every_producer_records_the_slurm_job_it_runs_in(tmp_path: Path) -> None:
    leases = _run_producers(tmp_path, _array_task_environment())
    expected = {
        "job_id": "17", "array_job_id": "16", "array_task_id": "0", "cluster": "ci",
        "node": "localhost",
    }
    assert {name: lease["slurm"] for name, lease in leases.items()} == dict.fromkeys(
        leases, expected
    )


def test_only_the_variables_that_are_set_and_nothing_outside_slurm(tmp_path: Path) -> None:
    batch = _run_producers(tmp_path / "batch", _batch_environment())
    assert batch["heartbeat"]["slurm"] == {"job_id": "25", "cluster": "ci", "node": "localhost"}
    # A node name without a job id (a login shell on a compute node) is no job.
    outside = _run_producers(tmp_path / "outside", {"SLURMD_NODENAME": "localhost"})
    assert all("slurm" not in lease for lease in outside.values())


def test_the_engine_copies_the_job_into_the_runs_details(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    env = _array_task_environment()
    code = "import sys, progresskit\nprogresskit.heartbeat(sys.argv[1], expect_every=600)\n" \
           "import time; print('ready', flush=True); time.sleep(60)\n"
    job = subprocess.Popen([sys.executable, "-c", code, str(run)], stdout=subprocess.PIPE,
                           env={**os.environ, **env}, text=True)
    try:
        assert job.stdout is not None and job.stdout.readline() == "ready\n"
        status = Tracking(get_plugin_manager(disabled=NO_SLURM)).status(str(run))
        assert status.status is Status.RUNNING
        assert {k: v for k, v in status.progress.details.items() if k.startswith("slurm")} == {
            "slurm_job_id": "17", "slurm_array_job_id": "16", "slurm_array_task_id": "0",
            "slurm_cluster": "ci", "slurm_node": "localhost",
        }
    finally:
        stop(job)


def test_another_hosts_slurm_lease_gets_no_local_process_verdict(tmp_path: Path) -> None:
    # The lease names a pid that exists here (a bystander): on another host it means nothing
    # here, so it is neither checked nor signalled; the Slurm plugin speaks for the job.
    bystander = start_sleeper(cwd=tmp_path)
    try:
        stat = read_proc_stat(bystander.pid)
        lease = Lease(bystander.pid, stat.start_time, "gpu-node-7", 600.0, started_at=time.time(),
                      process_start_ticks=stat.start_ticks, token="0" * 32,
                      slurm=SlurmJob("25", cluster="ci", node="gpu-node-7"))
        (tmp_path / LEASE_FILENAME).write_text(dump_lease(lease))
        assert observe(lease, time.time()).process == "remote"
        status = Tracking(get_plugin_manager(disabled=NO_SLURM)).status(str(tmp_path))
        assert status.status is Status.RUNNING
        assert status.progress.details["slurm_job_id"] == "25"
        run = RunStatus(str(tmp_path), str(tmp_path), ProgressInfo(), Status.RUNNING,
                        status.process_info)
        assert local_process.progresskit_cancel(run, 1.0) is None
        assert bystander.poll() is None
    finally:
        stop(bystander)


def _registrations() -> list[tuple[str, str]]:
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except FileNotFoundError:
            continue
        if target.startswith(f"/memfd:{REGISTRATION_NAME} "):
            with open(f"/proc/self/fd/{fd}", "rb") as fh:
                entry = read_registration(fh.read())
            assert entry is not None
            found.append(entry)
    return found


@linux_only
def test_the_lease_holds_the_exact_start_and_a_token_the_process_registers(
    tmp_path: Path,
) -> None:
    with heartbeat(tmp_path, expect_every=60):
        lease = load_lease(str(tmp_path / LEASE_FILENAME))
        assert lease.process_start_ticks == read_proc_stat(os.getpid()).start_ticks
        assert lease.token is not None and len(lease.token) == 32
        assert (os.path.realpath(tmp_path), lease.token) in _registrations()
        pid = os.fork()
        if pid == 0:  # a forked worker holds no registration of its parent's leases
            os._exit(0 if not _registrations() else 1)
        assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    assert load_lease(str(tmp_path / LEASE_FILENAME)).state == "finished"
    assert (os.path.realpath(tmp_path), lease.token) not in _registrations()
