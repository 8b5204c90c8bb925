"""How fast a dead or hung producer shows in the status, and whether a healthy one never does.

Real producer processes (``progresskit.heartbeat(work, expect_every=E)``, renewing every
50 ms) on trainer runs, measured in this one run:

* SIGKILL: time from the kill to the first status call that says ``crashed``, polled by
  the library (``Tracking.status``, process discovery on, as ``progresskit.status`` does)
  and by the command (``progresskit status --json``, a new process per poll);
  target: under 1 s;
* SIGSTOP (a hung process): time from the stop to the first ``stuck`` (stalled);
  target: within E + 1 s;
* baseline: the same SIGKILL on a run without a lease, judged by seed 001's rules with
  ``sleep_time`` shortened to 5 s (the default is a day): how long "running" lingers;
* false alarms: producers (a heartbeat, and a StatusFileWriter at its default 1 s write
  interval) whose silent phases last up to 95% of E, polled every 20 ms; every poll that
  does not say ``running`` is a false alarm; target: zero;
* cost: one status call on a run with a live lease against the same run without one;
* no lease, judged by the run's own rhythm (engine/rhythm.py, default ``sleep_time`` of a
  day): a producer that completes a trainer epoch every C = 2 s (no lease) is SIGKILLed
  after 6 epochs; time from the kill to the first ``failed`` (library, process discovery
  on); target: under 10 C (20 s), against 86400 s by ``sleep_time`` alone;
* no-lease false alarms: such producers with an evaluation pause of up to 5 C every few
  epochs, polled every 0.2 s for 60 s (``--rhythm-seconds``); every poll that does not say
  ``running`` is a false alarm; target: zero.

Usage: python benchmarks/liveness.py [--trials 20] [--interval 1.0] [--quiet-seconds 30]
       [--rhythm-trials 5] [--rhythm-seconds 60]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

from progresskit import Status, Tracking
from progresskit.formats.lease import LEASE_FILENAME

EXPECTED = ("training_losses.pt", "optimizer_buffer.json", "validation_scores.json")

PRODUCER = """\
import sys, time, progresskit
with progresskit.heartbeat(sys.argv[1], expect_every=float(sys.argv[2])) as hb:
    print("ready", flush=True)
    while True:
        hb.beat()
        time.sleep(0.05)
"""

SEED_PRODUCER = """\
import os, sys, time
print("ready", flush=True)
while True:
    os.utime(os.path.join(sys.argv[1], "train_val_0.log"))
    time.sleep(0.05)
"""

QUIET_HEARTBEAT = """\
import random, sys, time, progresskit
interval, seconds = float(sys.argv[2]), float(sys.argv[3])
with progresskit.heartbeat(sys.argv[1], expect_every=interval) as hb:
    print("ready", flush=True)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        hb.beat()
        time.sleep(random.uniform(0.5, 0.95) * interval)
"""

QUIET_WRITER = """\
import random, sys, time
from progresskit import StatusFileWriter
interval, seconds = float(sys.argv[2]), float(sys.argv[3])
with StatusFileWriter(sys.argv[1] + "/training_status.json", total_iterations=10**6,
                      expect_every=interval) as status:
    print("ready", flush=True)
    end, step = time.monotonic() + seconds, 0
    while time.monotonic() < end:
        step += 1
        status.update(step)
        time.sleep(random.uniform(0.5, 0.95) * interval)
"""


EPOCH_PRODUCER = """\
import os, random, sys, time
work, cadence, pause_every = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
names = ("training_losses.pt", "optimizer_buffer.json", "validation_scores.json")
epoch, ready = 0, int(sys.argv[4])
while True:
    time.sleep(cadence)
    if pause_every and epoch and epoch % pause_every == 0:
        time.sleep(random.uniform(0.0, 5.0) * cadence)  # an evaluation phase, <= 5 C
    directory = os.path.join(work, f"epoch_{epoch}")
    os.mkdir(directory)
    for name in names:
        with open(os.path.join(directory, name), "w") as fh:
            fh.write('{"aggregated": {"acc": 0.5}}')
    with open(os.path.join(work, "train_val_0.log"), "a") as fh:
        fh.write(f"epoch {epoch} done\\n")
    epoch += 1
    if epoch == ready:
        print("ready", flush=True)
"""


def make_epoch_run(path: Path) -> Path:
    """An empty trainer run of 10000 epochs, default sleep_time (a day), no lease."""
    path.mkdir(parents=True)
    (path / "progresskit.yaml").write_text("epochs: 10000\n")
    (path / "train_val_0.log").write_text("training\n")
    return path


def rhythm_kill(root: Path, n: int, cadence: float) -> float:
    """Seconds from SIGKILL of a lease-less epoch producer to its run reading ``failed``."""
    work = make_epoch_run(root / f"rhythm-kill-{n}")
    proc = start(EPOCH_PRODUCER, str(work), str(cadence), "0", "6")
    try:
        poll = library_poll(work)
        time.sleep(random.uniform(0.0, cadence))  # the kill falls anywhere in an epoch
        assert poll() is Status.RUNNING, "not running before the kill"
        since = time.time()
        proc.send_signal(signal.SIGKILL)
        return time_to(poll, Status.FAILED, since, timeout=60.0, pause=0.2)[0]
    finally:
        proc.kill()
        proc.wait()


def rhythm_false_alarms(
    root: Path, cadence: float, seconds: float
) -> tuple[int, int, list[str]]:
    """Polls and alarms on lease-less epoch producers with evaluation pauses up to 5 C."""
    runs = []
    for every in (3, 5, 8):
        work = make_epoch_run(root / f"rhythm-quiet-{every}")
        runs.append((work, start(EPOCH_PRODUCER, str(work), str(cadence), str(every), "1")))
    return poll_for_alarms(runs, time.monotonic() + seconds, pause=0.2)


def make_run(path: Path) -> Path:
    """A trainer run, 1 of 4 epochs done, log fresh."""
    epoch = path / "epoch_0"
    epoch.mkdir(parents=True)
    for name in EXPECTED:
        (epoch / name).write_text('{"aggregated": {"acc": 0.5}}')
    (path / "progresskit.yaml").write_text("epochs: 4\nsleep_time: 5\n")
    (path / "train_val_0.log").write_text("training\n")
    return path


def start(script: str, *args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        proc.kill()
        raise SystemExit("benchmark producer did not start")
    return proc


def poll_for_alarms(
    runs: list[tuple[Path, subprocess.Popen[str]]], deadline: float, *, pause: float
) -> tuple[int, int, list[str]]:
    """Poll every run until ``deadline`` (monotonic): (polls, alarms, their reasons), where an
    alarm is any status but running; the producers are killed at the end."""
    tracking = Tracking()
    polls, alarms, reasons = 0, 0, []
    try:
        while time.monotonic() < deadline:
            for work, _proc in runs:
                result = tracking.status(str(work))
                polls += 1
                if result.status is not Status.RUNNING:
                    alarms += 1
                    reasons.append(f"{work.name}: {result.status.value}: {result.reason}")
            time.sleep(pause)
    finally:
        for _, proc in runs:
            proc.kill()
            proc.wait()
    return polls, alarms, reasons


def library_poll(work: Path) -> Callable[[], Status]:
    tracking = Tracking()
    return lambda: tracking.status(str(work)).status


def cli_poll(work: Path) -> Callable[[], Status]:
    def poll() -> Status:
        result = subprocess.run(
            [sys.executable, "-m", "progresskit", "status", "--json", str(work)],
            capture_output=True,
            text=True,
        )
        return Status(json.loads(result.stdout)["runs"][0]["status"])

    return poll


def time_to(
    poll: Callable[[], Status], wanted: Status, since: float, timeout: float, pause: float = 0.01
) -> tuple[float, int, float]:
    """Seconds from ``since`` to the end of the first poll answering ``wanted``, how many
    polls (each started after ``since``) it took, and how long that last poll lasted."""
    polls = 0
    while True:
        began = time.time()
        status = poll()
        now = time.time()
        polls += 1
        if status is wanted:
            return now - since, polls, now - began
        if now - since > timeout:
            raise SystemExit(f"status stayed {status.value} for {timeout:g}s (wanted {wanted})")
        time.sleep(pause)


def trial(
    root: Path, n: int, script: str, sig: signal.Signals, wanted: Status, how: str,
    interval: float, timeout: float,
) -> tuple[float, int, float]:
    work = make_run(root / f"{'seed' if script is SEED_PRODUCER else 'lease'}-{how}-{sig.name}-{n}")
    proc = start(script, str(work), str(interval))
    try:
        poll = library_poll(work) if how == "library" else cli_poll(work)
        time.sleep(random.uniform(0.2, 0.2 + interval))  # the event falls anywhere in a period
        assert poll() is Status.RUNNING, "not running before the event"
        since = time.time()
        proc.send_signal(sig)
        return time_to(poll, wanted, since, timeout)
    finally:
        os.kill(proc.pid, signal.SIGCONT)
        proc.kill()
        proc.wait()


def summary(times: list[float], unit: str = "s") -> str:
    ordered = sorted(times)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return (
        f"median {statistics.median(times):.3f}{unit}  p95 {p95:.3f}{unit}  "
        f"max {max(times):.3f}{unit}  (n={len(times)})"
    )


def false_alarms(root: Path, interval: float, seconds: float) -> tuple[int, int, list[str]]:
    runs = []
    for name, script in (("heartbeat", QUIET_HEARTBEAT), ("statusfile", QUIET_WRITER)):
        work = root / f"quiet-{name}"
        if name == "heartbeat":
            make_run(work)
        else:
            work.mkdir()
        runs.append((work, start(script, str(work), str(interval), str(seconds))))
    # Polling stops one interval before the producers close their leases and exit: a
    # "finished" then is the truth, not an alarm.
    return poll_for_alarms(runs, time.monotonic() + seconds - interval, pause=0.02)


def call_cost(root: Path, calls: int = 2000, repeats: int = 5) -> tuple[float, float]:
    """Seconds per status call (no process discovery) with and without a live lease."""
    plain = make_run(root / "cost-plain")
    leased = make_run(root / "cost-leased")
    proc = start(PRODUCER, str(leased), "3600")
    try:
        # Past the window in which a just-changed directory is listed again on every call
        # (fileio.RACY_WINDOW_NS): both runs are then read from the tracker's cache.
        time.sleep(2.5)
        tracking = Tracking()
        best: dict[Path, list[float]] = {plain: [], leased: []}
        for _ in range(repeats):
            for work in (plain, leased):
                tracking.status(str(work), discover_processes=False)
                began = time.perf_counter()
                for _ in range(calls):
                    tracking.status(str(work), discover_processes=False)
                best[work].append((time.perf_counter() - began) / calls)
        return statistics.median(best[plain]), statistics.median(best[leased])
    finally:
        proc.kill()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--interval", type=float, default=1.0, help="expect_every, seconds")
    parser.add_argument("--quiet-seconds", type=float, default=30.0)
    parser.add_argument("--rhythm-trials", type=int, default=5)
    parser.add_argument("--rhythm-seconds", type=float, default=60.0)
    parser.add_argument("--cadence", type=float, default=2.0, help="no-lease epoch cadence C")
    args = parser.parse_args()
    interval = args.interval
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        print(f"declared interval E = {interval:g}s, {args.trials} trials each\n")
        results: dict[str, list[float]] = {}
        cases = [
            ("SIGKILL -> crashed", PRODUCER, signal.SIGKILL, Status.CRASHED, 1.0),
            ("SIGSTOP -> stalled", PRODUCER, signal.SIGSTOP, Status.STUCK, interval + 1.0),
        ]
        for label, script, sig, wanted, target in cases:
            for how in ("library", "cli"):
                outcomes = [
                    trial(root, n, script, sig, wanted, how, interval, timeout=target + 10)
                    for n in range(args.trials)
                ]
                times = [t for t, _, _ in outcomes]
                results[f"{label} ({how})"] = times
                verdict = "ok" if max(times) < target else "MISSED"
                print(f"{label:20} {how:8} {summary(times)}  target < {target:g}s: {verdict}")
                if sig is signal.SIGKILL:
                    first = sum(1 for _, polls, _ in outcomes if polls == 1)
                    last = [d for _, _, d in outcomes]
                    print(f"{'':29} the first call after the kill said crashed in "
                          f"{first}/{len(outcomes)} trials; one call: {summary(last)}")
        baseline = [
            trial(root, n, SEED_PRODUCER, signal.SIGKILL, Status.FAILED, "library", interval, 30)[0]
            for n in range(min(3, args.trials))
        ]
        print(f"{'baseline: no lease':20} {'library':8} {summary(baseline)}  "
              "(seed 001 rules, sleep_time 5s; default 86400s)")
        lease_kill = statistics.median(results["SIGKILL -> crashed (library)"])
        print(f"crashed detection, lease vs no-lease baseline: "
              f"{lease_kill / statistics.median(baseline):.3f}x")

        polls, alarms, reasons = false_alarms(root, interval, args.quiet_seconds)
        print(f"\nfalse alarms: {alarms} in {polls} polls over {args.quiet_seconds:g}s of "
              f"silent phases up to 0.95 E (target 0)")
        for reason in reasons[:5]:
            print(f"  {reason}")

        plain, leased = call_cost(root)
        print(f"\nstatus call (no process discovery): {plain * 1e6:.0f} us without lease, "
              f"{leased * 1e6:.0f} us with a live lease: {leased / plain:.2f}x")
        assert not (root / "cost-plain" / LEASE_FILENAME).exists()

        cadence = args.cadence
        print(f"\nno lease, the run's own rhythm: an epoch every C = {cadence:g}s")
        kills = [rhythm_kill(root, n, cadence) for n in range(args.rhythm_trials)]
        target = 10 * cadence
        verdict = "ok" if max(kills) < target else "MISSED"
        print(f"{'SIGKILL -> failed':20} {'library':8} {summary(kills)}  "
              f"target < {target:g}s: {verdict}")
        print(f"{'':29} against sleep_time alone (86400s): {statistics.median(kills) / 86400:.6f}x")
        polls, alarms, reasons = rhythm_false_alarms(root, cadence, args.rhythm_seconds)
        print(f"false alarms: {alarms} in {polls} polls over {args.rhythm_seconds:g}s of "
              f"evaluation pauses up to 5 C (target 0)")
        for reason in reasons[:5]:
            print(f"  {reason}")


if __name__ == "__main__":
    main()
