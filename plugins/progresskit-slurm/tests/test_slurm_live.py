"""Against the real Slurm that ``scripts/start-slurm.sh`` starts (CI runs it first).

Skipped outside CI when Slurm is not installed or not up; a failure under ``CI=true``.
All jobs are submitted at once and watched together, so the module takes well under three
minutes; the time-limit and requeue cases replay captures instead (test_slurm_replay.py).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from progresskit_slurm.client import SlurmView
from progresskit_slurm.output import OutputReader
from progresskit_slurm.runs import group_runs, job_run

from progresskit import ProgressInfo, RunStatus, Status, get_plugin_manager
from progresskit.testing import run_cli

pytestmark = pytest.mark.slow


def _slurm_up() -> str | None:
    if shutil.which("sbatch") is None:
        return "Slurm is not installed (bash scripts/start-slurm.sh installs and starts it)"
    try:
        ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"scontrol ping: {exc}"
    if "UP" not in ping.stdout:
        said = (ping.stdout.strip() or ping.stderr.strip() or "no answer").splitlines()[0]
        return f"slurmctld is not up (scontrol ping: {said}); run bash scripts/start-slurm.sh"
    return None


@pytest.fixture(scope="module")
def slurm() -> None:
    problem = _slurm_up()
    if problem is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{problem}; .ci/run starts Slurm, so under CI this is a failure")
        pytest.skip(f"{problem}; not running under CI=true, where this would fail instead")


def sbatch(directory: Path, *args: str) -> str:
    done = subprocess.run(["sbatch", "--parsable", "-D", str(directory), *args],
                          capture_output=True, text=True, timeout=30, check=True)
    return done.stdout.strip().split(";")[0]


def wait_for(what: str, check: Callable[[], bool], timeout: float = 90.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")


@pytest.fixture(scope="module")
def jobs(slurm: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    here = tmp_path_factory.mktemp("slurm-jobs")
    py = sys.executable  # this venv's python: it has tqdm
    bar = ("import time; from tqdm import tqdm\n"
           "for _ in tqdm(range(40), desc='train'): time.sleep(0.25)\n")
    (here / "bar.py").write_text(bar)
    linked = here / "linked"  # holds only the job's output: a run of the log tracker
    linked.mkdir()
    (linked / "progresskit.yaml").write_text("slurm_link_workdirs: true\nslurm_poll_seconds: 1\n")
    leased = here / "leased"  # a track() run, killed by the cgroup for its memory
    (here / "leased.py").write_text(
        "import sys, time\nimport progresskit\n"
        "for i in progresskit.track(range(100), run_dir=sys.argv[1], desc='train'):\n"
        "    time.sleep(0.02)\n"
        "    if i == 50:\n"
        "        b = bytearray(500 * 1024 * 1024)\n"
        "        for j in range(0, len(b), 4096): b[j] = 1\n")
    ids = {
        "leased": sbatch(here, "-J", "leased", "--mem=100M", "-o", "leased-%j.out",
                         "--wrap", f"{py} {here / 'leased.py'} {leased}"),
        "linked": sbatch(linked, "-J", "linked", "--mem=50M", "--wrap",
                         "echo start; python3 -c 'b = bytearray(500 * 1024 * 1024)\n"
                         "for i in range(0, len(b), 4096): b[i] = 1'"),
        "bar": sbatch(here, "-J", "bar", "-o", "%x-%j.out", "--mem=200M",
                      "--wrap", f"{py} {here / 'bar.py'}"),
        "exit3": sbatch(here, "-J", "exit3", "--wrap", "echo failing; exit 3"),
        "oom": sbatch(here, "-J", "oom", "--mem=50M", "-o", "oom-%j.out", "--wrap",
                      "python3 -c 'b = bytearray(500 * 1024 * 1024)\n"
                      "for i in range(0, len(b), 4096): b[i] = 1'"),
        "cancel": sbatch(here, "-J", "cancel", "--wrap", "sleep 300"),
        "pending": sbatch(here, "-J", "pending", "--begin=now+1hour", "--wrap", "true"),
        "array": sbatch(here, "-J", "arr", "--array=0-3", "-o", "%x-%A_%a.out", "--wrap",
                        'sleep 1; [ "$SLURM_ARRAY_TASK_ID" = 3 ] && exit 1; exit 0'),
    }
    dirs = {"linked_dir": str(linked), "leased_dir": str(leased)}
    yield {**ids, **dirs}
    subprocess.run(["scancel", *ids.values()], capture_output=True, timeout=30)


def view() -> SlurmView:
    return SlurmView(1.0)


def run_of(v: SlurmView, job_id: str) -> RunStatus | None:
    job = v.jobs([job_id]).get(job_id)
    return None if job is None else job_run(job, OutputReader(), {}, time.time())


def test_bar_job_progress_and_eta(jobs: dict[str, str]) -> None:
    v = view()
    reader = OutputReader()
    seen: list[RunStatus] = []

    def midway() -> bool:
        job = v.jobs().get(jobs["bar"])
        if job is None:
            return False
        run = job_run(job, reader, {}, time.time())
        seen.append(run)
        pct = run.progress.progress_percentage
        return run.status is Status.RUNNING and pct is not None and 10 < pct < 90

    wait_for("the bar job to show progress", midway)
    run = seen[-1]
    assert run.progress.total_steps == 40
    assert run.progress.current_stage == "train"
    assert run.progress.eta_seconds is not None and 0 < run.progress.eta_seconds < 15
    assert run.progress.details["log_file"].startswith("bar-")

    def finished() -> bool:
        r = run_of(v, jobs["bar"])
        return r is not None and r.status is Status.FINISHED

    wait_for("the bar job to finish", finished)


@pytest.mark.parametrize(("name", "status", "word", "words"), [
    ("exit3", Status.FAILED, "FAILED", "exited with code 3"),
    ("oom", Status.FAILED, "OUT_OF_MEMORY", "out of memory (limit 50M)"),
])
def test_ended_jobs(jobs: dict[str, str], name: str, status: Status, word: str,
                    words: str) -> None:
    v = view()
    wait_for(f"{name} to end", lambda: (r := run_of(v, jobs[name])) is not None
             and r.status is not Status.PENDING and r.status is not Status.RUNNING)
    run = run_of(v, jobs[name])
    assert run is not None
    assert (run.status, run.progress.source_status) == (status, word)
    assert run.cause is not None and words in run.cause.describe()


def test_pending_job(jobs: dict[str, str]) -> None:
    run = run_of(view(), jobs["pending"])
    assert run is not None and run.status is Status.PENDING
    assert "PENDING (BeginTime)" in (run.reason or "")


def test_cancel_running_through_the_hook(jobs: dict[str, str]) -> None:
    v = view()
    wait_for("the sleep job to run", lambda: (r := run_of(v, jobs["cancel"])) is not None
             and r.status is Status.RUNNING)
    run = run_of(v, jobs["cancel"])
    assert run is not None
    pm = get_plugin_manager()
    assert pm.hooks.cancel(run, 5.0) is True

    def cancelled() -> bool:
        r = run_of(v, jobs["cancel"])
        return r is not None and r.status is Status.CANCELLED and r.cause is not None \
            and "by uid" in r.cause.describe()

    wait_for("the cancel to show with its uid", cancelled, timeout=30)


def test_array_with_a_failing_task(jobs: dict[str, str]) -> None:
    v = view()
    array = jobs["array"]

    def rows() -> list[RunStatus]:
        found = [j for j in v.jobs().values() if j.array_job_id == array]
        return group_runs((j, job_run(j, OutputReader(), {}, time.time()))
                          for j in sorted(found, key=lambda j: j.display_id))

    wait_for("the array to end", lambda: bool(r := rows()) and r[0].status is Status.FAILED
             and r[0].progress.items_completed == 4, timeout=120)
    group, *tasks = rows()
    assert [t.config.rsplit(":", 1)[1] for t in tasks] == [f"{array}_{i}" for i in range(4)]
    assert [t.status for t in tasks] == [Status.FINISHED] * 3 + [Status.FAILED]
    assert group.cause is not None and "task 3" in group.cause.describe()


def test_status_within_two_seconds_at_one_second_poll(slurm: None, tmp_path: Path) -> None:
    job_id = sbatch(tmp_path, "-J", "quick", "--wrap", "sleep 4; exit 3")
    changed: dict[str, float] = {}
    stop = threading.Event()

    def watch_slurm() -> None:  # Slurm's own word, asked ten times faster
        while not stop.is_set():
            out = subprocess.run(["squeue", "-h", "-t", "all", "-j", job_id, "-o", "%T"],
                                 capture_output=True, text=True, timeout=10).stdout.strip()
            if out and out not in changed:
                changed[out] = time.monotonic()
            stop.wait(0.1)

    thread = threading.Thread(target=watch_slurm, daemon=True)
    thread.start()
    v = SlurmView(1.0)
    seen: dict[str, float] = {}
    try:
        end = time.monotonic() + 60
        while "FAILED" not in seen and time.monotonic() < end:
            job = v.jobs().get(job_id)
            if job is not None:
                seen.setdefault(job.state, time.monotonic())
            time.sleep(0.05)
    finally:
        # Slurm's own watcher may be one squeue behind ours at the end (ours can learn it
        # from sacct first): let it see the end too before it is stopped.
        deadline = time.monotonic() + 10
        while "FAILED" in seen and "FAILED" not in changed and time.monotonic() < deadline:
            time.sleep(0.05)
        stop.set()
        thread.join(5)
    for state in ("RUNNING", "FAILED"):
        assert state in seen and state in changed, (seen, changed)
        assert seen[state] - changed[state] <= 2.0, (state, seen, changed)
    assert v.calls["squeue"] <= (max(seen.values()) - min(seen.values())) / 1.0 + 2


def test_lease_linked_run_is_judged_by_slurm(jobs: dict[str, str]) -> None:
    # The engine's run of a job's work dir, its lease naming the job (docs/slurm.md).
    v = view()
    wait_for("the oom job to end", lambda: (r := run_of(v, jobs["oom"])) is not None
             and r.status is Status.FAILED)
    engine_run = RunStatus("runs/r1", "/tmp/r1", ProgressInfo(
        runner_type="progress", details={"slurm_job_id": jobs["oom"]}),
        Status.CRASHED, None, "lease from node1 expired")
    pm = get_plugin_manager()
    judged = pm.hooks.judge_run(engine_run, time.time())
    assert judged.status is Status.FAILED
    assert judged.progress.source_status == "OUT_OF_MEMORY"
    assert judged.cause is not None and "out of memory (limit 50M)" in judged.cause.describe()
    # A job this plugin does not know is not judged: the engine's verdict stands.
    other = RunStatus("runs/r2", "/tmp/r2", ProgressInfo(), Status.RUNNING)
    assert pm.hooks.judge_run(other, time.time()) is other


def test_engine_run_linked_by_its_work_dir(jobs: dict[str, str]) -> None:
    # progresskit status DIR: the engine's log run of the job's directory, judged by Slurm.
    v = view()
    wait_for("the linked job to end", lambda: (r := run_of(v, jobs["linked"])) is not None
             and r.status is Status.FAILED)
    result = run_cli("status", jobs["linked_dir"], "--json")
    (run,) = result.json()["runs"]
    assert run["progress"]["runner_type"] == "log"
    assert run["status"] == "failed", run
    assert run["progress"]["source_status"] == "OUT_OF_MEMORY"
    assert run["progress"]["details"]["slurm_job_id"] == jobs["linked"]
    assert "out of memory (limit 50M)" in run["reason"]


def test_cancel_one_array_task_leaves_the_others(slurm: None, tmp_path: Path) -> None:
    array = sbatch(tmp_path, "-J", "arrcancel", "--array=0-1", "--wrap", "sleep 60")
    v = view()
    pm = get_plugin_manager()
    try:
        def both_running() -> list[RunStatus]:
            found = [j for j in v.jobs().values() if j.array_job_id == array]
            runs = [job_run(j, None, {}, time.time()) for j in found]
            return runs if len(runs) == 2 and all(
                r.status is Status.RUNNING for r in runs) else []

        wait_for("both tasks to run", lambda: bool(both_running()))
        # Task 1 started last: its own job id is the array's, and "scancel <that id>" would
        # stop both tasks. The hook cancels "<array>_1".
        (task1,) = [r for r in both_running()
                    if r.progress.details["slurm_array_task_id"] == "1"]
        assert task1.progress.details["slurm_job_id"] == array
        assert pm.hooks.cancel(task1, 5.0) is True

        def states() -> dict[str, str]:
            return {j.array_task_id or "": j.state for j in v.jobs().values()
                    if j.array_job_id == array}

        wait_for("task 1 to be cancelled", lambda: states().get("1") == "CANCELLED", 30)
        assert states()["0"] == "RUNNING"
    finally:
        subprocess.run(["scancel", array], capture_output=True, timeout=30)


def test_lease_of_a_job_is_judged_by_slurm(jobs: dict[str, str]) -> None:
    # track() inside the job recorded SLURM_JOB_ID in its lease; the cgroup killed it (no
    # word from the process): the engine alone would say crashed, Slurm says why.
    v = view()
    wait_for("the leased job to end", lambda: (r := run_of(v, jobs["leased"])) is not None
             and r.status is Status.FAILED)
    result = run_cli("status", jobs["leased_dir"], "--json")
    (run,) = result.json()["runs"]
    assert run["progress"]["runner_type"] == "progress"
    assert run["progress"]["details"]["slurm_job_id"] == jobs["leased"]
    assert run["progress"]["details"]["slurm_cluster"] == "ci"
    assert run["status"] == "failed", run
    assert run["progress"]["source_status"] == "OUT_OF_MEMORY"
    assert run["cause"]["message"] == "out of memory (limit 100M)"
