"""The socket listener: library class and ``progresskit listen``."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers.foxml import run_seed_code
from progresskit import Status, Tracking, get_plugin_manager
from progresskit.cli.listen import MAX_LINE_BYTES, EventListener, ListenError
from progresskit.producer.emitter import EventEmitter


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A directory with a short path: AF_UNIX socket paths are limited to 107 bytes."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="pk") as name:
        yield Path(name)


@pytest.fixture
def served(short_tmp: Path) -> Iterator[EventListener]:
    listener = EventListener(short_tmp / "ev.sock", short_tmp / "events.jsonl")
    listener.start()
    thread = threading.Thread(target=listener.serve_forever)
    thread.start()
    yield listener
    listener.stop()
    thread.join(10)
    listener.close()


def wait_for(condition: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def lines_of(path: Path) -> list[dict[str, object]]:
    data = path.read_bytes()
    assert not data or data.endswith(b"\n")
    return [json.loads(line) for line in data.splitlines()]


def stop(listener: EventListener, thread: threading.Thread) -> None:
    listener.stop()
    thread.join(10)
    listener.close()


# -- library --------------------------------------------------------------------------------

PROCESSES = 4
PER_PROCESS = 1000


def _socket_writer(sock: str, worker: int, go: Any) -> None:
    emitter = EventEmitter(f"w{worker}", socket_path=sock)
    go.wait(60)
    for i in range(PER_PROCESS):
        emitter.progress("training", 50.0, current_target="x" * (i % 300), targets_complete=i)
    emitter.close()
    assert emitter.failures == 0 and emitter.sent == PER_PROCESS


def test_concurrent_emitters_over_the_socket_arrive_whole_and_complete(short_tmp: Path) -> None:
    sock, out = short_tmp / "ev.sock", short_tmp / "events.jsonl"
    listener = EventListener(sock, out)
    listener.start()
    thread = threading.Thread(target=listener.serve_forever)
    thread.start()
    context = multiprocessing.get_context("spawn")
    go = context.Event()
    workers = [
        context.Process(target=_socket_writer, args=(str(sock), n, go)) for n in range(PROCESSES)
    ]
    try:
        for w in workers:
            w.start()
        go.set()
        for w in workers:
            w.join(120)
            assert w.exitcode == 0
    finally:
        stop(listener, thread)
    got = lines_of(out)
    assert len(got) == PROCESSES * PER_PROCESS == listener.events_written
    assert Counter(e["run_id"] for e in got) == {f"w{n}": PER_PROCESS for n in range(PROCESSES)}
    for n in range(PROCESSES):
        assert [e["targets_complete"] for e in got if e["run_id"] == f"w{n}"] == list(
            range(PER_PROCESS)
        )
    assert listener.connections == PROCESSES and listener.fragments_dropped == 0
    assert not sock.exists()  # the socket file is removed on close


def test_lines_split_across_sends_are_reassembled(served: EventListener) -> None:
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.connect(served.socket_path)
    client.sendall(b'{"event_type": "progress", "st')
    time.sleep(0.05)
    client.sendall(b'age": "a", "progress_pct": 1}\n{"event_type": "run_complete", ')
    time.sleep(0.05)
    client.sendall(b'"status": "success"}\n')
    client.close()
    out = Path(served.out_path)
    wait_for(lambda: served.events_written == 2)
    assert [e["event_type"] for e in lines_of(out)] == ["progress", "run_complete"]


def test_a_connection_closed_mid_line_drops_only_the_fragment(served: EventListener) -> None:
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.connect(served.socket_path)
    client.sendall(b'{"event_type": "run_complete", "status": "success"}\n{"event_type": "pro')
    client.close()
    wait_for(lambda: served.fragments_dropped == 1)
    assert lines_of(Path(served.out_path)) == [{"event_type": "run_complete", "status": "success"}]


def test_a_client_sending_no_newlines_is_cut_off(served: EventListener) -> None:
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.connect(served.socket_path)
    client.settimeout(20)
    with pytest.raises(OSError):  # disconnected by the listener part-way
        client.sendall(b"x" * (MAX_LINE_BYTES * 4))
    client.close()
    wait_for(lambda: served.fragments_dropped == 1)
    assert Path(served.out_path).read_bytes() == b""


def test_a_failing_event_file_is_counted_and_logged_once_per_streak(
    short_tmp: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out_dir = short_tmp / "run"
    out_dir.mkdir()
    listener = EventListener(short_tmp / "ev.sock", out_dir / "events.jsonl")
    listener.start()
    (out_dir / "events.jsonl").unlink()
    out_dir.rmdir()
    thread = threading.Thread(target=listener.serve_forever)
    thread.start()
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.connect(listener.socket_path)
    try:
        with caplog.at_level(logging.ERROR, logger="progresskit.cli.listen"):
            for i in range(3):
                client.sendall(b'{"n": %d}\n' % i)
                wait_for(lambda i=i: listener.write_failures == i + 1)
            out_dir.mkdir()
            client.sendall(b'{"n": 3}\n')
            wait_for(lambda: listener.events_written == 1)
    finally:
        client.close()
        stop(listener, thread)
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 1
    assert lines_of(out_dir / "events.jsonl") == [{"n": 3}]


def test_events_sent_just_before_stop_are_still_written(short_tmp: Path) -> None:
    sock, out = short_tmp / "ev.sock", short_tmp / "events.jsonl"
    listener = EventListener(sock, out)
    listener.start()  # bound, but not serving yet: connections wait in the backlog
    emitter = EventEmitter("r", socket_path=sock)
    for i in range(10):
        emitter.progress("training", i)
    assert emitter.sent == 10
    listener.close()
    assert [e["progress_pct"] for e in lines_of(out)] == list(range(10))


def test_a_stale_socket_file_is_replaced(short_tmp: Path) -> None:
    sock = short_tmp / "ev.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(sock))
    stale.close()  # the file stays, nobody listens
    with EventListener(sock, short_tmp / "events.jsonl") as listener:
        assert listener.connections == 0 and sock.exists()
    assert not sock.exists()


def test_refuses_a_live_socket_a_regular_file_and_an_unwritable_event_file(
    short_tmp: Path, served: EventListener
) -> None:
    with pytest.raises(ListenError, match="another listener already accepts connections on"):
        EventListener(served.socket_path, short_tmp / "other.jsonl").start()
    plain = short_tmp / "notasocket"
    plain.write_text("precious")
    with pytest.raises(ListenError, match="exists and is not a socket; refusing to replace it"):
        EventListener(plain, short_tmp / "other.jsonl").start()
    assert plain.read_text() == "precious"
    with pytest.raises(ListenError, match=r"cannot append to event file .*missing"):
        EventListener(short_tmp / "x.sock", short_tmp / "missing" / "events.jsonl").start()


def test_the_seed_emitter_socket_path_has_a_receiver(short_tmp: Path) -> None:
    run = short_tmp / "run"
    run.mkdir()
    sock = short_tmp / "foxml.sock"
    listener = EventListener(sock, run / "events.jsonl")
    listener.start()
    thread = threading.Thread(target=listener.serve_forever)
    thread.start()
    script = (
        "from helpers import seed_training_events as s\n"
        "results = {'a': (True, 1, 0.6), 'b': (True, 2, 0.7)}\n"
        "s.run_seed_pipeline('via-socket', ['a', 'b'], results)\n"
    )
    try:
        run_seed_code(script, event_file=short_tmp / "seed-fallback.jsonl", socket=sock)
        wait_for(lambda: listener.events_written == 13)  # the seed flow with two targets
    finally:
        stop(listener, thread)
    assert not (short_tmp / "seed-fallback.jsonl").exists()  # all went through the socket
    run_status = Tracking(get_plugin_manager()).status(str(run), discover_processes=False)
    assert run_status.status is Status.FINISHED
    assert [i.name for i in run_status.progress.completed_items] == ["a", "b"]


# -- command line ---------------------------------------------------------------------------


def start_cli(sock: Path, out: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "progresskit", "listen", "--socket", str(sock), "--out", str(out)],
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(lambda: sock.exists() or proc.poll() is not None)
    assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
    return proc


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_cli_relays_events_and_stops_cleanly_on_a_signal(short_tmp: Path, signum: int) -> None:
    sock, out = short_tmp / "ev.sock", short_tmp / "events.jsonl"
    proc = start_cli(sock, out)
    try:
        emitter = EventEmitter("cli", socket_path=sock)
        for i in range(50):
            emitter.progress("training", i)
        emitter.run_complete()
        emitter.close()
        assert emitter.sent == 51
        wait_for(lambda: out.exists() and out.read_bytes().count(b"\n") == 51)
    finally:
        proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 0, stderr
    assert "listening on" in stderr and "51 events from 1 connections" in stderr
    assert not sock.exists()
    assert [e["event_type"] for e in lines_of(out)][-1] == "run_complete"


def test_cli_without_socket_or_out_is_a_usage_error(short_tmp: Path) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PROGRESSKIT_EVENT_SOCKET", "PROGRESSKIT_EVENT_FILE")
    }
    result = subprocess.run(
        [sys.executable, "-m", "progresskit", "listen", "--out", str(short_tmp / "e.jsonl")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 2
    assert "listen: missing --socket (or $PROGRESSKIT_EVENT_SOCKET)" in result.stderr


def test_cli_help_describes_the_listen_options() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "progresskit", "listen", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0
    assert "usage: progresskit listen" in result.stdout
    assert "--socket PATH" in result.stdout and "--out FILE" in result.stdout
