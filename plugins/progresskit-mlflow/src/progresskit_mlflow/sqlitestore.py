"""MLflow's SQLite tracking store (``mlflow.db``), read-only.

The database is opened through an SQLite URI with ``mode=ro``: this reader can never take
a write lock, create a journal or change a byte of the store MLflow is writing. Every
query of one read runs in one read transaction, so a run that ends meanwhile is seen
before or after, never half. A writer holding the database locked (a commit in
journal_mode ``delete``, a ``BEGIN EXCLUSIVE``) is waited for up to ``mlflow_busy_timeout``
seconds, then the read fails with an error saying so.

Tables read (``mlflow/store/tracking/dbmodels/models.py``): ``runs`` and ``experiments``
(deleted runs and runs of deleted experiments are left out, as MLflow's own search does),
``latest_metrics``, ``params``, and ``metrics`` for the newest logging moments of the runs
MLflow says are RUNNING (their rhythm and pace; ``index_metrics_run_uuid`` makes that a
lookup per run).
"""

from __future__ import annotations

import os
import urllib.parse
from collections import defaultdict
from typing import TYPE_CHECKING

from progresskit import ProgresskitError
from progresskit_mlflow.record import RECENT_MOMENTS, Latest, RunRecord
from progresskit_mlflow.vocabulary import status_word

if TYPE_CHECKING:
    import sqlite3

__all__ = ["MlflowStoreError", "read_store"]

#: The tables a tracking store has (MLflow 1.9 and later: ``latest_metrics``).
REQUIRED_TABLES = ("runs", "experiments", "latest_metrics", "params", "metrics")

_RUNS = """
SELECT r.run_uuid, r.name, r.status, r.start_time, r.end_time, r.user_id,
       r.experiment_id, e.name
FROM runs AS r LEFT JOIN experiments AS e ON e.experiment_id = r.experiment_id
WHERE r.lifecycle_stage = 'active' AND (e.lifecycle_stage IS NULL OR e.lifecycle_stage = 'active')
"""
_LATEST = "SELECT run_uuid, key, value, step, timestamp, is_nan FROM latest_metrics"
_PARAMS = "SELECT run_uuid, key, value FROM params"
_RECENT = """
SELECT timestamp, MAX(step) FROM metrics WHERE run_uuid = ?
GROUP BY timestamp ORDER BY timestamp DESC LIMIT ?
"""


class MlflowStoreError(ProgresskitError):
    """An MLflow store that cannot be read: what, where, what was expected."""


def _connect(path: str, timeout: float) -> sqlite3.Connection:
    import sqlite3  # only for a store target: `progresskit status` of a plain run never loads it

    uri = f"file:{urllib.parse.quote(os.path.abspath(path))}?mode=ro"
    # isolation_level=None: the one read transaction below is begun and ended here.
    return sqlite3.connect(uri, uri=True, timeout=timeout, isolation_level=None)


def read_store(path: str, *, timeout: float, where: str | None = None) -> list[RunRecord]:
    """Every active run of the SQLite tracking store at ``path``, in start order.

    :param timeout: seconds to wait for a writer's lock (``mlflow_busy_timeout``).
    :param where: how the caller named the store, for messages (default ``path``).
    :raises MlflowStoreError: the file is missing, not SQLite, not an MLflow store, or
        stayed locked longer than ``timeout``. Nothing is written either way.
    """
    import sqlite3

    where = where or path
    if not os.path.isfile(path):
        what = "no such file" if not os.path.exists(path) else "not a file"
        raise MlflowStoreError(f"{where}: {what} (expected an MLflow SQLite tracking "
                               f"database, e.g. sqlite:///mlflow.db)")
    try:
        connection = _connect(path, timeout)
    except sqlite3.Error as exc:
        raise MlflowStoreError(f"{where}: cannot open {path} read-only: {exc}") from exc
    try:
        connection.execute("BEGIN")
        try:
            return _read(connection, where)
        finally:
            connection.execute("COMMIT")
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            raise MlflowStoreError(
                f"{where}: the database stayed locked by a writer for more than "
                f"{timeout:g}s (mlflow_busy_timeout); nothing was read, try again"
            ) from exc
        raise MlflowStoreError(f"{where}: cannot read the MLflow store: {exc}") from exc
    except sqlite3.DatabaseError as exc:
        raise MlflowStoreError(f"{where}: not an SQLite database: {exc}") from exc
    finally:
        connection.close()


def _read(connection: sqlite3.Connection, where: str) -> list[RunRecord]:
    tables = {row[0] for row in connection.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table'")}
    missing = [t for t in REQUIRED_TABLES if t not in tables]
    if missing:
        raise MlflowStoreError(
            f"{where}: not an MLflow tracking store: no table {', '.join(missing)} "
            f"(expected {', '.join(REQUIRED_TABLES)}; MLflow 1.9 or later)"
        )
    runs = connection.execute(_RUNS).fetchall()
    latest: defaultdict[str, dict[str, Latest]] = defaultdict(dict)
    problems: defaultdict[str, list[str]] = defaultdict(list)
    for run_id, key, value, step, timestamp, is_nan in connection.execute(_LATEST):
        if not isinstance(value, (int, float)) or not isinstance(step, int):
            problems[run_id].append(f"latest_metrics {key!r}: value {value!r}, step "
                                    f"{step!r}: expected numbers; ignored")
            continue
        # MLflow stores a NaN as value 0 with is_nan set.
        number = float("nan") if is_nan else float(value)
        latest[run_id][key] = Latest(number, step, timestamp if isinstance(timestamp, int) else 0)
    params: defaultdict[str, dict[str, str]] = defaultdict(dict)
    for run_id, key, value in connection.execute(_PARAMS):
        params[run_id][key] = str(value)

    records = []
    for run_id, name, raw, start, end, user, experiment_id, experiment in runs:
        word = status_word(raw)
        recent: tuple[tuple[int, int], ...] = ()
        if word == "RUNNING":
            rows = connection.execute(_RECENT, (run_id, RECENT_MOMENTS)).fetchall()
            recent = tuple((t, s) for t, s in reversed(rows)
                           if isinstance(t, int) and isinstance(s, int))
        warnings = problems.get(run_id, [])
        if word is None:
            warnings = [*warnings, f"runs.status {raw!r}: expected RUNNING, SCHEDULED, "
                                   f"FINISHED, FAILED or KILLED"]
        records.append(RunRecord(
            run_id=str(run_id),
            store="sqlite",
            status=word,
            raw_status=repr(raw),
            experiment_id=str(experiment_id),
            experiment_name=experiment,
            run_name=name or None,
            user_id=user or None,
            start_ms=start if isinstance(start, int) else None,
            end_ms=end if isinstance(end, int) else None,
            latest=latest.get(run_id, {}),
            params=params.get(run_id, {}),
            recent=recent,
            warnings=tuple(warnings),
        ))
    records.sort(key=lambda r: (r.start_ms or 0, r.run_id))
    return records
