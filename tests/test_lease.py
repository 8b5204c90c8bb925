"""The liveness lease: the file, its renewal, the process hooks it installs (chained to
what was there), and how the tracker side reads it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from helpers.runs import make_trainer_run
from progresskit import Cause, ProgressInfo, Status, Tracking, heartbeat, to_json
from progresskit.engine.liveness import GRACE_SECONDS, LeaseCheck, observe
from progresskit.engine.rhythm import observe_rhythm
from progresskit.engine.rules import decide
from progresskit.formats.fileio import stat_key
from progresskit.formats.lease import (
    LEASE_FILENAME,
    LEASE_STATES,
    Lease,
    SlurmJob,
    dump_lease,
    load_lease,
    process_start_time,
    this_host,
)
from progresskit.model.converter import unstructure
from progresskit.producer.heartbeat import cause_of
from progresskit.testing import strategies


def run_script(tmp_path: Path, body: str, *args: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "script.py"
    script.write_text("import os, signal, sys, threading, time\nimport progresskit\n"
                      + textwrap.dedent(body))
    return subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, timeout=60
    )


def write_lease(work: Path, lease: Lease, renewed_at: float) -> None:
    document = {"format": "progresskit.lease", "version": 1, **json.loads(to_json(lease))}
    path = work / LEASE_FILENAME
    path.write_text(json.dumps(document))
    os.utime(path, (renewed_at, renewed_at))


# -- the file --------------------------------------------------------------------------------


def test_the_lease_records_pid_start_time_host_and_promise(tmp_path: Path) -> None:
    import psutil

    with heartbeat(tmp_path, expect_every=30) as hb:
        lease = load_lease(hb.path)
        assert lease.pid == os.getpid()
        assert lease.process_start_time == pytest.approx(psutil.Process().create_time())
        assert lease.host == this_host()
        assert lease.interval == 30.0
        assert lease.state == "running" and lease.producers == ("heartbeat",)
        raw = json.loads(Path(hb.path).read_text())
        assert raw["format"] == "progresskit.lease" and raw["version"] == 1
    assert load_lease(hb.path).state == "finished"


def test_the_process_identity_is_what_platform_and_psutil_say_without_loading_them() -> None:
    # Leases written before the split recorded platform.node() and psutil's create_time();
    # readers compare new and old leases alike.
    import platform

    import psutil

    assert this_host() == platform.node()
    assert process_start_time(os.getpid()) == pytest.approx(psutil.Process().create_time())


_times = st.floats(min_value=0, max_value=4e9)
leases = st.builds(
    Lease,
    pid=st.integers(1, 2**22),
    process_start_time=_times,
    host=st.text(max_size=20),
    interval=st.none() | st.floats(min_value=1e-3, max_value=1e6),
    slack=st.floats(min_value=0, max_value=100),
    started_at=_times,
    state=st.sampled_from(LEASE_STATES),
    ended_at=st.none() | _times,
    cause=st.none() | strategies.causes(),
    producers=st.lists(st.sampled_from(["events", "heartbeat", "statusfile"]), unique=True)
    .map(sorted)
    .map(tuple),
    process_start_ticks=st.none() | st.integers(0, 2**40),
    token=st.none() | st.text("0123456789abcdef", min_size=32, max_size=32),
    slurm=st.none()
    | st.builds(
        SlurmJob,
        job_id=st.text("0123456789", min_size=1, max_size=8),
        array_job_id=st.none() | st.text("0123456789", min_size=1, max_size=8),
        array_task_id=st.none() | st.text("0123456789", min_size=1, max_size=3),
        cluster=st.none() | st.text(max_size=10),
        node=st.none() | st.text(max_size=10),
    ),
)


@given(leases)
def test_the_lease_file_is_the_converters_json_without_the_converter(lease: Lease) -> None:
    # The producer side writes it without cattrs; the bytes are what the converter's
    # to_json(indent=2) wrote before the split, so old and new readers see the same files.
    document = {"format": "progresskit.lease", "version": 1, **unstructure(lease)}
    # Except for ``slurm``: absent outside Slurm, and only the keys whose variable was set.
    slurm = document.pop("slurm")
    if slurm is not None:
        document["slurm"] = {k: v for k, v in slurm.items() if v is not None}
    converter_text = json.dumps(document, indent=2, allow_nan=False, sort_keys=True) + "\n"
    assert dump_lease(lease) == converter_text


def test_renewal_touches_the_mtime_at_most_every_renew_interval(tmp_path: Path) -> None:
    with heartbeat(tmp_path, expect_every=100) as hb:
        inode = os.stat(hb.path).st_ino
        os.utime(hb.path, (1000.0, 1000.0))
        hb.beat()  # the first beat renews
        assert os.stat(hb.path).st_mtime > time.time() - 5
        os.utime(hb.path, (1000.0, 1000.0))
        for _ in range(1000):
            hb.beat()  # throttled: within 0.5 s of the last renewal
        assert os.stat(hb.path).st_mtime == 1000.0
        assert os.stat(hb.path).st_ino == inode  # renewals never rewrite the content


def test_a_removed_lease_is_written_back_on_the_next_renewal(tmp_path: Path) -> None:
    with heartbeat(tmp_path, expect_every=0.1) as hb:
        os.unlink(hb.path)
        time.sleep(0.02)  # renewals are 1/10 of the promise apart
        hb.beat()
        assert load_lease(hb.path).state == "running"


def test_holders_share_one_lease_and_the_tightest_promise_binds(tmp_path: Path) -> None:
    outer = heartbeat(tmp_path, expect_every=60)
    with heartbeat(tmp_path, expect_every=5):
        assert load_lease(outer.path).interval == 5.0
    lease = load_lease(outer.path)
    assert lease.interval == 60.0 and lease.state == "running"
    outer.close("failed", Cause("error", message="bad data"))
    lease = load_lease(outer.path)
    assert lease.state == "failed" and lease.cause == Cause("error", message="bad data")


def test_bad_arguments_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="expect_every must be a finite number > 0"):
        heartbeat(tmp_path, expect_every=0)
    with pytest.raises(ValueError, match="expect_every must be a number of seconds"):
        heartbeat(tmp_path, expect_every="60")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="does not exist"):
        heartbeat(tmp_path / "missing", expect_every=1)


@pytest.mark.parametrize(
    ("exc", "state", "cause"),
    [
        (SystemExit(0), "finished", None),
        (SystemExit(3), "failed", Cause("exit", message="sys.exit", exit_code=3)),
        (KeyboardInterrupt(), "cancelled", Cause("signal", signal="SIGINT")),
        (ValueError("x"), "failed", Cause("exception", message="x", exception_type="ValueError")),
        (
            json.JSONDecodeError("bad", "", 0),
            "failed",
            Cause(
                "exception",
                message="bad: line 1 column 1 (char 0)",
                exception_type="json.decoder.JSONDecodeError",
            ),
        ),
    ],
)
def test_cause_of(exc: BaseException, state: str, cause: Cause | None) -> None:
    assert cause_of(exc) == (state, cause)


# -- process hooks, chained ------------------------------------------------------------------


def test_a_previous_sigterm_handler_still_runs(tmp_path: Path) -> None:
    marker = tmp_path / "handled"
    result = run_script(
        tmp_path,
        """\
        def mine(signum, frame):
            open(sys.argv[2], "w").write("saved checkpoint")
            sys.exit(7)
        signal.signal(signal.SIGTERM, mine)
        hb = progresskit.heartbeat(sys.argv[1], expect_every=5)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(10)
        """,
        str(tmp_path),
        str(marker),
    )
    assert result.returncode == 7, result.stderr
    assert marker.read_text() == "saved checkpoint"
    lease = load_lease(str(tmp_path / LEASE_FILENAME))
    assert lease.state == "cancelled" and lease.cause == Cause("signal", signal="SIGTERM")


def test_a_previous_handler_that_carries_on_keeps_the_run_running(tmp_path: Path) -> None:
    result = run_script(
        tmp_path,
        """\
        from progresskit.formats.lease import load_lease
        seen = []
        signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))
        hb = progresskit.heartbeat(sys.argv[1], expect_every=5)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.1)
        print(seen, load_lease(hb.path).state)
        hb.close()
        """,
        str(tmp_path),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [f"[{int(signal.SIGTERM)}]", "running"]
    assert load_lease(str(tmp_path / LEASE_FILENAME)).state == "finished"


def test_ignored_signals_stay_ignored(tmp_path: Path) -> None:
    result = run_script(
        tmp_path,
        """\
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        hb = progresskit.heartbeat(sys.argv[1], expect_every=5)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.1)
        print(signal.getsignal(signal.SIGTERM) is signal.SIG_IGN)
        """,
        str(tmp_path),
    )
    assert result.stdout.strip() == "True"
    assert load_lease(str(tmp_path / LEASE_FILENAME)).state == "exited"


def test_a_previous_excepthook_still_runs(tmp_path: Path) -> None:
    marker = tmp_path / "reported"
    result = run_script(
        tmp_path,
        """\
        def report(exc_type, exc, tb):
            open(sys.argv[2], "w").write(f"{exc_type.__name__}: {exc}")
        sys.excepthook = report
        hb = progresskit.heartbeat(sys.argv[1], expect_every=5)
        raise ZeroDivisionError("lr schedule")
        """,
        str(tmp_path),
        str(marker),
    )
    assert result.returncode == 1
    assert marker.read_text() == "ZeroDivisionError: lr schedule"
    lease = load_lease(str(tmp_path / LEASE_FILENAME))
    assert lease.state == "failed" and lease.cause is not None
    assert lease.cause.exception_type == "ZeroDivisionError"


def test_signal_handlers_are_installed_only_from_the_main_thread(tmp_path: Path) -> None:
    result = run_script(
        tmp_path,
        """\
        t = threading.Thread(target=progresskit.heartbeat, args=(sys.argv[1],),
                             kwargs={"expect_every": 5})
        t.start(); t.join()
        print(signal.getsignal(signal.SIGTERM) is signal.SIG_DFL)
        progresskit.heartbeat(sys.argv[1], expect_every=5)  # the main thread: installed now
        print(signal.getsignal(signal.SIGTERM) is signal.SIG_DFL)
        """,
        str(tmp_path),
    )
    assert result.stdout.split() == ["True", "False"], result.stderr


def test_a_forked_child_leaves_the_parents_lease_alone(tmp_path: Path) -> None:
    result = run_script(
        tmp_path,
        """\
        hb = progresskit.heartbeat(sys.argv[1], expect_every=5)
        pid = os.fork()
        if pid == 0:
            sys.exit(0)  # the child's exit must not end the parent's run
        os.waitpid(pid, 0)
        from progresskit.formats.lease import load_lease
        print(load_lease(hb.path).state)
        hb.close()
        """,
        str(tmp_path),
    )
    assert result.stdout.strip() == "running", result.stderr


# -- the reader side -------------------------------------------------------------------------


def _lease(**changes: object) -> Lease:
    import psutil

    base = Lease(os.getpid(), psutil.Process().create_time(), this_host(), 2.0, slack=0.5)
    return attrs.evolve(base, **changes)


def test_observe_tells_alive_gone_reused_remote_and_ended() -> None:
    now = time.time()
    assert observe(_lease(), now).process == "alive"
    assert observe(_lease(process_start_time=1.0), now).process == "reused"
    assert observe(_lease(host="elsewhere"), now).process == "remote"
    assert observe(_lease(state="finished"), now).process == "ended"
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert observe(_lease(pid=child.pid), now).process == "gone"


def _judge(check: LeaseCheck, now: float, **kwargs: object) -> tuple[Status, str]:
    arguments: dict[str, object] = {
        "complete": False,
        "last_activity": None,
        "process": None,
        "now": now,
        "sleep_time": 3600,
        "outdated_days": 30,
        **kwargs,
    }
    decision = decide(ProgressInfo(), lease=check, **arguments)  # type: ignore[arg-type]
    return decision.status, decision.reason


def test_the_promise_plus_slack_and_grace_decides_stalled() -> None:
    now = time.time()
    limit = 2.0 + 0.5 + GRACE_SECONDS
    assert _judge(LeaseCheck(_lease(), now - limit + 0.1, "alive"), now)[0] is Status.RUNNING
    status, reason = _judge(LeaseCheck(_lease(), now - limit - 0.1, "alive"), now)
    assert status is Status.STUCK and "stalled" in reason and "every 2.0s" in reason


def test_a_remote_lease_is_judged_by_its_age() -> None:
    now = time.time()
    remote = _lease(host="gpu-node-7")
    assert _judge(LeaseCheck(remote, now - 1, "remote"), now)[0] is Status.RUNNING
    status, reason = _judge(LeaseCheck(remote, now - 60, "remote"), now)
    assert status is Status.STUCK and "gpu-node-7" in reason
    status, _ = _judge(LeaseCheck(remote, now - 7200, "remote"), now)
    assert status is Status.CRASHED


def test_a_silent_remote_run_without_a_promise_is_stuck_not_failed() -> None:
    # Another host's processes cannot be seen: its rhythm stopping says "stalled", never
    # "no process".
    now = time.time()
    remote = _lease(host="gpu-node-7", interval=None)
    times = [now - 300 + 6 * i for i in range(10)]
    status, reason = _judge(
        LeaseCheck(remote, times[-1], "remote"), now, last_activity=times[-1],
        rhythm=observe_rhythm(times, cap=3600),
    )
    assert status is Status.STUCK and "gpu-node-7" in reason and "no process" not in reason


def test_a_source_reported_failure_wins_over_a_clean_lease() -> None:
    now = time.time()
    decision = decide(
        ProgressInfo(reported_status=Status.FAILED, error_message="disk full"),
        complete=False,
        last_activity=now,
        process=None,
        now=now,
        sleep_time=60,
        outdated_days=30,
        lease=LeaseCheck(_lease(state="finished"), now, "ended"),
    )
    assert decision.status is Status.FAILED
    assert decision.cause == Cause("error", message="disk full")


def test_a_vanished_process_on_a_complete_run_is_finished() -> None:
    now = time.time()
    check = LeaseCheck(_lease(), now - 10, "gone")
    assert _judge(check, now, complete=True)[0] is Status.FINISHED


def test_pid_reuse_is_crashed_and_remote_leases_are_not_probed(tmp_path: Path) -> None:
    run = make_trainer_run(tmp_path / "reused", 1, total=4)
    write_lease(run, _lease(process_start_time=12345.0), time.time())
    result = Tracking().status(str(run), discover_processes=False)
    assert result.status is Status.CRASHED and "reused" in (result.reason or "")
    # A pid of this host's living process, but recorded on another host: only age counts.
    run = make_trainer_run(tmp_path / "remote", 1, total=4, age=600)
    write_lease(run, _lease(host="gpu-node-7", process_start_time=1.0), time.time() - 600)
    result = Tracking().status(str(run), discover_processes=False)
    assert result.status is Status.STUCK and "gpu-node-7" in (result.reason or "")


def test_a_corrupt_lease_is_ignored_with_the_reason(tmp_path: Path) -> None:
    run = make_trainer_run(tmp_path / "r", 1, total=4)
    (run / LEASE_FILENAME).write_text('{"format": "progresskit.lease", "pid": "twelve"')
    result = Tracking().status(str(run), discover_processes=False)
    assert result.status is Status.RUNNING  # seed 001's rules: a fresh log
    assert "lease ignored" in (result.reason or "") and "not valid JSON" in (result.reason or "")
    write_lease(run, _lease(), time.time())
    document = json.loads((run / LEASE_FILENAME).read_text())
    (run / LEASE_FILENAME).write_text(json.dumps({**document, "pid": -4}))
    result = Tracking().status(str(run), discover_processes=False)
    assert "lease ignored" in (result.reason or "")
    assert "pid must be a positive integer, got -4" in (result.reason or "")


def test_the_lease_is_parsed_again_only_when_its_stat_key_changes(tmp_path: Path) -> None:
    run = make_trainer_run(tmp_path / "r", 1, total=4)
    write_lease(run, _lease(), time.time())
    tracking = Tracking()
    path = str(run / LEASE_FILENAME)
    first = tracking._lease(str(run), stat_key(path))
    assert tracking._lease(str(run), stat_key(path))[0] is first[0]  # cached
    os.utime(run / LEASE_FILENAME)  # a renewal: same content, new time
    again = tracking._lease(str(run), stat_key(path))
    assert again[0] == first[0] and again[1] > first[1]


# -- producers --------------------------------------------------------------------------------


def test_event_emitter_run_complete_ends_the_lease(tmp_path: Path) -> None:
    from progresskit import EventEmitter

    events = EventEmitter("r1", event_file=tmp_path / "events.jsonl", expect_every=60)
    lease = load_lease(str(tmp_path / LEASE_FILENAME))
    assert lease.interval == 60.0 and lease.producers == ("events",)
    events.progress("ranking", 10.0)
    events.run_complete("cancelled")
    lease = load_lease(str(tmp_path / LEASE_FILENAME))
    assert lease.state == "cancelled" and lease.cause is not None
    assert lease.cause.kind == "cancel"


def test_status_file_writer_close_with_error_records_it(tmp_path: Path) -> None:
    from progresskit import StatusFileWriter

    writer = StatusFileWriter(tmp_path / "training_status.json", total_iterations=10)
    lease = load_lease(str(tmp_path / LEASE_FILENAME))
    assert lease.interval is None and lease.slack == 1.0  # no promise; writes trail by 1 s
    writer.close("error", "disk quota exceeded")
    lease = load_lease(str(tmp_path / LEASE_FILENAME))
    assert lease.state == "failed"
    assert lease.cause == Cause("error", message="disk quota exceeded")
    with pytest.raises(ValueError, match="expect_every"):
        StatusFileWriter(tmp_path / "other.json", total_iterations=10, expect_every=-1)


def test_a_scan_judges_every_run_by_its_own_lease(tmp_path: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    crashed = make_trainer_run(tmp_path / "a", 1, total=4)
    write_lease(crashed, _lease(pid=gone.pid), time.time())
    failed = make_trainer_run(tmp_path / "b", 1, total=4)
    cause = Cause("exception", message="boom", exception_type="RuntimeError")
    write_lease(failed, _lease(state="failed", cause=cause), time.time())
    make_trainer_run(tmp_path / "c", 1, total=4)  # no lease: seed 001's rules
    results = {Path(r.work_dir).name: r for r in Tracking().scan(str(tmp_path), processes={})}
    assert results["a"].status is Status.CRASHED and results["a"].cause is not None
    assert results["a"].cause.kind == "vanished"
    assert results["b"].status is Status.FAILED and results["b"].cause == cause
    assert results["c"].status is Status.RUNNING and results["c"].cause is None
