"""The producer API: wire format, destinations, concurrent appenders, never raising."""

from __future__ import annotations

import decimal
import json
import logging
import multiprocessing
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from helpers.foxml import run_seed_code
from progresskit.cli.listen import EventListener
from progresskit.compat import foxml
from progresskit.producer.emitter import EventEmitter, append_bytes


def read_events(path: Path) -> list[dict[str, Any]]:
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b"", "the file must end with a complete line"
    return [json.loads(line) for line in lines[:-1]]


def calls(emitter: Any) -> None:
    """The same calls, made on our emitter and on the seed's (both have the seed's names)."""
    emitter.emit_stage_change(None, "ranking")
    emitter.emit_progress("ranking", 0)
    emitter.emit_progress(
        "feature_selection", 12.5, current_target="ret_5m", targets_complete=1, targets_total=8
    )
    emitter.emit_target_complete("ret_5m", "success", models_trained=3, best_auc=0.65)
    emitter.emit_target_complete("ret_1h", "failed")
    emitter.emit_error("CUDA out of memory", "oom", False)
    emitter.emit_run_complete("cancelled")


# -- wire format --------------------------------------------------------------------------


def test_lines_are_byte_identical_to_the_seed_emitter_except_the_timestamp(tmp_path: Path) -> None:
    ours, seeds = tmp_path / "ours.jsonl", tmp_path / "seed.jsonl"
    calls(EventEmitter("run-7", event_file=ours))
    script = (
        "from helpers import seed_training_events as s\n"
        "import test_events\n"
        "test_events.calls(s.TrainingEventEmitter('run-7'))\n"
    )
    run_seed_code(script, event_file=seeds, socket=tmp_path / "nobody.sock")

    def without_time(path: Path) -> list[str]:
        out = []
        for line in path.read_text().splitlines():
            event = json.loads(line)
            stamp = datetime.fromisoformat(event["timestamp"])
            assert stamp.utcoffset() == timedelta(0), "timestamps are UTC"
            out.append(line.replace(event["timestamp"], "T"))
        return out

    assert without_time(ours) == without_time(seeds)
    assert len(without_time(ours)) == 7


def test_every_event_carries_type_run_id_and_timestamp(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    emitter = EventEmitter("r", event_file=path)
    emitter.progress("training", 50.0, current_target="t", targets_complete=1, targets_total=2)
    emitter.stage_change("ranking", "training")
    emitter.target_complete("t", "success", models_trained=2, best_auc=0.7, metrics={"ic": 0.04})
    emitter.error("disk slow", "io")
    emitter.run_complete()
    got = read_events(path)
    assert [e["event_type"] for e in got] == [
        "progress",
        "stage_change",
        "target_complete",
        "error",
        "run_complete",
    ]
    assert all(e["run_id"] == "r" and e["timestamp"] for e in got)
    assert got[2]["metrics"] == {"ic": 0.04} and got[2]["best_auc"] == 0.7
    assert got[3]["recoverable"] is True and got[4]["status"] == "success"
    assert emitter.sent == 5 and emitter.failures == 0


def test_non_finite_and_foreign_numbers_are_written_as_json(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    emitter = EventEmitter("r", event_file=path)
    emitter.target_complete("a", "success", best_auc=float("nan"), metrics={"loss": float("inf")})
    emitter.target_complete("b", "success", best_auc=decimal.Decimal("0.625"))  # type: ignore[arg-type]
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text  # not JSON; serde_json rejects them
    first, second = read_events(path)
    assert first["best_auc"] is None and first["metrics"] == {"loss": None}
    assert second["best_auc"] == 0.625


# -- destinations -------------------------------------------------------------------------


def test_destination_from_argument_then_our_variable_then_the_seeds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ours, seeds, given = tmp_path / "ours", tmp_path / "seeds", tmp_path / "given"
    monkeypatch.setenv("FOXML_TRAINING_EVENT_FILE", str(seeds))
    monkeypatch.delenv("PROGRESSKIT_EVENT_FILE", raising=False)
    monkeypatch.delenv("PROGRESSKIT_EVENT_SOCKET", raising=False)
    monkeypatch.delenv("FOXML_TRAINING_EVENT_SOCKET", raising=False)
    assert EventEmitter("r").event_file == str(seeds)
    monkeypatch.setenv("PROGRESSKIT_EVENT_FILE", str(ours))
    assert EventEmitter("r").event_file == str(ours)
    emitter = EventEmitter("r", event_file=given)
    emitter.run_complete()
    assert emitter.event_file == str(given) and given.exists()
    assert not ours.exists() and not seeds.exists()


def test_without_destination_events_are_counted_and_logged_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    for name in (
        "PROGRESSKIT_EVENT_FILE",
        "PROGRESSKIT_EVENT_SOCKET",
        "FOXML_TRAINING_EVENT_FILE",
        "FOXML_TRAINING_EVENT_SOCKET",
    ):
        monkeypatch.delenv(name, raising=False)
    with caplog.at_level(logging.WARNING, logger="progresskit.producer.emitter"):
        emitter = EventEmitter("r")
        for i in range(20):
            emitter.progress("training", i)
    assert emitter.failures == 20 and emitter.sent == 0
    assert len(caplog.records) == 1
    assert "no event destination" in caplog.records[0].getMessage()


def test_a_failing_file_never_raises_and_warns_once_per_streak(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    target = tmp_path / "missing_dir" / "events.jsonl"
    emitter = EventEmitter("r", event_file=target)
    with caplog.at_level(logging.WARNING, logger="progresskit.producer.emitter"):
        for i in range(50):
            emitter.progress("training", i)
        assert emitter.failures == 50
        assert len(caplog.records) == 1
        assert str(target) in caplog.records[0].getMessage()
        target.parent.mkdir()
        emitter.progress("training", 51)  # recovered: delivered, warning re-armed
        assert emitter.sent == 1
        target.unlink()
        target.parent.rmdir()
        emitter.progress("training", 52)
        emitter.progress("training", 53)
    assert emitter.failures == 52
    assert len(caplog.records) == 2


def test_an_unencodable_event_is_a_counted_failure_not_an_exception(tmp_path: Path) -> None:
    loop: dict[str, Any] = {}
    loop["self"] = loop
    emitter = EventEmitter("r", event_file=tmp_path / "e.jsonl")
    emitter.target_complete("t", "success", metrics=loop)
    assert emitter.failures == 1 and "target_complete" in (emitter.last_error or "")


def test_socket_when_a_listener_accepts_else_the_file(tmp_path: Path) -> None:
    sock, out, fallback = tmp_path / "ev.sock", tmp_path / "out.jsonl", tmp_path / "fb.jsonl"
    listener = EventListener(sock, out)
    listener.start()
    thread = threading.Thread(target=listener.serve_forever)
    thread.start()
    try:
        emitter = EventEmitter("r", event_file=fallback, socket_path=sock)
        for i in range(100):
            emitter.progress("training", i)
        emitter.close()
    finally:
        listener.stop()
        thread.join(10)
        listener.close()
    assert [e["progress_pct"] for e in read_events(out)] == list(range(100))
    assert not fallback.exists()
    # The listener is gone: the next events go to the file, none is lost or raised.
    for i in range(100, 110):
        emitter.progress("training", i)
    assert [e["progress_pct"] for e in read_events(fallback)] == list(range(100, 110))
    assert emitter.sent == 110 and emitter.failures == 0


def test_a_listener_dying_mid_run_loses_no_event(tmp_path: Path) -> None:
    sock, out = tmp_path / "ev.sock", tmp_path / "events.jsonl"
    listener = EventListener(sock, out)
    listener.start()
    thread = threading.Thread(target=listener.serve_forever)
    thread.start()
    emitter = EventEmitter("r", event_file=out, socket_path=sock)
    emitter.progress("training", 0)
    listener.stop()
    thread.join(10)
    listener.close()  # the emitter's connection is closed under it
    for i in range(1, 20):
        emitter.progress("training", i)
    assert [e["progress_pct"] for e in read_events(out)] == list(range(20))
    assert emitter.failures == 0


def _emit_from_fork(emitter: EventEmitter) -> None:
    for i in range(50):
        emitter.progress("child", i)
    assert emitter.failures == 0


def test_a_forked_child_opens_its_own_connection(tmp_path: Path) -> None:
    sock, out = tmp_path / "ev.sock", tmp_path / "events.jsonl"
    listener = subprocess.Popen(
        [sys.executable, "-m", "progresskit", "listen", "--socket", str(sock), "--out", str(out)],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for _ in range(2000):
            if sock.exists() or listener.poll() is not None:
                break
            time.sleep(0.01)
        emitter = EventEmitter("r", socket_path=sock)
        emitter.progress("parent", 0)  # connected before the fork
        child = multiprocessing.get_context("fork").Process(target=_emit_from_fork, args=(emitter,))
        child.start()
        for i in range(1, 50):
            emitter.progress("parent", i)
        child.join(60)
        assert child.exitcode == 0
        emitter.close()
        for _ in range(2000):
            if out.exists() and out.read_bytes().count(b"\n") == 100:
                break
            time.sleep(0.01)
    finally:
        listener.terminate()
        _, stderr = listener.communicate(timeout=20)
    got = read_events(out)
    assert Counter(e["stage"] for e in got) == {"parent": 50, "child": 50}
    assert "100 events from 2 connections" in stderr


# -- module-level functions (the seed's convenience API) ----------------------------------


def test_module_functions_use_the_process_wide_emitter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(foxml, "_emitter", None)
    foxml.emit_progress("ranking", 10)  # no emitter yet: a no-op, as in the seed
    assert foxml.get_emitter() is None
    path = tmp_path / "events.jsonl"
    emitter = foxml.init_training_events("run-1", event_file=path)
    assert foxml.get_training_emitter() is emitter is foxml.get_emitter()
    foxml.emit_stage_change(None, "ranking")
    foxml.emit_progress("ranking", 10, targets_total=4)
    foxml.emit_target_complete("a", "success", best_auc=0.5)
    foxml.emit_error("warn", "data")
    foxml.emit_run_complete("success")
    assert [e["event_type"] for e in read_events(path)] == [
        "stage_change",
        "progress",
        "target_complete",
        "error",
        "run_complete",
    ]
    monkeypatch.setattr(foxml, "_emitter", None)


# -- several writer processes -------------------------------------------------------------

PROCESSES = 4
PER_PROCESS = 2500


def _writer(path: str, worker: int, go: Any) -> None:
    emitter = EventEmitter(f"w{worker}", event_file=path)
    go.wait(60)  # every writer starts at once, so their appends really overlap
    # Every 10th event is longer than PIPE_BUF (4096 bytes): O_APPEND single writes keep
    # regular-file lines whole regardless of size.
    for i in range(PER_PROCESS):
        target = f"t{i}" + ("x" * 6000 if i % 10 == 0 else "")
        emitter.progress("training", i % 101, current_target=target, targets_complete=i)
    assert emitter.failures == 0


def test_concurrent_processes_append_whole_lines_and_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    context = multiprocessing.get_context("spawn")
    go = context.Event()
    workers = [context.Process(target=_writer, args=(str(path), n, go)) for n in range(PROCESSES)]
    for w in workers:
        w.start()
    go.set()
    for w in workers:
        w.join(120)
        assert w.exitcode == 0
    got = read_events(path)  # every line parses
    assert len(got) == PROCESSES * PER_PROCESS
    assert Counter(e["run_id"] for e in got) == {f"w{n}": PER_PROCESS for n in range(PROCESSES)}
    for n in range(PROCESSES):
        sequence = [e["targets_complete"] for e in got if e["run_id"] == f"w{n}"]
        assert sequence == list(range(PER_PROCESS))  # each writer's order is kept


def test_append_bytes_creates_the_file_and_appends(tmp_path: Path) -> None:
    path = str(tmp_path / "f")
    append_bytes(path, b"a\n")
    append_bytes(path, b"")
    append_bytes(path, b"b\n")
    assert Path(path).read_bytes() == b"a\nb\n"
