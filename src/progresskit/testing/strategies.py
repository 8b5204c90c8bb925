"""Hypothesis strategies for progresskit's data model and its training events.

Public and stable: plugin authors use them to property-test their own code, e.g. that a
sink writes whatever :class:`~progresskit.RunStatus` it is given::

    from hypothesis import given
    from progresskit.testing import strategies as pks

    @given(pks.run_statuses())
    def test_sink_accepts_any_status(run):
        MySink({}).emit([run])

Every value drawn is valid for the model's own validators (percentages in [0, 100],
counts and durations >= 0, finite floats) and survives ``progresskit.to_json`` and
``progresskit.structure`` unchanged. Requires ``hypothesis`` (the ``test`` extra).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from hypothesis import strategies as st

from progresskit.formats.events import (
    RUN_OUTCOMES,
    TARGET_OUTCOMES,
    error_event,
    progress_event,
    run_complete_event,
    stage_change_event,
    stamp,
    target_complete_event,
)
from progresskit.model.core import (
    CAUSE_KINDS,
    Cause,
    CompletedItem,
    ProcessInfo,
    ProgressInfo,
    RunStatus,
    Status,
)

__all__ = [
    "causes",
    "completed_items",
    "names",
    "percentages",
    "process_infos",
    "progress_info_fields",
    "progress_infos",
    "run_statuses",
    "scores",
    "statuses",
    "training_events",
]

_finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
_non_negative = st.floats(min_value=0, max_value=1e12, allow_nan=False)
_counts = st.integers(min_value=0, max_value=10**9)
_times = st.none() | st.floats(min_value=0, max_value=4e9, allow_nan=False)


def names() -> st.SearchStrategy[str]:
    """Short non-empty text: runner types, metric names, stage and item names."""
    return st.text(min_size=1, max_size=20)


def percentages() -> st.SearchStrategy[float]:
    """A progress percentage: a finite float within [0, 100]."""
    return st.floats(min_value=0, max_value=100)


def scores() -> st.SearchStrategy[dict[str, float]]:
    """A score or metrics mapping: up to four names to finite floats."""
    return st.dictionaries(names(), _finite, max_size=4)


def statuses() -> st.SearchStrategy[Status]:
    """Any canonical :class:`~progresskit.Status`."""
    return st.sampled_from(Status)


def completed_items() -> st.SearchStrategy[CompletedItem]:
    """A :class:`~progresskit.CompletedItem` (a finished target, node or sub-job)."""
    return st.builds(CompletedItem, name=names(), status=names(), metrics=scores())


def process_infos() -> st.SearchStrategy[ProcessInfo]:
    """A :class:`~progresskit.ProcessInfo`, with each optional field present or not."""
    return st.builds(
        ProcessInfo,
        pid=st.integers(min_value=1, max_value=2**22),
        user=st.none() | names(),
        cmd=st.none() | st.text(max_size=60),
        start_time=_times,
        host=st.none() | names(),
    )


def progress_infos(**overrides: st.SearchStrategy[Any]) -> st.SearchStrategy[ProgressInfo]:
    """A :class:`~progresskit.ProgressInfo` with every field drawn independently.

    ``overrides`` replace the strategy of named fields, e.g.
    ``progress_infos(runner_type=st.just("mytracker"))``. Fields are independent, so a
    drawn record may be inconsistent (5 of 3 steps done): the model allows it, and code
    that reads records written by others must cope with it.
    """
    fields = progress_info_fields()
    unknown = set(overrides) - set(fields)
    if unknown:
        raise TypeError(f"progress_infos(): no ProgressInfo field named {sorted(unknown)}")
    fields.update(overrides)
    return st.builds(ProgressInfo, **fields)


def progress_info_fields() -> dict[str, st.SearchStrategy[Any]]:
    """The strategy of every :class:`~progresskit.ProgressInfo` field, by field name."""
    return {
        "completed_epochs": st.none() | _counts,
        "progress_percentage": st.none() | percentages(),
        "early_stopped": st.booleans(),
        "early_stopped_at_epoch": st.none() | _counts,
        "runner_type": names(),
        "total_epochs": st.none() | _counts,
        "start_time": st.none() | _non_negative,
        "last_update_time": st.none() | _non_negative,
        "best_score": st.none() | scores(),
        "latest_score": st.none() | scores(),
        "error_message": st.none() | st.text(max_size=40),
        "warnings": st.lists(st.text(max_size=30), max_size=3).map(tuple),
        "completed_steps": st.none() | _counts,
        "total_steps": st.none() | _counts,
        "current_stage": st.none() | names(),
        "stage_progress_percentage": st.none() | percentages(),
        "current_item": st.none() | names(),
        "items_completed": st.none() | _counts,
        "items_total": st.none() | _counts,
        "completed_items": st.lists(completed_items(), max_size=3).map(tuple),
        "elapsed_seconds": st.none() | _non_negative,
        "eta_seconds": st.none() | _non_negative,
        "eta_low_seconds": st.none() | _non_negative,
        "eta_high_seconds": st.none() | _non_negative,
        "source_eta_seconds": st.none() | _finite,
        "source_status": st.none() | names(),
        "reported_status": st.none() | statuses(),
        "metrics": scores(),
        "details": st.dictionaries(names(), st.text(max_size=20), max_size=3),
    }


def causes() -> st.SearchStrategy[Cause]:
    """A :class:`~progresskit.model.core.Cause`: why a run ended, of any kind."""
    return st.builds(
        Cause,
        kind=st.sampled_from(CAUSE_KINDS),
        message=st.none() | st.text(max_size=40),
        exception_type=st.none() | names(),
        signal=st.none() | st.sampled_from(["SIGTERM", "SIGINT", "SIGHUP"]),
        exit_code=st.none() | st.integers(-255, 255),
    )


def run_statuses(
    progress: st.SearchStrategy[ProgressInfo] | None = None,
) -> st.SearchStrategy[RunStatus]:
    """A :class:`~progresskit.RunStatus`; ``progress`` defaults to :func:`progress_infos`."""
    return st.builds(
        RunStatus,
        config=names(),
        work_dir=names(),
        progress=progress if progress is not None else progress_infos(),
        status=statuses(),
        process_info=st.none() | process_infos(),
        reason=st.none() | st.text(max_size=40),
        last_activity=_times,
        cause=st.none() | causes(),
    )


_event_times = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(timezone.utc)
).map(lambda d: d.timestamp())


def _stamped(event: dict[str, Any], run_id: str, at: float) -> dict[str, Any]:
    stamp(event, run_id, at)
    return event


def training_events(
    run_id: st.SearchStrategy[str] | None = None,
) -> st.SearchStrategy[dict[str, Any]]:
    """One multi-stage training event as a JSON object, in the wire format that
    :class:`~progresskit.EventEmitter` writes (:mod:`progresskit.formats.events`):
    ``event_type``, the event's own fields, ``run_id`` and an ISO-8601 UTC ``timestamp``.
    """
    optional_name = st.none() | names()
    events = st.one_of(
        st.builds(
            progress_event,
            names(),
            percentages(),
            optional_name,
            st.integers(0, 10_000),
            st.integers(0, 10_000),
        ),
        st.builds(stage_change_event, optional_name, names()),
        st.builds(
            target_complete_event,
            names(),
            st.sampled_from(TARGET_OUTCOMES),
            st.integers(0, 1000),
            st.none() | st.floats(min_value=0, max_value=1),
        ),
        st.builds(run_complete_event, st.sampled_from(RUN_OUTCOMES)),
        st.builds(error_event, st.text(min_size=1, max_size=40), names(), st.booleans()),
    )
    return st.builds(_stamped, events, run_id if run_id is not None else names(), _event_times)
