"""Cancel never hits a process that is not the run's (issue 16): real jobs, real leases,
real forgeries, through the engine's cancel and the real server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import attrs
import pytest

from helpers.jobs import (
    PRODUCER,
    alive,
    forge_lease,
    lease_state,
    start_producer,
    start_sleeper,
    stop,
    wait_until,
)
from helpers.runs import make_trainer_run
from helpers.serve import serve
from progresskit import Tracking, get_plugin_manager
from progresskit.engine.cancel import CancelRefused, cancel_run
from progresskit.formats.lease import LEASE_FILENAME, load_lease

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="proving a process is the run's reads /proc"
)


def _cancel(run: Path, grace: float = 5.0) -> None:
    """What ``progresskit cancel`` and the server do with a run: its status, then the stop."""
    pm = get_plugin_manager()
    cancel_run(pm, Tracking(pm).status(str(run)), grace)


LAUNCHER = """\
import json, subprocess, sys, time
producer, runs = sys.argv[1], sys.argv[2:]
jobs = [subprocess.Popen([sys.executable, "-c", producer, run, "0", "0"],
                         stdout=subprocess.PIPE, text=True) for run in runs]
for job in jobs:
    job.stdout.readline()
print(json.dumps([job.pid for job in jobs]), flush=True)
while True:
    for job in jobs:
        job.poll()
    time.sleep(0.05)
"""


def test_cancelling_one_job_of_a_launcher_spares_its_other_job_and_the_launcher(
    tmp_path: Path,
) -> None:
    runs = [tmp_path / "a", tmp_path / "b"]
    for run in runs:
        run.mkdir()
    # The launcher leads a process group of its own (not a session): A and B are in it.
    launcher = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, PRODUCER, *map(str, runs)],
        cwd=tmp_path, stdout=subprocess.PIPE, text=True, preexec_fn=os.setpgrp,
    )
    a = b = None
    try:
        assert launcher.stdout is not None
        a, b = json.loads(launcher.stdout.readline())
        assert os.getpgid(a) == os.getpgid(b) == launcher.pid
        _cancel(runs[0])
        wait_until("job A to end", lambda: not alive(a))
        assert lease_state(runs[0])["state"] == "cancelled"
        time.sleep(0.5)
        assert launcher.poll() is None, "the launcher was signalled"
        assert alive(b), "job B was signalled"
        assert lease_state(runs[1])["state"] == "running"
    finally:
        stop(a, b, launcher)


def test_a_forged_lease_naming_an_unrelated_process_is_refused(tmp_path: Path) -> None:
    run = tmp_path / "forged"
    run.mkdir()
    bystander = start_sleeper(cwd=tmp_path)
    try:
        forge_lease(run, bystander.pid)
        with pytest.raises(CancelRefused, match="cannot prove the process is the run's"):
            _cancel(run)
        time.sleep(0.3)
        assert bystander.poll() is None
    finally:
        stop(bystander)


def test_a_lease_copied_from_another_run_is_refused(tmp_path: Path) -> None:
    # The copy names a real producer with its real token: but the producer registered
    # the other run, not this one.
    real, copy = tmp_path / "real", tmp_path / "copy"
    real.mkdir()
    copy.mkdir()
    job, _ = start_producer(real)
    try:
        (copy / LEASE_FILENAME).write_bytes((real / LEASE_FILENAME).read_bytes())
        with pytest.raises(CancelRefused, match="holds no registration of this run's lease"):
            _cancel(copy)
        time.sleep(0.3)
        assert job.poll() is None
    finally:
        stop(job)


def test_a_start_time_off_by_less_than_a_second_is_another_process(tmp_path: Path) -> None:
    # pid reuse within a second of the original start, simulated: the lease names the live
    # producer (its token, its registration) but a start 0.3 s (30 ticks at 100 Hz) earlier.
    run = tmp_path / "run"
    run.mkdir()
    job, _ = start_producer(run)
    try:
        pm = get_plugin_manager()
        seen = Tracking(pm).status(str(run))  # as a server saw it before: running
        assert seen.status.is_active
        lease = load_lease(str(run / LEASE_FILENAME))
        assert lease.process_start_ticks is not None
        forge_lease(
            run,
            job.pid,
            token=lease.token,
            process_start_time=lease.process_start_time - 0.3,
            process_start_ticks=lease.process_start_ticks - int(0.3 * os.sysconf("SC_CLK_TCK")),
        )
        with pytest.raises(CancelRefused, match="that pid now belongs to another process"):
            cancel_run(pm, seen, 5.0)
        time.sleep(0.3)
        assert job.poll() is None
        # The engine compares the exact start too: the lease's process is gone.
        assert Tracking(pm).status(str(run)).status.value == "crashed"
    finally:
        stop(job)


def test_a_found_process_started_less_than_a_second_off_is_another_process(
    tmp_path: Path,
) -> None:
    # The same for a run without a lease: the process found working in it (its cwd) at the
    # pid the status names, but started 0.3 s later than the status says.
    run = make_trainer_run(tmp_path / "run", 1, total=10)
    job = start_sleeper(cwd=run)
    try:
        pm = get_plugin_manager()
        seen = Tracking(pm).status(str(run))
        assert seen.process_info is not None and seen.process_info.pid == job.pid
        assert isinstance(seen.process_info.start_time, float)
        earlier = attrs.evolve(seen.process_info, start_time=seen.process_info.start_time - 0.3)
        with pytest.raises(CancelRefused, match="that pid now belongs to another process"):
            cancel_run(pm, attrs.evolve(seen, process_info=earlier), 5.0)
        time.sleep(0.3)
        assert job.poll() is None
        cancel_run(pm, seen, 5.0)  # the status as it was: the very process
        assert job.wait(10) == -signal.SIGTERM
    finally:
        stop(job)


def test_a_process_naming_the_runs_files_in_its_arguments_is_never_a_candidate(
    tmp_path: Path,
) -> None:
    run = make_trainer_run(tmp_path / "run", 1, total=10)
    reader = start_sleeper(str(run / "train_val_0.log"), cwd=tmp_path)
    try:
        pm = get_plugin_manager()
        status = Tracking(pm).status(str(run))
        assert status.process_info is not None and status.process_info.pid == reader.pid
        with pytest.raises(CancelRefused, match="naming the run's files on its command line"):
            cancel_run(pm, status, 5.0)
        time.sleep(0.3)
        assert reader.poll() is None
    finally:
        stop(reader)


def test_an_old_lease_without_a_token_is_never_cancellable_by_signal(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    job, _ = start_producer(run)
    try:
        # What progresskit wrote before leases had a token and the exact start.
        old = json.loads((run / LEASE_FILENAME).read_text())
        del old["token"], old["process_start_ticks"]
        (run / LEASE_FILENAME).write_text(json.dumps(old))
        with pytest.raises(CancelRefused, match="cannot prove the process is the run's: its "
                                                "lease has no token"):
            _cancel(run)
        assert job.poll() is None
    finally:
        stop(job)


def test_the_runs_own_producer_and_the_processes_it_started_are_stopped(
    tmp_path: Path,
) -> None:
    run = tmp_path / "run"
    run.mkdir()
    job, children = start_producer(run, children=2)
    try:
        _cancel(run)
        assert job.wait(10) == -signal.SIGTERM
        for child in children:
            wait_until(f"child {child} to get SIGTERM", lambda c=child: not alive(c))  # type: ignore[misc]
        assert lease_state(run)["state"] == "cancelled"
    finally:
        stop(job, *children)


@pytest.mark.slow
def test_the_server_answers_409_to_a_forged_lease_and_leaves_the_process(
    tmp_path: Path,
) -> None:
    root = tmp_path / "root"
    (root / "forged").mkdir(parents=True)
    bystander = start_sleeper(cwd=tmp_path)
    try:
        forge_lease(root / "forged", bystander.pid)
        with serve(root) as server:
            view = server.run_named("forged")
            assert view["run"]["status"] == "running", view
            status, body = server.cancel(view["id"])
            assert status == 409, body
            assert "cannot prove the process is the run's" in body["error"]
        assert bystander.poll() is None
    finally:
        stop(bystander)
