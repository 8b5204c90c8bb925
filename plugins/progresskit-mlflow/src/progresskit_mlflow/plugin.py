"""The progresskit hooks of the MLflow plugin (entry point ``mlflow``).

- The file store: every run directory (``meta.yaml`` with ``metrics/`` and ``params/``) is
  claimed as a run, so ``progresskit status mlruns/`` lists each run once (the scan stops at
  a claimed directory; experiment directories hold no ``metrics/``) and ``watch``/``serve``
  follow each run's files.
- The SQLite store: ``progresskit status sqlite:///path/mlflow.db`` is resolved here
  (``progresskit_resolve_target``), one status per run, by the core's status rules.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

from progresskit import (
    ConfigSchema,
    RunStatus,
    Status,
    Target,
    TrackerSpec,
    apply_rules,
    ensure,
    hookimpl,
)
from progresskit_mlflow.filestore import META_FILE, METRICS_DIR, PARAMS_DIR, FileStoreRunTracker
from progresskit_mlflow.record import (
    DEFAULT_EPOCH_PARAMS,
    DEFAULT_TOTAL_PARAMS,
    RUNNER_TYPE,
    progress_of,
    update_times,
    with_eta,
)
from progresskit_mlflow.sqlitestore import MlflowStoreError, read_store

SQLITE_PREFIX = "sqlite:///"
DEFAULT_BUSY_TIMEOUT = 5.0


def _names(value: list[Any]) -> None:
    ensure(all(isinstance(v, str) and v for v in value), "expects a list of param names")


@hookimpl
def progresskit_addconfig(schema: ConfigSchema) -> None:
    schema.add("mlflow_total_params", list, default=list(DEFAULT_TOTAL_PARAMS), check=_names,
               help="MLflow params read, first match wins, as a run's total steps (the "
               "largest step logged is its progress).")
    schema.add("mlflow_epoch_params", list, default=list(DEFAULT_EPOCH_PARAMS), check=_names,
               help="MLflow params read as a run's total epochs, when it logs an 'epoch' "
               "metric.")
    schema.add("mlflow_busy_timeout", float, default=DEFAULT_BUSY_TIMEOUT,
               help="Seconds to wait for a writer's lock on an MLflow SQLite store before "
               "the read fails.",
               check=lambda v: ensure(0 < v <= 300, "must be > 0 and at most 300 seconds"))


def _claims(target: Target) -> bool:
    return (target.has_file(META_FILE) and target.has_dir(METRICS_DIR)
            and target.has_dir(PARAMS_DIR))


tracker = TrackerSpec(
    FileStoreRunTracker,
    claim=_claims,
    expects=f"{META_FILE} with {METRICS_DIR}/ and {PARAMS_DIR}/ (an MLflow file-store run, "
    f"mlruns/<experiment>/<run>/); or a {SQLITE_PREFIX}PATH target (an MLflow SQLite store)",
)
progresskit_detect_runner, progresskit_make_tracker, progresskit_describe_runner = tracker.hooks


def store_path(target: str) -> str:
    """The database path of a ``sqlite:///`` target, as SQLAlchemy and MLflow read it:
    ``sqlite:///mlflow.db`` is relative, ``sqlite:////srv/mlflow.db`` absolute."""
    path = target[len(SQLITE_PREFIX):]
    if not path or "?" in path:
        what = "no database path" if not path else "query parameters are not supported"
        raise MlflowStoreError(f"{target}: {what} (expected {SQLITE_PREFIX}PATH/mlflow.db)")
    return path


def store_statuses(target: str, config: Mapping[str, Any], now: float) -> list[RunStatus]:
    """One status per run of the store, by the core's rules and limits (``sleep_time``,
    the rhythm of its updates). No process is known for a run of a database: a RUNNING
    run whose updates stopped is failed, the way MLflow cannot say (mlflow#3932)."""
    path = store_path(target)
    timeout = float(config.get("mlflow_busy_timeout") or DEFAULT_BUSY_TIMEOUT)
    work_dir = os.path.abspath(path)
    statuses = []
    for record in read_store(path, timeout=timeout, where=target):
        key = f"{target}#{record.run_id}"
        progress = progress_of(record, config)
        decision = apply_rules(
            config,
            progress,
            complete=progress.source_status == "FINISHED",
            last_activity=progress.last_update_time,
            process=None,
            now=now,
            update_times=update_times(record),
            update_times_recorded=True,
        )
        if decision.status in (Status.RUNNING, Status.PENDING):
            # Only a live run has an ETA: the dead ones (most of a store) spare the estimate.
            history = {"runner_type": RUNNER_TYPE, "work_dir": work_dir, "config": config,
                       "run_id": key}
            progress = with_eta(progress, record, history)
        statuses.append(RunStatus(key, work_dir, progress, decision.status, None,
                                  decision.reason, progress.last_update_time, decision.cause))
    return statuses


@hookimpl
def progresskit_resolve_target(target: str, config: Mapping[str, Any]) -> list[RunStatus] | None:
    if not target.startswith(SQLITE_PREFIX):
        return None
    return store_statuses(target, config, time.time())
