"""The data model: what progresskit knows about a run.

Every tracker, whatever system it reads (Pylon epochs, an evaluator, a multi-stage event
log, a Brush status file, ComfyUI jobs), answers with the same :class:`ProgressInfo`;
the run-status rules turn it into a :class:`RunStatus`. JSON shapes are owned by
:mod:`progresskit.model.converter`, never by these classes.
"""

from __future__ import annotations

import enum
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

import attrs

__all__ = [
    "Cause",
    "CompletedItem",
    "ProcessInfo",
    "ProgressInfo",
    "RunStatus",
    "Status",
]


class Status(str, enum.Enum):
    """The canonical run status. Every source vocabulary maps into it (see docs/status.md)."""

    #: Known but not started yet (queued, submitted, starting up).
    PENDING = "pending"
    #: Alive and making progress (a sign of life within ``sleep_time``).
    RUNNING = "running"
    #: Stalled: a process is known to exist but shows no sign of progress (within its
    #: lease's promised interval, or ``sleep_time``).
    STUCK = "stuck"
    #: The producer vanished without saying so (killed, OOM, power loss).
    CRASHED = "crashed"
    #: Ended with an error, or stopped with no process and no completion.
    FAILED = "failed"
    #: Stopped on request.
    CANCELLED = "cancelled"
    #: Completed.
    FINISHED = "finished"
    #: Completed, and its outputs are older than ``outdated_days``.
    OUTDATED = "outdated"
    #: Could not be determined: the run's files are unreadable or no tracker fits.
    UNKNOWN = "unknown"

    @property
    def legacy(self) -> Status:
        """This status in seed 001's five words: running/finished/stuck/failed/outdated."""
        return _LEGACY.get(self, self)

    @property
    def is_active(self) -> bool:
        """Whether the run may still change (pending, running or stuck)."""
        return self in (Status.PENDING, Status.RUNNING, Status.STUCK)

    @property
    def is_healthy(self) -> bool:
        """Whether this status needs no attention (drives the CLI's exit code)."""
        return self in (
            Status.PENDING,
            Status.RUNNING,
            Status.FINISHED,
            Status.OUTDATED,
            Status.CANCELLED,
        )

    def __str__(self) -> str:
        return self.value


_LEGACY = {
    Status.PENDING: Status.RUNNING,
    Status.CRASHED: Status.FAILED,
    Status.CANCELLED: Status.FAILED,
    Status.UNKNOWN: Status.FAILED,
}


def _check_percentage(_inst: object, attribute: attrs.Attribute[Any], value: float | None) -> None:
    if value is None:
        return
    if not math.isfinite(value) or not 0.0 <= value <= 100.0:
        raise ValueError(f"{attribute.name} must be a finite number within [0, 100], got {value!r}")


def _check_non_negative(
    _inst: object, attribute: attrs.Attribute[Any], value: float | None
) -> None:
    if value is None:
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{attribute.name} must be finite, got {value!r}")
    if value < 0:
        raise ValueError(f"{attribute.name} must be >= 0, got {value!r}")


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


def _scores(value: Mapping[str, float] | None) -> dict[str, float] | None:
    return None if value is None else {str(k): float(v) for k, v in value.items()}


def _metrics(value: Mapping[str, float]) -> dict[str, float]:
    return {str(k): float(v) for k, v in value.items()}


def _strings(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    return tuple(str(v) for v in value)


def _items(value: Any) -> tuple[CompletedItem, ...]:
    # A typed stand-in for converter=tuple, whose generic signature mypy cannot solve.
    return tuple(value)


@attrs.frozen
class CompletedItem:
    """One finished unit inside a run: a multi-stage target, a ComfyUI node, a sub-job."""

    name: str
    status: str
    metrics: dict[str, float] = attrs.field(factory=dict, converter=_metrics)


@attrs.frozen
class ProgressInfo:
    """How far a run has come. Every tracker returns one.

    The first four fields are the historical ``progress.json`` shape (seed 001); a file
    holding only those loads. Everything else is optional so that each source fills what
    it knows and leaves the rest ``None``: unknown is never reported as zero.
    """

    # -- seed 001, original progress.json fields -------------------------------------
    #: ``None`` when the source does not count epochs (Brush iterations, multi-stage
    #: targets, a ``track()`` loop) or cannot tell, and by default: a tracker that says
    #: nothing of epochs never reports 0 of them. Seed 001's files always write it.
    completed_epochs: int | None = attrs.field(default=None, validator=_check_non_negative)
    #: ``None`` when it cannot be told (no total known), and by default: unknown is not 0%.
    progress_percentage: float | None = attrs.field(
        default=None, converter=_float_or_none, validator=_check_percentage
    )
    early_stopped: bool = False
    early_stopped_at_epoch: int | None = None
    # -- seed 001, enhanced fields ----------------------------------------------------
    runner_type: str = "trainer"
    total_epochs: int | None = attrs.field(default=None, validator=_check_non_negative)
    #: Unix time the run started, when known.
    start_time: float | None = attrs.field(default=None, converter=_float_or_none)
    #: Unix time of the newest sign of progress the tracker read (the heartbeat).
    last_update_time: float | None = attrs.field(default=None, converter=_float_or_none)
    best_score: dict[str, float] | None = attrs.field(default=None, converter=_scores)
    latest_score: dict[str, float] | None = attrs.field(default=None, converter=_scores)
    error_message: str | None = None
    warnings: tuple[str, ...] = attrs.field(default=(), converter=_strings)
    # -- general fields, for trackers that count steps rather than epochs -------------
    completed_steps: int | None = attrs.field(default=None, validator=_check_non_negative)
    total_steps: int | None = attrs.field(default=None, validator=_check_non_negative)
    # -- multi-stage and node-level detail --------------------------------------------
    current_stage: str | None = None
    stage_progress_percentage: float | None = attrs.field(
        default=None, converter=_float_or_none, validator=_check_percentage
    )
    #: What is being worked on now: a multi-stage target, a ComfyUI node.
    current_item: str | None = None
    items_completed: int | None = attrs.field(default=None, validator=_check_non_negative)
    items_total: int | None = attrs.field(default=None, validator=_check_non_negative)
    completed_items: tuple[CompletedItem, ...] = attrs.field(default=(), converter=_items)
    # -- time -------------------------------------------------------------------------
    elapsed_seconds: float | None = attrs.field(
        default=None, converter=_float_or_none, validator=_check_non_negative
    )
    #: progresskit's own estimate of the remaining time, with its uncertainty band.
    eta_seconds: float | None = attrs.field(
        default=None, converter=_float_or_none, validator=_check_non_negative
    )
    eta_low_seconds: float | None = attrs.field(
        default=None, converter=_float_or_none, validator=_check_non_negative
    )
    eta_high_seconds: float | None = attrs.field(
        default=None, converter=_float_or_none, validator=_check_non_negative
    )
    #: The source system's own remaining-time figure (Brush), kept as it said it.
    source_eta_seconds: float | None = attrs.field(default=None, converter=_float_or_none)
    # -- what the source itself says ---------------------------------------------------
    #: The source's status word, verbatim ("training", "execution_error", ...).
    source_status: str | None = None
    #: The source's status mapped into the canonical vocabulary, when the source has one.
    reported_status: Status | None = attrs.field(
        default=None, converter=attrs.converters.optional(Status)
    )
    #: Numeric metrics that are not scores (splat count, loss, learning rate, ...).
    metrics: dict[str, float] = attrs.field(factory=dict, converter=_metrics)
    #: Source-specific facts that are not numbers (export path, current file, job id, ...).
    details: dict[str, str] = attrs.field(factory=dict)

    @property
    def fraction(self) -> float | None:
        """Progress as a ratio in [0, 1]; ``None`` when unknown."""
        return None if self.progress_percentage is None else self.progress_percentage / 100.0

    @property
    def at_full(self) -> bool:
        """Whether progress is known and reached 100% (unknown progress is not complete)."""
        return self.progress_percentage is not None and self.progress_percentage >= 100.0

    def to_dict(self) -> dict[str, Any]:
        """This record as JSON-ready data (seed 001's API; the converter owns the shape)."""
        from progresskit.model.converter import unstructure

        result: dict[str, Any] = unstructure(self)
        return result

    def __getitem__(self, name: str) -> Any:
        # Pylon V2-V3's ProgressInfo was a TypedDict: progress["completed_epochs"].
        if name not in attrs.fields_dict(ProgressInfo):
            raise KeyError(name)
        return getattr(self, name)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in attrs.fields_dict(ProgressInfo)


#: What ``attrs.Factory(...)`` makes (its stubs declare a function, not a class).
_FACTORY: Any = type(attrs.Factory(dict))


#: What the validators accept, as an expression of the value (not ``None``): exactly their
#: accepted values (a NaN or an infinity fails both comparisons), so that
#: :func:`prechecked` calls them only for a value they refuse.
_ACCEPTS: dict[Any, str] = {
    _check_non_negative: "0 <= {} < _INF",
    _check_percentage: "0.0 <= {} <= 100.0",
}


def _prechecked_builder() -> Callable[..., ProgressInfo]:
    """The function behind :func:`prechecked`, generated from ProgressInfo's fields (as
    attrs generates ``__init__``), so that it covers every field as the constructor does."""
    namespace: dict[str, Any] = {
        "_new": object.__new__,
        "_cls": ProgressInfo,
        "_MISSING": object(),
        "_INF": math.inf,
    }
    params: list[str] = []
    body: list[str] = []
    for field in attrs.fields(ProgressInfo):
        name, default = field.name, field.default
        if isinstance(default, _FACTORY):  # a fresh container per instance
            namespace[f"_f_{name}"], unset = default.factory, "_MISSING"
            value = f"_f_{name}() if {name} is _MISSING else {name}"
        else:
            namespace[f"_d_{name}"], unset = default, f"_d_{name}"
            value = name
        params.append(f"{name}={unset}")
        # The slot's own setter: what object.__setattr__ finds for the name, without the
        # lookup (a frozen class's __setattr__ refuses, as attrs' own __init__ bypasses).
        namespace[f"_s_{name}"] = ProgressInfo.__dict__[name].__set__
        body.append(f"    _s_{name}(self, {value})")
        if field.validator is not None:  # a value left to its default needs no check
            namespace[f"_v_{name}"], namespace[f"_a_{name}"] = field.validator, field
            valid = _ACCEPTS.get(field.validator)
            check = f"{name} is not {unset}"
            if valid is not None:  # the validator is called only to refuse, with its message
                check += f" and {name} is not None and not ({valid.format(name)})"
            body.append(f"    if {check}: _v_{name}(self, _a_{name}, {name})")
    source = "\n".join(
        [
            f"def prechecked(*, {', '.join(params)}):",
            "    self = _new(_cls)",
            *body,
            "    return self",
        ]
    )
    exec(compile(source, "<progresskit ProgressInfo prechecked>", "exec"), namespace)
    built: Callable[..., ProgressInfo] = namespace["prechecked"]
    return built


#: ``prechecked(**fields)``: the :class:`ProgressInfo` that ``ProgressInfo(**fields)`` builds,
#: at about half its cost, for a producer whose values are already of the types the
#: converters make (``float`` or ``None`` for the times and percentages, a ``tuple`` of
#: ``str`` for ``warnings``, a fresh ``dict[str, float]`` for ``metrics``, a fresh
#: ``dict[str, str]`` for ``details``, a :class:`Status`): the converters are skipped, the
#: validator of every value given runs (a percentage of 250 raises as in the
#: constructor). For the log tracker, which builds one per query of a growing log
#: (benchmarks/logtail.py); data read from files goes through the constructor or the
#: converter (model/converter.py).
prechecked = _prechecked_builder()


#: ``ps -o lstart`` as Pylon's system monitor keeps it: ``'Mon Jan  1 10:00:00 2024'``.
_LSTART_FORMAT = "%a %b %d %H:%M:%S %Y"


def _start_time(value: Any) -> float | str | None:
    # Pylon's monitor stores ps's text as it printed it; that text is kept (its callers
    # show and compare it), and :attr:`ProcessInfo.started_at` parses it.
    if value is None or isinstance(value, str):
        return value
    return float(value)


def _pid(value: Any) -> int | str:
    if isinstance(value, str):
        if not value.strip().isdigit():
            raise ValueError(f"pid must be a process id, got {value!r}")
        return value  # Pylon's text, kept as given
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"pid must be an int or a string of digits, got {value!r}")
    return value


def _text_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


@attrs.frozen
class ProcessInfo:
    """A process believed to be working on a run (seed 001's fields plus the host).

    Pylon's system monitor builds it from ``ps`` text: ``pid`` a string of digits and
    ``start_time`` as ``ps -o lstart`` prints it. Both are kept as given; :attr:`process_id`
    and :attr:`started_at` are the numbers, whichever shape was given.
    """

    pid: int | str = attrs.field(converter=_pid)
    user: str | None = attrs.field(default=None, converter=_text_or_none)
    cmd: str | None = attrs.field(default=None, converter=_text_or_none)
    start_time: float | str | None = attrs.field(default=None, converter=_start_time)
    host: str | None = None

    @property
    def process_id(self) -> int:
        """The pid as a number."""
        return int(self.pid)

    @property
    def started_at(self) -> float | None:
        """The start time as Unix time: ``None`` when unknown or not a time we can read."""
        if not isinstance(self.start_time, str):
            return self.start_time
        text = " ".join(self.start_time.split())
        try:
            return float(text)
        except ValueError:
            pass
        try:
            # ps prints local time, so mktime (local) and not calendar.timegm.
            return time.mktime(time.strptime(text, _LSTART_FORMAT))
        except (ValueError, OverflowError):
            return None

    def __getitem__(self, name: str) -> Any:
        # Pylon's records were TypedDicts before they were dataclasses: process['cmd'].
        if name not in _PROCESS_KEYS:
            raise KeyError(name)
        return getattr(self, name)

    def __contains__(self, name: object) -> bool:
        return name in _PROCESS_KEYS

    def to_dict(self) -> dict[str, Any]:
        """Pylon's JSON-ready shape (pid, user, cmd, start_time as given), plus ``host``
        when known."""
        result: dict[str, Any] = {key: getattr(self, key) for key in _PROCESS_KEYS}
        if self.host is not None:
            result["host"] = self.host
        return result


_PROCESS_KEYS = ("pid", "user", "cmd", "start_time")


#: The values of :attr:`Cause.kind`.
CAUSE_KINDS = ("exception", "exit", "signal", "cancel", "vanished", "error")


@attrs.frozen
class Cause:
    """Why a run ended (or is reported crashed), when that is known.

    ``kind`` is one of :data:`CAUSE_KINDS`: ``exception`` (an uncaught exception:
    ``exception_type`` and ``message``), ``exit`` (``sys.exit`` with a non-zero
    ``exit_code``, or a process that exited before its run completed), ``signal``
    (terminated by ``signal``, e.g. ``SIGTERM``), ``cancel`` (stopped on request),
    ``vanished`` (gone without a word: SIGKILL, the OOM killer, power loss) or ``error``
    (the source reported an error; ``message`` is its text).
    """

    kind: str = attrs.field(validator=attrs.validators.in_(CAUSE_KINDS))
    message: str | None = None
    exception_type: str | None = None
    signal: str | None = None
    exit_code: int | None = None

    def describe(self) -> str:
        """The cause in a few words, for reasons and tables."""
        if self.kind == "exception":
            name = self.exception_type or "exception"
            return f"{name}: {self.message}" if self.message else name
        if self.kind == "signal":
            return f"terminated by {self.signal or 'a signal'}"
        if self.kind == "exit":
            code = "" if self.exit_code is None else f" with code {self.exit_code}"
            return (self.message or "exited") + code
        if self.kind == "vanished":
            return self.message or "vanished without a word (SIGKILL, OOM killer, power loss?)"
        return self.message or self.kind


@attrs.frozen
class RunStatus:
    """The answer for one run: where it is (``progress``) and whether it is healthy."""

    #: The key the caller knows the run by: a config path (seed 001) or the work dir.
    config: str
    work_dir: str
    progress: ProgressInfo
    status: Status = attrs.field(converter=Status)
    process_info: ProcessInfo | None = None
    #: Why the status is what it is, in words, when that is not obvious from progress.
    reason: str | None = None
    #: Unix time of the newest sign of life (log write, heartbeat, event).
    last_activity: float | None = attrs.field(default=None, converter=_float_or_none)
    #: Why the run ended (or crashed), when known: see :class:`Cause`.
    cause: Cause | None = None

    def to_dict(self) -> dict[str, Any]:
        """Seed 001's JSON-ready shape, as Pylon's viewers serialise a run: ``config``,
        ``work_dir``, ``progress`` and ``process_info`` as dicts, ``status`` as its word."""
        return {
            "config": self.config,
            "work_dir": self.work_dir,
            "progress": self.progress.to_dict(),
            "status": self.status.value,
            "process_info": None if self.process_info is None else self.process_info.to_dict(),
        }
