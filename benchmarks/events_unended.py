"""The status of a multi-stage run whose event log ends in a line without its newline.

Issue 16: such a line (a writer mid-line, or garbage without newlines) was re-read and
re-concatenated chunk by chunk on every query, a cost quadratic in its length. Builds, for
each size of that last line (default 1, 16 and 64 MB), a run whose ``events.jsonl`` holds
1,000 real events (the real encoder's) and then the unended line. Each round appends 100
bytes to the unended line (the writer goes on) and queries the run with a kept session
(the ``progresskit watch`` / server case), medians of ``--rounds``:

* baseline: one ``os.stat`` of the log and one 64 KiB read of its end;
* status:   ``Tracking.status`` of the run.

Printed: each figure, its ratio to the baseline, and the ratio of the largest size's ratio
to the smallest's (target: flat, about 1x: a line being skipped costs nothing per query).

Usage: python benchmarks/events_unended.py [--rounds R] [--sizes-mb 1,16,64]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from progresskit import Tracking
from progresskit.formats.events import encode_event, progress_event, stage_change_event, stamp

TAIL = 64 * 1024


def build(run: Path, size: int) -> Path:
    run.mkdir()
    log = run / "events.jsonl"
    now = time.time() - 600
    events = [stage_change_event(None, "training")]
    events += [progress_event("training", i / 10, f"t{i}", i, 1000) for i in range(1000)]
    with open(log, "wb") as fh:
        for i, event in enumerate(events):
            stamp(event, "bench", now + i * 0.1)
            fh.write(encode_event(event))
        fh.write(b'{"event_type": "progress", "pad": "' + b"x" * size)
    return log


def baseline(log: Path) -> float:
    start = time.perf_counter()
    size = os.stat(log).st_size
    with open(log, "rb") as fh:
        fh.seek(max(0, size - TAIL))
        fh.read(TAIL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--sizes-mb", default="1,16,64")
    args = parser.parse_args()
    sizes = [int(float(s) * (1 << 20)) for s in args.sizes_mb.split(",")]
    ratios: dict[int, float] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for size in sizes:
            run = Path(scratch) / f"run-{size}"
            log = build(run, size)
            tracking = Tracking()
            tracking.status(str(run), discover_processes=False)  # the first, full read
            base, query = [], []
            for _ in range(args.rounds):
                with open(log, "ab") as fh:
                    fh.write(b"x" * 100)
                base.append(baseline(log))
                start = time.perf_counter()
                tracking.status(str(run), discover_processes=False)
                query.append(time.perf_counter() - start)
            b, q = statistics.median(base), statistics.median(query)
            ratios[size] = q / b
            print(
                f"unended line {size / 2**20:6.0f} MB: baseline {b * 1e6:8.1f} us  "
                f"status {q * 1e6:9.1f} us  ratio {q / b:7.1f}x"
            )
    first, last = ratios[sizes[0]], ratios[sizes[-1]]
    print(f"ratio at {sizes[-1] / 2**20:.0f} MB / at {sizes[0] / 2**20:.0f} MB: "
          f"{last / first:.2f}x (target: about 1x)")


if __name__ == "__main__":
    main()
