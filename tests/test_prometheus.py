"""``/metrics`` for a cluster's Prometheus (docs/prometheus.md): per-run series bounded, the
most urgent runs first; status transitions counted; the shipped rules (``prometheus/``)
checked and unit-tested by ``promtool``, and loaded by a real Prometheus scraping a real
``progresskit serve`` that watches real jobs.

``prometheus`` and ``promtool`` are Debian's ``prometheus`` package (``bash
scripts/start-prometheus.sh`` installs it): without them these tests skip, except under
``CI=true``, where they fail.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from helpers.cli import run_cli
from helpers.runs import make_trainer_run
from helpers.serve import add_epoch, serve
from progresskit.formats.change import Change
from progresskit.model.core import Cause, ProgressInfo, RunStatus, Status
from progresskit.server.hub import Hub
from progresskit.server.metrics import (
    CAUSES,
    DEFAULT_MAX_RUNS,
    Transitions,
    cause_label,
    prometheus_text,
)
from progresskit.server.views import run_id

REPO = Path(__file__).resolve().parent.parent
RULES = REPO / "prometheus" / "progresskit.rules.yml"
RULE_TESTS = REPO / "prometheus" / "tests" / "progresskit.rules.test.yml"
EXAMPLE_CONFIG = REPO / "prometheus" / "prometheus.yml"
#: No proxy for loopback, whatever the environment says.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_SAMPLE = re.compile(r"^(?P<name>[a-z_]+)(?:\{(?P<labels>.*)\})? (?P<value>\S+)$")
_LABEL = re.compile(r'([a-z_]+)="((?:[^"\\]|\\.)*)"')


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        missing = f"{name} is not installed (bash scripts/start-prometheus.sh installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{missing}; .ci/run installs it, so under CI this is a failure")
        pytest.skip(f"{missing}; not running under CI=true, where this would fail instead")
    return path


def _samples(text: str, name: str) -> list[tuple[dict[str, str], str]]:
    """The (labels, value) of every sample of metric ``name`` in exposition ``text``."""
    found = []
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match and match["name"] == name:
            found.append((dict(_LABEL.findall(match["labels"] or "")), match["value"]))
    return found


def _run(name: str, status: Status, *, last: float | None = None, **progress: Any) -> RunStatus:
    path = f"/cluster/runs/{name}"
    cause = progress.pop("cause", None)
    return RunStatus(path, path, ProgressInfo(**progress), status, last_activity=last, cause=cause)


def _with_series(text: str) -> set[str]:
    return {labels["name"] for labels, _v in _samples(text, "progresskit_run_status")}


# -- the exposition: bounded per-run series ------------------------------------------------


def test_past_the_limit_the_most_urgent_runs_keep_their_series() -> None:
    runs = [
        _run("done-old", Status.FINISHED, last=1000.0),
        _run("done-new", Status.FINISHED, last=2000.0),
        _run("training", Status.RUNNING, progress_percentage=40.0),
        _run("hung", Status.STUCK),
        _run("wreck", Status.CRASHED, last=500.0),
        _run("queued", Status.PENDING),
    ]
    text = prometheus_text([(r.work_dir.rsplit("/", 1)[1], r) for r in runs], max_runs=4)
    assert _with_series(text) == {"wreck", "hung", "training", "queued"}
    omitted = {labels["status"]: v for labels, v in _samples(text, "progresskit_runs_omitted")}
    assert omitted == {s.value: "2" if s is Status.FINISHED else "0" for s in Status}
    # Every run is still counted by status.
    counts = {labels["status"]: int(v) for labels, v in _samples(text, "progresskit_runs")}
    assert sum(counts.values()) == 6 and counts["finished"] == 2
    # One more series: the newest of the finished runs, not the oldest.
    wider = prometheus_text([(r.work_dir.rsplit("/", 1)[1], r) for r in runs], max_runs=5)
    assert _with_series(wider) == {"wreck", "hung", "training", "queued", "done-new"}


def test_the_default_limit_and_no_per_run_series_at_all() -> None:
    runs = [(f"r{i:04d}", _run(f"r{i:04d}", Status.RUNNING)) for i in range(DEFAULT_MAX_RUNS + 50)]
    text = prometheus_text(runs)
    assert _with_series(text) == {f"r{i:04d}" for i in range(DEFAULT_MAX_RUNS)}
    assert ({"status": "running"}, "50") in _samples(text, "progresskit_runs_omitted")
    none = prometheus_text(runs, max_runs=0)
    assert _with_series(none) == set() and "progresskit_run_progress_ratio{" not in none
    assert ({"status": "running"}, str(DEFAULT_MAX_RUNS + 50)) in _samples(
        none, "progresskit_runs_omitted"
    )
    with pytest.raises(ValueError, match="max_runs must be >= 0, got -1"):
        prometheus_text(runs, max_runs=-1)


def test_eta_band_and_cause_series() -> None:
    band = {"eta_seconds": 600.0, "eta_low_seconds": 500.0, "eta_high_seconds": 900.0}
    runs = [
        ("a", _run("a", Status.RUNNING, progress_percentage=30.0, **band)),
        ("b", _run("b", Status.FAILED, cause=Cause("exit", exit_code=3))),
    ]
    text = prometheus_text(runs)
    labels_a = {"run_id": run_id("/cluster/runs/a"), "name": "a", "runner_type": "trainer"}
    assert _samples(text, "progresskit_run_eta_low_seconds") == [(labels_a, "500.0")]
    assert _samples(text, "progresskit_run_eta_high_seconds") == [(labels_a, "900.0")]
    assert [(lab["name"], lab["cause"]) for lab, _v in _samples(text, "progresskit_run_cause")] == [
        ("b", "exit")
    ]
    by_cause = {lab["cause"]: v for lab, v in _samples(text, "progresskit_runs_by_cause")}
    assert by_cause == {c: "1" if c == "exit" else "0" for c in CAUSES}


@pytest.mark.parametrize(
    ("source_status", "cause", "expected"),
    [
        # Slurm (../shared/slurm README, the oom capture): state word and the plugin's cause.
        ("OUT_OF_MEMORY", Cause("error", message="out of memory (limit 50M)"), "out_of_memory"),
        (None, Cause("exception", message="", exception_type="MemoryError"), "out_of_memory"),
        (
            None,
            Cause(
                "exception",
                message="CUDA out of memory. Tried to allocate 20.00 MiB",
                exception_type="torch.OutOfMemoryError",
            ),
            "out_of_memory",
        ),
        # Killed without a word: the OOM killer is only one guess of the default message.
        (None, Cause("vanished"), "vanished"),
        ("TIMEOUT", Cause("error", message="time limit 00:01:00 reached"), "error"),
        (None, Cause("exception", message="bad batch", exception_type="ValueError"), "exception"),
        (None, None, None),
    ],
)
def test_cause_label(source_status: str | None, cause: Cause | None, expected: str | None) -> None:
    run = _run("x", Status.FAILED, source_status=source_status, cause=cause)
    assert cause_label(run) == expected


def test_transitions_count_every_pair_from_zero() -> None:
    transitions = Transitions()
    transitions.observe(Status.RUNNING, Status.STUCK)
    transitions.observe(Status.STUCK, Status.RUNNING)
    transitions.observe(Status.RUNNING, Status.STUCK)
    transitions.observe(Status.RUNNING, Status.RUNNING)  # no change, no transition
    samples = _samples(transitions.text(), "progresskit_status_transitions_total")
    assert len(samples) == len(Status) * (len(Status) - 1)
    counts = {(lab["from"], lab["to"]): v for lab, v in samples}
    assert counts[("running", "stuck")] == "2" and counts[("stuck", "running")] == "1"
    assert sum(map(int, counts.values())) == 3
    assert "# TYPE progresskit_status_transitions_total counter" in transitions.text()


def test_the_hub_counts_the_transitions_it_applies() -> None:
    hub = Hub("/r")
    running = RunStatus("/r/a", "/r/a", ProgressInfo(), Status.RUNNING)
    crashed = RunStatus("/r/a", "/r/a", ProgressInfo(), Status.CRASHED, cause=Cause("vanished"))
    hub.apply(Change("new", running))  # discovered: no transition
    hub.apply(Change("heartbeat", running))
    hub.apply(Change("changed", crashed, previous_status=Status.RUNNING))
    hub.apply(Change("removed", crashed, previous_status=Status.CRASHED))
    counts = {
        (lab["from"], lab["to"]): int(v)
        for lab, v in _samples(hub.transitions.text(), "progresskit_status_transitions_total")
    }
    assert counts[("running", "crashed")] == 1 and sum(counts.values()) == 1


# -- promtool on the shipped files ---------------------------------------------------------


def test_shipped_rules_pass_promtool_check_and_their_unit_tests() -> None:
    promtool = _tool("promtool")
    checked = subprocess.run(
        [promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout
    tested = subprocess.run(
        [promtool, "test", "rules", str(RULE_TESTS)], capture_output=True, text=True, timeout=120
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_example_config_passes_promtool_check() -> None:
    promtool = _tool("promtool")
    checked = subprocess.run(
        [promtool, "check", "config", str(EXAMPLE_CONFIG)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_a_real_server_bounds_its_per_run_series(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    make_trainer_run(root / "fresh", 3, total=10)
    make_trainer_run(root / "quiet", 1, total=10, age=3 * 86400.0)  # silent for 3 days
    with serve(root, "--metrics-max-runs", "1") as server:
        views = {v["name"]: v["status"] for v in server.json("/api/runs")["runs"]}
        _status, _headers, body = server.request("GET", "/metrics")
    text = body.decode()
    assert views["fresh"] == "running" and views["quiet"] != "running", views
    # The run needing attention keeps its series; the healthy one is counted only.
    assert _with_series(text) == {"quiet"}
    omitted = {lab["status"]: int(v) for lab, v in _samples(text, "progresskit_runs_omitted")}
    assert omitted["running"] == 1 and sum(omitted.values()) == 1


def test_a_bad_limit_is_refused(tmp_path: Path) -> None:
    (tmp_path / "runs").mkdir()
    result = run_cli("serve", str(tmp_path / "runs"), "--metrics-max-runs", "-1", cwd=tmp_path)
    assert result.ret == 2, result
    assert "--metrics-max-runs: must be >= 0, got -1" in result.stderr


# -- a real Prometheus scraping a real progresskit serve -----------------------------------

#: A real job reporting with ``Progress``: ``steady`` does 3 of 10 steps and waits;
#: ``oom`` does 1 and allocates beyond its address-space limit (a real MemoryError ends
#: it); ``doomed`` does 2 and waits to be killed.
JOB = textwrap.dedent("""\
    import sys, time
    import progresskit
    kind = sys.argv[1]
    with progresskit.Progress(total=10, run_dir=sys.argv[2], interval=0.1) as progress:
        progress.update(3 if kind == "steady" else 1 if kind == "oom" else 2)
        time.sleep(0.5)  # written (interval 0.1 s) before what follows
        print("ready", flush=True)
        if kind == "oom":
            hog = bytearray(4 << 30)
        time.sleep(600)
""")


def _limit_memory() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))


@contextmanager
def _jobs(root: Path) -> Iterator[dict[str, subprocess.Popen[str]]]:
    jobs: dict[str, subprocess.Popen[str]] = {}
    try:
        for kind in ("steady", "oom", "doomed"):
            jobs[kind] = subprocess.Popen(
                [sys.executable, "-c", JOB, kind, str(root / kind)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                cwd=root.parent,
                preexec_fn=_limit_memory if kind == "oom" else None,
            )
        for kind, job in jobs.items():
            assert job.stdout is not None
            assert job.stdout.readline() == "ready\n", f"{kind}: {job.communicate(timeout=10)}"
        yield jobs
    finally:
        for job in jobs.values():
            if job.poll() is None:
                job.kill()
            job.communicate(timeout=10)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Prometheus:
    def __init__(self, proc: subprocess.Popen[bytes], url: str, log: Path):
        self.proc, self.url, self.log = proc, url, log

    def get(self, path: str, **params: str) -> Any:
        url = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        with _OPENER.open(url, timeout=10) as response:
            return json.loads(response.read())

    def query(self, promql: str) -> list[dict[str, Any]]:
        answer = self.get("/api/v1/query", query=promql)
        assert answer["status"] == "success", answer
        return list(answer["data"]["result"])

    def wait_for(self, what: str, predicate: Any, timeout: float = 30.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise AssertionError(
                    f"timed out after {timeout}s waiting for {what}; Prometheus log:\n"
                    + self.log.read_text(errors="replace")[-4000:]
                )
            time.sleep(0.2)


@contextmanager
def _prometheus(target: str) -> Iterator[Prometheus]:
    """Debian's ``prometheus`` on loopback, scraping ``target`` (host:port) every second
    and evaluating the shipped rules every second."""
    binary = _tool("prometheus")
    with tempfile.TemporaryDirectory(prefix="prom-") as tmp:
        config = Path(tmp) / "prometheus.yml"
        config.write_text(
            json.dumps(  # JSON is YAML
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "rule_files": [str(RULES)],
                    "scrape_configs": [
                        {"job_name": "progresskit", "static_configs": [{"targets": [target]}]}
                    ],
                }
            )
        )
        port = _free_port()
        log = Path(tmp) / "prometheus.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [
                    binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={Path(tmp) / 'data'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=tmp,
            )
        prom = Prometheus(proc, f"http://127.0.0.1:{port}", log)
        try:

            def ready() -> bool:
                try:
                    with _OPENER.open(f"{prom.url}/-/ready", timeout=2) as response:
                        return bool(response.status == 200)
                except (urllib.error.URLError, OSError):
                    return False

            prom.wait_for("Prometheus to be ready", ready)
            yield prom
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def _value(result: list[dict[str, Any]]) -> float | None:
    return float(result[0]["value"][1]) if len(result) == 1 else None


@pytest.mark.slow
def test_a_real_prometheus_scrapes_progress_transitions_and_fires_the_rules(
    tmp_path: Path,
) -> None:
    _tool("prometheus")
    _tool("promtool")
    root = tmp_path / "runs"
    root.mkdir()
    make_trainer_run(root / "trainer", 9, total=10)
    with _jobs(root) as jobs, serve(root, "--metrics-max-runs", "10") as server:
        server.wait_for(
            "the jobs as the server sees them",
            lambda: (
                {v["name"]: v["status"] for v in server.json("/api/runs")["runs"]}
                == {"steady": "running", "oom": "failed", "doomed": "running", "trainer": "running"}
            ),
        )
        # The exposition itself is valid, lint included.
        _status, _headers, body = server.request("GET", "/metrics")
        checked = subprocess.run(
            [_tool("promtool"), "check", "metrics"], input=body, capture_output=True, timeout=60
        )
        assert checked.returncode == 0 and not checked.stdout.strip(), checked
        with _prometheus(server.url.split("//", 1)[1].rstrip("/")) as prom:
            progress = 'progresskit_run_progress_ratio{job="progresskit",name="steady"}'
            assert prom.wait_for(
                "the steady run's progress", lambda: _value(prom.query(progress))
            ) == pytest.approx(0.3)

            jobs["doomed"].send_signal(signal.SIGKILL)  # a crash: no word, no cleanup
            add_epoch(root / "trainer", 9)  # the trainer's last epoch: finished
            crashes = 'progresskit_status_transitions_total{from="running",to="crashed"}'
            prom.wait_for("the crash, counted", lambda: _value(prom.query(crashes)) == 1)
            ends = 'progresskit_status_transitions_total{from="running",to="finished"}'
            prom.wait_for("the trainer's end, counted", lambda: _value(prom.query(ends)) == 1)
            running = 'status:progresskit_runs:sum{status="running"}'
            prom.wait_for("the recording rule", lambda: _value(prom.query(running)) == 1)

            def firing() -> set[tuple[str, str]]:
                alerts = prom.get("/api/v1/alerts")["data"]["alerts"]
                return {
                    (a["labels"]["alertname"], a["labels"]["name"])
                    for a in alerts
                    if a["state"] == "firing"
                }

            expected = {("ProgresskitRunCrashed", "doomed"), ("ProgresskitRunOutOfMemory", "oom")}
            prom.wait_for(f"alerts {expected}", lambda: firing() == expected)
        # What the alert was made of: the job's own MemoryError, recorded by its producer.
        assert server.run_named("oom")["run"]["cause"]["exception_type"] == "MemoryError"
