"""``GET /metrics`` (Prometheus text exposition format 0.0.4) and ``GET /api/stats``."""

from __future__ import annotations

import math
import re
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from progresskit.builtin.runorder import URGENCY
from progresskit.model.core import CAUSE_KINDS, RunStatus, Status
from progresskit.server.views import run_id

__all__ = [
    "CAUSES",
    "CONTENT_TYPE",
    "DEFAULT_MAX_RUNS",
    "Transitions",
    "cause_label",
    "losses_text",
    "prometheus_text",
    "stats",
]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _family(name: str, help_text: str, kind: str = "gauge") -> list[str]:
    return [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]


#: Most runs given series of their own by default (``serve --metrics-max-runs``): a
#: cluster's thousands of runs would otherwise be thousands of label sets per scrape.
DEFAULT_MAX_RUNS = 100

#: Which runs keep their own series past the limit: the ones someone must look at first.
_URGENCY = {status: rank for rank, status in enumerate(URGENCY)}
#: The values of ``progresskit_run_cause``'s ``cause`` label: a :class:`Cause` kind, or
#: ``out_of_memory`` when the cause or the source says the run ran out of memory.
CAUSES = ("out_of_memory", *CAUSE_KINDS)
#: Exception types that are running out of memory: Python's, and PyTorch's
#: ``torch.OutOfMemoryError`` / ``torch.cuda.OutOfMemoryError`` (by their last dotted part).
_OOM_EXCEPTIONS = frozenset({"MemoryError", "OutOfMemoryError"})
#: Slurm's state word ``OUT_OF_MEMORY`` and the messages "out of memory (limit 50M)",
#: "CUDA out of memory. Tried to allocate ...". Not "OOM": the default message of a
#: ``vanished`` cause names the OOM killer as one guess among others.
_OOM_WORDS = re.compile(r"out[ _-]of[ _-]memory", re.IGNORECASE)


def cause_label(run: RunStatus) -> str | None:
    """The ``cause`` label of ``run``: ``None`` without a cause, else one of :data:`CAUSES`.

    Out of memory is told apart from the other causes because it asks for another remedy
    (more memory, a smaller batch) than a bug: Slurm's ``OUT_OF_MEMORY`` (its state word and
    its cause "out of memory (limit 50M)"), a ``MemoryError``, CUDA's "CUDA out of memory".
    A run killed without a word (``vanished``: SIGKILL, the OOM killer, power loss) is not
    guessed to be one.
    """
    cause = run.cause
    texts = [run.progress.source_status or ""]
    if cause is not None:
        texts.append(cause.message or "")
        if (cause.exception_type or "").rsplit(".", 1)[-1] in _OOM_EXCEPTIONS:
            return "out_of_memory"
    if any(_OOM_WORDS.search(text) for text in texts):
        return "out_of_memory"
    return None if cause is None else cause.kind


def _urgency(run: RunStatus) -> tuple[int, float]:
    # Among ended runs the newest end first; an active run's clock moves at every update,
    # so active runs keep the hub's order (by name) and the kept set does not churn.
    last = (
        0.0 if run.status.is_active else (run.last_activity or run.progress.last_update_time or 0.0)
    )
    return _URGENCY[run.status], -last


def prometheus_text(runs: Sequence[tuple[str, RunStatus]], max_runs: int = DEFAULT_MAX_RUNS) -> str:
    """Every run's gauges, labelled by ``run_id``, ``name`` and ``runner_type``, for the
    ``max_runs`` most urgent runs; every run in the per-status and per-cause counts.

    ``runs`` are (display name, status) pairs. Past ``max_runs``, runs are ranked crashed,
    failed, stuck, unknown, running, pending, cancelled, finished, outdated (ended runs of
    one status newest first, active ones in the given order); the others have no series of
    their own and are counted in ``progresskit_runs_omitted`` by status.
    ``progresskit_run_status`` is a state set: one series per canonical status, 1 for the
    run's current one. A figure the run does not know (no ETA, no update time) has no
    sample rather than a made-up zero.
    """
    if max_runs < 0:
        raise ValueError(f"max_runs must be >= 0, got {max_runs}")
    order = sorted(range(len(runs)), key=lambda i: _urgency(runs[i][1]))
    kept_at = set(order[:max_runs])
    kept = [pair for i, pair in enumerate(runs) if i in kept_at]  # in the given order
    omitted = Counter(runs[i][1].status for i in order[max_runs:])
    labels = [
        f'run_id="{run_id(run.work_dir)}",name="{_label(name)}",'
        f'runner_type="{_label(run.progress.runner_type)}"'
        for name, run in kept
    ]
    pairs = list(zip(labels, (run for _n, run in kept), strict=True))
    lines = _family("progresskit_run_progress_ratio", "Fraction of the run done, 0 to 1.")
    # Unknown progress has no sample, like an unknown ETA, rather than a made-up 0.
    lines += [
        f"progresskit_run_progress_ratio{{{lab}}} {_number(fraction)}"
        for lab, run in pairs
        if (fraction := run.progress.fraction) is not None
    ]
    lines += _family("progresskit_run_status", "1 for the run's current status, else 0.")
    for lab, run in pairs:
        lines += [
            f'progresskit_run_status{{{lab},status="{s.value}"}} {int(run.status is s)}'
            for s in Status
        ]
    for field, help_text in (
        ("eta_seconds", "Estimated seconds until the run ends."),
        ("eta_low_seconds", "Low end (p10) of the band of the seconds until the run ends."),
        ("eta_high_seconds", "High end (p90) of the band of the seconds until the run ends."),
    ):
        lines += _family(f"progresskit_run_{field}", help_text)
        lines += [
            f"progresskit_run_{field}{{{lab}}} {_number(value)}"
            for lab, run in pairs
            if (value := getattr(run.progress, field)) is not None
        ]
    lines += _family(
        "progresskit_run_last_update_timestamp_seconds",
        "Unix time of the run's newest sign of progress.",
    )
    for lab, run in pairs:
        last = run.progress.last_update_time or run.last_activity
        if last is not None:
            lines.append(f"progresskit_run_last_update_timestamp_seconds{{{lab}}} {_number(last)}")
    lines += _family(
        "progresskit_run_cause", "1 for a run that ended (or crashed) for a known cause."
    )
    lines += [
        f'progresskit_run_cause{{{lab},cause="{cause}"}} 1'
        for lab, run in pairs
        if (cause := cause_label(run)) is not None
    ]
    counts = Counter(run.status for _n, run in runs)
    lines += _family("progresskit_runs", "Number of runs per status.")
    lines += [f'progresskit_runs{{status="{s.value}"}} {counts.get(s, 0)}' for s in Status]
    lines += _family(
        "progresskit_runs_omitted",
        "Runs past the per-run series limit (--metrics-max-runs), per status.",
    )
    lines += [f'progresskit_runs_omitted{{status="{s.value}"}} {omitted.get(s, 0)}' for s in Status]
    causes = Counter(cause_label(run) for _n, run in runs)
    lines += _family("progresskit_runs_by_cause", "Number of runs per known cause.")
    lines += [f'progresskit_runs_by_cause{{cause="{c}"}} {causes.get(c, 0)}' for c in CAUSES]
    return "\n".join(lines) + "\n"


class Transitions:
    """The status changes of runs the server saw, per (from, to), since it started.

    Fed by the hub with each run's status before and after every change it applies; a run
    it discovers (at start or later) or forgets is no transition.
    """

    __slots__ = ("_counts",)

    def __init__(self) -> None:
        self._counts: Counter[tuple[Status, Status]] = Counter()

    def observe(self, before: Status, after: Status) -> None:
        """Count the change from ``before`` to ``after`` (nothing when they are equal)."""
        if before is not after:
            self._counts[before, after] += 1

    def text(self) -> str:
        """``progresskit_status_transitions_total``: every pair of distinct statuses, from 0,
        so that the first crash is an increase ``increase()`` sees, not a new series."""
        lines = _family(
            "progresskit_status_transitions_total",
            "Runs that changed from one status to another, since the server started.",
            "counter",
        )
        lines += [
            f'progresskit_status_transitions_total{{from="{a.value}",to="{b.value}"}} '
            f"{self._counts.get((a, b), 0)}"
            for a in Status
            for b in Status
            if a is not b
        ]
        return "\n".join(lines) + "\n"


def losses_text(sink_drops: Mapping[str, Mapping[str, Any]], dropped_clients: int) -> str:
    """What was lost: each sink spool's events lost (its drop record: docs/watch.md), with
    the time of the last loss, and the stream clients dropped for being too slow."""
    lines = _family(
        "progresskit_sink_events_dropped_total",
        "Events a sink lost (spool full, disk full, unwritable spool), per spool.",
        "counter",
    )
    lines += [
        f'progresskit_sink_events_dropped_total{{spool="{_label(spool)}"}} {int(r["count"])}'
        for spool, r in sorted(sink_drops.items())
    ]
    lines += _family(
        "progresskit_sink_last_drop_timestamp_seconds", "Unix time of a sink's newest loss."
    )
    for spool, record in sorted(sink_drops.items()):
        at = (record.get("last") or {}).get("at")
        if isinstance(at, (int, float)) and not isinstance(at, bool):
            lines.append(
                f'progresskit_sink_last_drop_timestamp_seconds{{spool="{_label(spool)}"}} '
                f"{_number(at)}"
            )
    lines += _family(
        "progresskit_stream_clients_dropped_total",
        "WebSocket clients dropped for falling too far behind, since start.",
        "counter",
    )
    lines.append(f"progresskit_stream_clients_dropped_total {dropped_clients}")
    return "\n".join(lines) + "\n"


def _summary(values: list[float]) -> dict[str, float]:
    return {
        "count": len(values),
        "mean": statistics.fmean(values),
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
    }


def stats(runs: Iterable[RunStatus]) -> dict[str, Any]:
    """Counts per status and runner type, and the durations of finished runs per runner
    type (seed 003's ``completion_times``), from each run's ``elapsed_seconds``."""
    by_status: Counter[str] = Counter()
    by_type: Counter[str] = Counter()
    durations: dict[str, list[float]] = defaultdict(list)
    total = active = 0
    for run in runs:
        total += 1
        active += run.status.is_active
        by_status[run.status.value] += 1
        by_type[run.progress.runner_type] += 1
        elapsed = run.progress.elapsed_seconds
        if run.status in (Status.FINISHED, Status.OUTDATED) and elapsed is not None:
            durations[run.progress.runner_type].append(elapsed)
    return {
        "total": total,
        "active": active,
        "by_status": {s.value: by_status.get(s.value, 0) for s in Status},
        "by_runner_type": dict(sorted(by_type.items())),
        "completion_times": {k: _summary(v) for k, v in sorted(durations.items())},
    }
