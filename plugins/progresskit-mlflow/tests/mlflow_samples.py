"""The real MLflow samples in tests/data (README.md there), copied into a test's tmp_path.

Runs grow the way MLflow makes them grow: the file store appends ``<timestamp_ms> <value>
<step>`` lines to ``metrics/<key>`` (``FileStore._log_run_metric``); the SQLite store
inserts a ``metrics`` row and updates ``latest_metrics`` in one transaction
(``SqlAlchemyStore._log_metrics``).
"""

from __future__ import annotations

import math
import shutil
import sqlite3
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"
MLRUNS = DATA / "mlruns"
DATABASE = DATA / "mlflow.db"
EXPERIMENT = "443314994865740520"
#: The file store's runs, by the outcome mlflow_run.py was given (README.md).
FILE_RUNS = {
    "finish": "068a2fc58814416fb661c703d1cbffd1",
    "fail": "e89a168810d04f00abe8bc470bc0e938",
    "kill": "9413dd752111412a8da4cb8362010d8b",
    "fail_nowith": "22eaf936e8fb4817b21e1ce88b1b51fd",
}
#: The SQLite store's runs, likewise.
DB_RUNS = {
    "finish": "3f34b277b72a4d429f9086f415963283",
    "fail": "75605f56932b4cedb41e7c7312b7a381",
    "kill": "f8c3cb9d021d491e96f2fcb536305c6c",
    "fail_nowith": "bc536f48d5fb431392a6fdf1220442b7",
}


def copy_mlruns(directory: Path) -> Path:
    """The whole real file store under ``directory/mlruns``."""
    target = directory / "mlruns"
    shutil.copytree(MLRUNS, target)
    for path in [target, *target.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return target


def copy_run(directory: Path, outcome: str) -> Path:
    """One real run with its experiment's meta.yaml: ``directory/mlruns/<exp>/<run>``."""
    experiment = directory / "mlruns" / EXPERIMENT
    experiment.mkdir(parents=True)
    shutil.copy(MLRUNS / EXPERIMENT / "meta.yaml", experiment / "meta.yaml")
    run = experiment / FILE_RUNS[outcome]
    shutil.copytree(MLRUNS / EXPERIMENT / FILE_RUNS[outcome], run)
    for path in [experiment, *experiment.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return run


def copy_database(directory: Path) -> Path:
    target = directory / "mlflow.db"
    shutil.copy(DATABASE, target)
    target.chmod(0o644)
    return target


def loss(step: int) -> float:
    """mlflow_run.py's loss curve."""
    return 2.5 * math.exp(-step / 20)


def append_metric(run: Path, key: str, lines: list[tuple[int, float, int]], *,
                  partial: str = "") -> None:
    """Append ``(timestamp_ms, value, step)`` lines as FileStore does (``"%s %s %s\\n"``),
    then ``partial``: the start of a line still being written."""
    with open(run / "metrics" / key, "a", encoding="utf-8") as fh:
        for timestamp, value, step in lines:
            fh.write(f"{timestamp} {value} {step}\n")
        fh.write(partial)


def log_metrics(database: Path, run_id: str, key: str,
                lines: list[tuple[int, float, int]]) -> None:
    """Log ``(timestamp_ms, value, step)`` values as SqlAlchemyStore does: a metrics row
    and the latest_metrics row, one transaction per value."""
    connection = sqlite3.connect(database)
    try:
        for timestamp, value, step in lines:
            with connection:
                connection.execute(
                    "INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) "
                    "VALUES (?, ?, ?, ?, ?, 0)", (key, value, timestamp, run_id, step))
                connection.execute(
                    "INSERT OR REPLACE INTO latest_metrics "
                    "(key, value, timestamp, step, is_nan, run_uuid) VALUES (?, ?, ?, ?, 0, ?)",
                    (key, value, timestamp, step, run_id))
    finally:
        connection.close()


def cadence(first_step: int, count: int, *, last_ms: int, every_ms: int
            ) -> list[tuple[int, float, int]]:
    """``count`` loss values from ``first_step`` on, ``every_ms`` apart, the last at
    ``last_ms``."""
    start = last_ms - (count - 1) * every_ms
    return [(start + i * every_ms, loss(first_step + i), first_step + i) for i in range(count)]
