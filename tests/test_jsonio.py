"""One JSON writer: a NaN or an infinity anywhere becomes ``null`` on every path (the
``status --json`` document, ``watch`` JSON lines, webhook bodies, the server, the
``json_file`` and ``stdout`` sinks, ``to_json``), never a traceback."""

from __future__ import annotations

import json
import math
import signal
import textwrap
from pathlib import Path
from typing import Any

import pytest

from helpers.cli import run_cli, start_cli
from helpers.webhook_receiver import Receiver, wait_for
from progresskit import (
    Change,
    ProgressInfo,
    RunStatus,
    Status,
    get_plugin_manager,
    to_json,
)
from progresskit.formats import jsonio
from progresskit.plugin.sink import build_sinks
from progresskit.server.views import dumps as server_dumps
from progresskit.server.views import run_view

NAN, INF = float("nan"), float("inf")

#: A third-party tracker whose run has diverged: NaN and infinite metrics and scores.
DIVERGED_PLUGIN = textwrap.dedent(
    """
    import time
    from progresskit import BaseProgressTracker, ProgressInfo, TrackerSpec

    class Diverged(BaseProgressTracker):
        runner_type = "diverged"
        expected_files = ("never.txt",)

        def calculate_progress(self):
            return ProgressInfo(
                runner_type="diverged",
                progress_percentage=50.0,
                last_update_time=time.time(),
                metrics={"loss": float("nan"), "grad_norm": float("inf")},
                latest_score={"acc": float("-inf")},
                best_score={"acc": float("nan")},
            )

    tracker = TrackerSpec(Diverged, claim=lambda t: t.has_file("diverged.txt"),
                          expects="diverged.txt file")
    """
)


def _diverged_site(tmp_path: Path) -> dict[str, str]:
    """An installed distribution providing the ``diverged`` tracker; its PYTHONPATH."""
    site = tmp_path / "site"
    info = site / "pk_diverged-1.0.dist-info"
    info.mkdir(parents=True)
    (site / "pk_diverged.py").write_text(DIVERGED_PLUGIN)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: pk_diverged\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[progresskit]\npk_diverged = pk_diverged:tracker\n")
    return {"PYTHONPATH": str(site)}


def _diverged_run(root: Path) -> Path:
    run = root / "diverged"
    run.mkdir(parents=True)
    (run / "diverged.txt").write_text("loss went to NaN at step 812\n")
    return run


def _assert_nulls(progress: dict[str, Any]) -> None:
    assert progress["metrics"] == {"loss": None, "grad_norm": None}
    assert progress["latest_score"] == {"acc": None}
    assert progress["best_score"] == {"acc": None}


def _diverged_status() -> RunStatus:
    progress = ProgressInfo(
        runner_type="diverged",
        progress_percentage=50.0,
        metrics={"loss": NAN, "grad_norm": INF},
        latest_score={"acc": -INF},
        best_score={"acc": NAN},
        details={"note": "NaN"},
    )
    return RunStatus("diverged", "/runs/diverged", progress, Status.RUNNING)


# -- the writer -------------------------------------------------------------------------------


def test_non_finite_numbers_are_null_at_any_depth() -> None:
    document = {"a": NAN, "b": [1.5, INF, {"c": -INF}], "d": (NAN,), "e": "NaN", "f": 2}
    assert json.loads(jsonio.dumps(document)) == {
        "a": None, "b": [1.5, None, {"c": None}], "d": [None], "e": "NaN", "f": 2,
    }
    assert "NaN" not in jsonio.dumps({"x": NAN}) and "Infinity" not in jsonio.dumps([INF])


def test_a_finite_document_is_written_as_json_dumps_writes_it() -> None:
    document = {"b": [1, 2.5, None, True], "a": {"z": "é", "y": 1e300}}
    assert jsonio.dumps(document) == json.dumps(document)
    assert jsonio.dumps(document, indent=2, sort_keys=True) == json.dumps(
        document, indent=2, sort_keys=True
    )
    assert jsonio.dumps(document, compact=True) == json.dumps(document, separators=(",", ":"))


def test_what_default_makes_of_an_object_is_cleaned_too() -> None:
    class Scalar:  # a numpy-style scalar that is no float subclass
        def __init__(self, value: float):
            self.value = value

    text = jsonio.dumps({"loss": Scalar(NAN), "lr": Scalar(0.1)}, default=lambda o: o.value)
    assert json.loads(text) == {"loss": None, "lr": 0.1}
    with pytest.raises(TypeError):
        jsonio.dumps({"loss": Scalar(1.0)})


def test_to_json_of_a_diverged_run() -> None:
    data = json.loads(to_json(_diverged_status(), indent=2))
    _assert_nulls(data["progress"])
    assert data["progress"]["details"] == {"note": "NaN"}  # a string stays a string


# -- every path that writes JSON ----------------------------------------------------------------


def test_status_json_of_a_diverged_run(tmp_path: Path) -> None:
    env = _diverged_site(tmp_path)
    run = _diverged_run(tmp_path / "runs")
    (tmp_path / "progresskit.yaml").write_text("sinks:\n  - type: json_file\n")
    result = run_cli("status", str(run), "--json", cwd=tmp_path, env=env)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.ret in (0, 1), result.stderr
    (only,) = json.loads(result.stdout)["runs"]
    _assert_nulls(only["progress"])
    # The json_file sink wrote the same nulls to the run's progress.json.
    _assert_nulls(json.loads((run / "progress.json").read_text()))


def test_watch_json_lines_of_a_diverged_run(tmp_path: Path) -> None:
    env = _diverged_site(tmp_path)
    root = tmp_path / "runs"
    _diverged_run(root)
    process, lines = start_cli(
        "watch", str(root), "--json", "--mode", "poll", "--heartbeat", "0", cwd=tmp_path, env=env
    )
    try:
        first = json.loads(lines.get(timeout=60))
    finally:
        process.send_signal(signal.SIGTERM)
        _out, err = process.communicate(timeout=60)
    assert "Traceback" not in err, err
    assert first["kind"] == "new"
    _assert_nulls(first["run"]["progress"])


def test_webhook_body_of_a_diverged_run(tmp_path: Path) -> None:
    receiver = Receiver()
    try:
        entry = {"type": "webhook", "url": receiver.url, "spool_dir": str(tmp_path / "spool")}
        (sink,) = build_sinks([entry], get_plugin_manager().sink_types, "test.yaml")
        change = Change("changed", _diverged_status(), previous_status=Status.RUNNING)
        sink.emit_changes([change])
        wait_for(lambda: change.id in receiver.accepted_ids(), what="the diverged run's event")
        sink.close()
        (body,) = receiver.payloads(change.id)
    finally:
        receiver.stop()
    _assert_nulls(body["run"]["progress"])


def test_server_documents_of_a_diverged_run() -> None:
    text = server_dumps({"type": "change", "run": run_view(_diverged_status(), "/runs")})
    assert "NaN" not in text.replace('"NaN"', "") and "Infinity" not in text
    _assert_nulls(json.loads(text)["run"]["run"]["progress"])


def test_stdout_sink_json_lines_of_a_diverged_run(capsys: pytest.CaptureFixture[str]) -> None:
    (sink,) = build_sinks(
        [{"type": "stdout", "format": "jsonl"}], get_plugin_manager().sink_types, "test.yaml"
    )
    sink.emit([_diverged_status()])
    sink.close()
    _assert_nulls(json.loads(capsys.readouterr().out)["progress"])
    assert math.isnan(_diverged_status().progress.metrics["loss"])  # only the text changes
