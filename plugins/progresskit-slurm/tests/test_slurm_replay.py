"""Every scenario of the shared Slurm captures, replayed through the plugin.

The captures (data/captures, data/README.md) are what a real Slurm 22.05 printed; the fake
``squeue``/``sacct`` on ``PATH`` print them back (slurm_replay.py).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import attrs
import pytest
from progresskit_slurm.client import SlurmView
from progresskit_slurm.jobs import (
    Job,
    SlurmFormatError,
    expand_output_path,
    parse_sacct,
    parse_squeue_json,
)
from progresskit_slurm.runs import group_runs, job_run, parse_target
from progresskit_slurm.states import SLURM_STATES

from progresskit import RunStatus, Status
from slurm_replay import CAPTURES, Replay, sacct_text, squeue_jobs


@pytest.fixture
def replay(tmp_path: Path) -> Replay:
    return Replay(tmp_path / "bin")


def judge(replay: Replay, squeue: list[str], sacct: list[str] = (),  # type: ignore[assignment]
          wanted: tuple[str, ...] = ()) -> dict[str, RunStatus]:
    replay.squeue(squeue_jobs(*squeue))
    replay.sacct(sacct_text(*sacct) if sacct else "")
    view = SlurmView(1.0, path=replay.path)
    jobs = view.jobs(wanted, now=100.0)
    return {job.display_id: job_run(job, None, {}, 1.8e9) for job in jobs.values()}


# (scenario, squeue capture, sacct capture, job, status, Slurm's word, cause kind, cause words)
SCENARIOS = [
    ("completed", "ok/after.squeue.json", None, "2", Status.FINISHED, "COMPLETED", None, None),
    ("exit 3", "fail/after.squeue.json", None, "3", Status.FAILED, "FAILED", "exit",
     "the batch script exited with code 3"),
    ("out of memory", "oom/after.squeue.json", None, "4", Status.FAILED, "OUT_OF_MEMORY",
     "error", "out of memory (limit 50M)"),
    ("time limit", "timeout/after.squeue.json", None, "5", Status.FAILED, "TIMEOUT", "error",
     "time limit 00:01:00 reached"),
    ("cancelled running", "cancel_running/after.squeue.json", "cancel_running/after.sacct.txt",
     "7", Status.CANCELLED, "CANCELLED", "cancel", "cancelled by uid 0"),
    ("cancelled pending", "cancel_pending/after.squeue.json", "cancel_pending/after.sacct.txt",
     "8", Status.CANCELLED, "CANCELLED", "cancel", "cancelled by uid 0"),
    ("preempted (cancel)", "preempt/preempted-cancel.squeue.json", None, "22",
     Status.CANCELLED, "PREEMPTED", "cancel", "preempted"),
    ("node failure, no requeue", "node_fail/after-norequeue.squeue.json", None, "29",
     Status.CRASHED, "NODE_FAIL", "vanished", "node failure (localhost)"),
    ("OverMemoryKill without cgroups", "no_cgroup_overmemorykill/oom/after.squeue.json", None,
     "31", Status.FAILED, "FAILED", "signal", "terminated by SIGKILL"),
    # Without cgroups or OverMemoryKill Slurm does not see the excess: COMPLETED is its word.
    ("no memory enforcement", "no_cgroup_no_memkill/oom/after.squeue.json", None, "33",
     Status.FINISHED, "COMPLETED", None, None),
]


@pytest.mark.parametrize(("squeue", "sacct", "job", "status", "word", "kind", "words"),
                         [s[1:] for s in SCENARIOS], ids=[s[0] for s in SCENARIOS])
def test_ended_jobs(replay: Replay, squeue: str, sacct: str | None, job: str, status: Status,
                    word: str, kind: str | None, words: str | None) -> None:
    run = judge(replay, [squeue], [sacct] if sacct else [])[job]
    assert run.status is status
    assert run.progress.source_status == word
    assert run.progress.reported_status is status
    if kind is None:
        assert run.cause is None
    else:
        assert run.cause is not None and run.cause.kind == kind
        assert words in run.cause.describe()
        assert words in (run.reason or "")


def test_failed_exit_code_comes_from_the_wait_status(replay: Replay) -> None:
    run = judge(replay, ["fail/after.squeue.json"])["3"]
    assert run.cause is not None and run.cause.exit_code == 3
    assert run.progress.details["slurm_exit_code"] == "3:0"
    # sacct --json says SUCCESS/0 for the same job (22.05): the plugin never reads it.
    doc = json.loads((CAPTURES / "fail/after.sacct.json").read_text())
    assert doc["jobs"][0]["exit_code"]["return_code"] == 0


@pytest.mark.parametrize(("capture", "reason"), [
    ("pending/resources.squeue.json", "Resources"),
    ("pending/priority.squeue.json", "Priority"),
    ("pending/held.squeue.json", "JobHeldUser"),
    ("pending/dependency.squeue.json", "Dependency"),
    ("cancel_pending/pending.squeue.json", "BeginTime"),
])
def test_pending_reasons(replay: Replay, capture: str, reason: str) -> None:
    (run,) = judge(replay, [capture]).values()
    assert run.status is Status.PENDING
    assert run.progress.source_status == "PENDING"
    assert f"PENDING ({reason})" in (run.reason or "")
    assert run.progress.details["slurm_reason"] == reason
    assert run.progress.start_time is None  # squeue's start_time is only a forecast


@pytest.mark.parametrize(("capture", "status"), [
    ("node_fail/down+13s-requeue.squeue.json", Status.PENDING),
    ("node_fail/rerunning-requeue.squeue.json", Status.RUNNING),
    ("preempt/preempted-requeue.squeue.json", Status.PENDING),
    ("preempt/requeue-rerunning.squeue.json", Status.RUNNING),
])
def test_requeued_attempts(replay: Replay, capture: str, status: Status) -> None:
    (run,) = judge(replay, [capture]).values()
    assert run.status is status
    assert "requeued 1 time, attempt 2" in (run.reason or "")
    assert run.progress.details["slurm_restarts"] == "1"


def test_sacct_duplicates_are_attempts_of_one_job() -> None:
    # sacct -D lists a requeued job once per attempt: the last is the job now.
    text = (CAPTURES / "node_fail/after-requeue.sacct-duplicates.txt").read_text()
    (job,) = parse_sacct(text)
    assert job.job_id == "28" and job.restarts == 1 and job.previous_state == "NODE_FAIL"
    assert job.state == "CANCELLED" and job.cancelled_by == "0"
    assert job.signal == 15  # the 0:15 of the .batch step: the job line says 0:0


def test_time_limit_while_completing(replay: Replay) -> None:
    # squeue says COMPLETING/TimeLimit for ~2 s before TIMEOUT: the job is still on its node.
    (run,) = judge(replay, ["timeout/at-limit.squeue.json"]).values()
    assert run.status is Status.RUNNING
    assert "COMPLETING (TimeLimit)" in (run.reason or "")


def test_timeout_from_text_sacct() -> None:
    (job,) = parse_sacct((CAPTURES / "timeout/after.sacct.txt").read_text())
    # The job line says 0:0; its .batch step FAILED 15:0 (an exit code, not a signal).
    assert (job.state, job.exit_code, job.signal, job.time_limit) == (
        "TIMEOUT", 0, None, "00:01:00")


def test_array_running_is_grouped(replay: Replay) -> None:
    replay.squeue(squeue_jobs("array/running.squeue.json"))
    view = SlurmView(1.0, path=replay.path)
    jobs = sorted(view.jobs(now=1.0).values(), key=lambda j: j.display_id)
    rows = group_runs((j, job_run(j, None, {}, 1.8e9)) for j in jobs)
    keys = [r.config for r in rows]
    assert keys == ["slurm:ci:16", "slurm:ci:16_0", "slurm:ci:16_1", "slurm:ci:16_[2-3]"]
    group = rows[0]
    assert group.status is Status.RUNNING
    assert group.progress.items_total == 4 and group.progress.items_completed == 0
    remainder = rows[-1]
    assert remainder.status is Status.PENDING and "Resources" in (remainder.reason or "")


def test_array_with_a_failed_task(replay: Replay) -> None:
    replay.squeue(squeue_jobs("array/after.squeue.json"))
    view = SlurmView(1.0, path=replay.path)
    jobs = sorted(view.jobs(now=1.0).values(), key=lambda j: j.display_id)
    rows = group_runs((j, job_run(j, None, {}, 1.8e9)) for j in jobs)
    group = rows[0]
    assert group.status is Status.FAILED
    assert group.progress.items_completed == 4 and group.progress.items_total == 4
    assert group.cause is not None and "task 3: the batch script exited with code 1" in (
        group.cause.describe())
    task3 = next(r for r in rows if r.config.endswith("16_3"))
    # The array's own id (16) lands on its last task to start: task 3's job id is 16.
    assert task3.progress.details["slurm_job_id"] == "16"
    assert task3.status is Status.FAILED


def test_finished_job_gone_from_squeue_is_read_from_sacct(replay: Replay) -> None:
    # After MinJobAge squeue no longer holds job 2 (captures/after_minjobage).
    text = (CAPTURES / "after_minjobage/purged-job.txt").read_text()
    section = text.split("Start,End,Elapsed -j 2\n", 1)[1].split("$ ", 1)[0]
    replay.squeue([])
    replay.sacct(section)
    view = SlurmView(1.0, path=replay.path)
    jobs = view.jobs(["2"], now=1.0)
    assert jobs["2"].state == "COMPLETED" and jobs["2"].source == "sacct"
    assert replay.count("squeue") == 1 and replay.count("sacct") == 1
    assert "-j 2" in replay.calls()[-1]
    # Final: never asked again.
    view.jobs(["2"], now=5.0)
    assert replay.count("sacct") == 1 and replay.count("squeue") == 2


def test_never_eligible_jobs_are_found_by_id(replay: Replay) -> None:
    # Jobs cancelled before their --begin time are missing from sacct without -j.
    text = (CAPTURES / "after_minjobage/sacct-never-started-jobs.txt").read_text()
    section = text.split("-j 6,8\n", 1)[1].split("$ ", 1)[0]
    replay.sacct(section)
    view = SlurmView(1.0, path=replay.path)
    jobs = view.jobs(["6", "8"], now=1.0)
    assert jobs["8"].state == "CANCELLED" and jobs["8"].cancelled_by == "0"
    assert "-j 6,8" in replay.calls()[-1]


def test_accounting_disabled_is_said(replay: Replay) -> None:
    text = (CAPTURES / "accounting_none/sacct-without-slurmdbd.txt").read_text()
    replay.sacct(text.split("\n", 1)[1].split("rc=1")[0], rc=1)
    view = SlurmView(1.0, path=replay.path)
    assert "35" not in view.jobs(["35"], now=1.0)
    assert view.problem is not None and "accounting storage is disabled" in view.problem


def test_one_squeue_and_one_sacct_per_interval(replay: Replay) -> None:
    replay.squeue(squeue_jobs("cancel_running/after.squeue.json", "fail/after.squeue.json"))
    replay.sacct(sacct_text("cancel_running/after.sacct.txt"))
    view = SlurmView(2.0, path=replay.path)
    for t in (0.0, 0.5, 1.0, 1.9):
        view.jobs(["3", "7", "99"], now=t)
    assert (replay.count("squeue"), replay.count("sacct")) == (1, 1)
    view.jobs(["3", "7", "99"], now=2.0)  # the next interval: 99 is still unknown
    assert (replay.count("squeue"), replay.count("sacct")) == (2, 2)
    assert replay.calls()[-1].endswith("-j 99")  # 7's final record is kept


def test_unfiltered_squeue_example_parses() -> None:
    jobs = parse_squeue_json((CAPTURES / "squeue-unfiltered-example.json").read_text())
    assert len(jobs) == 6
    assert all(j.state in SLURM_STATES for j in jobs)


def test_output_paths_match_scontrol() -> None:
    # squeue --json gives the --output pattern; scontrol shows the path Slurm wrote.
    checked = 0
    for capture in sorted(CAPTURES.glob("*/*.squeue.json")):
        scontrol = capture.with_name(capture.name.replace(".squeue.json", ".scontrol.txt"))
        if not scontrol.exists():
            continue
        shown = dict(re.findall(r"JobId=(\d+) .*? StdOut=(\S+)", scontrol.read_text()))
        for job in parse_squeue_json(capture.read_text()):
            if job.job_id in shown and not job.is_array_remainder:
                assert job.stdout == shown[job.job_id], capture
                checked += 1
    assert checked > 20


def test_expand_output_path_patterns() -> None:
    values = {"job_id": "17", "array_job_id": "16", "array_task_id": "0", "name": "train",
              "user": "ana", "node": "n1"}
    assert expand_output_path("%x-%A_%a.out", values) == "train-16_0.out"
    assert expand_output_path("%u/%j-%N.%%.log", values) == "ana/17-n1.%.log"
    assert expand_output_path("out-%5j", values) == "out-00017"


@pytest.mark.parametrize(("text", "message"), [
    ("not json", "not JSON"),
    ('{"jobs": {}}', "'jobs' list"),
    ('{"jobs": [], "errors": [{"error": "x"}]}', "Slurm reports errors"),
    ('{"jobs": [{"job_state": "RUNNING"}]}', "numeric 'job_id'"),
])
def test_bad_squeue_output(text: str, message: str) -> None:
    with pytest.raises(SlurmFormatError, match=message):
        parse_squeue_json(text)


def test_bad_sacct_output() -> None:
    with pytest.raises(SlurmFormatError, match="header"):
        parse_sacct("garbage|here\n1|2\n")
    with pytest.raises(SlurmFormatError, match="line 2: 2 fields"):
        parse_sacct("JobID|State|ExitCode\n1|RUNNING\n")


def test_one_broken_record_among_many_is_an_error_naming_it(replay: Replay) -> None:
    jobs = squeue_jobs("ok/after.squeue.json", "fail/after.squeue.json")
    jobs[1] = {**jobs[1], "job_state": ""}
    replay.squeue(jobs)
    view = SlurmView(1.0, path=replay.path)
    assert view.jobs(now=1.0) == {}
    assert view.problem is not None and "job 3: 'job_state'" in view.problem


def test_targets() -> None:
    assert parse_target("/some/dir", "me") is None
    q = parse_target("slurm:?user=ana&partition=gpu", "me")
    assert q is not None and (q.user, q.partition) == ("ana", "gpu")
    q = parse_target("slurm:", "me")
    assert q is not None and q.user == "me"
    for bad, said in (("slurm:?colour=red", "unknown key"), ("slurm:?user=", "no value"),
                      ("slurm:x", "expected 'slurm:'"), ("slurm:?user=a&user=b", "twice")):
        with pytest.raises(ValueError, match=said):
            parse_target(bad, None)


def test_unknown_state_is_unknown() -> None:
    job = Job(job_id="1", display_id="1", state="SOMETHING_NEW")
    run = job_run(job, None, {}, 0.0)
    assert run.status is Status.UNKNOWN and "does not know" in (run.reason or "")


def test_engine_runs_are_judged_and_cancelled_through_the_hooks(
        replay: Replay, monkeypatch: pytest.MonkeyPatch) -> None:
    from progresskit import ProgressInfo, get_plugin_manager
    from slurm_replay import env_with

    monkeypatch.setenv("PATH", env_with(replay)["PATH"])
    replay.squeue(squeue_jobs("timeout/after.squeue.json", "preempt/requeue-rerunning.squeue.json"))
    pm = get_plugin_manager()
    lease_run = RunStatus("runs/a", "/tmp/a", ProgressInfo(
        runner_type="progress", details={"slurm_job_id": "5"}), Status.CRASHED, None,
        "lease from node7 expired")
    judged = pm.hooks.judge_run(lease_run, 1.8e9)
    assert (judged.status, judged.progress.source_status) == (Status.FAILED, "TIMEOUT")
    assert judged.cause is not None and "time limit 00:01:00 reached" in judged.cause.describe()
    # Slurm says job 23 runs (its second attempt): an expired remote lease is not a crash.
    live = attrs.evolve(lease_run, progress=ProgressInfo(details={"slurm_job_id": "23"}))
    judged = pm.hooks.judge_run(live, 1.8e9)
    assert judged.status is Status.STUCK and "attempt 2" in (judged.reason or "")
    assert pm.hooks.can_cancel(live) is True  # the dashboard offers Cancel
    assert pm.hooks.cancel(live, 1.0) is True
    assert replay.calls()[-1] == "scancel 23"
    # Not a Slurm job: declined, the engine's verdict stands.
    other = RunStatus("runs/b", "/tmp/b", ProgressInfo(), Status.RUNNING)
    assert pm.hooks.judge_run(other, 1.8e9) is other
    assert pm.hooks.cancel(other, 1.0) is None


def test_cancel_ids_are_exact() -> None:
    from progresskit_slurm.plugin import cancel_id

    # Task 3 of array 16 has job id 16, the array's: "scancel 16" would stop every task.
    assert cancel_id({"slurm_job_id": "16", "slurm_array_job_id": "16",
                      "slurm_array_task_id": "3"}) == "16_3"
    assert cancel_id({"slurm_job_id": "16", "slurm_array_job_id": "16",
                      "slurm_array_task_id": "2-3"}) == "16_[2-3]"
    assert cancel_id({"slurm_array_job_id": "16"}) == "16"  # the array's own row
    assert cancel_id({"slurm_job_id": "7"}) == "7"
    assert cancel_id({}) is None


def test_scancel_refuses_what_is_not_a_job_id(replay: Replay) -> None:
    from progresskit_slurm.client import SlurmError

    view = SlurmView(1.0, path=replay.path)
    for bad in ("7 8", "-u root", "7;rm", "", "16_[2-3"):
        with pytest.raises(SlurmError, match="not a Slurm job id"):
            view.scancel(bad)
    assert replay.count("scancel") == 0
    view.scancel("16_[2-3]")
    assert replay.calls()[-1] == "scancel 16_[2-3]"
