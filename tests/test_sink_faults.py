"""Sinks and streams lose nothing (issue 16): a bad run in a webhook batch, a hostile
endpoint (trickling, endless answer), a full disk or a vanished spool, a listener killed or
not reading, and a FIFO in place of the event file. Real loopback endpoints, real
processes, real sockets and files."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from helpers.cli import start_cli
from helpers.runs import make_evaluator_run
from helpers.serve import serve
from helpers.webhook_receiver import Receiver, wait_for
from progresskit import Change, Monitor, RunStatus, get_plugin_manager, scan
from progresskit.builtin.droprecord import DROP_RECORD, read_drop_record
from progresskit.builtin.webhook import WebhookSink
from progresskit.model.core import ProcessInfo
from progresskit.plugin.sink import build_sinks
from progresskit.producer.emitter import EventEmitter


def _sink(spool: Path, url: str, **options: Any) -> WebhookSink:
    entry = {
        "type": "webhook",
        "url": url,
        "spool_dir": str(spool),
        "retry_initial": 0.05,
        "retry_max": 0.2,
        "flush_timeout": 5,
        **options,
    }
    (sink,) = build_sinks([entry], get_plugin_manager().sink_types, "test.yaml")
    assert isinstance(sink, WebhookSink)
    return sink


def _runs(root: Path, n: int) -> list[RunStatus]:
    for i in range(n):
        make_evaluator_run(root / f"eval_{i}", scores={"acc": i / 10})
    return scan(root, {})


# -- webhook: one bad run ------------------------------------------------------------------


def test_one_runs_unencodable_value_never_costs_the_other_runs_their_events(
    tmp_path: Path,
) -> None:
    receiver = Receiver()
    runs = _runs(tmp_path / "runs", 4)
    # A value JSON cannot write (a pid of 5,000 digits: over Python's int-to-text limit).
    bad = RunStatus(
        runs[1].config,
        runs[1].work_dir,
        runs[1].progress,
        runs[1].status,
        process_info=ProcessInfo(pid=10**5000),
    )
    changes = [Change("new", runs[0]), Change("new", bad), *(Change("new", r) for r in runs[2:])]
    sink = _sink(tmp_path / "spool", receiver.url)
    try:
        sink.emit_changes(changes)
        good = {c.id for c in changes if c.run is not bad}
        wait_for(lambda: good <= receiver.accepted_ids(), timeout=30, what="the good events")
    finally:
        sink.close()
        receiver.stop()
    record = read_drop_record(str(tmp_path / "spool"))
    assert record is not None and record["count"] == 1
    assert record["first"]["event_id"] == changes[1].id
    assert record["first"]["run"] == bad.config and "cannot encode" in record["first"]["why"]


def test_a_lease_with_a_nan_start_time_does_not_abort_the_batch(tmp_path: Path) -> None:
    """The issue's case: one run's lease says ``process_start_time: NaN``."""
    receiver = Receiver()
    root = tmp_path / "runs"
    for i in range(5):
        run = root / f"r{i}"
        run.mkdir(parents=True)
        events = EventEmitter(f"r{i}", event_file=run / "events.jsonl")
        events.stage_change(None, "ranking")
        events.progress("ranking", 10.0 * i, targets_total=4)
    lease = root / "r2" / ".progresskit-lease.json"
    document = json.loads(lease.read_text())
    document["process_start_time"] = math.nan
    lease.write_text(json.dumps(document))  # json writes NaN, as a broken producer would
    sink = _sink(tmp_path / "spool", receiver.url)
    try:
        changes = Monitor(root, {}, sinks=[sink]).check()  # one evaluation, to the sink
        assert len({c.run.config for c in changes}) == 5
        ids = {c.id for c in changes}
        wait_for(lambda: ids <= receiver.accepted_ids(), timeout=30, what="every run's event")
    finally:
        sink.close()
        receiver.stop()


# -- webhook: hostile endpoints ------------------------------------------------------------


class RawEndpoint:
    """A loopback HTTP endpoint answering each request with ``answer(connection)``."""

    def __init__(self, answer: Callable[[socket.socket], None]):
        self.answer = answer
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}/hook"
        self.requests = 0
        self._stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        self.server.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self.server.accept()
            except TimeoutError:
                continue
            except OSError:  # closed
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            while len(body) < length:
                body += conn.recv(65536)
            self.requests += 1
            with contextlib.suppress(OSError):
                self.answer(conn)

    def close(self) -> None:
        self._stop.set()
        self.server.close()


def test_a_trickling_endpoint_is_cut_off_warned_about_and_retried(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    healthy = threading.Event()

    def answer(conn: socket.socket) -> None:
        if healthy.is_set():
            conn.sendall(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
            return
        for byte in b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n":
            conn.sendall(bytes([byte]))  # a byte every 0.3 s: no single read ever times out
            time.sleep(0.3)

    endpoint = RawEndpoint(answer)
    (run,) = _runs(tmp_path / "runs", 1)
    sink = _sink(tmp_path / "spool", endpoint.url, timeout=2, exchange_timeout=1)
    try:
        with caplog.at_level(logging.WARNING, "progresskit.builtin.webhook"):
            start = time.monotonic()
            sink.emit_changes([Change("new", run)])
            wait_for(lambda: "delivery stalled" in caplog.text, timeout=10, what="a warning")
            assert time.monotonic() - start < 5
            assert sink.pending == 1  # kept for the next attempt
            healthy.set()
            wait_for(lambda: sink.delivered == 1, timeout=10, what="the retried delivery")
        assert caplog.text.count("delivery stalled") == 1  # once per stall, not per attempt
    finally:
        sink.close()
        endpoint.close()


def test_an_endless_answer_is_not_read_whole(tmp_path: Path) -> None:
    sent = [0]

    def answer(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1500000000\r\n\r\n")
        chunk = b"\0" * (1 << 20)
        while sent[0] < 300 << 20:  # enough to show a reader that reads it all
            conn.sendall(chunk)
            sent[0] += len(chunk)

    endpoint = RawEndpoint(answer)
    (run,) = _runs(tmp_path / "runs", 1)
    sink = _sink(tmp_path / "spool", endpoint.url, exchange_timeout=20)
    try:
        sink.emit_changes([Change("new", run)])
        wait_for(lambda: sink.delivered == 1, timeout=20, what="the delivery")  # a 2xx is a 2xx
        time.sleep(0.5)
        assert sent[0] < 32 << 20, f"{sent[0]} bytes of the answer were taken"
    finally:
        sink.close()
        endpoint.close()


# -- webhook: what a full disk or a vanished spool drops ------------------------------------


@contextlib.contextmanager
def _small_disk(path: Path, size: str) -> Iterator[Path]:
    """A real filesystem of ``size`` at ``path`` (tmpfs; needs the right to mount)."""
    path.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_a_full_disk_records_what_was_dropped_where_it_survives(tmp_path: Path) -> None:
    runs = _runs(tmp_path / "runs", 3)
    with _small_disk(tmp_path / "disk", "128k") as disk:
        spool = disk / "spool"
        # Nobody listens there: every event stays spooled until the disk is full.
        sink = _sink(
            spool,
            "http://127.0.0.1:9/hook",
            startup_check=False,
            retry_initial=30,
            retry_max=30,
            flush_timeout=0,
        )
        changes = [Change("changed", runs[i % 3]) for i in range(200)]
        try:
            sink.emit_changes(changes)
        finally:
            sink.close()
        kept = {p.name.split("-", 1)[1][:-5] for p in spool.glob("0*.json")}
        lost = [c for c in changes if c.id not in kept]
        assert lost and kept, "the disk should have filled part-way"
        record = read_drop_record(str(spool))
        assert record is not None
        assert record["count"] == len(lost) == sink.dropped
        assert record["first"]["event_id"] == lost[0].id
        assert record["last"]["event_id"] == lost[-1].id
        assert "No space left" in record["last"]["why"]
        # The next sink on the same spool counts on from there.
        again = _sink(spool, "http://127.0.0.1:9/hook", startup_check=False, flush_timeout=0)
        again.close()
        assert again.drops.count == len(lost)


_FILE_SIZE_LIMITED = """
import json, resource, signal, sys
from progresskit import Change, get_plugin_manager, scan
from progresskit.plugin.sink import build_sinks

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG
(run,) = scan(sys.argv[1], {})
entry = {"type": "webhook", "url": "http://127.0.0.1:9/hook", "spool_dir": sys.argv[2],
         "startup_check": False, "retry_initial": 30, "retry_max": 30, "flush_timeout": 0}
(sink,) = build_sinks([entry], get_plugin_manager().sink_types, "test.yaml")
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))
changes = [Change("changed", run) for _ in range(5)]
sink.emit_changes(changes)
sink.close()
print(json.dumps([c.id for c in changes]))
"""


def test_events_too_large_to_write_are_recorded_without_privileges(tmp_path: Path) -> None:
    """No room for one more byte in a new file, as on a full disk, without mounting one:
    a file size limit below the size of an event (its run has 400 scores)."""
    make_evaluator_run(tmp_path / "runs" / "big", scores={f"s{i:03}": i for i in range(400)})
    done = subprocess.run(
        [sys.executable, "-c", _FILE_SIZE_LIMITED, str(tmp_path / "runs"), str(tmp_path / "spool")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    ids = json.loads(done.stdout)
    record = read_drop_record(str(tmp_path / "spool"))
    assert record is not None and record["count"] == 5, done.stderr
    assert record["first"]["event_id"] == ids[0] and record["last"]["event_id"] == ids[-1]
    assert "File too large" in record["last"]["why"]
    assert "5 event(s) lost in all" in done.stderr


def test_a_vanished_spool_still_reports_its_losses(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (run,) = _runs(tmp_path / "runs", 1)
    sink = _sink(
        tmp_path / "spool",
        "http://127.0.0.1:9/hook",
        startup_check=False,
        retry_initial=30,
        retry_max=30,
        flush_timeout=0,
    )
    shutil.rmtree(tmp_path / "spool")
    changes = [Change("changed", run) for _ in range(3)]
    with caplog.at_level(logging.WARNING, "progresskit.builtin.webhook"):
        sink.emit_changes(changes)
        sink.close()
    record = sink.drops.snapshot()
    assert record["count"] == 3
    assert record["first"]["event_id"] == changes[0].id
    assert record["last"]["event_id"] == changes[2].id
    assert "3 event(s) lost in all" in caplog.text


def test_watch_reports_what_a_sink_dropped(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    runs = [make_evaluator_run(root / f"eval_{i}", scores={"acc": 0.1}) for i in range(3)]
    config = tmp_path / "watch.yaml"
    spool = tmp_path / "spool"
    config.write_text(
        yaml.safe_dump(
            {
                "watch_poll_interval": 0.2,
                "watch_heartbeat": 0,
                "sinks": [
                    {
                        "type": "webhook",
                        "url": "http://127.0.0.1:9/hook",
                        "startup_check": False,
                        "spool_dir": str(spool),
                        "spool_max_events": 1,
                        "retry_initial": 30,
                        "retry_max": 30,
                        "flush_timeout": 0,
                    }
                ],
            }
        )
    )
    process, _lines = start_cli(
        "--config", str(config), "watch", str(root), "--json", "--mode", "poll", cwd=tmp_path
    )
    try:
        deadline = time.monotonic() + 30
        while read_drop_record(str(spool)) is None or read_drop_record(str(spool))["count"] < 2:
            assert time.monotonic() < deadline, "the spool never overflowed"
            (runs[0] / "evaluation_scores.json").write_text(json.dumps({"acc": time.time()}))
            time.sleep(0.3)
        time.sleep(1.5)
    finally:
        process.send_signal(signal.SIGINT)
        _out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "event(s) lost (first " in err and "spool full" in err, err
    assert "sink http://127.0.0.1:9/hook:" in err


def test_metrics_report_what_a_sink_dropped(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    (run,) = _runs(tmp_path / "runs", 1)
    sink = _sink(
        spool,
        "http://127.0.0.1:9/hook",
        startup_check=False,
        spool_max_events=1,
        retry_initial=30,
        retry_max=30,
        flush_timeout=0,
    )
    sink.emit_changes([Change("changed", run) for _ in range(4)])
    sink.close()
    assert (spool / DROP_RECORD).is_file()
    with serve(
        tmp_path / "runs",
        "--sink-spool",
        str(spool),
        env={"XDG_STATE_HOME": str(tmp_path / "state")},
    ) as server:
        status, _h, body = server.request("GET", "/metrics")
    assert status == 200
    assert f'progresskit_sink_events_dropped_total{{spool="{spool}"}} 3' in body.decode()
    assert f'progresskit_sink_last_drop_timestamp_seconds{{spool="{spool}"}} ' in body.decode()


# -- emitters and the listener --------------------------------------------------------------


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A directory with a short path: AF_UNIX socket paths are limited to 107 bytes."""
    with tempfile.TemporaryDirectory(prefix="pk") as name:
        yield Path(name)


def _listen(directory: Path) -> subprocess.Popen[bytes]:
    sock = directory / "ev.sock"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "progresskit",
            "listen",
            "--socket",
            str(sock),
            "--out",
            str(directory / "events.jsonl"),
        ],
        stderr=subprocess.DEVNULL,
    )
    wait_for(sock.exists, timeout=30, what="the listener's socket")
    return process


def _progress_values(path: Path) -> list[float]:
    return [
        json.loads(line)["progress_pct"]
        for line in path.read_bytes().splitlines()
        if b'"progress"' in line
    ]


def test_events_sent_to_a_listener_killed_before_reading_them_end_up_in_the_file(
    short_tmp: Path,
) -> None:
    listener = _listen(short_tmp)
    events = EventEmitter(
        "r", event_file=short_tmp / "events.jsonl", socket_path=short_tmp / "ev.sock"
    )
    try:
        for i in range(20):
            events.progress("s", float(i))
        wait_for(lambda: len(_progress_values(short_tmp / "events.jsonl")) == 20, timeout=20)
        listener.send_signal(signal.SIGSTOP)  # takes no more lines off the socket...
        for i in range(20, 70):
            events.progress("s", float(i))
        listener.kill()  # ...and dies with them unread
        listener.wait(10)
        for i in range(70, 100):
            events.progress("s", float(i))
        events.close()
    finally:
        with contextlib.suppress(ProcessLookupError):
            listener.kill()
    assert events.sent == 100 and events.failures == 0
    assert set(_progress_values(short_tmp / "events.jsonl")) == {float(i) for i in range(100)}


def test_a_listener_that_stops_reading_costs_one_bounded_wait_and_no_event(
    short_tmp: Path,
) -> None:
    listener = _listen(short_tmp)
    events = EventEmitter(
        "r", event_file=short_tmp / "events.jsonl", socket_path=short_tmp / "ev.sock"
    )
    try:
        events.progress("s", 0.0)
        wait_for(lambda: _progress_values(short_tmp / "events.jsonl") == [0.0], timeout=20)
        listener.send_signal(signal.SIGSTOP)
        start = time.monotonic()
        for i in range(1, 5001):  # far more than the socket's buffer holds
            events.progress("s", float(i), current_target="t" * 200)
        took = time.monotonic() - start
        listener.kill()
        listener.wait(10)
        events.close()
    finally:
        with contextlib.suppress(ProcessLookupError):
            listener.kill()
    assert took < 8, f"emitting took {took:.1f}s: the stalled listener stalled training"
    assert events.sent == 5001 and events.failures == 0
    assert set(_progress_values(short_tmp / "events.jsonl")) == {float(i) for i in range(5001)}


_FIFO_EMITTER = """
import sys
from progresskit.producer.emitter import EventEmitter
events = EventEmitter("r", event_file=sys.argv[1])
for i in range(100):
    events.progress("s", float(i))
print(events.sent, events.failures)
"""


def test_a_fifo_in_place_of_the_event_file_does_not_hang_training(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    os.mkfifo(run / "events.jsonl")
    done = subprocess.run(
        [sys.executable, "-c", _FIFO_EMITTER, str(run / "events.jsonl")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0", "100"]  # counted as failures, never as sent
    assert "events.jsonl" in done.stderr


def test_a_fifo_as_the_listeners_event_file_is_refused(tmp_path: Path, cli: Any) -> None:
    os.mkfifo(tmp_path / "events.jsonl")
    result = cli("listen", "--socket", str(tmp_path / "s"), "--out", str(tmp_path / "events.jsonl"))
    assert result.ret == 2 and "not a regular file" in result.stderr
