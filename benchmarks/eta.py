"""ETA accuracy: progresskit's estimator against tqdm's and rich's on generated step traces.

Usage: ``python benchmarks/eta.py [--runs N] [--seed S]``

Every trace is a training run's step times (seconds per step), generated here:

* ``steady``: one base step time with per-step jitter (log-normal, 10%);
* ``spiky``: the same plus a warm-up (the first steps several times slower, decaying) and
  an evaluation every N steps costing many steps' time;
* ``slowdown``: ``spiky`` plus a sudden slowdown of the whole run (steps and evaluations)
  partway through (contention, throttling, a curriculum's longer inputs);
* ``pause``: ``steady`` plus one long pause early on (a job suspended and resumed, a node
  drained: 0.5 to 3 hours, within the first 2-8% of the steps), which does not recur;
* ``few``: few observations: 6 to 20 epochs of 1 to 10 minutes each (10% jitter), every
  epoch end one observation (a trainer's epoch directories, a Hugging Face run's
  checkpoints).

Ranges are drawn per trace (see :func:`job`); none was tuned to favour an estimator.
At 10, 25, 50 and 75% of the steps each estimator says how many seconds are left, and the
script prints the median absolute relative error against the true remaining time, per
trace family, and the coverage of progresskit's p10-p90 band per family (target 80% +- 5
points on every family).

Estimators, all fed every step as it completes:

* ``tqdm s=0.3`` / ``tqdm s=0``: tqdm's own ``tqdm`` class with a fake clock (its real EMA,
  ``tqdm.std.EMA``, and its update/throttle logic); remaining = (total - n) / rate, the
  rate from ``format_dict`` (EMA of dn/dt) or, with smoothing 0, n / elapsed.
* ``rich``: rich's own ``Progress``/``Task`` with ``get_time`` as the fake clock; remaining
  = ``Task.time_remaining`` (speed over the last 30 s of samples, rich's default).
* ``ours``: :func:`progresskit.engine.eta.estimate` from the (time, step) observations alone.
* ``ours+hist``: the same with a prior from 5 earlier runs of the same job (same structure,
  their own jitter), as the history store gives a repeated job; the run estimated is a sixth
  repeat, drawn like them (:func:`sample`).

Coverage is printed with its standard error over traces (a trace's checkpoints are
correlated); 200 traces per family make it about 1.5 points.
"""

from __future__ import annotations

import argparse
import io
import math
import random
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from rich.console import Console
from rich.progress import Progress
from tqdm import tqdm

from progresskit.engine.eta import Prior, estimate, rate_profile

CHECKPOINTS = (0.10, 0.25, 0.50, 0.75)
FAMILIES = ("steady", "spiky", "slowdown", "pause", "few")
HISTORY_RUNS = 5
#: (family, estimator) pairs where ours must beat (steady: match) every other estimator at
#: every checkpoint (issue 15: "keep winning on spiky and slowdown-with-history"); the other
#: figures are printed, and the band's calibration is the target on every family. Ours
#: without history is not raced on ``slowdown``: at 10% and 25% a slowdown trace is, so far, a
#: spiky one, and what wins on spiky (no slowdown to come) cannot also guess the slowdown
#: still ahead (tqdm's whole-run mean wins there only because the warm-up it keeps inflates it
#: by about what the slowdown adds; on spiky the same mean is about 25% off at 10%).
RACED = (
    ("steady", "ours"), ("steady", "ours+hist"),
    ("spiky", "ours"), ("spiky", "ours+hist"),
    ("slowdown", "ours+hist"),
)
#: How close to the best other estimator ours must be on ``steady`` to match it (relative):
#: the median of 200 absolute errors has a standard error of about 8% of itself (half-normal
#: errors), and with history the pace is measured from a slice boundary on, a slightly other
#: sample than tqdm's whole-run mean, so a tie is within 5%, not equal to the last digit.
STEADY_TIE = 0.05
#: Band calibration target per family: p10-p90 coverage within 80% +- 5 points (issue 15).
COVERAGE_TOLERANCE = 0.05


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def job(family: str, rng: random.Random) -> dict[str, float]:
    """The structure of one job; repeated runs of it differ only by jitter."""
    spec: dict[str, float] = {
        "steps": rng.randint(2000, 6000),
        "base": rng.uniform(0.2, 2.0),  # seconds per step
        "jitter": 0.10,
        "warmup_steps": 0,
        "warmup_factor": 1.0,
        "period": 0,
        "eval_steps": 0.0,
        "slow_at": 2.0,
        "slow_factor": 1.0,
        "pause_at": 0,
        "pause": 0.0,
    }
    if family == "few":
        spec["steps"] = rng.randint(6, 20)
        spec["base"] = rng.uniform(60.0, 600.0)
    if family == "pause":
        spec["pause_at"] = max(1, round(spec["steps"] * rng.uniform(0.02, 0.08)))
        spec["pause"] = rng.uniform(1800.0, 10800.0)
    if family in ("spiky", "slowdown"):
        spec["warmup_steps"] = rng.randint(10, 100)
        spec["warmup_factor"] = rng.uniform(3.0, 10.0)
        spec["period"] = rng.randint(50, 300)
        spec["eval_steps"] = rng.uniform(5.0, 40.0)  # an evaluation costs this many steps
    if family == "slowdown":
        spec["slow_at"] = rng.uniform(0.3, 0.7)
        spec["slow_factor"] = rng.uniform(1.3, 2.0)
    return spec


def trace(spec: dict[str, float], rng: random.Random) -> list[float]:
    """Step durations of one run of ``spec``: repeat runs of a job differ in pace (+-10%),
    in where a slowdown starts (+-5% of the steps) and by how much (+-10%), and by jitter."""
    steps = int(spec["steps"])
    base = spec["base"] * rng.uniform(0.9, 1.1)
    slow_at = spec["slow_at"] + rng.uniform(-0.05, 0.05)
    slow_factor = spec["slow_factor"] * rng.uniform(0.9, 1.1)
    out = []
    for i in range(1, steps + 1):
        d = base * math.exp(rng.gauss(0.0, spec["jitter"]))
        if i <= spec["warmup_steps"]:
            # Decays from warmup_factor to 1 over the warm-up steps.
            d *= 1 + (spec["warmup_factor"] - 1) * (1 - (i - 1) / spec["warmup_steps"])
        if spec["period"] and i % int(spec["period"]) == 0:
            d += base * spec["eval_steps"] * math.exp(rng.gauss(0.0, spec["jitter"]))
        if i / steps >= slow_at:
            d *= slow_factor
        if i == spec["pause_at"]:
            d += spec["pause"]  # once, the same length in every repeat: not the run's pace
        out.append(d)
    return out


#: An estimator fed a trace step by step: its remaining-time guess after each of ``upto``
#: steps (ascending), None where it has none.
Estimator = Callable[[list[float], list[int]], list[float | None]]


def tqdm_estimator(smoothing: float) -> Estimator:
    def run(durations: list[float], upto: list[int]) -> list[float | None]:
        clock = Clock()
        bar = tqdm(total=len(durations), smoothing=smoothing, file=io.StringIO())
        bar._time = clock  # type: ignore[attr-defined]
        bar.start_t = bar.last_print_t = clock.now
        # Rendering off: tqdm's update still does its EMA and miniters bookkeeping on every
        # refresh it would do (what the rate depends on); drawing 10^5 bars into a StringIO
        # was 80% of this script's time and changes no figure.
        bar.refresh = lambda *args, **kwargs: None  # type: ignore[method-assign]
        out: list[float | None] = []
        done = 0
        for stop in upto:
            for d in durations[done:stop]:
                clock.now += d
                bar.update(1)
            done = stop
            fmt = bar.format_dict
            rate = fmt["rate"] if smoothing else fmt["n"] / fmt["elapsed"]
            out.append(None if not rate else (fmt["total"] - fmt["n"]) / rate)
        bar.close()
        return out

    return run


def rich_estimator(durations: list[float], upto: list[int]) -> list[float | None]:
    clock = Clock()
    progress = Progress(get_time=clock, console=Console(file=io.StringIO()), auto_refresh=False)
    task = progress.add_task("run", total=len(durations))
    out: list[float | None] = []
    done = 0
    for stop in upto:
        for d in durations[done:stop]:
            clock.now += d
            progress.advance(task, 1)
        done = stop
        remaining = progress.tasks[0].time_remaining
        out.append(None if remaining is None else float(remaining))
    return out


def observations(durations: list[float], upto: int) -> list[tuple[float, float]]:
    out = [(0.0, 0.0)]
    now = 0.0
    for i, d in enumerate(durations[:upto], 1):
        now += d
        out.append((now, float(i)))
    return out


def sample(family: str, rng: random.Random) -> tuple[list[float], Prior]:
    """One trace of ``family`` and the prior its :data:`HISTORY_RUNS` earlier runs give.

    The run is one more repeat of its job, drawn like the earlier ones: the estimator
    predicts a new run from its history (a new draw around the group's pace), and a run at
    the exact centre of its history would make history look more exact than it is.
    """
    spec = job(family, rng)
    durations = trace(spec, rng)
    history = []
    for _ in range(HISTORY_RUNS):
        past = trace(spec, rng)
        history.append(tuple(rate_profile(observations(past, len(past)), len(past))))
    return durations, Prior(history)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # 200 traces x 4 checkpoints: a coverage's standard error is about 1.5 points (printed;
    # the 4 checkpoints of a trace are correlated, so it is computed over traces), small
    # enough to judge a +-5 point target; 40 traces gave about 4 and 5-point swings with
    # the seed.
    parser.add_argument("--runs", type=int, default=200, help="traces per family (default 200)")
    parser.add_argument("--seed", type=int, default=20240601)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    others: dict[str, Estimator] = {
        "tqdm s=0.3": tqdm_estimator(0.3),
        "tqdm s=0": tqdm_estimator(0.0),
        "rich": rich_estimator,
    }
    names = [*others, "ours", "ours+hist"]
    misses: list[str] = []
    covered_all: dict[str, list[bool]] = {"ours": [], "ours+hist": []}
    for family in FAMILIES:
        errors: dict[str, dict[float, list[float]]] = {
            n: {c: [] for c in CHECKPOINTS} for n in names
        }
        covered: dict[str, list[bool]] = {"ours": [], "ours+hist": []}
        per_trace: dict[str, list[float]] = {"ours": [], "ours+hist": []}
        for _ in range(args.runs):
            durations, prior = sample(family, rng)
            steps = len(durations)
            stops = [round(c * steps) for c in CHECKPOINTS]
            guesses = {name: fn(durations, stops) for name, fn in others.items()}
            for k, (c, upto) in enumerate(zip(CHECKPOINTS, stops, strict=True)):
                truth = sum(durations[upto:])
                for name in others:
                    guess = guesses[name][k]
                    err = math.inf if guess is None else abs(guess - truth) / truth
                    errors[name][c].append(err)
                obs = observations(durations, upto)
                for name, p in (("ours", None), ("ours+hist", prior)):
                    est = estimate(obs, steps, p)
                    if est.seconds is None or est.low is None or est.high is None:
                        errors[name][c].append(math.inf)
                        covered[name].append(False)
                        continue
                    errors[name][c].append(abs(est.seconds - truth) / truth)
                    covered[name].append(est.low <= truth <= est.high)
            for name in per_trace:
                per_trace[name].append(statistics.fmean(covered[name][-len(CHECKPOINTS) :]))
        print(f"\n{family} ({args.runs} traces): median |relative error| of remaining time")
        print(f"{'estimator':<12}" + "".join(f"{f'at {c:.0%}':>10}" for c in CHECKPOINTS))
        medians = {n: {c: statistics.median(errors[n][c]) for c in CHECKPOINTS} for n in names}
        for name in names:
            print(f"{name:<12}" + "".join(f"{medians[name][c]:>10.4f}" for c in CHECKPOINTS))
        for ours in ("ours", "ours+hist"):
            rate = sum(covered[ours]) / len(covered[ours])
            covered_all[ours].extend(covered[ours])
            se = statistics.stdev(per_trace[ours]) / math.sqrt(len(per_trace[ours]))
            print(f"{ours} band coverage (p10-p90, nominal 80%): {rate:.1%} (se {se:.1%})")
            if abs(rate - 0.8) > COVERAGE_TOLERANCE:
                misses.append(f"{family}: {ours} coverage {rate:.1%} outside 75-85%")
            if (family, ours) not in RACED:
                continue
            for c in CHECKPOINTS:
                best_other = min(medians[n][c] for n in others)
                if family == "steady":
                    # On a steady run tqdm's whole-run mean is the maximum-likelihood rate:
                    # ours can tie it, not beat it (see STEADY_TIE).
                    ok = medians[ours][c] <= best_other * (1 + STEADY_TIE)
                    what = "no worse than every other"
                else:
                    ok = medians[ours][c] < best_other
                    what = "lower than every other"
                if not ok:
                    misses.append(
                        f"{family} at {c:.0%}: {ours} {medians[ours][c]:.6f} is not {what} "
                        f"(best other {best_other:.6f})"
                    )
    print()
    for ours in ("ours", "ours+hist"):
        rate = sum(covered_all[ours]) / len(covered_all[ours])
        print(f"{ours} band coverage over all families: {rate:.1%}")
    print("\ntargets: " + ("all met" if not misses else "MISSED:"))
    for miss in misses:
        print("  " + miss)


if __name__ == "__main__":
    main()
