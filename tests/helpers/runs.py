"""Pylon work dirs (seed 001) with controlled timestamps, built with progresskit.testing."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from progresskit.testing import make_run_dir, write_config
from progresskit.testing.helpers import FileContent

#: The files of one complete trainer epoch.
EXPECTED = ("training_losses.pt", "optimizer_buffer.json", "validation_scores.json")
DAY = 86400.0


def make_trainer_run(
    path: Path,
    epochs_done: int,
    *,
    total: int | None = None,
    scores: Iterable[Mapping[str, Any]] | None = None,
    config: Mapping[str, Any] | None = None,
    log: bool = True,
    age: float = 0.0,
    epoch_seconds: float = 60.0,
) -> Path:
    """A Pylon trainer work dir with ``epochs_done`` complete epochs, ``age`` seconds old.

    Epoch ``i`` finished ``epoch_seconds`` after epoch ``i - 1``; the last one and the log
    ``age`` seconds ago. ``total`` is written as the config's ``epochs``, next to ``config``.
    """
    score_list = (
        list(scores)
        if scores is not None
        else [{"acc": 0.5 + 0.01 * i, "loss": 1.0 - 0.01 * i} for i in range(epochs_done)]
    )
    files: dict[str, FileContent] = {}
    for epoch in range(epochs_done):
        files[f"epoch_{epoch}/training_losses.pt"] = b"\x80\x04tensor"
        files[f"epoch_{epoch}/optimizer_buffer.json"] = json.dumps({"lr": 0.1})
        files[f"epoch_{epoch}/validation_scores.json"] = json.dumps(
            {"aggregated": score_list[epoch], "per_datapoint": {}}
        )
    if log:
        files["train_val_0.log"] = "training\n"
    make_run_dir(path, files)
    values = dict(config or {})
    if total is not None:
        values["epochs"] = total
    if values:
        write_config(path, values)
    # One clock reading for every mtime, so that epochs are exactly epoch_seconds apart
    # (backdate_tree reads the clock on each call).
    now = time.time() - age
    start = now - epochs_done * epoch_seconds
    for epoch in range(epochs_done):
        when = start + (epoch + 1) * epoch_seconds
        directory = path / f"epoch_{epoch}"
        for name in EXPECTED:
            os.utime(directory / name, (when, when))
        os.utime(directory, (when, when))
    if log:
        os.utime(path / "train_val_0.log", (now, now))
    os.utime(path, (now, now))
    return path


def make_evaluator_run(
    path: Path, *, scores: Any = None, raw: str | None = None, log: bool = False, age: float = 0.0
) -> Path:
    """A Pylon evaluator work dir: ``evaluation_scores.json`` holding ``raw`` text or
    ``scores`` as JSON (neither: no scores file yet), and with ``log`` an evaluation log;
    its files ``age`` seconds old."""
    files: dict[str, FileContent] = {}
    if raw is not None or scores is not None:
        files["evaluation_scores.json"] = raw if raw is not None else json.dumps(scores)
    if log:
        files["eval_0.log"] = "evaluating\n"
    make_run_dir(path, files)
    when = time.time() - age
    for name in files:
        os.utime(path / name, (when, when))
    return path
