"""``GET /metrics`` (Prometheus text exposition format 0.0.4) and ``GET /api/stats``."""

from __future__ import annotations

import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from progresskit.model.core import RunStatus, Status
from progresskit.server.views import run_id

__all__ = ["CONTENT_TYPE", "prometheus_text", "stats"]

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


def prometheus_text(runs: Sequence[tuple[str, RunStatus]]) -> str:
    """Every run's gauges, labelled by ``run_id``, ``name`` and ``runner_type``.

    ``runs`` are (display name, status) pairs. ``progresskit_run_status`` is a state set:
    one series per canonical status, 1 for the run's current one. A figure the run does
    not know (no ETA, no update time) has no sample rather than a made-up zero.
    """
    labels = [
        f'run_id="{run_id(run.work_dir)}",name="{_label(name)}",'
        f'runner_type="{_label(run.progress.runner_type)}"'
        for name, run in runs
    ]
    lines = _family("progresskit_run_progress_ratio", "Fraction of the run done, 0 to 1.")
    # Unknown progress has no sample, like an unknown ETA, rather than a made-up 0.
    lines += [
        f"progresskit_run_progress_ratio{{{lab}}} {_number(fraction)}"
        for lab, (_n, run) in zip(labels, runs, strict=True)
        if (fraction := run.progress.fraction) is not None
    ]
    lines += _family("progresskit_run_status", "1 for the run's current status, else 0.")
    for lab, (_n, run) in zip(labels, runs, strict=True):
        lines += [
            f'progresskit_run_status{{{lab},status="{s.value}"}} {int(run.status is s)}'
            for s in Status
        ]
    lines += _family("progresskit_run_eta_seconds", "Estimated seconds until the run ends.")
    lines += [
        f"progresskit_run_eta_seconds{{{lab}}} {_number(run.progress.eta_seconds)}"
        for lab, (_n, run) in zip(labels, runs, strict=True)
        if run.progress.eta_seconds is not None
    ]
    lines += _family(
        "progresskit_run_last_update_timestamp_seconds",
        "Unix time of the run's newest sign of progress.",
    )
    for lab, (_n, run) in zip(labels, runs, strict=True):
        last = run.progress.last_update_time or run.last_activity
        if last is not None:
            lines.append(f"progresskit_run_last_update_timestamp_seconds{{{lab}}} {_number(last)}")
    counts = Counter(run.status for _n, run in runs)
    lines += _family("progresskit_runs", "Number of runs per status.")
    lines += [f'progresskit_runs{{status="{s.value}"}} {counts.get(s, 0)}' for s in Status]
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
