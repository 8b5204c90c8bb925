"""Real local jobs for the cancel tests: producers holding a lease, launchers, onlookers."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from progresskit.formats.lease import (
    LEASE_FILENAME,
    Lease,
    dump_lease,
    read_proc_stat,
    this_host,
)

#: A producer: holds the lease of sys.argv[1] and beats; prints its children's pids once
#: the lease is written. Started with its cwd elsewhere, so that only its lease names the run.
PRODUCER = textwrap.dedent("""\
    import json, signal, subprocess, sys, time
    import progresskit
    run, children, ignore_term = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
    if ignore_term:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with progresskit.heartbeat(run, expect_every=30) as hb:
        kids = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
                for _ in range(children)]
        print(json.dumps([k.pid for k in kids]), flush=True)
        while True:
            hb.beat()
            time.sleep(0.1)
""")


def start_producer(
    run: Path,
    *,
    children: int = 0,
    ignore_term: bool = False,
    cwd: Path | None = None,
    new_session: bool = True,
) -> tuple[subprocess.Popen[str], list[int]]:
    """A real job holding the lease of ``run``; (the job, the pids of the children it started)."""
    job = subprocess.Popen(
        [sys.executable, "-c", PRODUCER, str(run), str(children), "1" if ignore_term else "0"],
        cwd=cwd or run.parent,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=new_session,
    )
    assert job.stdout is not None
    line = job.stdout.readline()
    assert line, f"the producer in {run} did not start (exit code {job.wait(10)})"
    return job, list(json.loads(line))


def start_sleeper(*args: str, cwd: Path, **popen: Any) -> subprocess.Popen[bytes]:
    """A real process that has nothing to do with any run (``args`` are only its argv),
    returned once it runs its own program (before, /proc shows the forking parent)."""
    code = "import time\nwhile True: time.sleep(0.2)"
    return started(subprocess.Popen([sys.executable, "-c", code, *args], cwd=cwd, **popen), code)


def started(job: subprocess.Popen[Any], marker: str) -> subprocess.Popen[Any]:
    """``job`` once its command line holds ``marker``: it runs its own program (right after
    the fork, /proc still shows the parent's)."""
    wait_until(
        f"process {job.pid} to start its program",
        lambda: marker.encode() in _cmdline(job.pid) or job.poll() is not None,
    )
    return job


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read()
    except OSError:
        return b""


def forge_lease(run: Path, pid: int, **changes: Any) -> Lease:
    """Write a lease into ``run`` naming process ``pid`` with its real start (what anyone who
    can write ``run`` can do), changed by ``changes``; the lease."""
    stat = read_proc_stat(pid)
    values: dict[str, Any] = {
        "pid": pid,
        "process_start_time": stat.start_time,
        "host": this_host(),
        "interval": 3600.0,
        "started_at": time.time(),
        "process_start_ticks": stat.start_ticks,
        "token": "f" * 32,
    }
    values.update(changes)
    lease = Lease(**values)
    (run / LEASE_FILENAME).write_text(dump_lease(lease))
    return lease


def alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (not a zombie)."""
    try:
        return read_proc_stat(pid).state not in (b"Z", b"X")
    except OSError:
        return False


def wait_until(what: str, predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def stop(*jobs: subprocess.Popen[Any] | int | None) -> None:
    """Kill what a test started, whatever happened to it."""
    for job in jobs:
        if job is None:
            continue
        if isinstance(job, int):
            if alive(job):  # a child of a job: gone with it, unless the job left it behind
                with contextlib.suppress(ProcessLookupError):
                    os.kill(job, 9)
            continue
        if job.poll() is None:
            job.kill()
        job.wait(10)


def lease_state(run: Path) -> Mapping[str, Any]:
    return dict(json.loads((run / LEASE_FILENAME).read_text()))
