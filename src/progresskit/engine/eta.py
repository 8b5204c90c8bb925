"""Remaining-time estimation: a point estimate with a p10-p90 band, or an explicit "unknown".

The estimator reads a run's own (time, units done) observations and, when there is one, a
:class:`Prior` learnt from finished runs of the same kind (see :mod:`progresskit.engine.history`).
The method, in order (docs/eta.md has the reasoning and the benchmark):

1. **Clean.** Keep, for each progress value, the first time it was reached; a drop in
   progress means the run restarted, so only the observations after the drop count.
2. **Warm-up.** Leading intervals slower than :data:`WARMUP_FACTOR` x the median interval
   are start-up cost (compilation, caches, data-loader spin-up), already paid: dropped.
3. **Spikes.** An interval slower than :data:`SPIKE_FACTOR` x the median of its neighbours
   is a spike (periodic evaluation, checkpoint). Spikes are *not* ignored: their cost is
   measured separately (mean excess over the local base rate) together with their period,
   and the long-run rate is ``base + cost / period``. A median or an EMA that ignores them
   under-estimates every run that evaluates; a plain mean over a window jumps up and down
   with the phase of the window against the spikes.
4. **Regime changes.** On the non-spike intervals, a CUSUM test (binary segmentation,
   critical value :data:`CUSUM_CRITICAL`) finds the latest significant shift of the base
   rate (a slowdown partway); only the intervals after it give the base rate.
5. **Prior and shape.** With history, each finished run contributes a rate *profile*
   (seconds per unit in each of :data:`PROFILE_BINS` slices of progress). The remaining
   time is the history's median profile over what is left, scaled by how fast this run is
   compared with its history over the same stretch of progress. The scale is a precision
   weighted blend (in log space) of this run's measured ratio and the prior's "like its
   history" (ratio 1): a run that has barely started gets history's answer, and as its own
   measurements sharpen, its own rate takes over. Without history the profile is flat,
   which is exactly "own rate x units left".
6. **Band.** The log-sd adds the rate's standard error, the spike cost's uncertainty and
   the noise of the steps and spikes still to come. Without history the rest may still slow
   down (:func:`_with_slowdown`: a mixture whose upper side holds that risk, shrinking as
   the run goes on without slowing). With history, how differently past runs went on from
   here (else the :data:`DRIFT` prior) and the error of their median shape are added, and
   p10/p90 are ``exp(-/+ t sd)`` with Student's t for what was estimated from few runs. The
   band always contains the point.

Everything returned is finite and non-negative; unknown is ``seconds is None`` with a reason.
"""

from __future__ import annotations

import bisect
import enum
import itertools
import math
import statistics
from collections.abc import Iterable, Sequence

import attrs

from progresskit.model.core import ProgressInfo, Status

__all__ = [
    "Basis",
    "Estimate",
    "Prior",
    "estimate",
    "for_status",
    "from_source",
    "rate_profile",
]

# -- parameters (each with the reason for its value) ----------------------------------------

#: Leading intervals slower than this multiple of the median interval are warm-up. Step
#: jitter of healthy runs stays within ~20% (so 1.5x is > 2.5 sd away), while warm-up steps
#: (first CUDA kernels, torch.compile, cold data caches) are typically several times slower.
WARMUP_FACTOR = 1.5
#: An interval slower than this multiple of its neighbours' median is a spike. Evaluation
#: and checkpoint steps cost several steps' time; random jitter seldom doubles a step.
SPIKE_FACTOR = 2.0
#: Neighbours on each side for the local median that spikes are judged against: 10 + 10 + 1
#: intervals keep a spike every >= 3rd interval from moving the median, and a shift of the
#: base rate moves the local median within 10 intervals of it.
SPIKE_HALF_WINDOW = 10
#: Critical value of the standardised CUSUM statistic: the 1% quantile of the supremum of
#: a Brownian bridge (Kolmogorov distribution), so a steady run is split by chance rarely.
CUSUM_CRITICAL = 1.63
#: A shift must also change the base rate by at least this fraction to be used: smaller
#: shifts move the ETA by less than the band is wide, while cutting the sample would cost
#: precision.
MIN_SHIFT = 0.05
#: Fewest intervals on each side of a change point: fewer cannot estimate a rate (and the
#: CUSUM statistic is unstable at the ends of a series).
MIN_SEGMENT = 5
#: Gaps between spikes with a coefficient of variation below this are periodic (every N
#: steps), so the number of spikes left is counted from the last one; otherwise spikes
#: are spread over the units left in proportion.
PERIODIC_CV = 0.25
#: Prior relative sd of one interval, pooled with the measured one as one pseudo-observation
#: (a scaled inverse-chi-squared prior): two or three identical epoch times must not make the
#: rate look exact. An epoch sums hundreds of steps, so epoch times vary by a few percent, up
#: to about 10% on a shared node; 12% covers that, and with hundreds of intervals the
#: measured spread decides alone. Against :data:`MIN_RUN_SPREAD` it also sets how fast a
#: run's own pace takes over from its history (docs/eta.md: half each at two intervals
#: against five past runs): the two are set together.
PRIOR_CV = 0.12
#: Log-sd of the change of a run's rate over its whole length (scaled by sqrt of the part
#: left) when no history tells better: contention on shared nodes, thermal throttling,
#: curricula and growing evaluation sets move long runs' speed by this order (15% at 1 sd).
DRIFT = 0.15
#: Chance that a run measured only by itself slows down once over its length, at a point
#: uniform over its progress, by a factor ``1 + X`` with ``log X`` about
#: N(log :data:`SLOWDOWN_MEDIAN`, :data:`SLOWDOWN_SD`). Long runs change pace partway
#: (contention on shared nodes, thermal throttling, longer inputs later in a curriculum, a
#: growing evaluation set), nearly always for the slower; one that did not yet cannot be told
#: from one that never will, so the band's upper side holds that risk and its lower side the
#: measurement's own error (docs/eta.md: the model and the calibration benchmark).
SLOWDOWN_CHANCE = 0.6
#: Median extra time of a slowed stretch, as a fraction of its time at the old pace (1.7x)...
SLOWDOWN_MEDIAN = 0.7
#: ...and the log-sd of that fraction: 1.4x to 2.3x between its p10 and p90.
SLOWDOWN_SD = 0.45
#: Points of the numeric integration over where the slowdown starts in what is left (midpoint
#: rule) and over its size (equal-probability quantiles): the band's ends move by well under
#: a percent against a finer grid, at 48 terms per evaluation of the distribution function.
SLOWDOWN_GRID = (8, 6)
#: Log-sd of run-to-run speed within one history group when it holds a single run: repeat
#: runs of one config on shared hardware differ by tens of percent (about 40% at 1 sd).
SINGLE_RUN_SPREAD = 0.35
#: Floor of that spread with more runs: two or three identical durations do not make the
#: next run exactly as fast. Repeat runs of one config on one kind of hardware differ by a
#: few percent (5% at 1 sd); set with :data:`PRIOR_CV`.
MIN_RUN_SPREAD = 0.05
#: Slices of progress in a run profile: 2.5% each, fine enough to place a slowdown or an
#: evaluation-heavy phase, small enough to store (40 numbers per finished run).
PROFILE_BINS = 40
#: Above this many observations, older ones are thinned to keep a query cheap (estimates
#: run on every status query of a changed run); the newest half is always kept whole.
MAX_OBSERVATIONS = 4000
#: How many sds (run-to-run spread and this run's own rate error combined) a run's pace may
#: be off its history's before the history is taken to be of other runs and ignored: beyond
#: 3 sd (p < 0.3% under the prior) the prior is wrong, not the run...
CONFLICT_Z = 3.0
#: ...and by at least this factor: the sd of a rate from two or three intervals is itself
#: uncertain, and repeat runs on other hardware differ by up to about 2x, while a history of
#: another workload under the same key (short runs for a long one) is off by orders.
CONFLICT_RATIO = 3.0
#: z of the 90th percentile of a normal: the band is p10-p90 (80% nominal coverage).
Z_BAND = 1.2815515655446004
#: Widest band, as a factor either side of the point: past 100x a band says nothing more
#: than "very uncertain", and the cap keeps exp() finite for degenerate inputs.
MAX_BAND_FACTOR = 100.0


class Basis(str, enum.Enum):
    """Where an estimate comes from."""

    #: Not enough to say anything (no total, no progress and no history): ``seconds`` is None.
    UNKNOWN = "unknown"
    #: The run is complete: 0 s left.
    DONE = "done"
    #: This run's own measurements only (no history for its group).
    OWN = "own"
    #: History only (the run has no usable measurement yet).
    HISTORY = "history"
    #: Both, blended (see ``own_weight``).
    BLEND = "blend"
    #: The source's own estimate (``source_eta_seconds``), used while ours has no
    #: measurement of the run's own pace.
    SOURCE = "source"

    def __str__(self) -> str:
        return self.value


def _non_negative(_inst: object, attribute: attrs.Attribute[float | None], v: float | None) -> None:
    if v is not None and not (math.isfinite(v) and v >= 0):
        raise ValueError(f"{attribute.name} must be a finite number >= 0, got {v!r}")


@attrs.frozen
class Estimate:
    """Remaining seconds with a p10-p90 band; all three ``None`` when unknown."""

    seconds: float | None = attrs.field(default=None, validator=_non_negative)
    low: float | None = attrs.field(default=None, validator=_non_negative)
    high: float | None = attrs.field(default=None, validator=_non_negative)
    basis: Basis = Basis.UNKNOWN
    #: Why the estimate is what it is (and, when unknown, what is missing).
    reason: str = ""
    #: Weight of the run's own rate against history's, in [0, 1].
    own_weight: float = 1.0

    def __attrs_post_init__(self) -> None:
        known = (self.seconds, self.low, self.high)
        if any(v is None for v in known) != all(v is None for v in known):
            raise ValueError("seconds, low and high are either all known or all None")
        if self.seconds is not None and not (self.low <= self.seconds <= self.high):  # type: ignore[operator]
            raise ValueError(f"band [{self.low}, {self.high}] must contain {self.seconds}")
        if (self.seconds is None) != (self.basis is Basis.UNKNOWN):
            raise ValueError("an estimate is unknown exactly when its basis is UNKNOWN")

    @property
    def known(self) -> bool:
        return self.seconds is not None

    def apply(self, progress: ProgressInfo) -> ProgressInfo:
        """``progress`` with its ETA fields (``eta_seconds``, ``eta_low_seconds``,
        ``eta_high_seconds``) set from this estimate."""
        return attrs.evolve(
            progress,
            eta_seconds=self.seconds,
            eta_low_seconds=self.low,
            eta_high_seconds=self.high,
        )


#: Statuses whose ETA is believed: a run making progress (or about to), or done (0 s). A
#: stalled, failed, crashed, cancelled or unknown run will not finish at its past pace, so
#: any figure would be a confident wrong answer.
_ETA_STATUSES = frozenset({Status.PENDING, Status.RUNNING, Status.FINISHED, Status.OUTDATED})


def for_status(progress: ProgressInfo, status: Status) -> ProgressInfo:
    """``progress`` with its ETA and band withdrawn (null) unless ``status`` is one whose ETA
    can be trusted. The engine calls it once, where it decides the status; the source's own
    figure (``source_eta_seconds``) is kept as what the source said."""
    if status in _ETA_STATUSES or (
        progress.eta_seconds is None
        and progress.eta_low_seconds is None
        and progress.eta_high_seconds is None
    ):
        return progress
    return attrs.evolve(progress, eta_seconds=None, eta_low_seconds=None, eta_high_seconds=None)


def unknown(reason: str) -> Estimate:
    """An honest "cannot tell", with what is missing."""
    return Estimate(reason=reason)


def from_source(seconds: float) -> Estimate:
    """The source's own remaining time, banded as one run's speed is uncertain
    (:data:`SINGLE_RUN_SPREAD`): a source's figure is its own extrapolation, no more exact."""
    return _banded(seconds, SINGLE_RUN_SPREAD, Basis.SOURCE, "the source's own estimate", 0.0)


# -- history --------------------------------------------------------------------------------


def _profiles(value: Iterable[Iterable[float | None]]) -> tuple[tuple[float | None, ...], ...]:
    return tuple(tuple(p) for p in value)


def _locate(x: float) -> tuple[int, float]:
    """The bin of progress fraction ``x`` (clamped to [0, 1]) and ``x``'s offset into it."""
    x = min(max(x, 0.0), 1.0)
    i = min(int(x * PROFILE_BINS), PROFILE_BINS - 1)
    return i, x - i / PROFILE_BINS


class _Curve:
    """A seconds-per-unit profile with its running integral: any [a, b] in O(1)."""

    __slots__ = ("cumulative", "rates")

    def __init__(self, rates: Sequence[float]):
        self.rates = list(rates)
        width = 1.0 / PROFILE_BINS
        self.cumulative = [0.0]
        for rate in self.rates:
            self.cumulative.append(self.cumulative[-1] + rate * width)

    def _at(self, x: float) -> float:
        i, offset = _locate(x)
        return self.cumulative[i] + self.rates[i] * offset

    def integral(self, a: float, b: float) -> float:
        """The profile integrated over progress fractions [a, b]."""
        return max(0.0, self._at(b) - self._at(a))

    def mean(self, a: float, b: float) -> float:
        """Mean seconds per unit over [a, b] (b > a)."""
        return self.integral(a, b) / (b - a)


@attrs.frozen
class Prior:
    """What finished runs of the same kind say: one rate profile per run.

    A profile holds, for each of :data:`PROFILE_BINS` equal slices of progress, the mean
    seconds per unit spent there (``None`` where the run was not observed). What the
    estimator derives from them is computed once per prior (history caches priors).
    """

    profiles: tuple[tuple[float | None, ...], ...] = attrs.field(converter=_profiles)
    #: Each usable run's profile divided by its own mean rate.
    _shapes: tuple[_Curve, ...] = attrs.field(init=False, eq=False, repr=False)
    #: Each usable run's mean rate (seconds per unit).
    _levels: tuple[float, ...] = attrs.field(init=False, eq=False, repr=False)
    #: The group's shape: per slice, the median across runs shrunk towards flat.
    _shape: _Curve | None = attrs.field(init=False, eq=False, repr=False)
    #: How much of the median's departure from flat that shape keeps (James-Stein, 0 when
    #: flat): the share of the median's own noise that reaches the point.
    _kept: float = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        for profile in self.profiles:
            if len(profile) != PROFILE_BINS:
                raise ValueError(f"a profile has {PROFILE_BINS} bins, got {len(profile)}")
        filled = [f for f in map(_filled, self.profiles) if f is not None]
        levels = tuple(_Curve(f).integral(0.0, 1.0) for f in filled)
        shapes = tuple(
            _Curve([v / level for v in f]) for f, level in zip(filled, levels, strict=True)
        )
        shrunk, kept = _shrunk([c.rates for c in shapes]) if shapes else ([], 0.0)
        shape = _Curve(shrunk) if shapes else None
        object.__setattr__(self, "_kept", kept)
        object.__setattr__(self, "_levels", levels)
        object.__setattr__(self, "_shapes", shapes)
        object.__setattr__(self, "_shape", shape)

    @property
    def runs(self) -> int:
        """How many past runs the prior learns from (those with an observed pace)."""
        return len(self._shapes)


def _filled(profile: Sequence[float | None]) -> list[float] | None:
    """``profile`` with unobserved slices set to the run's mean rate; None if all unobserved."""
    seen = [v for v in profile if v is not None and math.isfinite(v) and v > 0]
    if not seen:
        return None
    mean = statistics.fmean(seen)
    return [v if v is not None and math.isfinite(v) and v > 0 else mean for v in profile]


def rate_profile(observations: Iterable[tuple[float, float]], total: float) -> list[float | None]:
    """A finished run's rate profile (seconds per unit per slice of progress), for history."""
    points = _clean(observations)
    sums = [0.0] * PROFILE_BINS
    cover = [0.0] * PROFILE_BINS
    width = 1.0 / PROFILE_BINS
    for (t0, u0), (t1, u1) in itertools.pairwise(points):
        a, b = u0 / total, min(u1 / total, 1.0)
        if b <= a:
            continue
        rate = (t1 - t0) / (u1 - u0)
        for i in range(int(a / width), min(PROFILE_BINS, math.ceil(b / width))):
            overlap = min(b, (i + 1) * width) - max(a, i * width)
            if overlap > 0:
                sums[i] += rate * overlap
                cover[i] += overlap
    # A slice counts only if mostly observed: a sliver would stand for the whole slice.
    return [s / c if c >= width / 2 else None for s, c in zip(sums, cover, strict=True)]


# -- the run's own measurements -------------------------------------------------------------


def _clean(observations: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    points: list[tuple[float, float]] = []
    for t, u in observations:
        t, u = float(t), float(u)
        if not (math.isfinite(t) and math.isfinite(u)):
            continue
        if points and u < points[-1][1]:
            points = []  # progress went back: the run restarted, earlier points are another run
        if points and u == points[-1][1]:
            continue  # the first time a value was reached is when that progress was made
        if points and t < points[-1][0]:
            continue  # a clock step backwards cannot be a duration
        points.append((t, u))
    if len(points) > MAX_OBSERVATIONS:
        half = MAX_OBSERVATIONS // 2
        old, new = points[:-half], points[-half:]
        step = math.ceil(len(old) / half)
        points = old[::step] + new
    return points


@attrs.frozen
class _Own:
    """The run's own long-run rate (seconds per unit) and its uncertainty."""

    rate: float
    #: Log-sd of ``rate`` as an estimate of the current long-run rate.
    sd: float
    #: Progress (units) where the stretch that ``rate`` was measured over starts.
    since: float
    #: Seconds the run took from ``since`` to its last observation, spikes included.
    stretch: float
    #: Log-sd of the pace measured over that stretch.
    stretch_sd: float
    #: Remaining seconds by the run's own structure (phase-aware spike count), or None.
    remaining: float
    #: Relative noise of the sum of what is left (the steps and the spikes still to come,
    #: each independent): a known rate still leaves the next steps' jitter.
    noise: float


def _pstdev(values: Sequence[float]) -> float:
    """Population sd in floats (``statistics.pstdev`` works in exact fractions, which is slow
    and fails on subnormal floats)."""
    mean = math.fsum(values) / len(values)
    # Scaled by the largest deviation: squaring rates of near-zero intervals (1e-262 s)
    # overflows, although their sd is finite.
    deviations = [v - mean for v in values]
    scale = max(map(abs, deviations), default=0.0)
    if scale == 0.0 or not math.isfinite(scale):
        return scale
    return scale * math.sqrt(math.fsum((d / scale) ** 2 for d in deviations) / len(values))


def _median_window(values: Sequence[float], half: int) -> list[float]:
    n = len(values)
    return [statistics.median(values[max(0, i - half) : i + half + 1]) for i in range(n)]


def _robust_sd(values: Sequence[float]) -> float:
    """Noise sd from successive differences (MAD): insensitive to level shifts and outliers."""
    diffs = [abs(b - a) for a, b in itertools.pairwise(values)]
    if not diffs:
        return 0.0
    sd = 1.4826 * statistics.median(diffs) / math.sqrt(2)
    if sd == 0.0 and len(values) > 1:
        sd = _pstdev(values)  # quantised values: fall back to the plain sd
    return sd


def _last_change(values: Sequence[float]) -> int:
    """Index where the latest significant shift of ``values``' level starts (0: none)."""
    sigma = _robust_sd(values)
    start = 0
    while len(values) - start >= 2 * MIN_SEGMENT:
        seg = values[start:]
        n = len(seg)
        mean = statistics.fmean(seg)
        best_k, best = 0, 0.0
        cumulative = 0.0
        for k in range(1, n):
            cumulative += seg[k - 1] - mean
            if MIN_SEGMENT <= k <= n - MIN_SEGMENT and abs(cumulative) > best:
                best_k, best = k, abs(cumulative)
        if best_k == 0:
            break
        before = statistics.fmean(seg[:best_k])
        after = statistics.fmean(seg[best_k:])
        significant = sigma == 0.0 or best / (sigma * math.sqrt(n)) > CUSUM_CRITICAL
        if not (significant and abs(after - before) >= MIN_SHIFT * max(before, after)):
            break
        start += best_k
    return start


def _own(points: list[tuple[float, float]], total: float) -> _Own | None:
    times = [t for t, _ in points]
    units = [u for _, u in points]
    dt = [b - a for a, b in itertools.pairwise(times)]
    du = [b - a for a, b in itertools.pairwise(units)]
    x = [a / b for a, b in zip(dt, du, strict=True)]
    if not x or sum(dt) <= 0:
        return None
    # 2. warm-up
    median = statistics.median(x)
    first = 0
    while first < len(x) - 1 and x[first] > WARMUP_FACTOR * median:
        first += 1
    x, dt, du = x[first:], dt[first:], du[first:]
    ends = units[first + 1 :]
    # 3. spikes, against the local median
    local = _median_window(x, SPIKE_HALF_WINDOW)
    # (A zero local median means instantaneous intervals around: no base to exceed.)
    spike = [
        len(x) > 2 and li > 0 and xi > SPIKE_FACTOR * li
        for xi, li in zip(x, local, strict=True)
    ]
    base_idx = [i for i, s in enumerate(spike) if not s]
    # 4. the latest regime of the base rate
    change = _last_change([x[i] for i in base_idx])
    seg_idx = base_idx[change:]
    seg_dt = sum(dt[i] for i in seg_idx)
    seg_du = sum(du[i] for i in seg_idx)
    base = seg_dt / seg_du
    if base <= 0:
        return None
    start = first + seg_idx[0]
    seg_x = [x[i] for i in seg_idx]
    m = len(seg_x)
    # Spread and mean of the same (unweighted) per-interval rates, so that uneven intervals
    # do not pair one's spread with another's level.
    measured = _robust_sd(seg_x) / statistics.fmean(seg_x) if m > 1 else 0.0
    cv = math.sqrt((PRIOR_CV**2 + measured**2 * (m - 1)) / m)
    base_sd = cv / math.sqrt(m)
    done = units[-1]
    left = total - done

    # spike cost relative to the local base (so it scales with a slowdown), and period
    spikes = [(ends[i], (dt[i] - local[i] * du[i]) / local[i]) for i in range(len(x)) if spike[i]]
    overhead = 0.0
    spike_sd = 0.0
    remaining_spikes = 0.0
    spike_noise = 0.0  # seconds: sd of the sum of the spikes still to come
    if len(spikes) == 1:
        # One spike is a one-off pause (a job suspended and resumed, a node drained), not a
        # recurring evaluation, when it cost more than all the work seen (an evaluation costs
        # a fraction of the work between two), or when the spikes still to come at the rate
        # of one per units observed number below ln 2: the median of that Poisson count is
        # then 0, and the point estimate is a median. Charged as recurring it came again and
        # again over the units left (issue 15: 1860 s instead of 60 s). The stretch that
        # compares this run's pace with its history starts after the pause: a pause of
        # fixed length over a pace that differs would skew the comparison.
        observed = done - units[first]
        expected = left / observed if observed > 0 else math.inf
        if spikes[0][1] * base > sum(dt[i] for i in base_idx) or expected < math.log(2):
            start = max(start, first + spike.index(True) + 1)
            spikes = []
    if spikes:
        positions = [p for p, _ in spikes]
        cost = statistics.fmean(c for _, c in spikes) * base  # seconds per spike, now
        k = len(spikes)
        since_last = done - positions[-1]
        if k >= 2:
            gaps = [b - a for a, b in itertools.pairwise(positions)]
            gap = statistics.fmean(gaps)
            # Periodic: even gaps, and the next spike is not overdue (spikes did not stop).
            regular = _pstdev(gaps) <= PERIODIC_CV * gap and since_last <= gap * (1 + PERIODIC_CV)
            period = max(gap, since_last)
        else:
            period = max(positions[0] - units[0], since_last)
            regular = False
        if period > 0:
            overhead = cost / period
            if regular:
                # Evaluation every N units: the ones left are at last + N, last + 2N, ...
                # (the 1e-9 absorbs float error when the total is a multiple of N).
                remaining_spikes = math.floor((total - positions[-1]) / period + 1e-9) * cost
            else:
                remaining_spikes = overhead * left
            # Uncertainty of the mean cost (spread pooled with PRIOR_CV, as for the base
            # rate); for irregular spikes also of their frequency (Poisson: 1/sqrt(k)).
            costs = [c for _, c in spikes]
            measured = _pstdev(costs) / statistics.fmean(costs) if k > 1 else 0.0
            cost_cv = math.sqrt((PRIOR_CV**2 + measured**2 * (k - 1)) / k)
            # Each spike to come varies as the measured ones did, independently; irregular
            # ones also in number (Poisson: as many seconds of sd as one spike's sqrt(count)).
            count_cv = cost_cv if regular else math.hypot(cost_cv, 1.0)
            spike_noise = count_cv * math.sqrt(cost * remaining_spikes) if cost > 0 else 0.0
            relative = cost_cv / math.sqrt(k)
            if not regular:
                relative = math.hypot(relative, 1 / math.sqrt(k))
            spike_sd = overhead / (base + overhead) * relative
    rate = base + overhead
    sd = math.hypot(base_sd * base / rate, spike_sd)
    # Fewer intervals fall in the stretch when it starts after a pause: its pace is less sure.
    in_stretch = sum(1 for i in seg_idx if first + i >= start)
    remaining = base * left + remaining_spikes
    # The steps left: their count at the typical units per interval, each with noise cv.
    step = statistics.median(du)
    steps = max(1.0, left / step) if step > 0 else 1.0
    step_noise = cv / math.sqrt(steps) * base * left
    return _Own(
        rate=rate,
        sd=sd,
        stretch_sd=sd * math.sqrt(m / max(1, in_stretch)),
        since=units[start],
        stretch=times[-1] - times[start],
        remaining=remaining,
        noise=math.hypot(step_noise, spike_noise) / remaining if remaining > 0 else cv,
    )


# -- the estimate ---------------------------------------------------------------------------


def _robust_log_sd(values: Sequence[float]) -> float:
    logs = [math.log(v) for v in values]
    centre = statistics.median(logs)
    return 1.4826 * statistics.median(abs(v - centre) for v in logs)


def estimate(
    observations: Iterable[tuple[float, float]],
    total: float | None,
    prior: Prior | None = None,
) -> Estimate:
    """Remaining seconds after the last observation, with its p10-p90 band.

    :param observations: ``(unix time, units done)`` pairs in time order: epoch ends, step
        counts, items finished, percentages. Units are whatever ``total`` counts.
    :param total: the units the run does in all; ``None`` when unknown (then so is the ETA).
    :param prior: finished runs of the same kind, from :mod:`progresskit.engine.history`.
    """
    if total is None or not math.isfinite(total) or total <= 0:
        return unknown("the total amount of work is unknown")
    points = _clean(observations)
    done = points[-1][1] if points else 0.0
    if done >= total:
        return Estimate(0.0, 0.0, 0.0, Basis.DONE, "complete")
    left = total - done
    frac_done, frac_left = done / total, left / total
    own = _own(points, total) if len(points) >= 2 else None
    n = prior.runs if prior is not None else 0
    if own is None and n == 0:
        return unknown(
            "no history for this kind of run and no progress measured yet"
            if not points or len(points) < 2
            else "no time has passed between observations"
        )

    if prior is None or prior._shape is None:
        assert own is not None
        return _own_only(own, frac_left, "this run's own rate")

    # History's shape (see Prior: per-run profiles over their own mean, median per slice,
    # shrunk) and level: the median of the runs' mean rates (seconds per unit).
    levels, shapes, shape = prior._levels, prior._shapes, prior._shape
    prior_level = statistics.median(levels)
    measured_spread = _robust_log_sd(levels) if n >= 2 else 0.0
    spread = SINGLE_RUN_SPREAD if n == 1 else max(MIN_RUN_SPREAD, measured_spread)
    # Degrees of freedom of that spread: a prior (one run, or the floor) counts as known.
    spread_dof = n - 1 if n >= 2 and measured_spread > MIN_RUN_SPREAD else math.inf
    spread *= math.sqrt(1 + 1 / n)  # predicting a new run, not the group's median
    shape_left = shape.integral(frac_done, 1.0) * total
    # How past runs went from here on: a log-sd measured when there are >= 2 runs, the DRIFT
    # prior otherwise; plus the error of the median shape the point uses.
    if own is None:
        rest_sd, runs = _rest_spread(shapes, frac_done, 0.0, frac_done)
        point = prior_level * shape_left
        rest_var = rest_sd**2 + prior._kept**2 * _median_var(rest_sd, runs)
        sd = math.sqrt(spread**2 + rest_var)
        return _banded(point, sd, Basis.HISTORY, f"history of {n} finished run(s)", 0.0,
                       _t_quantile(_dof(sd**2, [(rest_var, runs - 1), (spread**2, spread_dof)])))

    # This run's level: the time it took over the stretch its rate was measured on, against
    # the time history's shape puts there (the same evaluations fall in both, so their phase
    # cancels), blended with history's level by precision (log space).
    # The stretch starts at a slice boundary when one is near: a slice that holds history's
    # warm-up would otherwise be charged at its average, warm-up included.
    width = 1.0 / PROFILE_BINS
    a = min(own.since / total, frac_done)
    boundary = math.ceil(a / width) * width
    stretch = own.stretch
    if frac_done - boundary >= width / 2:
        a, stretch = boundary, points[-1][0] - _time_at(points, boundary * total)
    expected = shape.integral(a, frac_done) * total
    own_level = stretch / expected if stretch > 0 and expected > 0 else own.rate
    disagreement = abs(math.log(own_level / prior_level))
    if disagreement > max(
        CONFLICT_Z * math.hypot(spread, own.stretch_sd), math.log(CONFLICT_RATIO)
    ):
        # The run is measurably not like its history (another workload under the same key,
        # other hardware): a heavy-tailed prior, so its own pace decides alone.
        return _own_only(
            own, frac_left, f"this run's own rate (it is {math.exp(disagreement):.3g}x "
            f"off the pace of its {n} finished run(s), so their history does not apply)"
        )
    if own.stretch_sd > 0:
        weight = spread**2 / (spread**2 + own.stretch_sd**2)
        level_sd = 1.0 / math.sqrt(1.0 / spread**2 + 1.0 / own.stretch_sd**2)
    else:
        weight, level_sd = 1.0, 0.0
    level = math.exp(weight * math.log(own_level) + (1 - weight) * math.log(prior_level))
    point = level * shape_left
    rest_sd, runs = _rest_spread(shapes, frac_done, a, frac_done)
    # The past runs' spread over what is left also holds each one's own measurement noise:
    # of its pace over the stretch (as this run's, stretch_sd) and of its steps left (as this
    # run's noise). Only what exceeds that is how differently runs go; both are added once.
    # The median shape the point uses holds that noise too (its standard error, as far as
    # the shrinkage keeps it): that part is the point's own error, not to be subtracted.
    noise = own.noise
    rest_var = max(0.0, rest_sd**2 - own.stretch_sd**2 - noise**2)
    rest_var += prior._kept**2 * _median_var(rest_sd, runs)
    variance = level_sd**2 + rest_var + noise**2
    # How far the blend leans on history's level, that part of the level's error is the
    # spread's (estimated from the runs).
    dof = _dof(variance, [(rest_var, runs - 1), ((1 - weight) * level_sd**2, spread_dof)])
    basis = Basis.HISTORY if weight < 0.05 else Basis.BLEND
    return _banded(point, math.sqrt(variance), basis,
                   f"own rate blended with {n} finished run(s)", weight, _t_quantile(dof))


def _own_only(own: _Own, frac_left: float, reason: str) -> Estimate:
    """The estimate from the run's own measurements alone."""
    sd = math.hypot(own.sd, own.noise)
    low, high = _with_slowdown(sd, 1.0 - frac_left)
    return _banded_at(own.remaining, low, high, Basis.OWN, reason, 1.0)


def _normal_cdf(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def _normal_quantile(p: float) -> float:
    return statistics.NormalDist().inv_cdf(p)


def _slowdown_terms(frac_done: float) -> tuple[float, list[float]]:
    """The chance that a slowdown is still ahead of a run at ``frac_done`` that has not
    slowed down so far, and the log-factors it would put on the remaining time (equally
    likely terms of the integration over where it starts and how large it is)."""
    p = SLOWDOWN_CHANCE
    frac_done = min(max(frac_done, 0.0), 1.0)
    # Bayes: a slowdown was due somewhere in the run (p), not in the part done.
    ahead = p * (1.0 - frac_done) / (1.0 - p * frac_done)
    starts, sizes = SLOWDOWN_GRID
    extras = [
        SLOWDOWN_MEDIAN * math.exp(SLOWDOWN_SD * _normal_quantile((j + 0.5) / sizes))
        for j in range(sizes)
    ]
    # Starting uniformly within what is left, it slows the last fraction u of it (uniform).
    shifts = [
        math.log1p((i + 0.5) / starts * extra) for i in range(starts) for extra in extras
    ]
    return ahead, shifts


def _with_slowdown(sd: float, frac_done: float) -> tuple[float, float]:
    """The p10 and p90 of log(actual / point) when the pace may still change.

    The run's measured pace is right up to ``sd`` (the rate's error and the noise of the
    steps to come), unless a slowdown is still ahead (:func:`_slowdown_terms`): then the
    remaining time is longer by its log-factor, with the same measurement error. A mixture,
    whose quantiles are found by bisection on its distribution function.
    """
    ahead, shifts = _slowdown_terms(frac_done)
    weight = ahead / len(shifts)

    def phi(q: float) -> float:
        # An exact measurement (sd 0) is a step.
        return _normal_cdf(q / sd) if sd > 0 else float(q >= 0)

    def cdf(q: float) -> float:
        return (1.0 - ahead) * phi(q) + weight * math.fsum(phi(q - s) for s in shifts)

    def quantile(alpha: float) -> float:
        lo, hi = -10.0 * sd - 1.0, 10.0 * sd + max(shifts) + 1.0
        # 40 halvings of a span of a few units: far below a second's worth of any band.
        for _ in range(40):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if cdf(mid) < alpha else (lo, mid)
        return (lo + hi) / 2

    return quantile(0.1), quantile(0.9)


def _shrunk(shapes: Sequence[Sequence[float]]) -> tuple[list[float], float]:
    """The median shape across past runs, shrunk towards flat (1 everywhere) by its noise,
    and the factor of its departure from flat that is kept.

    A shape that does not differ from flat at the 1% level (chi-squared over the slices) is
    flat. Otherwise James-Stein (positive part) pulls it towards flat by as much as its
    noise explains: multiplying noise into the ETA costs accuracy on steady runs, while a
    shape all runs agree on (an evaluation-heavy phase, a slowdown at 50%) stands far above
    its noise and is kept.
    """
    n = len(shapes)
    medians = [statistics.median(s[i] for s in shapes) for i in range(PROFILE_BINS)]
    if n < 2:
        return medians, 1.0
    # Standard error of a median: sqrt(pi / 2) x that of a mean; pooled over the slices,
    # since a variance from a handful of runs per slice is too noisy to divide by.
    se2 = (math.pi / 2) * statistics.fmean(
        _pstdev([s[i] for s in shapes]) ** 2 * n / (n - 1) for i in range(PROFILE_BINS)
    ) / n
    deviation = sum((m - 1.0) ** 2 for m in medians)
    if deviation == 0.0:
        return medians, 1.0
    if deviation < _chi2_99(PROFILE_BINS) * se2:
        return [1.0] * PROFILE_BINS, 0.0  # no shape beyond noise (a 1% test): flat
    factor = 1.0 if se2 == 0.0 else max(0.0, 1.0 - (PROFILE_BINS - 2) * se2 / deviation)
    return [1.0 + (m - 1.0) * factor for m in medians], factor


def _chi2_99(k: int) -> float:
    """The 99% quantile of chi-squared with ``k`` degrees of freedom (Wilson-Hilferty)."""
    z99 = 2.3263478740408408
    return k * (1 - 2 / (9 * k) + z99 * math.sqrt(2 / (9 * k))) ** 3


def _time_at(points: Sequence[tuple[float, float]], units: float) -> float:
    """When the run reached ``units`` (linear between observations)."""
    i = bisect.bisect_left([u for _, u in points], units)
    if i == 0:
        return points[0][0]
    if i == len(points):
        return points[-1][0]
    (t0, u0), (t1, u1) = points[i - 1], points[i]
    return t0 + (t1 - t0) * (units - u0) / (u1 - u0)


def _rest_spread(shapes: Sequence[_Curve], done: float, a: float, b: float) -> tuple[float, int]:
    """Log-sd of the time left from ``done`` across past runs, each against its own pace
    over [a, b] (all of [0, done] when b == a): how differently the rest went; and how many
    runs it was measured on (0: fewer than 2, and the sd is the :data:`DRIFT` prior's)."""
    n = len(shapes)
    left = 1.0 - done
    if n < 2:
        return DRIFT * math.sqrt(left), 0
    if b - a <= 0:
        a, b = 0.0, 1.0  # nothing measured yet: compare whole-run paces
    # s.integral(done, 1) / s.mean(a, b) for every shape, with the bins located once: all
    # profiles share their bins, and this runs for each of up to PRIOR_RUNS past runs on
    # every estimate (a ComfyUI monitor estimates on every progress message).
    (i_done, f_done), (i_end, f_end) = _locate(done), _locate(1.0)
    (i_a, f_a), (i_b, f_b) = _locate(a), _locate(b)
    width = b - a
    ahead = []
    for s in shapes:
        cum, rates = s.cumulative, s.rates
        at_done = cum[i_done] + rates[i_done] * f_done
        rest = max(0.0, cum[i_end] + rates[i_end] * f_end - at_done)
        span = max(0.0, cum[i_b] + rates[i_b] * f_b - (cum[i_a] + rates[i_a] * f_a))
        # A past run that spent no time over [a, b] has no pace there to compare against.
        if span > 0.0:
            ahead.append(rest / (span / width))
    if len(ahead) < 2:
        return DRIFT * math.sqrt(left), 0
    return _log_sd(ahead), len(ahead)


def _median_var(sd: float, runs: int) -> float:
    """Squared standard error of the median of ``runs`` draws of log-sd ``sd`` (pi / 2 x
    that of a mean); none for a prior (``runs`` 0)."""
    return (math.pi / 2) * sd**2 / runs if runs >= 2 else 0.0


def _dof(variance: float, estimated: Sequence[tuple[float, float]]) -> float:
    """Welch-Satterthwaite degrees of freedom of ``variance``, of which the parts in
    ``estimated`` (variance, its degrees of freedom) were estimated and the rest is known.
    A part with fewer than 1 degree of freedom is a prior: known."""
    spread = math.fsum(v**2 / dof for v, dof in estimated if v > 0 and dof >= 1)
    return variance**2 / spread if spread > 0 else math.inf


def _log_sd(values: Sequence[float]) -> float:
    """Sample sd of the logs: how differently past runs went, their tails included (a band
    predicts the next run, and one past run in five that went its own way is a fifth of
    them, not an outlier to drop)."""
    logs = [math.log(v) for v in values]
    return math.sqrt(math.fsum((v - statistics.fmean(logs)) ** 2 for v in logs) / (len(logs) - 1))


def _t_quantile(dof: float) -> float:
    """The 90% quantile of Student's t with ``dof`` degrees of freedom: a spread estimated
    from few past runs is itself uncertain. Cornish-Fisher expansion in 1/dof about the
    normal's (within 0.3% of the exact from 2 dof up, 4% short at 1)."""
    if not math.isfinite(dof):
        return Z_BAND
    z = Z_BAND
    z3, z5, z7 = z**3, z**5, z**7
    return (
        z
        + (z3 + z) / (4 * dof)
        + (5 * z5 + 16 * z3 + 3 * z) / (96 * dof**2)
        + (3 * z7 + 19 * z5 + 17 * z3 - 15 * z) / (384 * dof**3)
    )


def _banded(
    point: float, sd: float, basis: Basis, reason: str, weight: float, quantile: float = Z_BAND
) -> Estimate:
    """The estimate ``point`` with a band of ``quantile`` log-sds either side."""
    z = quantile * sd if math.isfinite(sd) else math.inf
    return _banded_at(point, -z, z, basis, reason, weight)


def _banded_at(
    point: float, low_log: float, high_log: float, basis: Basis, reason: str, weight: float
) -> Estimate:
    """The estimate ``point`` with its band at ``point * exp(low_log / high_log)``."""
    point = max(0.0, point)
    if not math.isfinite(point):
        return unknown(f"{reason}: the remaining time is beyond measure")
    cap = math.log(MAX_BAND_FACTOR)
    low = point * math.exp(max(low_log, -cap))
    high = point * math.exp(min(high_log, cap))
    if not math.isfinite(high):
        return unknown(f"{reason}: the remaining time is beyond measure")
    return Estimate(point, min(low, point), max(high, point), basis, reason, weight)
