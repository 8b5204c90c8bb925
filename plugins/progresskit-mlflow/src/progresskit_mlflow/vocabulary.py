"""MLflow's run statuses, as its two stores write them, mapped into progresskit's.

``RunStatus`` in ``mlflow/protos/service.proto``: the file store's ``meta.yaml`` holds the
number, the SQLite store's ``runs.status`` the name. docs/mlflow.md shows this table; a
test checks they agree.
"""

from __future__ import annotations

from collections.abc import Mapping

from progresskit import Status

__all__ = ["MLFLOW_STATUSES", "STATUS_CODES", "status_word"]

#: meta.yaml ``status`` number -> the name the SQLite store writes.
STATUS_CODES: Mapping[int, str] = {
    1: "RUNNING",
    2: "SCHEDULED",
    3: "FINISHED",
    4: "FAILED",
    5: "KILLED",
}

#: MLflow's word -> the canonical status. KILLED is what ``end_run("KILLED")`` and a
#: cancelled ``mlflow run`` project record: stopped on request. A run whose process was
#: killed records nothing and stays RUNNING (mlflow#3932); the status rules judge it by
#: its silence (record.py).
MLFLOW_STATUSES: Mapping[str, Status] = {
    "RUNNING": Status.RUNNING,
    "SCHEDULED": Status.PENDING,
    "FINISHED": Status.FINISHED,
    "FAILED": Status.FAILED,
    "KILLED": Status.CANCELLED,
}


def status_word(value: object) -> str | None:
    """MLflow's status name for a ``meta.yaml`` number or a ``runs.status`` name; ``None``
    for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return STATUS_CODES.get(value)
    if isinstance(value, str) and value in MLFLOW_STATUSES:
        return value
    return None
