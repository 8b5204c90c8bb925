from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from helpers.runs import make_trainer_run
from progresskit import ProgressInfo, get_plugin_manager, load_progress_file, scan
from progresskit.plugin.sink import build_sinks


def _sinks(*entries: dict[str, object]):  # type: ignore[no-untyped-def]
    return build_sinks(list(entries), get_plugin_manager().sink_types, "test")


def test_json_file_writes_progress_json_that_loads_back(tmp_path: Path) -> None:
    run = make_trainer_run(tmp_path / "r", 2, total=4)
    runs = scan(run)
    (sink,) = _sinks({"type": "json_file"})
    sink.emit(runs)
    loaded = load_progress_file(run / "progress.json")
    assert loaded == runs[0].progress


def test_json_file_skips_unchanged_content(tmp_path: Path) -> None:
    run = make_trainer_run(tmp_path / "r", 2, total=4)
    runs = scan(run)
    (sink,) = _sinks({"type": "json_file"})
    sink.emit(runs)
    inode = os.stat(run / "progress.json").st_ino
    sink.emit(runs)
    assert os.stat(run / "progress.json").st_ino == inode  # not replaced again


def test_json_file_status_contents_and_template(tmp_path: Path) -> None:
    run = make_trainer_run(tmp_path / "r", 2, total=4)
    out = tmp_path / "out"
    out.mkdir()
    (sink,) = _sinks({"type": "json_file", "path": str(out / "{name}.json"), "contents": "status"})
    sink.emit(scan(run))
    data = json.loads((out / "r.json").read_text())
    assert data["status"] == "running" and data["progress"]["completed_epochs"] == 2


def test_unwritable_target_is_skipped_with_one_warning(tmp_path: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    # A path below a regular file cannot be written, even by root (ENOTDIR).
    run = make_trainer_run(tmp_path / "r", 2, total=4)
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    runs = scan(run)
    (sink,) = _sinks({"type": "json_file", "path": str(blocker / "{name}.json")})
    sink.emit(runs)
    sink.emit(runs)
    assert sum("cannot write" in r.message for r in caplog.records) == 1


def test_a_status_query_writes_nothing(tmp_path: Path) -> None:
    make_trainer_run(tmp_path / "r", 2, total=4, age=100)
    before = sorted((p, p.stat().st_mtime_ns) for p in tmp_path.rglob("*"))
    scan(tmp_path)
    assert sorted((p, p.stat().st_mtime_ns) for p in tmp_path.rglob("*")) == before


def test_json_file_readers_never_see_partial_files(tmp_path: Path) -> None:
    run = make_trainer_run(tmp_path / "r", 2, total=4)
    (sink,) = _sinks({"type": "json_file"})
    base = scan(run)[0]
    import attrs

    stop = threading.Event()
    errors: list[str] = []

    def reader() -> None:
        while not stop.is_set():
            try:
                load_progress_file(run / "progress.json")
            except FileNotFoundError:
                continue
            except Exception as exc:  # any partial read is a failure
                errors.append(repr(exc))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(300):
            info = attrs.evolve(base.progress, warnings=("x" * (i % 50),) * (i % 7))
            sink.emit([attrs.evolve(base, progress=info)])
    finally:
        stop.set()
        thread.join()
    assert errors == []
    assert isinstance(load_progress_file(run / "progress.json"), ProgressInfo)


def test_stdout_jsonl(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    make_trainer_run(tmp_path / "a", 1, total=2)
    make_trainer_run(tmp_path / "b", 2, total=2)
    (sink,) = _sinks({"type": "stdout", "format": "jsonl"})
    sink.emit(scan(tmp_path))
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["status"] for line in lines] == ["running", "finished"]
