"""What a ComfyUI server says, parsed into typed records.

Shapes are those of ComfyUI 0.3.64 as captured from a real server (``/queue``,
``/history``, ``/system_stats``); anything else is a :class:`ProtocolError` that names the
request and what was expected, never a ``KeyError`` deep inside the monitor.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import attrs

from progresskit import ProgresskitError

__all__ = [
    "ComfyUIError",
    "ErrorInfo",
    "HistoryEntry",
    "ProtocolError",
    "QueueEntry",
    "QueueSnapshot",
    "ServerSlow",
    "ServerUnavailable",
    "Workflow",
    "parse_history",
    "parse_queue",
    "parse_system_stats",
]


class ComfyUIError(ProgresskitError):
    """Talking to a ComfyUI server failed."""


class ServerUnavailable(ComfyUIError):
    """The server could not be reached (refused, reset, unknown host): retry later."""


class ServerSlow(ComfyUIError):
    """The server accepted the request but did not answer in time.

    ComfyUI encodes preview images on its event loop and can stall replies for seconds:
    this is a busy server, not a dead one, and is never counted as a connection failure.
    """


class ProtocolError(ComfyUIError):
    """The server answered, but not like ComfyUI does."""


@attrs.frozen
class Workflow:
    """The node graph of a prompt: node id -> class type, and the output nodes."""

    nodes: Mapping[str, str] = attrs.field(factory=dict)
    outputs: tuple[str, ...] = ()

    @property
    def kind(self) -> str:
        """A job type for prompts nobody named: the sorted class types, joined by ``+``."""
        return "+".join(sorted(set(self.nodes.values()))) or "empty"

    @property
    def name(self) -> str:
        """What to call a prompt of this graph: the classes of its output nodes."""
        outputs = sorted({self.nodes[o] for o in self.outputs if o in self.nodes})
        return "+".join(outputs) or self.kind

    def class_of(self, node_id: str | None) -> str | None:
        return None if node_id is None else self.nodes.get(node_id)


def workflow_from(graph: Any, outputs: Any = ()) -> Workflow:
    """A :class:`Workflow` from an API-format prompt graph; unreadable nodes are skipped."""
    nodes: dict[str, str] = {}
    if isinstance(graph, Mapping):
        for node_id, node in graph.items():
            if isinstance(node, Mapping) and isinstance(node.get("class_type"), str):
                nodes[str(node_id)] = node["class_type"]
    outs = tuple(str(o) for o in outputs) if isinstance(outputs, (list, tuple)) else ()
    return Workflow(nodes, outs)


@attrs.frozen
class QueueEntry:
    """One prompt in ``/queue``: ``[number, prompt_id, graph, extra_data, output_nodes]``."""

    number: float
    prompt_id: str
    client_id: str | None
    #: The graph as received: a queue of hundreds of prompts is polled every few seconds,
    #: and only the prompts someone follows need their nodes read.
    graph: Any = attrs.field(default=None, eq=False, repr=False)
    outputs: Any = attrs.field(default=(), eq=False, repr=False)

    @property
    def workflow(self) -> Workflow:
        return workflow_from(self.graph, self.outputs)


@attrs.frozen
class QueueSnapshot:
    running: tuple[QueueEntry, ...]
    pending: tuple[QueueEntry, ...]

    def find(self, prompt_id: str) -> tuple[str, int] | None:
        """``("running", 0)`` or ``("pending", position)`` for ``prompt_id``, else ``None``."""
        for i, entry in enumerate(self.running):
            if entry.prompt_id == prompt_id:
                return "running", i
        for i, entry in enumerate(sorted(self.pending, key=lambda e: e.number)):
            if entry.prompt_id == prompt_id:
                return "pending", i
        return None

    def entries(self) -> tuple[QueueEntry, ...]:
        return self.running + self.pending


@attrs.frozen
class ErrorInfo:
    """An ``execution_error`` message: where the prompt failed and why."""

    node_id: str | None
    node_type: str | None
    exception_type: str | None
    exception_message: str

    @property
    def summary(self) -> str:
        """The first line of the message (the rest is often paths and tensor dumps)."""
        lines = [line.strip(" *") for line in self.exception_message.splitlines()]
        first = next((line for line in lines if line), "")
        return first or self.exception_type or "unknown error"

    @property
    def described(self) -> str:
        where = f" in node {self.node_id} ({self.node_type})" if self.node_id else ""
        kind = f"{self.exception_type}: " if self.exception_type else ""
        return f"{kind}{self.summary}{where}"


def error_from(data: Mapping[str, Any]) -> ErrorInfo:
    def text(key: str) -> str | None:
        value = data.get(key)
        return None if value is None else str(value)

    return ErrorInfo(
        text("node_id"), text("node_type"), text("exception_type"),
        text("exception_message") or "",
    )


@attrs.frozen
class HistoryEntry:
    """A finished prompt from ``/history``."""

    prompt_id: str
    workflow: Workflow
    client_id: str | None
    #: ``success``, ``error`` or ``interrupted`` (history says ``error`` for an interrupt;
    #: its last message, ``execution_interrupted``, tells them apart).
    outcome: str
    status_str: str
    #: Server epoch milliseconds of ``execution_start`` and of the final message.
    started_ms: float | None
    ended_ms: float | None
    error: ErrorInfo | None
    #: Nodes that ran before an error or interrupt, and nodes served from the cache.
    executed: tuple[str, ...] = ()
    cached: tuple[str, ...] = ()

    @property
    def generation_seconds(self) -> float | None:
        if self.started_ms is None or self.ended_ms is None:
            return None
        return max(0.0, (self.ended_ms - self.started_ms) / 1000.0)


#: Server epoch milliseconds before this (2001) or after this (2286) are no timestamps.
MIN_TIMESTAMP_MS = 1e12
MAX_TIMESTAMP_MS = 1e13


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} does not fit a float")
    return value


def loads(content: bytes | str, what: str) -> Any:
    """A reply or event as JSON; :class:`ProtocolError` for anything else, including NaN,
    floats that overflow and nesting too deep to walk. Integers are parsed natively (a
    Python callback per integer would double the cost of a large ``/queue``): Python refuses
    ones over 4300 digits, and a huge one where a time belongs fails :func:`timestamp_ms`."""
    try:
        return json.loads(content, parse_constant=_no_constant, parse_float=_finite_float)
    except RecursionError:
        raise ProtocolError(f"{what}: reply is nested too deeply to be ComfyUI's") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"{what}: reply is not JSON ComfyUI sends: {exc}"[:300]) from None


def timestamp_ms(value: Any) -> float | None:
    """A server timestamp (epoch ms), or ``None`` when absent; ``ValueError`` when it is
    there but no plausible time."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"timestamp {_short(value)} is not a number")
    if not (MIN_TIMESTAMP_MS <= value <= MAX_TIMESTAMP_MS):
        raise ValueError(f"timestamp {_short(value)} is not a time (epoch milliseconds)")
    return float(value)


def parse_queue(body: Any, request: str = "GET /queue") -> QueueSnapshot:
    """``/queue`` as a :class:`QueueSnapshot`; :class:`ProtocolError` for another shape."""
    if not isinstance(body, Mapping) or not all(
        isinstance(body.get(k), list) for k in ("queue_running", "queue_pending")
    ):
        raise ProtocolError(
            f"{request}: expected an object with lists 'queue_running' and "
            f"'queue_pending', got {_short(body)}"
        )
    return QueueSnapshot(
        tuple(_queue_entry(e, request) for e in body["queue_running"]),
        tuple(_queue_entry(e, request) for e in body["queue_pending"]),
    )


def _queue_entry(item: Any, request: str) -> QueueEntry:
    if not isinstance(item, list) or len(item) < 3 or not isinstance(item[1], str):
        raise ProtocolError(
            f"{request}: expected queue items [number, prompt_id, prompt, extra_data, "
            f"outputs], got {_short(item)}"
        )
    extra = item[3] if len(item) > 3 and isinstance(item[3], Mapping) else {}
    client = extra.get("client_id")
    number = item[0] if isinstance(item[0], (int, float)) else 0
    return QueueEntry(
        number, item[1], client if isinstance(client, str) else None,
        item[2], item[4] if len(item) > 4 else (),
    )


def parse_history(body: Any, request: str = "GET /history",
                  limit: int | None = None) -> dict[str, HistoryEntry]:
    """``/history`` or ``/history/{id}``: prompt id -> entry (``{}`` while unknown or running);
    with ``limit``, only the newest ``limit`` entries are read."""
    if not isinstance(body, Mapping):
        raise ProtocolError(f"{request}: expected an object, got {_short(body)}")
    items = list(body.items())
    if limit is not None:
        items = items[-limit:] if limit > 0 else []
    return {str(pid): _history_entry(str(pid), item, request) for pid, item in items}


def _history_entry(prompt_id: str, item: Any, request: str) -> HistoryEntry:
    status = item.get("status") if isinstance(item, Mapping) else None
    if not isinstance(status, Mapping) or not isinstance(status.get("status_str"), str):
        raise ProtocolError(
            f"{request}: history of {prompt_id} has no 'status.status_str' "
            f"(expected success or error), got {_short(item)}"
        )
    prompt = item.get("prompt")
    graph: Any = {}
    extra: Mapping[str, Any] = {}
    outputs: Any = ()
    if isinstance(prompt, list) and len(prompt) >= 3:
        graph = prompt[2]
        extra = prompt[3] if len(prompt) > 3 and isinstance(prompt[3], Mapping) else {}
        outputs = prompt[4] if len(prompt) > 4 else ()
    started = ended = None
    error: ErrorInfo | None = None
    outcome = status["status_str"]
    executed: tuple[str, ...] = ()
    cached: tuple[str, ...] = ()
    for message in status.get("messages") or ():
        if not (isinstance(message, list) and len(message) == 2):
            continue
        if not isinstance(message[1], Mapping):
            continue
        name, data = message
        try:
            stamp = timestamp_ms(data.get("timestamp"))
        except ValueError as exc:
            raise ProtocolError(f"{request}: history of {prompt_id}: {exc}") from None
        if name == "execution_start":
            started = stamp
        elif name == "execution_cached":
            cached = tuple(str(n) for n in data.get("nodes") or ())
        elif name in ("execution_success", "execution_error", "execution_interrupted"):
            ended = stamp
            executed = tuple(str(n) for n in data.get("executed") or ())
            if name == "execution_error":
                error = error_from(data)
            elif name == "execution_interrupted":
                outcome = "interrupted"
    client = extra.get("client_id")
    return HistoryEntry(
        prompt_id, workflow_from(graph, outputs), client if isinstance(client, str) else None,
        outcome, status["status_str"], started, ended, error, executed, cached,
    )


def system_of(body: Any, request: str = "GET /system_stats") -> dict[str, Any]:
    """The ``system`` object of ``/system_stats``; :class:`ProtocolError` if it is not
    ComfyUI's (no ``system.comfyui_version``)."""
    system = body.get("system") if isinstance(body, Mapping) else None
    version = system.get("comfyui_version") if isinstance(system, Mapping) else None
    if not isinstance(system, Mapping) or not isinstance(version, str):
        raise ProtocolError(
            f"{request}: does not answer like a ComfyUI server (expected "
            f"'system.comfyui_version' in the reply), got {_short(body)}"
        )
    return dict(system)


def parse_system_stats(body: Any, request: str = "GET /system_stats") -> str:
    """The ComfyUI version from ``/system_stats``; :class:`ProtocolError` if it is not there."""
    version: str = system_of(body, request)["comfyui_version"]
    return version


def _short(value: Any, limit: int = 120) -> str:
    try:
        text = repr(value)
    except RecursionError:
        return "a value nested too deeply to show"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def normalise_url(url: str) -> str:
    """``http(s)://host:port[/prefix]`` without a trailing slash; ``ValueError`` otherwise."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{url!r} is not an http(s):// URL of a ComfyUI server")
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))
