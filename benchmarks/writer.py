"""Benchmark: what ``StatusFileWriter.update(step)`` costs a training loop, against tqdm.

Measured in this same run, interleaved (each repeat times every loop back to back, so a
change in machine load hits all of them alike):

  loop:    an empty ``for`` loop (the overhead both measured loops share);
  tqdm:    ``bar.update(1)``, tqdm writing to /dev/null (its default refresh rate);
  writer:  ``writer.update(step)``, the writer at its default interval (1 s), writing a
           real status file in a temp dir from its background thread as it would in training.

The ratio of each repeat is writer / tqdm; the median over repeats is reported, both as
timed (loop overhead included in both) and per call (the empty loop subtracted from both).
Target (issue 4): at most 0.5. For scale, a writer that writes on every call (interval 0)
is timed over a few hundred calls.

    python benchmarks/writer.py                    # 1,000,000 calls x 9 repeats
    python benchmarks/writer.py --calls 200000     # quicker
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

from tqdm import tqdm

from progresskit.producer.statusfile import StatusFileWriter

TARGET = 0.5


def empty_loop(calls: int) -> float:
    """Seconds per iteration of a loop doing nothing."""
    start = time.perf_counter()
    for _ in range(calls):
        pass
    return (time.perf_counter() - start) / calls


def tqdm_loop(bar: tqdm[object], calls: int) -> float:
    """Seconds per ``bar.update(1)``."""
    update = bar.update
    start = time.perf_counter()
    for _ in range(calls):
        update(1)
    return (time.perf_counter() - start) / calls


def writer_loop(writer: StatusFileWriter, first: int, calls: int) -> float:
    """Seconds per ``writer.update(step)``, steps rising from ``first`` as in training."""
    update = writer.update
    start = time.perf_counter()
    for step in range(first, first + calls):
        update(step)
    return (time.perf_counter() - start) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=1_000_000, help="calls per timed loop")
    parser.add_argument("--repeats", type=int, default=9, help="interleaved repeats")
    args = parser.parse_args()
    calls, repeats = args.calls, args.repeats
    total = calls * (repeats + 1) + 1

    with tempfile.TemporaryDirectory() as tmp, open(os.devnull, "w") as devnull:
        path = os.path.join(tmp, "training_status.json")
        bar = tqdm(total=total, file=devnull)
        writer = StatusFileWriter(path, total_iterations=total)
        # Warm-up: tqdm settles its dynamic miniters, the writer leaves "starting".
        tqdm_loop(bar, calls // 10)
        writer_loop(writer, 1, calls // 10)

        rows: dict[str, list[float]] = {"loop": [], "tqdm": [], "writer": []}
        step = calls // 10 + 1
        for _ in range(repeats):
            rows["loop"].append(empty_loop(calls))
            rows["tqdm"].append(tqdm_loop(bar, calls))
            rows["writer"].append(writer_loop(writer, step, calls))
            step += calls
        bar.close()
        writer.close()
        with open(path, encoding="utf-8") as fh:
            final = json.load(fh)

        with tempfile.TemporaryDirectory() as tmp2:
            eager = StatusFileWriter(os.path.join(tmp2, "s.json"), total_iterations=10**9,
                                     interval=0)
            every_call = writer_loop(eager, 1, 300)
            eager.close()

    loop = rows["loop"]
    gross = [w / t for w, t in zip(rows["writer"], rows["tqdm"], strict=True)]
    net = [(w - lp) / (t - lp) for w, t, lp in zip(rows["writer"], rows["tqdm"], loop, strict=True)]
    med = statistics.median

    def ns(values: list[float]) -> str:
        return f"{med(values) * 1e9:8.1f} ns  (min {min(values) * 1e9:.1f})"

    print(f"per call, median of {repeats} interleaved repeats of {calls:,} calls:")
    print(f"  empty loop             {ns(loop)}")
    print(f"  tqdm.update(1)         {ns(rows['tqdm'])}")
    print(f"  writer.update(step)    {ns(rows['writer'])}")
    print(f"ratio writer/tqdm, as timed (loop included in both): {med(gross):.3f} "
          f"(repeats {min(gross):.3f}..{max(gross):.3f})")
    print(f"ratio writer/tqdm, per call (loop subtracted):       {med(net):.3f} "
          f"(repeats {min(net):.3f}..{max(net):.3f})")
    verdict = "met" if med(gross) <= TARGET else ("met per call only" if med(net) <= TARGET
                                                   else "NOT met")
    print(f"target <= {TARGET}: {verdict}")
    print(f"a writer writing on every call (interval 0): {every_call * 1e6:.0f} us per call "
          f"= {every_call / med(rows['tqdm']):.0f}x tqdm")
    print(f"final file: iteration {final['current_iteration']:,}, status {final['status']!r}")


if __name__ == "__main__":
    main()
