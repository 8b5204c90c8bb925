"""The status of a run known by its growing console log: cost per query vs. the log's size.

Builds, for each size (default 1 MB, 100 MB and 1 GB; sparse, so no disk is used), a run
directory holding only ``train.log``: NULs up to the size, then bar redraws written by the
real ``tqdm.format_meter`` (``\\r`` + bar, 200 KiB of them), as a redirected tqdm loop leaves
its log. Each round appends one redraw (the job goes on; redraws rendered beforehand, as
the job renders them in its own process), then queries the run. Measured in this one run,
medians of ``--rounds`` rounds of each, the three taking turns in blocks of ``--block``
rounds, so that they share the machine's load while each runs as a caller following one
log runs it, one query after another:

* baseline: one ``os.stat`` of the log and one 64 KiB read of its end (the issue's unit);
* tracker:  the ``log`` tracker's query (``get_progress``: stat keys, tail read, parse);
* status:   the whole library query, ``Tracking.status`` (detection cached, rules, lease).

Printed: each figure, its ratio to the baseline (target: tracker <= 2x), and the ratio of
the 1 GB figures to the 1 MB ones (target: flat, about 1x), also of their ratios to their
own baselines, which the machine's changing load does not move. Also printed, without a
target: the same three taking turns at every round ("cold"), each query then running
right after the others' work, which has evicted much of its code and data from the CPU's
caches (the baseline's system calls suffer less from that than the tracker's Python).

Usage: python benchmarks/logtail.py [--rounds R] [--block B] [--sizes-mb 1,100,1000] [--dir DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from tqdm import tqdm

from progresskit import Tracking
from progresskit.builtin.logtail import LogTracker

TAIL = 64 * 1024
TOTAL = 10**7


def redraw(n: int) -> bytes:
    line = tqdm.format_meter(n, TOTAL, n / 450.0, prefix="train", postfix="loss=0.3100, lr=0.001")
    return ("\r" + line).encode()


def build(run: Path, size: int) -> int:
    """A log of ``size`` bytes ending in bar redraws; returns the next step."""
    run.mkdir()
    log = run / "train.log"
    bars = bytearray()
    n = 0
    while len(bars) < 200 * 1024:
        bars += redraw(n)
        n += 1
    with open(log, "wb") as fh:
        fh.truncate(max(0, size - len(bars)))
        fh.seek(0, os.SEEK_END)
        fh.write(bars)
    old = time.time() - 10  # out of the racy window, as a run's older files are
    os.utime(run, (old, old))
    return n


def baseline(log: Path) -> None:
    size = os.stat(log).st_size
    with open(log, "rb") as fh:
        fh.seek(max(0, size - TAIL))
        fh.read(TAIL)


def timed(
    rounds: int, block: int, grow: Callable[[], None], queries: Sequence[Callable[[], object]]
) -> list[float]:
    """Median seconds of each query over ``rounds`` rounds; every round grows the log, then
    runs the query. The queries take turns every ``block`` rounds, so that they share the
    machine's load (2 cores shared: it moves)."""
    times: list[list[float]] = [[] for _ in queries]
    for _ in range(0, rounds, block):
        for query, taken in zip(queries, times, strict=True):
            for _ in range(block):
                grow()
                started = time.perf_counter()
                query()
                taken.append(time.perf_counter() - started)
    return [statistics.median(t) for t in times]


Figures = tuple[float, float, float]


def measure(run: Path, size: int, rounds: int, block: int) -> tuple[Figures, Figures]:
    """(baseline, tracker, status) medians in seconds on a log of ``size`` bytes, the three
    taking turns every ``block`` rounds, then every round (cold)."""
    step = build(run, size)
    log = run / "train.log"
    tracker = LogTracker(str(run), Tracking().config_for(str(run)))
    tracking = Tracking()
    redraws = iter([redraw(n) for n in range(step, step + 6 * rounds + 2 * block)])
    with open(log, "ab") as fh:  # the job's own handle, open for the run

        def grow() -> None:
            nonlocal step
            fh.write(next(redraws))
            fh.flush()
            step += 1

        assert tracker.get_progress().completed_steps == step - 1
        assert tracking.status(str(run), discover_processes=False).progress.runner_type == "log"
        queries = (
            lambda: baseline(log),
            tracker.get_progress,
            lambda: tracking.status(str(run), discover_processes=False),
        )
        steady = timed(rounds, block, grow, queries)
        cold = timed(rounds, 1, grow, queries)
        assert tracker.get_progress().completed_steps == step - 1
    return (steady[0], steady[1], steady[2]), (cold[0], cold[1], cold[2])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--block", type=int, default=50, help="rounds of one query in a row")
    parser.add_argument("--sizes-mb", default="1,100,1000")
    parser.add_argument("--dir", type=Path, help="where to build the logs (default: a temp dir)")
    args = parser.parse_args()
    sizes = [int(float(s) * 1e6) for s in args.sizes_mb.split(",")]
    print(f"load average at start: {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs)")
    results: dict[int, Figures] = {}
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for size in sizes:
            steady, cold = measure(Path(tmp) / f"run-{size}", size, args.rounds, args.block)
            results[size] = steady
            base, tracked, whole = steady
            print(
                f"log {size / 1e6:7.0f} MB  baseline {base * 1e6:7.1f} us  "
                f"tracker {tracked * 1e6:7.1f} us = {tracked / base:4.2f}x  "
                f"status {whole * 1e6:7.1f} us = {whole / base:4.2f}x   "
                f"(tracker target <= 2x: {'OK' if tracked / base <= 2 else 'MISSED'})"
            )
            base, tracked, whole = cold
            print(
                f"    cold (turns every round)  baseline {base * 1e6:7.1f} us  "
                f"tracker {tracked * 1e6:7.1f} us = {tracked / base:4.2f}x  "
                f"status {whole * 1e6:7.1f} us = {whole / base:4.2f}x   (no target)"
            )
        small, big = results[sizes[0]], results[sizes[-1]]
        print(
            f"{sizes[-1] / 1e6:.0f} MB vs {sizes[0] / 1e6:.0f} MB: baseline "
            f"{big[0] / small[0]:.2f}x, tracker {big[1] / small[1]:.2f}x, "
            f"status {big[2] / small[2]:.2f}x (flat: about 1x); against each size's own "
            f"baseline (the load moves between sizes): tracker "
            f"{big[1] / big[0] / (small[1] / small[0]):.2f}x, "
            f"status {big[2] / big[0] / (small[2] / small[0]):.2f}x"
        )
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
