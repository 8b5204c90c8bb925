"""Benchmark: what ``Progress.update()`` and ``track()`` cost a training loop, against tqdm.

Measured in this same run, interleaved (each repeat times every loop back to back, so a
change in machine load hits all of them alike):

  loop:      an empty ``for`` loop (the overhead every measured loop shares);
  tqdm:      ``bar.update(1)``, tqdm writing to /dev/null (its default refresh rate);
  progress:  ``progress.update()``, a Progress at its default interval (1 s) writing a real
             progresskit-progress.json and lease in a temp dir from its background thread;
  tqdm-iter: ``for _ in tqdm(range(n), file=devnull)``, per item;
  track:     ``for _ in track(range(n), run_dir=tmp)``, per item.

The ratios of each repeat are progress / tqdm and track / tqdm-iter; the median over
repeats is reported, as timed (loop overhead included) and per call (the empty loop
subtracted). Target (issue 17): ``update()`` at most 0.5x ``tqdm.update(1)``. The stream is
/dev/null, not a terminal, so Progress shows no bar of its own (on a terminal it draws
tqdm's, and costs tqdm plus the counter).

    python benchmarks/track.py                    # 1,000,000 calls x 9 repeats
    python benchmarks/track.py --calls 200000     # quicker
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

from tqdm import tqdm

# The shared loops, so both benchmarks time tqdm and the empty loop the same way.
from writer import empty_loop, tqdm_loop

from progresskit.producer.track import Progress, track

TARGET = 0.5


def progress_loop(progress: Progress, calls: int) -> float:
    """Seconds per ``progress.update()``."""
    update = progress.update
    start = time.perf_counter()
    for _ in range(calls):
        update()
    return (time.perf_counter() - start) / calls


def tqdm_iter(calls: int, devnull: object) -> float:
    """Seconds per item of ``tqdm(range(calls))``."""
    start = time.perf_counter()
    for _ in tqdm(range(calls), file=devnull):
        pass
    return (time.perf_counter() - start) / calls


def track_iter(calls: int, run_dir: str) -> float:
    """Seconds per item of ``track(range(calls))`` (its start and end included)."""
    start = time.perf_counter()
    for _ in track(range(calls), run_dir=run_dir):
        pass
    return (time.perf_counter() - start) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=1_000_000, help="calls per timed loop")
    parser.add_argument("--repeats", type=int, default=9, help="interleaved repeats")
    args = parser.parse_args()
    calls, repeats = args.calls, args.repeats
    total = calls * (repeats + 1)

    with tempfile.TemporaryDirectory() as tmp, open(os.devnull, "w") as devnull:
        updating, iterating = os.path.join(tmp, "update"), os.path.join(tmp, "iterate")
        bar = tqdm(total=total, file=devnull)
        progress = Progress(total=total, run_dir=updating)
        # Warm-up: tqdm settles its dynamic miniters.
        tqdm_loop(bar, calls // 10)
        progress_loop(progress, calls // 10)

        rows: dict[str, list[float]] = {
            "loop": [], "tqdm": [], "progress": [], "tqdm-iter": [], "track": []
        }
        for _ in range(repeats):
            rows["loop"].append(empty_loop(calls))
            rows["tqdm"].append(tqdm_loop(bar, calls))
            rows["progress"].append(progress_loop(progress, calls))
            rows["tqdm-iter"].append(tqdm_iter(calls, devnull))
            rows["track"].append(track_iter(calls, iterating))
        bar.close()
        progress.close()
        with open(os.path.join(updating, "progresskit-progress.json"), encoding="utf-8") as fh:
            final = json.load(fh)

    loop = rows["loop"]
    med = statistics.median

    def ratios(mine: str, theirs: str, net: bool) -> list[float]:
        return [
            (m - lp) / (t - lp) if net else m / t
            for m, t, lp in zip(rows[mine], rows[theirs], loop, strict=True)
        ]

    def ns(values: list[float]) -> str:
        return f"{med(values) * 1e9:8.1f} ns  (min {min(values) * 1e9:.1f})"

    print(f"per call, median of {repeats} interleaved repeats of {calls:,} calls:")
    for name, label in (("loop", "empty loop"), ("tqdm", "tqdm.update(1)"),
                        ("progress", "progress.update()"), ("tqdm-iter", "tqdm(range) item"),
                        ("track", "track(range) item")):
        print(f"  {label:22} {ns(rows[name])}")
    for mine, theirs in (("progress", "tqdm"), ("track", "tqdm-iter")):
        gross, net = ratios(mine, theirs, False), ratios(mine, theirs, True)
        print(f"ratio {mine}/{theirs}, as timed (loop included): {med(gross):.3f} "
              f"(repeats {min(gross):.3f}..{max(gross):.3f}); per call (loop subtracted): "
              f"{med(net):.3f}")
    gross = ratios("progress", "tqdm", False)
    net = ratios("progress", "tqdm", True)
    verdict = "met" if med(gross) <= TARGET else ("met per call only" if med(net) <= TARGET
                                                   else "NOT met")
    print(f"target progress.update() <= {TARGET}x tqdm.update(1): {verdict}")
    print(f"final file: steps {final['steps']:,} of {final['total']:,}, state {final['state']!r}")


if __name__ == "__main__":
    main()
