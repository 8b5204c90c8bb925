"""Nothing vanishes: run-like directories no tracker claims are reported by a scan, the
``status`` table and ``--json``, and change the exit code (docs/cli.md)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import progresskit
from helpers.runs import make_trainer_run
from helpers.serve import serve
from progresskit.engine.session import Tracking
from progresskit.model.unclaimed import ScanResult
from progresskit.testing import CliResult, make_run_dir, plugin_manager, run_cli


def unclaimed_tree(root: Path) -> Path:
    """A trainer run next to three directories no tracker claims, a heartbeat-only run, and
    a project config above them (the parent of runs, not a run)."""
    make_run_dir(root, {"config.yaml": "project: demo\n"})
    make_trainer_run(root / "cifar", 2, total=4)
    make_run_dir(root / "notes_run", {"config.json": json.dumps({"lr": 0.1}), "notes.md": "x\n"})
    # Checkpoints of a script whose logger no installed plugin reads (a Lightning
    # version_N/ with its hparams.yaml is the progresskit-lightning plugin's run).
    make_run_dir(root / "lit" / "run", {"checkpoints/epoch=0-step=10.ckpt": b"PK\x03\x04"})
    # Weights left by a script that wrote nothing else (a *.log would be the log tracker's).
    make_run_dir(root / "weights", {"model.safetensors": b"\x08\x00", "README.md": "x\n"})
    (root / "empty").mkdir()
    beat = root / "beat"
    beat.mkdir()
    hb = progresskit.heartbeat(beat, expect_every=3600.0)
    hb.close()
    return root


def test_scan_lists_runs_and_what_looks_like_runs_but_no_tracker_claims(tmp_path: Path) -> None:
    root = unclaimed_tree(tmp_path / "runs")
    result = Tracking(plugin_manager()).scan(str(root), processes={})
    assert isinstance(result, ScanResult) and isinstance(result, list)
    runs = {os.path.relpath(r.work_dir, root): r for r in result}
    assert set(runs) == {"cifar", "beat"}  # a heartbeat-only job is a run
    lost = {os.path.relpath(u.path, root): u for u in result.unrecognised}
    assert set(lost) == {"notes_run", os.path.join("lit", "run"), "weights"}
    assert lost["notes_run"].files == ("config.json",)
    assert lost[os.path.join("lit", "run")].files == ("checkpoints/",)
    assert lost["weights"].files == ("model.safetensors",)
    assert any(e.startswith("trainer: ") for e in lost["notes_run"].expects)
    assert "no installed tracker claims it" in lost["notes_run"].reason


def test_the_library_scan_keeps_its_list_shape(tmp_path: Path) -> None:
    root = unclaimed_tree(tmp_path / "runs")
    result = progresskit.scan(root)
    assert [os.path.basename(r.work_dir) for r in result] == ["beat", "cifar"]
    assert len(result.unrecognised) == 3  # type: ignore[attr-defined]


def statuses(result: CliResult) -> dict[str, object]:
    document: dict[str, object] = json.loads(result.stdout)
    return document


def test_status_json_table_and_exit_code(tmp_path: Path) -> None:
    root = unclaimed_tree(tmp_path / "runs")
    result = run_cli("status", str(root), "--json", cwd=tmp_path)
    assert result.ret == 1, result.stderr  # the runs are healthy; the unclaimed ones are not
    document = statuses(result)
    assert document["summary"]["unrecognised"] == 3  # type: ignore[index]
    entries = document["unrecognised"]
    assert [os.path.basename(e["path"]) for e in entries] == [  # type: ignore[attr-defined]
        "run", "notes_run", "weights"]
    assert entries[1]["files"] == ["config.json"]  # type: ignore[index]
    table = run_cli("status", str(root), cwd=tmp_path)
    assert table.ret == 1
    assert "3 unrecognised" in table.stdout
    assert "notes_run: looks like a run (config.json)" in table.stdout
    # Without them, the same tree is healthy.
    for name in ("notes_run", "weights", "lit"):
        for path in sorted((root / name).rglob("*"), reverse=True):
            path.rmdir() if path.is_dir() else path.unlink()
        (root / name).rmdir()
    clean = run_cli("status", str(root), "--json", cwd=tmp_path)
    assert clean.ret == 0, clean.stdout
    assert statuses(clean)["unrecognised"] == []


def test_the_dashboard_api_lists_them(tmp_path: Path) -> None:
    root = unclaimed_tree(tmp_path / "runs")
    with serve(root) as server:
        deadline = time.monotonic() + 20
        while (body := server.json("/api/unrecognised"))["count"] == 0:
            assert time.monotonic() < deadline, "no unrecognised entry after 20 s"
            time.sleep(0.1)
        _status, _headers, page = server.request("GET", "/")
    assert body["count"] == 3
    assert [os.path.basename(e["path"]) for e in body["unrecognised"]] == [
        "run", "notes_run", "weights"]
    assert body["unrecognised"][1]["files"] == ["config.json"]
    assert b'id="unrecognised"' in page


def test_a_log_matching_a_trackers_pattern_is_evidence(tmp_path: Path) -> None:
    # With the log tracker off (-p no:log), a directory holding only a trainer-style log is
    # claimed by nothing: it is listed, not dropped.
    root = tmp_path / "runs"
    make_trainer_run(root / "cifar", 2, total=4)
    make_run_dir(root / "crashed_early", {"train_val_0.log": "epoch 0 step 3 loss 2.3\n"})
    result = run_cli("-p", "no:log", "status", str(root), "--json", cwd=tmp_path)
    assert result.ret == 1, result.stderr
    [entry] = statuses(result)["unrecognised"]  # type: ignore[misc]
    assert os.path.basename(entry["path"]) == "crashed_early"
    assert entry["files"] == ["train_val_0.log"]


def test_a_job_dir_with_its_run_two_levels_down_is_their_parent(tmp_path: Path) -> None:
    # A job's own dir holding its console log, with the run its logger wrote two levels
    # below (Lightning's CSVLogger(save_dir="out", name="csv") under the job's cwd): the
    # job dir is the parent of a run, not a run that vanished, at any depth.
    root = tmp_path / "job"
    make_run_dir(root, {"train.log": "starting\n"})
    make_trainer_run(root / "out" / "csv", 2, total=4)
    result = Tracking(plugin_manager()).scan(str(root), processes={})
    assert [os.path.relpath(r.work_dir, root) for r in result] == [os.path.join("out", "csv")]
    assert result.unrecognised == []
    # Also below the root given, and with a sibling whose runs are one level down.
    make_trainer_run(tmp_path / "other" / "run", 1, total=4)
    result = Tracking(plugin_manager()).scan(str(tmp_path), processes={})
    assert result.unrecognised == []
