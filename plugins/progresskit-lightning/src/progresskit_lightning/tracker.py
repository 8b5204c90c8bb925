"""Progress of a PyTorch Lightning run from what its logger and ModelCheckpoint wrote.

The run's directory is one of (see :func:`progresskit_lightning.layout.claims`):

- a version directory ``<name>/version_N/`` (``hparams.yaml`` with ``metrics.csv``,
  ``events.out.tfevents.*`` or ``checkpoints/``);
- an experiment directory ``<name>/`` holding ``version_N/`` directories, one per launch
  of the job; they are one run, reported by the newest (a resumed job continues its global
  step there);
- a directory holding ``lightning_logs/`` (Lightning's default layout), or any directory
  pinned ``runner_type: lightning`` (a job directory with the redirected console log, the
  logger's files a few levels below): the experiment directory below it is found and read.

Position, metrics and checkpoints come from the newest version; totals from the config
(``max_epochs``) or LightningCLI's ``config.yaml``; the console log, in the run's directory
or in the job directory above the logger's (:meth:`LightningTracker.log_dir`), fills in the
rest through progresskit's log reading (the bar, the total of epochs it shows,
``max_epochs=N reached``, a traceback at its end).
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Mapping, Sequence
from typing import Any

from progresskit import (
    BaseProgressTracker,
    Estimate,
    ProgressInfo,
    StatKey,
    Status,
    estimate_run,
    stat_key,
)
from progresskit_lightning import tbevents
from progresskit_lightning.cliconfig import CliConfig, Limits
from progresskit_lightning.layout import (
    CHECKPOINTS,
    CLI_CONFIG,
    DEFAULT_LOGGER_NAME,
    EVENTS_PREFIX,
    HPARAMS,
    METRICS,
    VERSION_DIR,
    Checkpoint,
    is_experiment_dir,
    is_version_dir,
    parse_checkpoint,
    version_dirs,
)
from progresskit_lightning.metrics import MetricsFile, Summary
from progresskit_lightning.position import Position, position

RUNNER_TYPE = "lightning"
#: How many levels below a pinned job directory the logger's directory is looked for
#: (``job/out/csv/version_0``: ``csv`` is two levels down).
SEARCH_DEPTH = 3
#: How many levels above the experiment dir the job's console log is looked for: the
#: logger's ``save_dir`` and the directory holding it (``job/out/csv``: ``out``, ``job``).
_LOG_LEVELS = 2
#: How many of the newest checkpoints are timed: the run's rhythm and its step rate.
RATE_WINDOW = 8
#: Saves closer than this are files copied into place, not training (as in progresskit-hf).
_COPIED_SECONDS = 1.0


def _lower_is_better(metric: str) -> bool:
    name = metric.lower()
    return "loss" in name or "err" in name


def _listing(path: str) -> dict[str, bool]:
    try:
        with os.scandir(path) as it:
            return {e.name: e.is_dir() for e in it}
    except OSError:
        return {}


class LightningTracker(BaseProgressTracker):
    """Progress of a Lightning run: its logger's version directories and checkpoints."""

    runner_type = RUNNER_TYPE
    # Lightning writes no log file of its own; a redirected console is commonly *.log.
    log_pattern = "*.log"

    def __init__(self, work_dir: str | os.PathLike[str], config: Mapping[str, Any] | None = None):
        super().__init__(work_dir, config)
        self._lists: dict[str, tuple[StatKey, dict[str, bool]]] = {}
        self._metrics: dict[str, MetricsFile] = {}
        self._events: dict[str, tbevents.EventsReader] = {}
        self._cli: dict[str, CliConfig] = {}
        #: The experiment directory found below a job directory (searched once).
        self._found: str | None = None
        #: What the last computation read, whose changes must invalidate it.
        self._watched: tuple[str, ...] = ()
        self._times: tuple[float, ...] = ()

    # -- where the files are -----------------------------------------------------------------

    def _list(self, path: str) -> dict[str, bool]:
        """``path``'s listing, listed again only when its stat key changed."""
        key = stat_key(path)
        if key is None:
            self._lists.pop(path, None)
            return {}
        known = self._lists.get(path)
        if known is None or known[0] != key:
            known = (key, _listing(path))
            self._lists[path] = known
        return known[1]

    def _search(self) -> str | None:
        """The first directory of version directories below the work dir, breadth first,
        ``lightning_logs`` before other names; ``None`` within :data:`SEARCH_DEPTH`."""
        level = [self.work_dir]
        for _depth in range(SEARCH_DEPTH):
            below: list[str] = []
            for directory in level:
                names = sorted(
                    (n for n, d in _listing(directory).items() if d and not n.startswith(".")),
                    key=lambda n: (n != DEFAULT_LOGGER_NAME, n),
                )
                for name in names:
                    path = os.path.join(directory, name)
                    if version_dirs(_listing(path)):
                        return path
                    below.append(path)
            level = below
        return None

    def _locate(self) -> tuple[str | None, list[tuple[int, str]]]:
        """(experiment directory or ``None`` for a lone version, its versions oldest first
        as ``(N, path)``)."""
        entries = self.entries()
        if is_version_dir(entries):
            match = VERSION_DIR.match(os.path.basename(os.path.normpath(self.work_dir)))
            return None, [(int(match.group(1)) if match else 0, self.work_dir)]
        if is_experiment_dir(entries):
            experiment = self.work_dir
        elif entries.get(DEFAULT_LOGGER_NAME) is True:
            experiment = os.path.join(self.work_dir, DEFAULT_LOGGER_NAME)
        else:
            if self._found is None or stat_key(self._found) is None:
                self._found = self._search()
            if self._found is None:
                return None, []
            experiment = self._found
        listing = entries if experiment == self.work_dir else self._list(experiment)
        versions = [(n, os.path.join(experiment, name)) for n, name in version_dirs(listing)]
        return experiment, versions

    def log_dir(self) -> str:
        """Where the job's console log is: the work dir when it holds one, else the first of
        the experiment dir, the logger's ``save_dir`` above it and the directory holding
        that (the job dir: ``job/train.log`` with the run at ``job/out/csv``) that holds a
        file matching :attr:`log_pattern`. Not higher: a directory above the job's is
        shared by other runs, whose logs are not this one's."""
        entries = self.entries()
        if self._holds_log(entries):
            return self.work_dir
        # Absolute: the parent of a relative "out" is the current directory, not "".
        here = os.path.abspath(self.work_dir)
        directory = here
        if is_version_dir(entries):
            directory = os.path.dirname(directory)  # the experiment dir
        candidates = [directory]
        for _level in range(_LOG_LEVELS):
            parent = os.path.dirname(directory)
            if parent == directory:
                break
            candidates.append(parent)
            directory = parent
        for candidate in candidates:
            if candidate != here and self._holds_log(self._list(candidate)):
                return candidate
        return self.work_dir

    def last_log_update(self) -> float | None:
        # The job's console log above the logger's directory is written at every bar redraw:
        # a sign of life as much as a log in the work dir is.
        own = super().last_log_update()
        where = self.log_dir()
        if where == self.work_dir:
            return own
        pattern = self.get_log_pattern()
        times = [t for t in (own,) if t is not None]
        for name, is_dir in self._list(where).items():
            if not is_dir and fnmatch.fnmatchcase(name, pattern):
                key = stat_key(os.path.join(where, name))
                if key is not None:
                    times.append(key[0] / 1e9)
        return max(times) if times else None

    def _holds_log(self, entries: Mapping[str, bool]) -> bool:
        pattern = self.get_log_pattern()
        return any(not d and fnmatch.fnmatchcase(n, pattern) for n, d in entries.items())

    def _relative(self, path: str) -> str:
        return os.path.relpath(path, self.work_dir).replace(os.sep, "/")

    # -- the cache ------------------------------------------------------------------------------

    def fingerprint(self) -> tuple[StatKey | None, ...]:
        self.entries()
        return (self.listing_key(), *(stat_key(p) for p in self._watched))

    def update_times(self) -> Sequence[float]:
        return self._times

    def is_complete(self) -> bool:
        return self.get_progress().reported_status is Status.FINISHED

    # -- reading ----------------------------------------------------------------------------------

    def _summary(self, version: str, problems: list[str]) -> Summary | None:
        path = os.path.join(version, METRICS)
        reader = self._metrics.get(path)
        if reader is None:
            reader = self._metrics[path] = MetricsFile(path, self._relative(path))
        summary = reader.read()
        if reader.problem:
            problems.append(reader.problem)
        return summary

    def _limits(self, version: str, problems: list[str]) -> Limits:
        path = os.path.join(version, CLI_CONFIG)
        reader = self._cli.get(path)
        if reader is None:
            reader = self._cli[path] = CliConfig(path, self._relative(path))
        limits = reader.read()
        if limits.problem:
            problems.append(limits.problem)
        return limits

    def _checkpoints(self, version: str) -> list[Checkpoint]:
        """The named checkpoints, by step (then epoch), oldest first."""
        found = [parse_checkpoint(n) for n, d in self._list(os.path.join(version, CHECKPOINTS))
                 .items() if not d]
        return sorted((c for c in found if c is not None),
                      key=lambda c: (c.step or 0, c.epoch or 0, c.name))

    def _mtime(self, path: str) -> float | None:
        key = stat_key(path)
        return None if key is None else key[0] / 1e9

    def calculate_progress(self) -> ProgressInfo:
        experiment, versions = self._locate()
        if not versions:
            where = "" if experiment is None else f" in {self._relative(experiment)}"
            self._watched = () if experiment is None else (experiment,)
            self._times = ()
            return ProgressInfo(
                runner_type=RUNNER_TYPE,
                progress_percentage=None,
                warnings=(f"no version_N/ directory{where} yet: Lightning's logger makes it "
                          "when training starts",),
            )
        _number, version = versions[-1]
        entries = self._list(version)
        problems: list[str] = []
        events = sorted(n for n, d in entries.items() if not d and n.startswith(EVENTS_PREFIX))
        # Where the logged rows are: CSVLogger's metrics.csv, or TensorBoardLogger's events.
        summary, logged_in = None, None
        if entries.get(METRICS) is False:
            summary, logged_in = self._summary(version, problems), os.path.join(version, METRICS)
        elif events and tbevents.AVAILABLE:
            reader = self._events.setdefault(version, tbevents.EventsReader())
            summary = reader.read([os.path.join(version, n) for n in events], problems)
            logged_in = os.path.join(version, events[-1])
        limits = self._limits(version, problems) if entries.get(CLI_CONFIG) is False else Limits()
        checkpoints = self._checkpoints(version) if entries.get(CHECKPOINTS) is True else []
        watched = [version, os.path.join(version, METRICS), os.path.join(version, CLI_CONFIG),
                   os.path.join(version, CHECKPOINTS)]
        if experiment is not None and experiment != self.work_dir:
            watched.insert(0, experiment)
        watched += [os.path.join(version, n) for n in events[-1:]]
        self._watched = tuple(watched)

        newest = checkpoints[-1] if checkpoints else None
        configured = self.config.get("max_epochs")
        at = position(summary, newest, configured if isinstance(configured, int) else None,
                      limits)
        warnings = list(problems)
        if at.percentage is None:
            warnings.append(
                "the number of epochs is not in Lightning's files (set max_epochs in "
                "progresskit.yaml; LightningCLI's config.yaml gives it too): overall "
                "progress unknown unless the console log shows it"
            )
        if summary is None and newest is None:
            warnings.append(f"{self._relative(version)}: no {METRICS} and no named "
                            f"checkpoint yet: position unknown")

        # Signs of life: the start, each checkpoint saved, the newest metrics and events.
        started = self._mtime(os.path.join(version, HPARAMS))
        saved = [(t, c) for c in checkpoints[-RATE_WINDOW:]
                 if (t := self._mtime(os.path.join(version, CHECKPOINTS, c.name))) is not None]
        logged = self._mtime(logged_in) if summary is not None and logged_in else None
        evented = [t for n in events[-1:] if (t := self._mtime(os.path.join(version, n)))]
        times = sorted({t for t in (started, logged, *evented, *(t for t, _ in saved)) if t})
        self._times = tuple(times)

        metrics = {} if summary is None else dict(summary.latest)
        details = self._details(experiment, versions, version, summary, logged_in, checkpoints)
        best = self._best(checkpoints)
        progress = ProgressInfo(
            runner_type=RUNNER_TYPE,
            completed_epochs=at.completed_epochs,
            total_epochs=at.total_epochs,
            completed_steps=at.completed_steps,
            total_steps=at.total_steps,
            progress_percentage=at.percentage,
            start_time=started,
            last_update_time=times[-1] if times else None,
            metrics=metrics,
            latest_score={k: v for k, v in metrics.items() if k.startswith("val")} or None,
            best_score=None if best is None else dict(best.values) or None,
            # Lightning's files hold no status word: finished is the totals reached.
            reported_status=Status.FINISHED if at.finished else None,
            warnings=tuple(warnings),
            details=details,
        )
        return self._eta(saved, logged, at).apply(progress)

    def _eta(
        self,
        saved: list[tuple[float, Checkpoint]],
        logged: float | None,
        at: Position,
    ) -> Estimate:
        points = [(t, float(c.step)) for t, c in saved if c.step is not None]
        if logged is not None and at.completed_steps is not None:
            points.append((logged, float(at.completed_steps)))
        observed: list[tuple[float, float]] = []
        for when, step in sorted(points):
            if observed and when - observed[-1][0] < _COPIED_SECONDS:
                if step >= observed[-1][1]:
                    observed[-1] = (observed[-1][0], step)  # last.ckpt beside its save
                continue
            observed.append((when, step))
        return estimate_run(
            observed, at.total_steps, **self.history_args(), finished=at.finished
        )

    def _best(self, checkpoints: list[Checkpoint]) -> Checkpoint | None:
        """The checkpoint with the best monitored value in its name (lower for a loss or
        an error, higher otherwise); without one, the newest save, which is what
        ModelCheckpoint itself calls best when it monitors nothing."""
        if not checkpoints:
            return None
        metric = next((next(iter(c.values)) for c in reversed(checkpoints) if c.values), None)
        if metric is None:
            return checkpoints[-1]
        scored = [c for c in checkpoints if metric in c.values]
        sign = 1.0 if _lower_is_better(metric) else -1.0
        return min(scored, key=lambda c: (sign * c.values[metric], -(c.step or 0)))

    def _details(
        self,
        experiment: str | None,
        versions: list[tuple[int, str]],
        version: str,
        summary: Summary | None,
        logged_in: str | None,
        checkpoints: list[Checkpoint],
    ) -> dict[str, str]:
        details = {"version": self._relative(version)}
        if experiment is not None:
            details["experiment"] = self._relative(experiment)
            details["versions"] = ", ".join(os.path.basename(p) for _n, p in versions)
        if summary is not None and logged_in is not None:
            details["metrics_file"] = self._relative(logged_in)
            # A resumed job continues its epoch counter in a new version; a new one
            # starts at epoch 0.
            if len(versions) > 1 and summary.first_epoch:
                details["resumed_from"] = os.path.basename(versions[-2][1])
        if checkpoints:
            base = os.path.join(version, CHECKPOINTS)
            details["latest_checkpoint"] = self._relative(os.path.join(base,
                                                                       checkpoints[-1].name))
            best = self._best(checkpoints)
            if best is not None:
                details["best_checkpoint"] = self._relative(os.path.join(base, best.name))
        return details
