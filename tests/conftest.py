"""Shared fixtures: fabricated run directories with controlled timestamps, and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

EXPECTED = ("training_losses.pt", "optimizer_buffer.json", "validation_scores.json")
DAY = 86400.0


def touch_tree(path: Path, when: float) -> None:
    """Set the mtime of ``path`` and everything below it to ``when``."""
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            os.utime(os.path.join(root, name), (when, when))
    os.utime(path, (when, when))


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
    """A Pylon trainer work dir with ``epochs_done`` complete epochs, ``age`` seconds old."""
    path.mkdir(parents=True, exist_ok=True)
    score_list = (
        list(scores)
        if scores is not None
        else [{"acc": 0.5 + 0.01 * i, "loss": 1.0 - 0.01 * i} for i in range(epochs_done)]
    )
    now = time.time() - age
    start = now - epochs_done * epoch_seconds
    for epoch in range(epochs_done):
        directory = path / f"epoch_{epoch}"
        directory.mkdir(exist_ok=True)
        (directory / "training_losses.pt").write_bytes(b"\x80\x04tensor")
        (directory / "optimizer_buffer.json").write_text(json.dumps({"lr": 0.1}))
        (directory / "validation_scores.json").write_text(
            json.dumps({"aggregated": score_list[epoch], "per_datapoint": {}})
        )
        when = start + (epoch + 1) * epoch_seconds
        for name in EXPECTED:
            os.utime(directory / name, (when, when))
        os.utime(directory, (when, when))
    values = dict(config or {})
    if total is not None:
        values["epochs"] = total
    if values:
        import yaml

        (path / "progresskit.yaml").write_text(yaml.safe_dump(values))
    if log:
        log_file = path / "train_val_0.log"
        log_file.write_text("training\n")
        os.utime(log_file, (now, now))
    os.utime(path, (now, now))
    return path


def make_evaluator_run(
    path: Path, *, scores: Any = None, raw: str | None = None, log: bool = False, age: float = 0.0
) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    when = time.time() - age
    if raw is not None or scores is not None:
        target = path / "evaluation_scores.json"
        target.write_text(raw if raw is not None else json.dumps(scores))
        os.utime(target, (when, when))
    if log:
        (path / "eval_0.log").write_text("evaluating\n")
        os.utime(path / "eval_0.log", (when, when))
    return path


@pytest.fixture
def trainer_run() -> Callable[..., Path]:
    return make_trainer_run


@pytest.fixture
def evaluator_run() -> Callable[..., Path]:
    return make_evaluator_run


def run_cli(
    *args: str,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the real ``progresskit`` command in a subprocess."""
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "progresskit", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=full_env,
        timeout=120,
    )


@pytest.fixture
def cli() -> Callable[..., subprocess.CompletedProcess[str]]:
    return run_cli


@pytest.fixture
def isolated_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with no progresskit.yaml above it."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return cwd


@pytest.fixture(scope="session", autouse=True)
def session_history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The ETA history of the whole session (never the user's), in force before any fixture:
    module-scoped fixtures (servers, watchers) start before per-test fixtures do."""
    path = tmp_path_factory.mktemp("session-history") / "history.sqlite3"
    before = os.environ.get("PROGRESSKIT_HISTORY")
    os.environ["PROGRESSKIT_HISTORY"] = str(path)
    yield path
    if before is None:
        os.environ.pop("PROGRESSKIT_HISTORY", None)
    else:
        os.environ["PROGRESSKIT_HISTORY"] = before


@pytest.fixture(autouse=True)
def isolated_history(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Every test gets its own ETA history database: finished runs that one test records
    must not become another test's prior."""
    path = tmp_path_factory.mktemp("history") / "history.sqlite3"
    monkeypatch.setenv("PROGRESSKIT_HISTORY", str(path))
    return path
