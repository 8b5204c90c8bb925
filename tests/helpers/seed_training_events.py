# ruff: noqa
"""FIXTURE, NOT PROGRESSKIT CODE: the seed's own emitter, kept in the seed's code shape.

Copied from seed 002 (/work/shared/seeds/002_2e07b43802aa9530.txt), Part 1,
``TRAINING/orchestration/utils/training_events.py``: the same JSON, the same fallbacks,
the same environment variables read at import time, and its weak spots (a non-atomic
``open(..., "a")`` append, a bare ``except:``) left as they are. Tests use it to prove that
logs written by FoxML's emitter are read unchanged. ``run_seed_pipeline`` below replays the
seed's Part 2 integration (``IntelligentTrainer._run_training_stages``) with it.

Changes: the long docstrings of the ``emit_*`` methods and ``init_training_events`` are
left out; every line of code is the seed's. Do not "fix" this file: it is the format's
reference writer.
"""

import json
import logging
import os
import socket
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, Optional

logger = logging.getLogger(__name__)

# Event socket path
TRAINING_EVENT_SOCKET = os.environ.get(
    "FOXML_TRAINING_EVENT_SOCKET",
    "/tmp/foxml_training_events.sock"
)

# Fallback: event file for polling
TRAINING_EVENT_FILE = os.environ.get(
    "FOXML_TRAINING_EVENT_FILE",
    "/tmp/foxml_training_events.jsonl"
)


class TrainingEventEmitter:
    """
    Emits training events for dashboard consumption.

    Tries Unix socket first, falls back to file append.
    """

    def __init__(self, run_id: str):
        """
        Initialize emitter for a training run.

        Args:
            run_id: The training run identifier
        """
        self.run_id = run_id
        self._socket: Optional[socket.socket] = None
        self._file_path = Path(TRAINING_EVENT_FILE)
        self._connect_socket()

    def _connect_socket(self) -> None:
        """Try to connect to event socket."""
        try:
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self._socket.connect(TRAINING_EVENT_SOCKET)
            logger.debug(f"Connected to training event socket: {TRAINING_EVENT_SOCKET}")
        except (FileNotFoundError, ConnectionRefusedError):
            self._socket = None
            logger.debug("Training event socket not available, using file fallback")

    def _emit(self, event: Dict[str, Any]) -> None:
        """
        Emit an event.

        Args:
            event: Event dictionary to emit
        """
        event["run_id"] = self.run_id
        event["timestamp"] = datetime.now(timezone.utc).isoformat()

        event_json = json.dumps(event) + "\n"

        # Try socket first
        if self._socket:
            try:
                self._socket.send(event_json.encode())
                return
            except (BrokenPipeError, ConnectionResetError):
                self._socket = None

        # Fallback to file
        try:
            with open(self._file_path, "a") as f:
                f.write(event_json)
        except Exception as e:
            logger.warning(f"Failed to write training event: {e}")

    def emit_progress(
        self,
        stage: str,
        progress_pct: float,
        current_target: Optional[str] = None,
        targets_complete: int = 0,
        targets_total: int = 0,
    ) -> None:
        self._emit({
            "event_type": "progress",
            "stage": stage,
            "progress_pct": progress_pct,
            "current_target": current_target,
            "targets_complete": targets_complete,
            "targets_total": targets_total,
        })

    def emit_stage_change(self, previous_stage: Optional[str], new_stage: str) -> None:
        self._emit({
            "event_type": "stage_change",
            "previous_stage": previous_stage,
            "new_stage": new_stage,
        })

    def emit_target_complete(
        self,
        target: str,
        status: str,
        models_trained: int = 0,
        best_auc: Optional[float] = None,
    ) -> None:
        self._emit({
            "event_type": "target_complete",
            "target": target,
            "status": status,
            "models_trained": models_trained,
            "best_auc": best_auc,
        })

    def emit_run_complete(self, status: str = "success") -> None:
        self._emit({
            "event_type": "run_complete",
            "status": status,
        })

    def emit_error(
        self,
        error_message: str,
        error_type: str = "unknown",
        recoverable: bool = True,
    ) -> None:
        self._emit({
            "event_type": "error",
            "error_message": error_message,
            "error_type": error_type,
            "recoverable": recoverable,
        })

    def close(self) -> None:
        """Close the event emitter."""
        if self._socket:
            try:
                self._socket.close()
            except:
                pass
            self._socket = None


# Global emitter instance
_emitter: Optional[TrainingEventEmitter] = None


def init_training_events(run_id: str) -> TrainingEventEmitter:
    global _emitter
    _emitter = TrainingEventEmitter(run_id)
    return _emitter


def get_training_emitter() -> Optional[TrainingEventEmitter]:
    """Get the global training event emitter."""
    return _emitter


def emit_progress(stage: str, progress_pct: float, **kwargs) -> None:
    """Convenience function to emit progress."""
    if _emitter:
        _emitter.emit_progress(stage, progress_pct, **kwargs)


def emit_stage_change(previous_stage: Optional[str], new_stage: str) -> None:
    """Convenience function to emit stage change."""
    if _emitter:
        _emitter.emit_stage_change(previous_stage, new_stage)


def emit_target_complete(target: str, status: str, **kwargs) -> None:
    """Convenience function to emit target completion."""
    if _emitter:
        _emitter.emit_target_complete(target, status, **kwargs)


# -- the seed's Part 2 (IntelligentTrainer._run_training_stages), with its calls unchanged --


def run_seed_pipeline(run_id, targets, results, final_status="success"):
    """Replay the seed's training stages. ``results[target]`` is (success, models, best_auc)."""
    event_emitter = init_training_events(run_id)

    # Stage 1: Target Ranking
    emit_stage_change(None, "ranking")
    emit_progress("ranking", 0)

    emit_progress("ranking", 100, targets_total=len(targets))

    # Stage 2: Feature Selection
    emit_stage_change("ranking", "feature_selection")

    for i, target in enumerate(targets):
        progress = (i / len(targets)) * 100
        emit_progress(
            "feature_selection",
            progress,
            current_target=target,
            targets_complete=i,
            targets_total=len(targets),
        )

    emit_stage_change("feature_selection", "training")

    # Stage 3: Model Training
    for i, target in enumerate(targets):
        progress = (i / len(targets)) * 100
        emit_progress(
            "training",
            progress,
            current_target=target,
            targets_complete=i,
            targets_total=len(targets),
        )

        success, models_trained, best_auc = results[target]

        emit_target_complete(
            target=target,
            status="success" if success else "failed",
            models_trained=models_trained,
            best_auc=best_auc,
        )

    # Complete
    if final_status is None:
        return
    emit_progress("training", 100, targets_complete=len(targets), targets_total=len(targets))
    if event_emitter:
        event_emitter.emit_run_complete(final_status)
