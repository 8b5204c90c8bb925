"""One monitored job: its state, and how queue, history and ``/ws`` events change it."""

from __future__ import annotations

import enum
from collections.abc import Hashable, Mapping
from datetime import datetime
from typing import Any

import attrs

from progresskit import Status, canonical_status
from progresskit_comfyui import RUNNER_TYPE
from progresskit_comfyui.protocol import (
    ErrorInfo,
    HistoryEntry,
    QueueEntry,
    Workflow,
    error_from,
)

__all__ = ["RUNNER_TYPE", "JobState", "ProgressStatus", "ProgressUpdate"]


class ProgressStatus(str, enum.Enum):
    """Seed 003's job statuses, plus ``cancelled`` (interrupted, or deleted from the queue)."""

    UNKNOWN = "unknown"
    #: Waiting in the server's queue.
    QUEUED = "queued"
    #: Registered, not seen in the queue yet.
    INITIALIZING = "initializing"
    #: Executing.
    PROCESSING = "processing"
    #: Left the queue; its result is not in the history yet.
    COMPLETING = "completing"
    COMPLETED = "completed"
    FAILED = "failed"
    #: Left the queue and never reached the history within the vanish timeout.
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"

    @property
    def canonical(self) -> Status:
        """This status in progresskit's vocabulary."""
        return canonical_status("comfyui", self.value)

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL

    def __str__(self) -> str:
        return self.value


_TERMINAL = frozenset(
    {
        ProgressStatus.COMPLETED,
        ProgressStatus.FAILED,
        ProgressStatus.TIMEOUT,
        ProgressStatus.CANCELLED,
    }
)
# Non-terminal statuses only move forward: an HTTP snapshot that left the server before a
# WebSocket event arrived must not send a running job back to "queued".
_RANK = {
    ProgressStatus.UNKNOWN: 0,
    ProgressStatus.INITIALIZING: 1,
    ProgressStatus.QUEUED: 2,
    ProgressStatus.PROCESSING: 3,
    ProgressStatus.COMPLETING: 4,
}


@attrs.frozen
class ProgressUpdate:
    """A job's progress as of ``updated_at`` (seed 003's fields first)."""

    job_id: Hashable
    comfyui_prompt_id: str
    status: ProgressStatus
    progress_percent: float = 0.0
    #: Step ``current_step`` of ``total_steps`` of the node being executed.
    current_step: int = 0
    total_steps: int = 0
    estimated_completion: datetime | None = None
    #: Execution time of a completed job (server clock), in seconds.
    generation_time: float | None = None
    error_message: str | None = None
    # -- beyond seed 003 ------------------------------------------------------------------
    job_type: str = "default"
    server: str = ""
    current_node: str | None = None
    current_node_class: str | None = None
    nodes_completed: int = 0
    nodes_total: int | None = None
    #: 0 = next to run; ``None`` unless queued.
    queue_position: int | None = None
    #: Remaining seconds as of ``updated_at`` (``estimated_completion`` as a duration).
    eta_seconds: float | None = None
    #: Unix times: execution start, the newest observation, the end.
    started_at: float | None = None
    updated_at: float | None = None
    ended_at: float | None = None
    #: Why the status is what it is when the status word alone does not say.
    detail: str | None = None

    @property
    def canonical_status(self) -> Status:
        return self.status.canonical


@attrs.define
class JobState:
    """Mutable state of one job, owned by the monitor's event loop."""

    job_id: Hashable
    prompt_id: str
    job_type: str
    server: str
    registered_at: float  # monotonic
    #: Monotonic time of the newest first-hand news (registration, a /ws event): a queue
    #: snapshot asked for before it is older news and says nothing about the job.
    news_at: float = 0.0
    workflow: Workflow | None = None
    status: ProgressStatus = ProgressStatus.INITIALIZING
    queue_position: int | None = None
    seen: bool = False
    #: Monotonic time since which the job is in neither the queue nor the history.
    absent_since: float | None = None
    started_ms: float | None = None
    ended_ms: float | None = None
    started_wall: float | None = None
    ended_wall: float | None = None
    updated_wall: float | None = None
    finished_mono: float | None = None
    cached: frozenset[str] = frozenset()
    finished_nodes: set[str] = attrs.field(factory=set)
    current_node: str | None = None
    step: int = 0
    steps: int = 0
    #: (node, step, monotonic time) of the newest ``progress`` message.
    timed_step: tuple[str | None, int, float] | None = None
    error: ErrorInfo | None = None
    detail: str | None = None
    cancel_requested: bool = False
    #: The prompt ended per the event stream and its history should be read.
    needs_history: bool = False
    generation_time: float | None = None

    # -- transitions ----------------------------------------------------------------------

    def advance(self, status: ProgressStatus) -> bool:
        """Move to ``status`` unless terminal or a step back; whether anything changed."""
        if self.status.is_terminal or status is self.status:
            return False
        if not status.is_terminal and _RANK[status] < _RANK.get(self.status, 0):
            return False
        self.status = status
        return True

    def finish(self, status: ProgressStatus, mono: float, wall: float, detail: str | None) -> bool:
        if self.status.is_terminal:
            return False
        self.status = status
        self.detail = detail
        self.finished_mono = mono
        self.ended_wall = self.ended_wall or wall
        self.queue_position = None
        self.current_node = None
        return True

    # -- HTTP observations ----------------------------------------------------------------

    def on_queue(self, entry: QueueEntry, where: str, position: int, wall: float) -> bool:
        self.seen = True
        self.absent_since = None
        if self.status is ProgressStatus.COMPLETING and not self.needs_history:
            # "Completing" was only inferred from an absence; the queue has it after all.
            self.status = ProgressStatus.PROCESSING
        if self.workflow is None:
            self.workflow = entry.workflow
        self.updated_wall = wall
        if where == "running":
            changed = self.advance(ProgressStatus.PROCESSING)
            if self.started_wall is None:
                self.started_wall = wall
            changed |= self.queue_position is not None
            self.queue_position = None
            return changed
        changed = self.advance(ProgressStatus.QUEUED) or (
            self.status is ProgressStatus.QUEUED and self.queue_position != position
        )
        if self.status is ProgressStatus.QUEUED:
            self.queue_position = position
        return changed

    def on_history(self, entry: HistoryEntry, mono: float, wall: float) -> bool:
        self.workflow = self.workflow or entry.workflow
        self.started_ms = self.started_ms or entry.started_ms
        self.ended_ms = entry.ended_ms
        if entry.started_ms is not None:
            self.started_wall = entry.started_ms / 1000.0
        if entry.ended_ms is not None:
            self.ended_wall = entry.ended_ms / 1000.0
        self.cached = frozenset(entry.cached) or self.cached
        self.needs_history = False
        self.updated_wall = self.ended_wall or wall
        if entry.outcome == "success":
            self.generation_time = entry.generation_seconds
            if self.workflow is not None:
                self.finished_nodes = set(self.workflow.nodes) - set(self.cached)
            return self.finish(ProgressStatus.COMPLETED, mono, wall, None)
        self.finished_nodes |= set(entry.executed) - set(self.cached)
        if entry.outcome == "interrupted":
            return self.finish(ProgressStatus.CANCELLED, mono, wall, "interrupted")
        self.error = entry.error
        return self.finish(ProgressStatus.FAILED, mono, wall, entry.status_str)

    def on_absent(self, mono: float, wall: float, vanish_timeout: float) -> bool:
        """Neither in the queue nor in the history (ComfyUI answers ``{}``)."""
        if self.absent_since is None:
            self.absent_since = mono if self.seen else self.registered_at
        gone_for = mono - self.absent_since
        if gone_for >= vanish_timeout:
            where = "left the queue" if self.seen else "never appeared in the queue"
            return self.finish(
                ProgressStatus.TIMEOUT,
                mono,
                wall,
                f"{where} and not in the history after {gone_for:.0f}s",
            )
        if self.seen:
            return self.advance(ProgressStatus.COMPLETING)
        return False

    # -- /ws events -----------------------------------------------------------------------

    def on_event(
        self, kind: str, data: Mapping[str, Any], mono: float, wall: float
    ) -> tuple[bool, float | None]:
        """Apply one ``/ws`` message; (changed, duration of the step it ended, if any)."""
        self.news_at = mono
        self.updated_wall = wall
        self.seen = True
        self.absent_since = None
        step_seconds: float | None = None
        changed = True
        if kind == "execution_start":
            self.started_ms = _ms(data.get("timestamp"))
            self.started_wall = self.started_ms / 1000.0 if self.started_ms else wall
            self.queue_position = None
            changed = self.advance(ProgressStatus.PROCESSING)
        elif kind == "execution_cached":
            self.cached = frozenset(str(n) for n in data.get("nodes") or ())
        elif kind == "executing":
            node = data.get("node")
            if node is None:
                # "this prompt is over": the history is written by now.
                self.needs_history = not self.status.is_terminal
                self.current_node = None
            else:
                self._enter(str(node))
                self.advance(ProgressStatus.PROCESSING)
        elif kind == "progress":
            node = data.get("node")
            value, maximum = data.get("value"), data.get("max")
            if not (isinstance(value, int) and isinstance(maximum, int) and maximum > 0):
                return False, None
            node_id = None if node is None else str(node)
            if node_id is not None and node_id != self.current_node:
                self._enter(node_id)
            # Timed on progress messages alone: progress_state reports the same step first.
            timed = self.timed_step
            if timed is not None and timed[0] == node_id and value > timed[1]:
                step_seconds = (mono - timed[2]) / (value - timed[1])
            self.timed_step = (node_id, value, mono)
            self.step, self.steps = value, maximum
            self.advance(ProgressStatus.PROCESSING)
        elif kind == "progress_state":
            changed = self._progress_state(data.get("nodes"))
            self.advance(ProgressStatus.PROCESSING)
        elif kind == "executed":
            node = data.get("node")
            if node is not None:
                self.finished_nodes.add(str(node))
        elif kind == "execution_success":
            self._ended(data)
            if self.started_ms is None or self.ended_ms is None:
                # Followed from mid-run: the history holds both timestamps; read it first.
                self.needs_history = True
                changed = self.advance(ProgressStatus.COMPLETING)
            else:
                self.generation_time = max(0.0, (self.ended_ms - self.started_ms) / 1000.0)
                if self.workflow is not None:
                    self.finished_nodes = set(self.workflow.nodes) - set(self.cached)
                changed = self.finish(ProgressStatus.COMPLETED, mono, wall, None)
        elif kind == "execution_error":
            self._ended(data)
            self.error = error_from(data)
            changed = self.finish(ProgressStatus.FAILED, mono, wall, "execution_error")
        elif kind == "execution_interrupted":
            self._ended(data)
            changed = self.finish(ProgressStatus.CANCELLED, mono, wall, "interrupted")
        else:
            return False, None
        return changed, step_seconds

    def _ended(self, data: Mapping[str, Any]) -> None:
        self.ended_ms = _ms(data.get("timestamp"))
        if self.ended_ms is not None:
            self.ended_wall = self.ended_ms / 1000.0
        self.finished_nodes |= {str(n) for n in data.get("executed") or ()} - set(self.cached)

    def _enter(self, node: str) -> None:
        if self.current_node is not None and self.current_node != node:
            self.finished_nodes.add(self.current_node)
        self.current_node = node
        self.step = self.steps = 0

    def _progress_state(self, nodes: Any) -> bool:
        if not isinstance(nodes, Mapping):
            return False
        running: str | None = None
        for node_id, state in nodes.items():
            if not isinstance(state, Mapping):
                continue
            if state.get("state") == "finished":
                self.finished_nodes.add(str(node_id))
            elif state.get("state") == "running":
                running = str(node_id)
                value, maximum = state.get("value"), state.get("max")
                if running != self.current_node:
                    self._enter(running)
                # progress_state counts the running node's steps as floats; a node with no
                # progress callbacks says 0 of 1 throughout.
                if (
                    isinstance(value, (int, float))
                    and isinstance(maximum, (int, float))
                    and maximum > 1
                ):
                    self.step, self.steps = int(value), int(maximum)
        if running is None and self.current_node in self.finished_nodes:
            self.current_node = None
            self.step = self.steps = 0
        return True

    # -- the public view ------------------------------------------------------------------

    @property
    def nodes_done(self) -> int:
        # Cached output nodes still get "executed"; they are not part of the work.
        return len(self.finished_nodes - self.cached)

    @property
    def nodes_total(self) -> int | None:
        if self.workflow is None or not self.workflow.nodes:
            return None
        return len(set(self.workflow.nodes) - set(self.cached))

    def fraction(self) -> float:
        """Share of the work done, by nodes (each node weighs the same) and steps within."""
        if self.status is ProgressStatus.COMPLETED:
            return 1.0
        total = self.nodes_total
        step_part = self.step / self.steps if self.steps else 0.0
        if not total:
            return min(step_part, 0.999)
        running = step_part if self.current_node not in self.finished_nodes else 0.0
        # The last step's progress message never says max, and a job is not done until the
        # server says so: never report 100% for a job still executing.
        return min((self.nodes_done + running) / total, 0.999)

    def snapshot(self, eta: float | None, estimated: datetime | None) -> ProgressUpdate:
        error = self.error.described if self.error else None
        return ProgressUpdate(
            job_id=self.job_id,
            comfyui_prompt_id=self.prompt_id,
            status=self.status,
            progress_percent=round(100.0 * self.fraction(), 3),
            current_step=self.step,
            total_steps=self.steps,
            estimated_completion=estimated,
            generation_time=self.generation_time,
            error_message=error,
            job_type=self.job_type,
            server=self.server,
            current_node=self.current_node,
            current_node_class=self.workflow.class_of(self.current_node) if self.workflow else None,
            nodes_completed=self.nodes_done,
            nodes_total=self.nodes_total,
            queue_position=self.queue_position,
            eta_seconds=eta,
            started_at=self.started_wall,
            updated_at=self.updated_wall,
            ended_at=self.ended_wall,
            detail=self.detail,
        )


def _ms(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
