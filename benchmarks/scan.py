"""Benchmark: status of every run in a large tree, cold and warm, against filesystem floors.

Generates (or reuses) a tree of N runs x E epochs (3 expected files each, one log per
run) and prints, measured in this same run:

  (a) floor: a bare os.scandir walk listing every run dir and every epoch dir;
  (b) floor: that walk plus one os.stat per expected file;
  cold: the first get_all_run_status over every run (a fresh session, nothing cached);
  cold recording: the same inside ``record_finished_runs()``, what ``progresskit status``
      pays on a cold start: every run is finished, so every run is recorded into the ETA
      history (checked: once each, however often the tree is queried);
  warm: the same call again, nothing changed on disk.

Targets (issue 2): cold <= 1.3 x (b); warm <= 0.25 x (a).

    python benchmarks/scan.py                 # 10,000 runs x 20 epochs in a temp dir
    python benchmarks/scan.py --runs 1000     # smaller, for a quick look
    python benchmarks/scan.py --metric        # also read every epoch's scores (best score)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable

EXPECTED = ("training_losses.pt", "optimizer_buffer.json", "validation_scores.json")


#: Seconds between the generated epochs' mtimes: epochs written under a second apart look
#: copied into place, which the trainer does not time (nor record into the ETA history).
EPOCH_SECONDS = 60.0


def generate(root: str, runs: int, epochs: int) -> None:
    first_epoch_end = time.time() - 86400.0
    payloads = {
        "training_losses.pt": b"\x80\x04loss-tensor-bytes",
        "optimizer_buffer.json": b'{"lr": 0.001, "momentum": 0.9}',
    }
    for r in range(runs):
        run = os.path.join(root, f"run_{r:05d}")
        os.makedirs(run)
        for e in range(epochs):
            d = os.path.join(run, f"epoch_{e}")
            os.mkdir(d)
            for name, data in payloads.items():
                with open(os.path.join(d, name), "wb") as fh:
                    fh.write(data)
            with open(os.path.join(d, "validation_scores.json"), "w") as fh:
                json.dump(
                    {
                        "aggregated": {"acc": 0.5 + e / 100, "loss": 1 - e / 100},
                        "per_datapoint": {"acc": [0.5] * 8},
                    },
                    fh,
                )
            end = first_epoch_end + e * EPOCH_SECONDS
            for name in EXPECTED:
                os.utime(os.path.join(d, name), (end, end))
        with open(os.path.join(run, "train_val_0.log"), "w") as fh:
            fh.write("epoch done\n")


def floor_walk(root: str, stat_expected: bool = False) -> int:
    """(a): list every run dir and every epoch dir; (b) with ``stat_expected``: plus one
    stat per expected file."""
    count = 0
    with os.scandir(root) as runs:
        for run in runs:
            if not run.is_dir():
                continue
            with os.scandir(run.path) as entries:
                for entry in entries:
                    if entry.is_dir():
                        with os.scandir(entry.path) as files:
                            for _ in files:
                                count += 1
                        if stat_expected:
                            for name in EXPECTED:
                                os.stat(os.path.join(entry.path, name))
    return count


def best_of(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--root", help="reuse (or create) the tree here instead of a temp dir")
    parser.add_argument(
        "--metric", action="store_true", help="configure a metric, so every epoch's scores are read"
    )
    parser.add_argument(
        "--progress-json",
        action="store_true",
        help="first write every run's progress.json with the json_file sink "
        "(as `progresskit status` does when configured), so cold runs use it",
    )
    parser.add_argument("--repeat", type=int, default=3, help="best of N for floors and warm")
    args = parser.parse_args()

    own_root = args.root is None
    root = args.root or tempfile.mkdtemp(prefix="progresskit-bench-")
    # get_all_run_status, a library query, records nothing; "cold recording" records every
    # (finished) run, into an ETA history of the benchmark's own, never the user's.
    history = os.path.join(root, ".history.sqlite3")
    os.environ["PROGRESSKIT_HISTORY"] = history

    from progresskit import get_all_run_status, record_finished_runs
    from progresskit.engine.query import _sessions

    try:
        if not os.path.exists(os.path.join(root, f"run_{args.runs - 1:05d}")):
            start = time.perf_counter()
            generate(root, args.runs, args.epochs)
            print(
                f"generated {args.runs} runs x {args.epochs} epochs in "
                f"{time.perf_counter() - start:.1f}s under {root}"
            )
            # Files younger than the racy window are, rightly, never cached: let it pass.
            time.sleep(2.5)
        configs = sorted(os.path.join(root, n) for n in os.listdir(root))
        if args.metric:
            with open(os.path.join(root, "progresskit.yaml"), "w") as fh:
                fh.write("metric: acc\nearly_stopping: 5\n")
        elif os.path.exists(os.path.join(root, "progresskit.yaml")):
            os.unlink(os.path.join(root, "progresskit.yaml"))
        configs = [c for c in configs if os.path.isdir(c)]

        floor_walk(root)  # warm the OS page cache once, for floors and us alike
        a = best_of(lambda: floor_walk(root), args.repeat)
        b = best_of(lambda: floor_walk(root, stat_expected=True), args.repeat)

        def query() -> dict[str, object]:
            return get_all_run_status(configs, None, args.epochs)  # type: ignore[return-value]

        for run_dir in configs:
            cache = os.path.join(run_dir, "progress.json")
            if os.path.exists(cache):
                os.unlink(cache)
        if args.progress_json:
            from progresskit.builtin.json_file import JsonFileSink

            sink = JsonFileSink({"path": "{work_dir}/progress.json", "contents": "progress"})
            sink.emit(list(query().values()))  # type: ignore[arg-type]
            time.sleep(2.5)  # past the racy window, as a tree written a while ago would be

        colds = []
        for _ in range(args.repeat):
            _sessions.clear()
            start = time.perf_counter()
            first = query()
            colds.append(time.perf_counter() - start)
        cold = min(colds)
        print("cold runs:", ", ".join(f"{c:.2f}s" for c in colds))
        if os.path.exists(history):
            os.unlink(history)
        recording_colds = []
        for _ in range(args.repeat):
            _sessions.clear()
            start = time.perf_counter()
            with record_finished_runs():
                query()
            recording_colds.append(time.perf_counter() - start)
        cold_recording = min(recording_colds)
        print("cold recording runs:", ", ".join(f"{c:.2f}s" for c in recording_colds))
        recorded = sqlite3.connect(history).execute("SELECT COUNT(*) FROM runs").fetchone()[0]
        assert recorded == args.runs, f"{recorded} runs in the ETA history, not {args.runs}"
        warm_times = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            second = query()
            warm_times.append(time.perf_counter() - start)
        warm = min(warm_times)
        assert len(first) == len(second) == args.runs
        counts = statistics.multimode(str(s.status) for s in second.values())  # type: ignore[attr-defined]
        n = args.runs
        print(
            f"runs: {n}, epochs: {args.epochs}, metric: {args.metric}, "
            f"progress.json: {args.progress_json}, statuses: {counts}"
        )
        print(f"(a) scandir walk          {a:8.3f}s  {a / n * 1e3:7.3f} ms/run")
        print(
            f"(b) walk + stat expected  {b:8.3f}s  {b / n * 1e3:7.3f} ms/run  = {b / a:5.2f} x (a)"
        )
        print(
            f"cold get_all_run_status   {cold:8.3f}s  {cold / n * 1e3:7.3f} ms/run  "
            f"= {cold / b:5.2f} x (b)   target <= 1.30  {'OK' if cold <= 1.3 * b else 'MISSED'}"
        )
        print(
            f"cold, recording           {cold_recording:8.3f}s  "
            f"{cold_recording / n * 1e3:7.3f} ms/run  = {cold_recording / b:5.2f} x (b)   "
            f"no target ({recorded} runs in the history, once each)"
        )
        print(
            f"warm get_all_run_status   {warm:8.3f}s  {warm / n * 1e3:7.3f} ms/run  "
            f"= {warm / a:5.2f} x (a)   target <= 0.25  {'OK' if warm <= 0.25 * a else 'MISSED'}"
        )
    finally:
        if own_root:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
