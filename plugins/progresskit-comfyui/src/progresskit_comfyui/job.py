"""One monitored job: its state, and how queue, history and ``/ws`` events change it."""

from __future__ import annotations

import enum
from collections import deque
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
    timestamp_ms,
)

#: Timed steps at which a running node's own step pace and its learned time weigh the same
#: in the seconds it still needs.
STEPS_TO_TRUST_PACE = 4
#: Progress times kept per job (the newest): what the rhythm rule needs, a few dozen.
UPDATE_TIMES = 64

__all__ = ["RUNNER_TYPE", "Detail", "JobState", "ProgressStatus", "ProgressUpdate"]


class Detail:
    """The one ``detail`` of each way a job ends other than completing, whichever path
    (event stream, history, queue) told it."""

    EXECUTION_ERROR = "execution error"
    INTERRUPTED = "interrupted"
    #: A cancel's deletion came too late: the prompt had started and was interrupted.
    INTERRUPTED_AFTER_DELETE = "interrupted (it started before the deletion from the queue)"
    DELETED = "deleted from the queue"
    SERVER_RESTARTED = "server restarted"
    UNKNOWN_PROMPT = "unknown prompt"
    VANISHED = "left the queue and never reached the history"


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
        # Only ever reached for a prompt the server does not know: nothing will change it.
        ProgressStatus.UNKNOWN,
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
    #: Remaining seconds as of ``eta_as_of`` (``estimated_completion`` as a duration).
    eta_seconds: float | None = None
    #: Unix times: execution start, the newest observation, the end.
    started_at: float | None = None
    updated_at: float | None = None
    ended_at: float | None = None
    #: Why the status is what it is when the status word alone does not say.
    detail: str | None = None
    #: Unix time ``eta_seconds`` is counted from: subtract the time since from it.
    eta_as_of: float | None = None
    #: What the workflow is called (its output nodes' classes), when its graph is known.
    workflow_name: str | None = None
    #: Unix times the server reported progress of the job, oldest first (the newest 64):
    #: its events (the server's own timestamp where the message has one, else when it
    #: arrived) and the history's start and end. The rhythm of a tracker's updates.
    update_times: tuple[float, ...] = ()

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
    #: The detail an interrupt this monitor sent ends with (why it was interrupted).
    cancel_detail: str = Detail.INTERRUPTED
    #: Monotonic time the current node started, and seconds each finished node took (as
    #: the event stream showed them; node id -> seconds).
    node_since: float | None = None
    node_seconds: dict[str, float] = attrs.field(factory=dict)
    #: Monotonic time of the newest step, and (step, time) of the node's first one: its pace.
    step_at: float | None = None
    first_step: tuple[int, float] | None = None
    #: The prompt ended per the event stream and its history should be read.
    needs_history: bool = False
    generation_time: float | None = None
    #: When the server reported progress (see ProgressUpdate.update_times).
    progress_times: deque[float] = attrs.field(factory=lambda: deque(maxlen=UPDATE_TIMES))

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
        if self.status.is_terminal:
            return False  # frozen: its final record was given once
        self.workflow = self.workflow or entry.workflow
        self.started_ms = self.started_ms or entry.started_ms
        self.ended_ms = entry.ended_ms
        if entry.started_ms is not None:
            self.started_wall = entry.started_ms / 1000.0
        if entry.ended_ms is not None:
            self.ended_wall = entry.ended_ms / 1000.0
        self.cached = frozenset(entry.cached) or self.cached
        self.needs_history = False
        for stamp in (entry.started_ms, entry.ended_ms):
            if stamp is not None and (not self.progress_times
                                      or stamp / 1000.0 > self.progress_times[-1]):
                self.progress_times.append(stamp / 1000.0)
        self.updated_wall = self.ended_wall or wall
        if entry.outcome == "success":
            self.generation_time = entry.generation_seconds
            if self.workflow is not None:
                self.finished_nodes = set(self.workflow.nodes) - set(self.cached)
            return self.finish(ProgressStatus.COMPLETED, mono, wall, None)
        self.finished_nodes |= set(entry.executed) - set(self.cached)
        if entry.outcome == "interrupted":
            return self.finish(ProgressStatus.CANCELLED, mono, wall, self.interrupt_detail)
        self.error = entry.error
        return self.finish(ProgressStatus.FAILED, mono, wall, Detail.EXECUTION_ERROR)

    @property
    def interrupt_detail(self) -> str:
        return self.cancel_detail if self.cancel_requested else Detail.INTERRUPTED

    def on_absent(self, mono: float, wall: float, vanish_timeout: float,
                  unknown_timeout: float) -> bool:
        """Neither in the queue nor in the history (ComfyUI answers ``{}``)."""
        if self.absent_since is None:
            self.absent_since = mono if self.seen else self.registered_at
        gone_for = mono - self.absent_since
        if not self.seen and gone_for >= unknown_timeout:
            # Never in the queue, never in the history: the server does not know the id
            # (mistyped, another server's). Not a failure of any job.
            return self.finish(ProgressStatus.UNKNOWN, mono, wall, Detail.UNKNOWN_PROMPT)
        if self.seen and gone_for >= vanish_timeout:
            return self.finish(ProgressStatus.TIMEOUT, mono, wall, Detail.VANISHED)
        if self.seen:
            return self.advance(ProgressStatus.COMPLETING)
        return False

    # -- /ws events -----------------------------------------------------------------------

    def on_event(
        self, kind: str, data: Mapping[str, Any], mono: float, wall: float
    ) -> tuple[bool, float | None]:
        """Apply one ``/ws`` message; (changed, duration of the step it ended, if any)."""
        if self.status.is_terminal:
            # Frozen: events arriving after the end (a lagging stream, the prompt's final
            # ``executing``) change nothing and call nobody back.
            return False, None
        self.news_at = mono
        self.updated_wall = wall
        self.seen = True
        self.absent_since = None
        if kind in _PROGRESS_EVENTS:
            stamp = _ms(data.get("timestamp"))
            self.progress_times.append(wall if stamp is None else stamp / 1000.0)
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
                self._enter(str(node), mono)
                self.advance(ProgressStatus.PROCESSING)
        elif kind == "progress":
            node = data.get("node")
            value, maximum = data.get("value"), data.get("max")
            if not (isinstance(value, int) and isinstance(maximum, int) and maximum > 0):
                return False, None
            node_id = None if node is None else str(node)
            if node_id is not None and node_id != self.current_node:
                self._enter(node_id, mono)
            # Timed on progress messages alone: progress_state reports the same step first.
            timed = self.timed_step
            if timed is not None and timed[0] == node_id and value > timed[1]:
                step_seconds = (mono - timed[2]) / (value - timed[1])
            self.timed_step = (node_id, value, mono)
            self._stepped(value, mono)
            self.step, self.steps = value, maximum
            self.advance(ProgressStatus.PROCESSING)
        elif kind == "progress_state":
            changed = self._progress_state(data.get("nodes"), mono)
            self.advance(ProgressStatus.PROCESSING)
        elif kind == "executed":
            node = data.get("node")
            if node is not None:
                self._node_done(str(node), mono)
        elif kind == "execution_success":
            self._ended(data, mono)
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
            self._ended(data, mono)
            self.error = error_from(data)
            changed = self.finish(ProgressStatus.FAILED, mono, wall, Detail.EXECUTION_ERROR)
        elif kind == "execution_interrupted":
            self._ended(data, mono)
            changed = self.finish(ProgressStatus.CANCELLED, mono, wall, self.interrupt_detail)
        else:
            return False, None
        return changed, step_seconds

    def _ended(self, data: Mapping[str, Any], mono: float) -> None:
        self.ended_ms = _ms(data.get("timestamp"))
        if self.ended_ms is not None:
            self.ended_wall = self.ended_ms / 1000.0
        if self.current_node is not None and data.get("node_id") is None:
            self._node_done(self.current_node, mono)
        self.finished_nodes |= {str(n) for n in data.get("executed") or ()} - set(self.cached)

    def _node_done(self, node: str, mono: float) -> None:
        if node == self.current_node and self.node_since is not None:
            self.node_seconds.setdefault(node, max(0.0, mono - self.node_since))
        self.finished_nodes.add(node)

    def _enter(self, node: str, mono: float) -> None:
        if self.current_node is not None and self.current_node != node:
            self._node_done(self.current_node, mono)
        self.current_node = node
        self.node_since = mono
        self.step = self.steps = 0
        self.step_at = None
        self.first_step = None

    def _stepped(self, value: int, mono: float) -> None:
        if self.first_step is None:
            self.first_step = (value, mono)
        if value != self.step or self.step_at is None:
            self.step_at = mono

    def _progress_state(self, nodes: Any, mono: float) -> bool:
        if not isinstance(nodes, Mapping):
            return False
        running: str | None = None
        for node_id, state in nodes.items():
            if not isinstance(state, Mapping):
                continue
            if state.get("state") == "finished":
                self._node_done(str(node_id), mono)
            elif state.get("state") == "running":
                running = str(node_id)
                value, maximum = state.get("value"), state.get("max")
                if running != self.current_node:
                    self._enter(running, mono)
                # progress_state counts the running node's steps as floats; a node with no
                # progress callbacks says 0 of 1 throughout.
                if (
                    isinstance(value, (int, float))
                    and isinstance(maximum, (int, float))
                    and maximum > 1
                ):
                    self._stepped(int(value), mono)
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

    def to_run(self) -> list[str]:
        """The prompt's nodes that execute (cached ones excluded), in id order."""
        if self.workflow is None:
            return []
        return sorted(set(self.workflow.nodes) - set(self.cached))

    def node_part(self, weight: float | None, now: float) -> float:
        """How far the running node is, 0..1: by its steps, and between two steps (or with
        no steps at all) by the time it has run against ``weight``, its expected seconds,
        so that progress and the ETA move while no event arrives."""
        if self.current_node is None or self.current_node in self.finished_nodes:
            return 0.0
        by_steps = self.step / self.steps if self.steps else 0.0
        if not weight or weight <= 0 or self.node_since is None:
            return by_steps
        # Never more than 95% by time alone: a node running long is late, not done.
        return max(by_steps, min((now - self.node_since) / weight, 0.95))

    def node_left(self, weight: float, now: float) -> float:
        """Seconds the running node still needs: by its own step pace once two steps were
        timed, else its expected time less what it ran, counted down with no events."""
        expected = weight * (1.0 - self.node_part(weight, now))
        first = self.first_step
        if (self.steps and first is not None and self.step_at is not None
                and self.step - first[0] >= 2 and self.step_at > first[1]):
            timed = self.step - first[0]
            per_step = (self.step_at - first[1]) / timed
            paced = max(0.0, per_step * (self.steps - self.step) - (now - self.step_at))
            # A pace from a few steps is noisy (the first ones carry the node's start-up):
            # it takes over from the learned time as steps are timed.
            trust = timed / (timed + STEPS_TO_TRUST_PACE)
            return trust * paced + (1.0 - trust) * expected
        return expected

    def fraction(self, weights: Mapping[str, float] | None = None, now: float = 0.0) -> float:
        """Share of the work done. With ``weights`` (node id -> expected seconds), weighted
        by time; without, every node weighs the same, steps count within a node."""
        if self.status is ProgressStatus.COMPLETED:
            return 1.0
        nodes = self.to_run()
        if not nodes:
            return min(self.step / self.steps if self.steps else 0.0, 0.999)
        if weights and all(n in weights for n in nodes):
            total = sum(weights[n] for n in nodes)
            if total > 0:
                done = sum(weights[n] for n in nodes if n in self.finished_nodes)
                current = self.current_node
                running = 0.0
                if current is not None and current in weights:
                    running = weights[current] * self.node_part(weights[current], now)
                return min((done + running) / total, 0.999)
        running = self.node_part(None, now)
        # The last step's progress message never says max, and a job is not done until the
        # server says so: never report 100% for a job still executing.
        return min((self.nodes_done + running) / len(nodes), 0.999)

    def snapshot(self, eta: float | None, estimated: datetime | None, fraction: float,
                 as_of: float) -> ProgressUpdate:
        error = self.error.described if self.error else None
        return ProgressUpdate(
            job_id=self.job_id,
            comfyui_prompt_id=self.prompt_id,
            status=self.status,
            progress_percent=round(100.0 * fraction, 3),
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
            eta_as_of=as_of if eta is not None else None,
            workflow_name=self.workflow.name if self.workflow else None,
            update_times=tuple(sorted(self.progress_times)),
        )


#: The events that say the job moved on (not ``status``, which is the queue's).
_PROGRESS_EVENTS = frozenset({
    "execution_start", "execution_cached", "executing", "progress", "progress_state",
    "executed", "execution_success", "execution_error", "execution_interrupted",
})


def _ms(value: Any) -> float | None:
    try:
        return timestamp_ms(value)
    except ValueError:
        return None  # a bad stamp on the event stream: the history's will be read
