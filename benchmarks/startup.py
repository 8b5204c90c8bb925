"""Benchmark: what the command line costs before it does anything, against the interpreter.

Whole-process wall time (start, import, answer, exit) of, measured in this same run and
interleaved (each repeat runs every command back to back, so a change in machine load hits
all of them alike), the median over repeats:

  python:   ``python -c pass``, the floor every Python command pays;
  version:  ``progresskit --version``;
  status:   ``progresskit status RUN`` on one running trainer run (a table, piped);
  json:     ``progresskit status RUN --json``;
  libs:     importing the libraries ``status`` cannot do without and defining the model's
            attrs classes, nothing else: the floor under every progresskit command that
            reads a run (no target; it shows how far ``status`` is above what it must load).

Each is reported as a ratio to ``python``. Targets (issue 13): status <= 6x, version <= 3x.
Modules run from bytecode, as installed packages do (written by a warm-up run under a
temporary ``PYTHONPYCACHEPREFIX``); the ETA history is a temporary file, and the current
directory holds no config file.
With ``--imports``, the modules ``progresskit status`` imports at start-up, slowest first
(``python -X importtime``), to find what to make lazy.

    python benchmarks/startup.py                 # 21 repeats
    python benchmarks/startup.py --repeats 7     # quicker
    python benchmarks/startup.py --imports 25    # and the 25 slowest imports of status
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

TARGETS = {"status": 6.0, "version": 3.0}
EPOCH_FILES = ("training_losses.pt", "optimizer_buffer.json", "validation_scores.json")


def make_run(path: str, epochs_done: int = 2, total: int = 10) -> None:
    """A Pylon trainer run, running: ``epochs_done`` of ``total`` epochs and a fresh log."""
    start = time.time() - 600
    for epoch in range(epochs_done):
        directory = os.path.join(path, f"epoch_{epoch}")
        os.makedirs(directory)
        for name in EPOCH_FILES:
            with open(os.path.join(directory, name), "w", encoding="utf-8") as fh:
                json.dump({"aggregated": {"acc": 0.5 + epoch / 100}}, fh)
            when = start + 60 * (epoch + 1)
            os.utime(os.path.join(directory, name), (when, when))
    with open(os.path.join(path, "progresskit.yaml"), "w", encoding="utf-8") as fh:
        fh.write(f"epochs: {total}\n")
    with open(os.path.join(path, "train_val_0.log"), "w", encoding="utf-8") as fh:
        fh.write("training\n")


def wall(command: list[str], cwd: str, env: dict[str, str]) -> float:
    """Seconds the whole process ``command`` takes; it must exit 0 or 1 (a run's health)."""
    start = time.perf_counter()
    completed = subprocess.run(
        command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False
    )
    seconds = time.perf_counter() - start
    if completed.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(command)} failed:\n{completed.stderr.decode()}")
    return seconds


def slowest_imports(command: list[str], cwd: str, env: dict[str, str], count: int) -> None:
    """Print the ``count`` modules with the largest cumulative import time."""
    completed = subprocess.run(
        [sys.executable, "-X", "importtime", *command],
        cwd=cwd, env=env, capture_output=True, text=True, check=False,
    )
    rows = []
    for line in completed.stderr.splitlines():
        found = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if found:
            rows.append((int(found[2]), len(found[3]) // 2, found[4]))
    print("\nslowest imports of `progresskit status RUN` (cumulative ms, nesting level):")
    for micros, level, name in sorted(rows, reverse=True)[:count]:
        print(f"  {micros / 1000:7.1f}  {level:2d}  {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=21, help="interleaved repeats")
    parser.add_argument("--imports", type=int, default=0, metavar="N",
                        help="also list the N slowest imports of `progresskit status`")
    args = parser.parse_args()

    tmp = tempfile.mkdtemp(prefix="pk-startup-")
    try:
        run = os.path.join(tmp, "runs", "cifar")
        make_run(run)
        cwd = os.path.join(tmp, "cwd")
        os.makedirs(cwd)
        env = {
            **os.environ,
            "PROGRESSKIT_HISTORY": os.path.join(tmp, "history.sqlite3"),
            # As installed packages are run: from bytecode, which the warm-up writes (in a
            # prefix of the temp dir, the source tree is left alone).
            "PYTHONPYCACHEPREFIX": os.path.join(tmp, "pycache"),
        }
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        python = sys.executable
        # The console script, as a user runs it: its wrapper imports only progresskit.cli.
        script = shutil.which("progresskit", path=os.path.dirname(python)) or "progresskit"
        commands = {
            "python": [python, "-c", "pass"],
            "version": [script, "--version"],
            "status": [script, "status", run],
            "json": [script, "status", run, "--json"],
            "libs": [python, "-c", "import attrs, yaml, argparse, logging, pluggy, pathlib, "
                     "progresskit.model.core"],
        }
        for command in commands.values():  # warm the OS caches: the first run pays disk reads
            wall(command, cwd, env)
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.repeats):
            for name, command in commands.items():
                times[name].append(wall(command, cwd, env))
        medians = {name: statistics.median(values) for name, values in times.items()}
        floor = medians["python"]
        print(f"median of {args.repeats} interleaved runs each (ratio to `python -c pass`):")
        for name, seconds in medians.items():
            ratio = seconds / floor
            target = TARGETS.get(name)
            verdict = "" if target is None else (
                f"  target <= {target:g}x: {'ok' if ratio <= target else 'MISSED'}"
            )
            print(f"  {name:8s} {seconds * 1000:7.1f} ms  {ratio:5.2f}x{verdict}")
        if args.imports:
            slowest_imports(commands["status"], cwd, env, args.imports)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
