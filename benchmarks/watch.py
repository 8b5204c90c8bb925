"""Benchmark: the CPU ``progresskit watch`` costs on a terminal, idle and under changes.

Generates R trainer runs (default 300), starts a real ``progresskit watch`` subprocess whose
standard input and output are a pseudo-terminal (so it draws its full-screen view; the
terminal's output is read and thrown away, as a terminal would), lets it settle, then reads
its CPU time (utime + stime in /proc/<pid>/stat) over a fixed window:

  idle:     nothing changes (the runs last wrote 10 minutes before: "unchanged", so their
            ages tick by the minute; --fresh keeps the generated tree's own times, every
            age ticking by the second)               target <= 2% of a core
  changes:  10 changes/s (a new epoch directory, built aside and renamed in, round-robin
            over the runs)                       target <= 10% of a core

The same two phases with ``watch --json`` (JSON lines to the pty, no screen) are the
baseline measured in this run: what the engine costs without the screen; the ratio says what
the screen adds.

    python benchmarks/watch.py                    # 300 runs, 20 s windows
    python benchmarks/watch.py --seconds 5        # a quick look
"""

from __future__ import annotations

import argparse
import os
import pty
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve import generate, write_epoch

TICKS = os.sysconf("SC_CLK_TCK")
TARGETS = {"idle": 2.0, "changes": 10.0}


#: How long before the measurement the runs of the idle phase last wrote.
UNCHANGED_FOR = 600.0


def backdate(root: str, age: float) -> None:
    """Every file and directory under ``root`` last modified ``age`` seconds ago."""
    when = time.time() - age
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            os.utime(os.path.join(directory, name), (when, when))
    os.utime(root, (when, when))


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid``, in seconds."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


class Watcher:
    """``progresskit watch ROOT [--json]`` on a pseudo-terminal of 120x40."""

    def __init__(self, root: str, json_lines: bool):
        master, slave = pty.openpty()
        env = {**os.environ, "COLUMNS": "120", "LINES": "40", "TERM": "xterm-256color"}
        args = [sys.executable, "-m", "progresskit", "watch", root, "--heartbeat", "0"]
        self.process = subprocess.Popen(
            args + (["--json"] if json_lines else []),
            stdin=slave,
            stdout=slave,
            stderr=subprocess.DEVNULL,
            cwd=root,
            env=env,
        )
        os.close(slave)
        self.master = master
        self.received = 0
        self._stop = threading.Event()
        self._drain = threading.Thread(target=self._read, daemon=True)
        self._drain.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            if select.select([self.master], [], [], 0.2)[0]:
                try:
                    self.received += len(os.read(self.master, 1 << 16))
                except OSError:
                    return

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._stop.set()
        self._drain.join(5)
        os.close(self.master)


def measure(watcher: Watcher, seconds: float, epochs: dict[str, int], rate: float) -> float:
    """% of one core the watcher used over ``seconds`` while ``rate`` changes/s were made
    (``epochs``: each run's next epoch, advanced)."""
    runs = list(epochs)
    start_cpu, start = cpu_seconds(watcher.process.pid), time.monotonic()
    made = 0
    while (elapsed := time.monotonic() - start) < seconds:
        if rate <= 0:
            time.sleep(min(0.5, seconds - elapsed))
            continue
        due = int(elapsed * rate) + 1
        while made < due:
            run = runs[made % len(runs)]
            write_epoch(run, epochs[run])
            epochs[run] += 1
            made += 1
        time.sleep(max(0.0, made / rate - (time.monotonic() - start)))
    wall = time.monotonic() - start
    return 100.0 * (cpu_seconds(watcher.process.pid) - start_cpu) / wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=20.0, help="each window")
    parser.add_argument("--settle", type=float, default=8.0, help="start-up before a window")
    parser.add_argument("--rate", type=float, default=10.0, help="changes/s in 'changes'")
    parser.add_argument("--fresh", action="store_true",
                        help="do not backdate the generated runs (ages under a minute)")
    args = parser.parse_args()
    if not sys.platform.startswith("linux"):
        sys.exit("reads /proc/<pid>/stat: Linux only")

    root = tempfile.mkdtemp(prefix="pk-bench-watch-")
    try:
        epochs = dict.fromkeys(generate(root, args.runs), 1)
        results: dict[tuple[str, str], float] = {}
        for label, json_lines in (("json lines (baseline)", True), ("screen", False)):
            if not args.fresh:
                backdate(root, UNCHANGED_FOR)  # each watcher starts from the same quiet tree
            watcher = Watcher(root, json_lines)
            try:
                time.sleep(args.settle)
                if watcher.process.poll() is not None:
                    sys.exit(f"watch exited with {watcher.process.returncode}")
                for phase, rate in (("idle", 0.0), ("changes", args.rate)):
                    results[label, phase] = measure(watcher, args.seconds, epochs, rate)
            finally:
                watcher.close()
        print(f"progresskit watch on a 120x40 pty, {args.runs} runs, {args.seconds:g} s windows")
        for phase, rate in (("idle", 0.0), ("changes", args.rate)):
            base = results["json lines (baseline)", phase]
            screen = results["screen", phase]
            ok = "ok" if screen <= TARGETS[phase] else "OVER TARGET"
            print(
                f"  {phase:8s} ({rate:g} changes/s): screen {screen:5.2f}% of a core "
                f"(target <= {TARGETS[phase]:g}%: {ok}); json lines {base:5.2f}%; "
                f"ratio {screen / base if base else float('inf'):.2f}x"
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
