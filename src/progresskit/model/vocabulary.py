"""Every source system's status words, mapped into the canonical :class:`Status`.

Trackers keep the source's own word in ``ProgressInfo.source_status`` and put the mapped
value in ``reported_status``. docs/status.md shows this table; a test checks they agree.
"""

from __future__ import annotations

from collections.abc import Mapping

from progresskit.model.core import Status

__all__ = ["SOURCE_VOCABULARIES", "canonical_status"]

S = Status

SOURCE_VOCABULARIES: Mapping[str, Mapping[str, Status]] = {
    # Seed 001: Pylon run statuses (get_run_status).
    "pylon": {
        "running": S.RUNNING,
        "finished": S.FINISHED,
        "stuck": S.STUCK,
        "failed": S.FAILED,
        "outdated": S.OUTDATED,
    },
    # Seed 000: Brush training_status.json "status". starting/evaluating/exporting are
    # phases of a live process, so they are running; the phase goes to current_stage.
    "brush": {
        "starting": S.RUNNING,
        "training": S.RUNNING,
        "evaluating": S.RUNNING,
        "exporting": S.RUNNING,
        "completed": S.FINISHED,
        "error": S.FAILED,
    },
    # Seed 002: FoxML run_complete "status" (a run with no run_complete yet is running).
    "foxml": {
        "success": S.FINISHED,
        "failed": S.FAILED,
        "cancelled": S.CANCELLED,
    },
    # Seed 003: StatusMonitor ProgressStatus. "timeout" is a job that vanished from the
    # queue without reaching history: gone without a word, which is what crashed means.
    "comfyui": {
        "unknown": S.UNKNOWN,
        "queued": S.PENDING,
        "initializing": S.PENDING,
        "processing": S.RUNNING,
        "completing": S.RUNNING,
        "completed": S.FINISHED,
        "failed": S.FAILED,
        "timeout": S.CRASHED,
        # Not in seed 003: interrupted (POST /interrupt) or deleted from the queue.
        "cancelled": S.CANCELLED,
    },
    # ComfyUI server: /history status.status_str (an interrupt also says "error"; the
    # ComfyUI tracker tells it apart by the execution_interrupted message).
    "comfyui_history": {
        "success": S.FINISHED,
        "error": S.FAILED,
    },
    # Seed 004: TrainingMonitor TrainingJob.status.
    "trainingmonitor": {
        "pending": S.PENDING,
        "queued": S.PENDING,
        "running": S.RUNNING,
        "completed": S.FINISHED,
        "failed": S.FAILED,
        "cancelled": S.CANCELLED,
    },
    # progresskit's own progresskit-progress.json "state" (formats/progressfile.py).
    "progress": {
        "running": S.RUNNING,
        "finished": S.FINISHED,
        "failed": S.FAILED,
        "cancelled": S.CANCELLED,
    },
}


def canonical_status(source: str, value: str) -> Status:
    """``value`` of ``source``'s vocabulary as a canonical status (``unknown`` if unlisted).

    Raises ``ValueError`` for a source that is not in :data:`SOURCE_VOCABULARIES`.
    """
    try:
        vocabulary = SOURCE_VOCABULARIES[source]
    except KeyError:
        raise ValueError(
            f"unknown status vocabulary {source!r} (known: {', '.join(SOURCE_VOCABULARIES)})"
        ) from None
    return vocabulary.get(value.strip().lower(), Status.UNKNOWN)
