"""One MLflow run as either store holds it, and what progresskit makes of it.

Both stores (the file store's ``mlruns/`` and the SQLite store) are read into a
:class:`RunRecord`; :func:`progress_of` turns a record into a ``ProgressInfo`` the same way
whichever store it came from, so a run reads the same in both.

MLflow knows no totals: a run's steps are whatever the script passes to ``log_metric``.
The total is taken from a param the script logged (``mlflow_total_params``, default
``max_steps``, ``total_steps``, ``num_steps``, ``steps``), the epoch count likewise
(``mlflow_epoch_params``) when an ``epoch`` metric is logged.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from progresskit import ProgressInfo, Status, estimate_run
from progresskit_mlflow.vocabulary import MLFLOW_STATUSES

__all__ = [
    "DEFAULT_EPOCH_PARAMS",
    "DEFAULT_TOTAL_PARAMS",
    "RECENT_MOMENTS",
    "RUNNER_TYPE",
    "Latest",
    "RunRecord",
    "newest_moments",
    "progress_of",
    "update_times",
    "with_eta",
]

RUNNER_TYPE = "mlflow"
#: Params read, in this order, as the run's total steps (``mlflow_total_params``).
DEFAULT_TOTAL_PARAMS = ("max_steps", "total_steps", "num_steps", "steps")
#: Params read, in this order, as its total epochs (``mlflow_epoch_params``).
DEFAULT_EPOCH_PARAMS = ("max_epochs", "num_train_epochs", "num_epochs", "epochs")
#: How many of the newest distinct logging moments a record keeps: the run's rhythm and
#: the pace its ETA is measured on (as many as the multi-stage tracker's events).
RECENT_MOMENTS = 256


@attrs.frozen
class Latest:
    """A metric's latest value, as MLflow's ``latest_metrics`` defines it: the highest
    step, then the newest timestamp."""

    value: float
    step: int
    timestamp_ms: int


@attrs.frozen
class RunRecord:
    """What either store says about one run."""

    run_id: str
    #: ``"file"`` or ``"sqlite"``.
    store: str
    #: MLflow's status name (``RUNNING``, ...), ``None`` when the store holds something else.
    status: str | None
    #: The store's value as written (``3``, ``'FINISHED'``), for messages.
    raw_status: str
    experiment_id: str = ""
    experiment_name: str | None = None
    run_name: str | None = None
    user_id: str | None = None
    lifecycle_stage: str = "active"
    start_ms: int | None = None
    end_ms: int | None = None
    latest: Mapping[str, Latest] = attrs.field(factory=dict)
    params: Mapping[str, str] = attrs.field(factory=dict)
    #: ``(timestamp ms, largest step logged then)`` of the newest distinct logging moments,
    #: oldest first (at most :data:`RECENT_MOMENTS`).
    recent: tuple[tuple[int, int], ...] = ()
    #: Problems met while reading the record (the store's own words, with where).
    warnings: tuple[str, ...] = ()


def newest_moments(points: Iterable[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    """``(timestamp ms, step)`` points (any order, repeats allowed) as one point per
    distinct timestamp with its largest step: the newest :data:`RECENT_MOMENTS`, oldest
    first."""
    moments: dict[int, int] = {}
    for timestamp, step in points:
        if moments.get(timestamp, step - 1) < step:
            moments[timestamp] = step
    return tuple(sorted(moments.items())[-RECENT_MOMENTS:])


def update_times(record: RunRecord) -> list[float]:
    """When the run updated, for the engine's rhythm rule: the moment each step was first
    logged (a script logs several metrics per step, milliseconds apart: one update), or
    every logging moment when the script gives no steps. In seconds, as MLflow recorded
    them (a copied store keeps them: the rule judges them as recorded times)."""
    first: dict[int, int] = {}
    for timestamp, step in record.recent:
        first.setdefault(step, timestamp)
    moments = first.values() if len(first) > 1 else [t for t, _step in record.recent]
    return sorted(timestamp / 1000 for timestamp in moments)


def _iso(ms: int) -> str:
    moment = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.timezone.utc)
    return moment.isoformat(timespec="milliseconds")


def _count_param(params: Mapping[str, str], names: Sequence[str]) -> tuple[str, int] | None:
    """The first of ``names`` logged as a positive whole number (``"40"``, ``"3.0"``)."""
    for name in names:
        text = params.get(name)
        if text is None:
            continue
        try:
            value = float(text)
        except ValueError:
            continue
        if math.isfinite(value) and value > 0 and value == int(value):
            return name, int(value)
    return None


def _names(config: Mapping[str, Any], key: str, default: Sequence[str]) -> Sequence[str]:
    value = config.get(key)
    return default if value is None else [str(v) for v in value]


def progress_of(record: RunRecord, config: Mapping[str, Any]) -> ProgressInfo:
    """The run's progress: MLflow's status word in ``source_status``, mapped into
    ``reported_status``; the largest step logged out of the total a param gives; the
    latest value of every metric; params and run identity in ``details``. No ETA yet:
    :func:`with_eta`."""
    warnings = list(record.warnings)
    word = record.status
    # An unreadable status claims nothing: the status rules judge the run by its silence.
    reported = MLFLOW_STATUSES[word] if word is not None else None
    error = None
    if word is None:
        error = (
            f"status {record.raw_status}: not an MLflow run status "
            f"(expected one of {', '.join(MLFLOW_STATUSES)})"
        )
    if record.lifecycle_stage != "active":
        warnings.append(f"lifecycle_stage is {record.lifecycle_stage!r}: deleted in MLflow")

    metrics = {
        key: latest.value for key, latest in sorted(record.latest.items())
        if math.isfinite(latest.value)
    }
    step = max((latest.step for latest in record.latest.values()), default=None)
    step = None if step is None else max(0, step)
    total_param = _count_param(record.params, _names(config, "mlflow_total_params",
                                                     DEFAULT_TOTAL_PARAMS))
    total = total_param[1] if total_param else None
    epoch = record.latest.get("epoch")
    epoch_param = None
    if epoch is not None and math.isfinite(epoch.value) and epoch.value >= 0:
        epoch_param = _count_param(record.params, _names(config, "mlflow_epoch_params",
                                                         DEFAULT_EPOCH_PARAMS))
    else:
        epoch = None
    total_epochs = epoch_param[1] if epoch_param else None
    # No `epoch` metric: the script does not count epochs (unknown, never 0).
    done_epochs = None if epoch is None else math.floor(epoch.value)
    if total_epochs is not None and done_epochs is not None:
        done_epochs = min(done_epochs, total_epochs)

    finished = reported is Status.FINISHED
    if finished:
        percentage: float | None = 100.0
    elif total and step is not None:
        percentage = min(100.0, 100.0 * step / total)
    elif total_epochs and epoch is not None:
        percentage = min(100.0, 100.0 * epoch.value / total_epochs)
    else:
        percentage = None
    if finished and total_param and step is not None and step + 1 < total_param[1]:
        # MLflow's atexit handler ends a run left open by an uncaught exception as
        # FINISHED (a script without `with mlflow.start_run()`).
        warnings.append(
            f"recorded FINISHED at step {step} of {total_param[1]} (param "
            f"'{total_param[0]}'): MLflow also records FINISHED when a script without "
            f"'with mlflow.start_run()' dies of an uncaught exception; see its log"
        )

    times = [t for t in (record.start_ms, record.end_ms) if t is not None]
    times += [latest.timestamp_ms for latest in record.latest.values()]
    if record.recent:
        times.append(record.recent[-1][0])
    details = {"run_id": record.run_id, "store": record.store,
               "experiment_id": record.experiment_id}
    optional = {"run_name": record.run_name, "experiment": record.experiment_name,
                "user_id": record.user_id}
    details.update({k: v for k, v in optional.items() if v})
    if record.end_ms is not None:
        details["end_time"] = _iso(record.end_ms)
    details.update({f"params.{k}": v for k, v in sorted(record.params.items())})
    elapsed = None
    if record.start_ms is not None and record.end_ms is not None:
        elapsed = max(0.0, (record.end_ms - record.start_ms) / 1000)

    return ProgressInfo(
        runner_type=RUNNER_TYPE,
        completed_epochs=done_epochs,
        total_epochs=total_epochs,
        progress_percentage=percentage,
        completed_steps=step,
        total_steps=total,
        start_time=None if record.start_ms is None else record.start_ms / 1000,
        last_update_time=max(times) / 1000 if times else None,
        elapsed_seconds=elapsed,
        source_status=word or record.raw_status,
        reported_status=reported,
        error_message=error,
        warnings=tuple(warnings),
        metrics=metrics,
        details=details,
    )


def with_eta(progress: ProgressInfo, record: RunRecord, history: Mapping[str, Any]
             ) -> ProgressInfo:
    """``progress`` with the ETA of a RUNNING run whose total is known, from the pace of
    its newest logging moments (progresskit's estimator, docs/eta.md).

    ``history``: ``estimate_run``'s ``runner_type``, ``work_dir``, ``config`` (and
    ``run_id``), naming the run in the ETA history.
    """
    if progress.reported_status is not Status.RUNNING or not progress.total_steps:
        return progress
    if len(record.recent) < 2:
        return progress
    observed = [(timestamp / 1000, float(step)) for timestamp, step in record.recent]
    return estimate_run(observed, progress.total_steps, **history).apply(progress)
