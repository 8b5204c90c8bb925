"""Runs of every file format a tracker reads, written by the real writers, for the hostile
input tests (tests/test_hostile_files.py, tests/test_fuzz_formats.py).

Each format's document comes from the code that writes it for real: ``progresskit.track``
(``progresskit-progress.json``), :class:`~progresskit.StatusFileWriter` (Brush's
``training_status.json``), the event builders and encoder (FoxML's ``events.jsonl``),
:func:`~progresskit.formats.lease.dump_lease` (the lease), the trainer test runs
(``epoch_N/``, ``config.json``, ``progress.json``) and the captured Hugging Face
``trainer_state.json`` of the hf plugin's tests.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import progresskit
from helpers.runs import make_trainer_run
from progresskit.engine.session import Tracking
from progresskit.formats.events import encode_event, progress_event, stage_change_event, stamp
from progresskit.formats.jsonio import to_json
from progresskit.formats.lease import Lease, dump_lease, process_start_time, this_host
from progresskit.testing import plugin_manager

REPO = Path(__file__).resolve().parents[2]
HF_STATE = REPO / "plugins/progresskit-hf/tests/data/checkpoint-100_trainer_state.json"


def progress_run(run: Path) -> Path:
    """A ``progresskit.track`` run, three steps of ten done, still open."""
    run.mkdir(parents=True, exist_ok=True)
    path = run / "progresskit-progress.json"
    with progresskit.Progress(10, run_dir=run, desc="train", interval=0.01) as bar:
        bar.update(3)
        deadline = time.monotonic() + 10
        while b'"steps": 3' not in (path.read_bytes() if path.exists() else b""):
            if time.monotonic() > deadline:
                raise AssertionError(f"{path}: not written within 10 s")
            time.sleep(0.01)
        shutil.copy(path, run / "snapshot")
    os.replace(run / "snapshot", run / "progresskit-progress.json")
    _forget_lease(run)
    return run


def brush_run(run: Path) -> Path:
    """A Brush run written by StatusFileWriter: 1,500 of 10,000 iterations."""
    run.mkdir(parents=True, exist_ok=True)
    writer = progresskit.StatusFileWriter(run / "training_status.json", total_iterations=10000)
    writer.update(1500)
    writer.flush()
    shutil.copy(run / "training_status.json", run / "snapshot")
    writer.close()
    os.replace(run / "snapshot", run / "training_status.json")
    _forget_lease(run)
    return run


def events_run(run: Path) -> Path:
    """A FoxML multi-stage run's event log: two stages, progress in the second."""
    run.mkdir(parents=True, exist_ok=True)
    lines = []
    now = time.time()
    for i, event in enumerate(
        (stage_change_event(None, "ranking"), stage_change_event("ranking", "training"),
         progress_event("training", 40.0, "y1", 2, 5))
    ):
        stamp(event, "run-1", now - 30 + i)
        lines.append(encode_event(event))
    (run / "events.jsonl").write_bytes(b"".join(lines))
    return run


def hf_run(run: Path) -> Path:
    """A Hugging Face Trainer run: the captured checkpoint-100 state."""
    (run / "checkpoint-100").mkdir(parents=True, exist_ok=True)
    shutil.copy(HF_STATE, run / "checkpoint-100" / "trainer_state.json")
    return run


def trainer_run(run: Path) -> Path:
    """A Pylon trainer run: two of four epochs, with config.json and progress.json (what
    the json_file sink writes there: the run's ProgressInfo)."""
    make_trainer_run(run, 2)
    (run / "config.json").write_text(json.dumps({"epochs": 4}))
    status = Tracking(plugin_manager()).status(str(run), discover_processes=False)
    (run / "progress.json").write_text(to_json(status.progress, indent=2) + "\n")
    return run


def lease_text() -> str:
    """A live lease of this test process."""
    pid = os.getpid()
    lease = Lease(
        pid=pid,
        process_start_time=process_start_time(pid) or 0.0,
        host=this_host(),
        interval=60.0,
        started_at=time.time(),
    )
    return dump_lease(lease)


def _forget_lease(run: Path) -> None:
    # The writers leave this process's lease: the tests judge the files, not this process.
    (run / ".progresskit-lease.json").unlink(missing_ok=True)


#: File name -> (how to make a run holding it, where it is inside the run).
FORMATS: dict[str, tuple[Callable[[Path], Path], str]] = {
    "progresskit-progress.json": (progress_run, "progresskit-progress.json"),
    "training_status.json": (brush_run, "training_status.json"),
    "events.jsonl": (events_run, "events.jsonl"),
    "trainer_state.json": (hf_run, "checkpoint-100/trainer_state.json"),
    "config.json": (trainer_run, "config.json"),
    "progress.json": (trainer_run, "progress.json"),
    "validation_scores.json": (trainer_run, "epoch_1/validation_scores.json"),
}
