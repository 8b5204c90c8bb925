"""Seed 002's emitter API (FoxML ``training_events``): its class name and module functions.

Code written against the seed's ``TRAINING/orchestration/utils/training_events.py`` runs
unchanged after swapping the import::

    from progresskit.compat.foxml import init_training_events, emit_progress

    init_training_events("run-42", event_file="runs/run-42/events.jsonl")
    emit_progress("ranking", 40.0, targets_total=12)

The functions act on one process-wide :class:`~progresskit.producer.emitter.EventEmitter`
and do nothing until it is initialised, as in the seed. ``init_events`` / ``get_emitter``
are progresskit's names for the two seed functions. docs/multistage.md.
"""

from __future__ import annotations

import os
from typing import Any

from progresskit.producer.emitter import EventEmitter

__all__ = [
    "TrainingEventEmitter",
    "emit_error",
    "emit_progress",
    "emit_run_complete",
    "emit_stage_change",
    "emit_target_complete",
    "get_emitter",
    "get_training_emitter",
    "init_events",
    "init_training_events",
]

#: The seed's class name, for code that imports it by that name.
TrainingEventEmitter = EventEmitter

_emitter: EventEmitter | None = None


def init_events(
    run_id: str,
    event_file: str | os.PathLike[str] | None = None,
    socket_path: str | os.PathLike[str] | None = None,
    *,
    work_dir: str | os.PathLike[str] | None = None,
    expect_every: float | None = None,
) -> EventEmitter:
    """Create the process-wide emitter used by the ``emit_*`` functions, and return it.
    The arguments are :class:`~progresskit.producer.emitter.EventEmitter`'s; an emitter
    created before is closed."""
    global _emitter
    if _emitter is not None:
        _emitter.close()
    _emitter = EventEmitter(
        run_id, event_file, socket_path, work_dir=work_dir, expect_every=expect_every
    )
    return _emitter


def get_emitter() -> EventEmitter | None:
    """The process-wide emitter, if :func:`init_events` was called."""
    return _emitter


#: The seed's names for the two functions above.
init_training_events = init_events
get_training_emitter = get_emitter


def emit_progress(stage: str, progress_pct: float, **kwargs: Any) -> None:
    """:meth:`EventEmitter.progress` on the process-wide emitter (no-op without one)."""
    if _emitter is not None:
        _emitter.progress(stage, progress_pct, **kwargs)


def emit_stage_change(previous_stage: str | None, new_stage: str) -> None:
    """:meth:`EventEmitter.stage_change` on the process-wide emitter (no-op without one)."""
    if _emitter is not None:
        _emitter.stage_change(previous_stage, new_stage)


def emit_target_complete(target: str, status: str, **kwargs: Any) -> None:
    """:meth:`EventEmitter.target_complete` on the process-wide emitter (no-op without one)."""
    if _emitter is not None:
        _emitter.target_complete(target, status, **kwargs)


def emit_run_complete(status: str = "success") -> None:
    """:meth:`EventEmitter.run_complete` on the process-wide emitter (no-op without one)."""
    if _emitter is not None:
        _emitter.run_complete(status)


def emit_error(error_message: str, error_type: str = "unknown", recoverable: bool = True) -> None:
    """:meth:`EventEmitter.error` on the process-wide emitter (no-op without one)."""
    if _emitter is not None:
        _emitter.error(error_message, error_type, recoverable)
