"""Benchmark: what importing the producer side costs a training job (issue 13).

Whole-process wall time of fresh interpreters, measured in this same run and interleaved
(each round starts every command once, back to back, so a change in machine load hits all of
them alike):

  baseline:  ``python -c "import json, socket, threading"``, what any emitter needs anyway;
  producer:  ``python -c "from progresskit import EventEmitter, StatusFileWriter, heartbeat"``;
  pass:      ``python -c pass``, the interpreter alone (for scale);
  first use: the producer import, then one ``heartbeat()``, one ``StatusFileWriter`` and one
             ``EventEmitter`` used and closed in a temp dir: the lease document and attrs are
             loaded with the first lease, so this is what a job that uses the producer pays.

Reported: the median of each, and producer / baseline as the ratio of the medians. Target:
<= 1.5 (it was about 10 before the layered layout, when this import loaded the plugin
manager, cattrs, yaml, sqlite3 and the monitor).

Bytecode: an installed package has its ``.pyc`` files (pip compiles them), so the commands run
with bytecode caching on, into a temporary ``PYTHONPYCACHEPREFIX`` (the source tree is not
written; the stdlib modules get cached there too, so both sides pay alike), warmed by one
round. The producer and baseline are also timed with ``PYTHONDONTWRITEBYTECODE=1`` and no
cache, as in a checkout whose environment forbids writing bytecode: every progresskit module
is then compiled at each start (the stdlib keeps its installed caches).

    python benchmarks/imports.py                # 30 rounds
    python benchmarks/imports.py --rounds 60
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

TARGET = 1.5

FIRST_USE = """\
import os, sys
from progresskit import EventEmitter, StatusFileWriter, heartbeat
work = sys.argv[1]
with heartbeat(work, expect_every=60) as hb:
    hb.beat()
with StatusFileWriter(os.path.join(work, "training_status.json"), total_iterations=10) as s:
    s.update(1)
with EventEmitter("run", event_file=os.path.join(work, "events.jsonl")) as events:
    events.progress("training", 10.0)
"""


def wall_time(env: dict[str, str], code: str, args: tuple[str, ...] = ()) -> float:
    """Seconds from starting ``python -c code *args`` to its exit."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code, *args], check=True, env=env)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=30, help="interleaved rounds")
    args = parser.parse_args()

    baseline = "import json, socket, threading"
    producer = "from progresskit import EventEmitter, StatusFileWriter, heartbeat"
    with tempfile.TemporaryDirectory() as work, tempfile.TemporaryDirectory() as cache:
        cached = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        cached["PYTHONPYCACHEPREFIX"] = cache
        uncached = {k: v for k, v in os.environ.items() if k != "PYTHONPYCACHEPREFIX"}
        uncached["PYTHONDONTWRITEBYTECODE"] = "1"
        commands: dict[str, tuple[dict[str, str], str, tuple[str, ...]]] = {
            "baseline": (cached, baseline, ()),
            "producer": (cached, producer, ()),
            "pass": (cached, "pass", ()),
            "first use": (cached, FIRST_USE, (work,)),
            "baseline, no .pyc": (uncached, baseline, ()),
            "producer, no .pyc": (uncached, producer, ()),
        }
        for command in commands.values():  # warm-up: bytecode caches, the page cache
            wall_time(*command)
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.rounds):
            for name, command in commands.items():
                times[name].append(wall_time(*command))

    med = {name: statistics.median(values) for name, values in times.items()}
    print(f"wall time of a fresh interpreter, median of {args.rounds} interleaved rounds:")
    for name, values in times.items():
        base = med["baseline, no .pyc" if name.endswith("no .pyc") else "baseline"]
        print(f"  {name:<18} {med[name] * 1e3:7.1f} ms  (min {min(values) * 1e3:.1f}, "
              f"x{med[name] / base:.2f} its baseline)")
    ratio = med["producer"] / med["baseline"]
    print(f"ratio producer import / baseline: {ratio:.2f} "
          f"(without bytecode caches: {med['producer, no .pyc'] / med['baseline, no .pyc']:.2f})")
    print(f"target <= {TARGET}: {'met' if ratio <= TARGET else 'NOT met'}")


if __name__ == "__main__":
    main()
