"""Incremental tailing of a multi-stage event log vs. reading it whole.

Builds a FoxML-shaped event log of N events (default 1,000,000: ranking, feature
selection and training over 200 targets, mostly ``progress`` events), then measures in
this one run:

* the full read: a fresh tracker folds the whole log (the baseline);
* the incremental update: the same tracker, after 100 new events were appended, folds
  only those (median of several rounds);
* their ratio (target: >= 1000x);
* the peak RSS of a child process that folds a log of 10^5 and of 10^6 events, next to
  a child that only imports progresskit: memory must not grow with the log's length.

Usage: python benchmarks/tail.py [--events N] [--rounds R] [--dir DIR]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from progresskit.builtin.multistage import MultiStageProgressTracker
from progresskit.formats.events import (
    progress_event,
    stage_change_event,
    stamp,
    target_complete_event,
)
from progresskit.producer.emitter import EventEmitter

TARGETS = [f"target_{i:03d}" for i in range(200)]
T0 = datetime(2026, 1, 21, tzinfo=timezone.utc).timestamp()


def build_log(path: Path, events: int) -> None:
    """``events`` events in the seed's shape: 10% ranking, 30% feature selection, 60%
    training, one target_complete per target spread over training."""
    stages = [("ranking", 0.1), ("feature_selection", 0.4), ("training", 1.0)]
    complete_every = max(1, int(events * 0.6) // len(TARGETS))
    with open(path, "w", encoding="utf-8") as fh:
        stage_index, previous, done = 0, None, 0
        for i in range(events):
            while i >= stages[stage_index][1] * events:
                stage_index += 1
            stage = stages[stage_index][0]
            if stage != previous:
                event = stage_change_event(previous, stage)
                previous, done = stage, 0
            elif stage == "training" and i % complete_every == 0 and done < len(TARGETS):
                event = target_complete_event(TARGETS[done], "success", 4, 0.6)
                done += 1
            else:
                start = 0.0 if stage_index == 0 else stages[stage_index - 1][1] * events
                span = stages[stage_index][1] * events - start
                event = progress_event(
                    stage,
                    round(100 * (i - start) / span, 3),
                    TARGETS[done % len(TARGETS)],
                    done,
                    len(TARGETS),
                )
            stamp(event, "bench", T0 + i * 0.01)
            fh.write(json.dumps(event) + "\n")


def peak_rss_self_kib() -> int:
    """This process's peak RSS in KiB.

    VmHWM, not ``getrusage().ru_maxrss``: Linux carries ru_maxrss across ``execve`` from
    the forking parent, so a child would report at least its parent's peak, whereas VmHWM
    belongs to the new address space alone.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for row in fh:
                if row.startswith("VmHWM:"):
                    return int(row.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def full_read_child(path: Path) -> None:
    """Run in a child process: fold ``path`` (or nothing) and print the peak RSS in KiB."""
    if path.name != "-":
        MultiStageProgressTracker(path.parent, {"event_file": path.name}).calculate_progress()
    print(peak_rss_self_kib())


def peak_rss_kib(path: Path | None) -> int:
    arg = str(path) if path is not None else "-"
    out = subprocess.run(
        [sys.executable, __file__, "--child", arg], check=True, capture_output=True, text=True
    ).stdout
    return int(out.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=20, help="incremental updates to time")
    parser.add_argument("--dir", type=Path, help="where to build the logs (default: a temp dir)")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        full_read_child(args.child)
        return
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        work = Path(tmp)
        big = work / "events.jsonl"
        started = time.perf_counter()
        build_log(big, args.events)
        size_mb = big.stat().st_size / 1e6
        print(
            f"log: {args.events:,} events, {size_mb:.1f} MB "
            f"(built in {time.perf_counter() - started:.1f}s)"
        )

        tracker = MultiStageProgressTracker(work, {})
        started = time.perf_counter()
        first = tracker.calculate_progress()
        full = time.perf_counter() - started
        assert first.metrics["events"] == args.events, first.metrics

        emitter = EventEmitter("bench", event_file=big)
        times = []
        for _ in range(args.rounds):
            for i in range(100):
                emitter.progress(
                    "training",
                    99.0,
                    current_target="target_199",
                    targets_complete=i,
                    targets_total=len(TARGETS),
                )
            started = time.perf_counter()
            tracker.get_progress()  # the query path: stat, then fold the new bytes
            times.append(time.perf_counter() - started)
        after = tracker.calculate_progress()
        assert after.metrics["events"] == args.events + 100 * args.rounds, after.metrics
        incremental = statistics.median(times)
        ratio = full / incremental
        print(f"full read                       {full:10.3f} s")
        print(
            f"incremental update (+100 events) {incremental * 1e3:9.3f} ms  "
            f"(median of {args.rounds})"
        )
        print(
            f"ratio full / incremental        {ratio:10.0f} x   target >= 1000  "
            f"{'OK' if ratio >= 1000 else 'MISSED'}"
        )

        small = work / "small" / "events.jsonl"
        small.parent.mkdir()
        build_log(small, args.events // 10)
        floor = peak_rss_kib(None)
        rss_small = peak_rss_kib(small)
        rss_big = peak_rss_kib(big)
        print(f"peak RSS, import only            {floor / 1024:8.1f} MiB ({floor} KiB)")
        print(
            f"peak RSS, full read {args.events // 10:>9,} events {rss_small / 1024:8.1f} MiB "
            f"({rss_small} KiB)"
        )
        print(
            f"peak RSS, full read {args.events:>9,} events {rss_big / 1024:8.1f} MiB "
            f"({rss_big} KiB) "
            f"= {rss_big / rss_small:.2f} x the {args.events // 10:,}-event figure "
            f"(log {args.events // (args.events // 10)}x longer)"
        )


if __name__ == "__main__":
    main()
