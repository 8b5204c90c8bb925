"""The dashboard's HTTP side (docs/serve.md "The dashboard", "The API"): the run page and its
data (``/api/runs/{id}/detail``: curves from disk, config, log tail, lease, status history),
``can_cancel`` in the run view, and the trackers' ``curves()`` behind it. Against a real
``progresskit serve`` on loopback."""

from __future__ import annotations

import itertools
import json
import math
import os
from pathlib import Path

import pytest

from helpers.runs import make_evaluator_run, make_trainer_run
from helpers.serve import add_epoch, serve, start_job
from progresskit.builtin.evaluator import EvaluatorProgressTracker
from progresskit.builtin.multistage import PROGRESS_CURVE, MultiStageProgressTracker
from progresskit.builtin.trainer import TrainerProgressTracker
from progresskit.model.core import ProcessInfo, ProgressInfo, RunStatus, Status
from progresskit.plugin.manager import default_plugin_manager
from progresskit.producer.emitter import EventEmitter
from progresskit.server.detail import thin
from progresskit.server.views import run_id

# -- the trackers' curves ---------------------------------------------------------------------


def test_a_trainers_curves_are_every_epochs_scores(tmp_path: Path) -> None:
    scores = [{"acc": 0.5 + 0.1 * i, "loss": 1.0 / (i + 1), "nested": {"f1": 0.1 * i}}
              for i in range(4)]
    run = make_trainer_run(tmp_path / "r", 4, total=10, scores=scores, epoch_seconds=30)
    curves = TrainerProgressTracker(str(run), {"epochs": 10}).curves()
    assert sorted(curves) == ["acc", "loss", "nested.f1"]
    assert [x for x, _v, _t in curves["acc"]] == [1, 2, 3, 4]
    assert [v for _x, v, _t in curves["acc"]] == pytest.approx([0.5, 0.6, 0.7, 0.8])
    times = [t for _x, _v, t in curves["loss"]]
    assert all(t is not None for t in times)
    assert [b - a for a, b in itertools.pairwise(times)] == pytest.approx([30, 30, 30], abs=0.01)


def test_a_trainers_corrupt_epoch_scores_are_skipped_not_fatal(tmp_path: Path) -> None:
    run = make_trainer_run(tmp_path / "r", 3, total=10)
    (run / "epoch_1" / "validation_scores.json").write_text('{"aggregated": {"acc": ')
    curves = TrainerProgressTracker(str(run), {}).curves()
    assert [x for x, _v, _t in curves["acc"]] == [1.0, 3.0]


def test_an_evaluators_curve_is_its_one_evaluation(tmp_path: Path) -> None:
    run = make_evaluator_run(tmp_path / "e", raw='{"aggregated": {"psnr": 27.5, "ssim": NaN}}')
    curves = EvaluatorProgressTracker(str(run), {}).curves()
    assert list(curves) == ["psnr"]
    assert curves["psnr"][0][:2] == (1.0, 27.5)


def test_a_multi_stage_runs_curves_come_from_every_event(tmp_path: Path) -> None:
    run = tmp_path / "m"
    run.mkdir()
    emitter = EventEmitter("run-1", event_file=run / "events.jsonl")
    emitter.stage_change(None, "training")
    for done, target in enumerate(["a", "b", "c"], start=1):
        emitter.target_complete(target, "success", models_trained=2, metrics={"psnr": 20.0 + done})
        emitter.progress("training", 100.0 * done / 3, targets_complete=done, targets_total=3)
    emitter.close()
    with open(run / "events.jsonl", "ab") as fh:
        fh.write(b"not json\n")
        fh.write(b'{"event_type": "progress", "stage": "training", "progress_pct": 99')  # cut
    tracker = MultiStageProgressTracker(str(run), {})
    curves = tracker.curves()
    assert [v for _x, v, _t in curves["psnr"]] == [21.0, 22.0, 23.0]
    assert [v for _x, v, _t in curves["models_trained"]] == [2.0, 2.0, 2.0]
    progress = [v for _x, v, _t in curves[PROGRESS_CURVE]]
    assert progress[-1] == pytest.approx(100.0) and progress == sorted(progress)
    assert all(x == t for x, _v, t in curves["psnr"]), "x is the event's time"
    assert tracker.curve_axis == "time"


def test_thinning_keeps_the_ends_and_the_limit() -> None:
    points = [(float(i), float(i), None) for i in range(10_001)]
    thinned = thin(points, 2000)
    assert len(thinned) == 2000
    assert thinned[0] == [0.0, 0.0, None] and thinned[-1] == [10000.0, 10000.0, None]
    assert thin(points[:5], 2000) == [list(p) for p in points[:5]]


# -- can_cancel -------------------------------------------------------------------------------


def _status(status: Status, process: ProcessInfo | None) -> RunStatus:
    return RunStatus("/r", "/r", ProgressInfo(), status, process_info=process)


def test_only_a_local_process_makes_a_run_cancellable() -> None:
    hooks = default_plugin_manager().hooks
    here = ProcessInfo(pid=os.getpid(), host=os.uname().nodename)
    assert hooks.can_cancel(_status(Status.RUNNING, here))
    assert hooks.can_cancel(_status(Status.RUNNING, ProcessInfo(pid=os.getpid())))
    assert not hooks.can_cancel(_status(Status.RUNNING, None))
    assert not hooks.can_cancel(_status(Status.RUNNING, ProcessInfo(pid=12, host="elsewhere")))


@pytest.mark.slow
def test_the_view_says_which_runs_can_be_cancelled(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    make_trainer_run(root / "working", 2, total=10)
    make_trainer_run(root / "orphan", 2, total=10)  # active, but no process is known
    make_trainer_run(root / "done", 10, total=10, age=3600)
    job = start_job(root / "working")
    try:
        with serve(root) as server:
            server.wait_for(
                "the job's process",
                lambda: server.run_named("working")["run"]["process_info"] is not None,
                timeout=30,
            )
            views = {v["name"]: v for v in server.json("/api/runs")["runs"]}
            assert views["working"]["can_cancel"] is True
            assert views["orphan"]["active"] is True and views["orphan"]["can_cancel"] is False
            assert views["done"]["can_cancel"] is False
    finally:
        job.kill()
        job.wait()


# -- the run page and its data -------------------------------------------------------------------


@pytest.mark.slow
def test_the_run_detail_reads_the_whole_curve_from_disk_after_a_restart(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    run = make_trainer_run(root / "exp", 6, total=20)
    rid = run_id(str(run))
    with serve(root) as server:
        add_epoch(run, 6)
        server.wait_for("epoch 7", lambda: server.run_named("exp")["run"]["progress"][
            "completed_epochs"] == 7)
    (run / "train_val_0.log").write_text(
        "".join(f"epoch {i} loss {1 / (i + 1):.3f}\n" for i in range(300)) + "step 1/9\rstep 9/9\n"
    )
    with serve(root) as server:  # a new server: its memory is empty, the disk is not
        detail = server.json(f"/api/runs/{rid}/detail")
        curves = detail["curves"]
        assert curves["axis"] == "epoch" and curves["error"] is None
        acc = curves["series"]["acc"]
        assert acc["total"] == 7
        assert [p[0] for p in acc["points"]] == [1, 2, 3, 4, 5, 6, 7]
        assert all(isinstance(p[2], float) for p in acc["points"])
        assert detail["config"] == {"values": detail["config"]["values"], "error": None}
        assert detail["config"]["values"]["epochs"] == 20
        log = detail["log"]
        assert log["file"] == "train_val_0.log" and log["error"] is None
        assert log["lines"][-1] == "step 9/9", "a bar's redraws show as the last one"
        assert len(log["lines"]) == 200 and log["truncated"] is True
        assert detail["lease"] is None
        view = detail["run"]
        assert view["id"] == rid and view["name"] == "exp"
        assert [s["status"] for s in view["statuses"]] == [view["status"]]
        assert view["statuses"][0]["previous"] is None

        status, headers, body = server.request("GET", f"/runs/{rid}")
        assert status == 200 and headers["content-type"].startswith("text/html")
        assert b"/static/run.js" in body
        for path in (f"/runs/{'0' * 16}", "/runs/..%2F..%2Fetc", f"/api/runs/{'0' * 16}/detail",
                     "/api/runs/..%2Fexp/detail"):
            status, _h, body = server.request("GET", path)
            assert status == 404, path
            assert json.loads(body)["error"], path


@pytest.mark.slow
def test_the_status_history_records_each_change_of_status(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    run = make_trainer_run(root / "short", 2, total=3)
    rid = run_id(str(run))
    with serve(root) as server:
        add_epoch(run, 2)
        server.wait_for("the run to finish", lambda: server.run_named("short")["status"]
                        == "finished")
        add_epoch(run, 3)  # a change, no new status: not in the status history
        statuses = server.json(f"/api/runs/{rid}/detail")["run"]["statuses"]
        assert [s["status"] for s in statuses][-1] == "finished"
        assert statuses[-1]["previous"] == statuses[-2]["status"]
        assert len(statuses) == 2
        assert all(math.isfinite(s["t"]) for s in statuses)


@pytest.mark.slow
def test_a_broken_part_of_the_detail_hides_nothing_else(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    run = make_trainer_run(root / "r", 2, total=5)
    (run / ".progresskit-lease.json").write_text("{not a lease")
    os.mkfifo(run / "train_val_9.log")  # a log the reader must refuse, not block on
    rid = run_id(str(run))
    with serve(root) as server:
        detail = server.json(f"/api/runs/{rid}/detail")
        assert detail["lease"]["error"].startswith("lease ignored")
        assert detail["curves"]["series"]["acc"]["total"] == 2
        assert detail["log"]["file"] == "train_val_0.log", "a FIFO is no log"
        assert detail["log"]["lines"] == ["training"]
