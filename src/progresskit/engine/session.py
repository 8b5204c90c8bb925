"""Querying runs: one target or every run under a root, with trackers kept between calls.

A :class:`Tracking` session keeps, per directory, the listing it saw, the detection
verdict and the tracker, each keyed by the directory's stat. A second query over an
unchanged tree therefore costs a few ``stat`` calls per run, not a re-listing of every
epoch of every run.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from progresskit.engine.detection import detect, make_tracker
from progresskit.engine.eta import for_status
from progresskit.engine.history import record_finished_runs
from progresskit.engine.liveness import observe, with_lease_details
from progresskit.engine.logs import (
    LOG_RUNNER_TYPE,
    LogTail,
    fill_from_log,
    log_globs,
    log_tail_for,
)
from progresskit.engine.rules import apply_rules
from progresskit.engine.unclaimed import unrecognised
from progresskit.errors import (
    ConfigError,
    NoTrackerError,
    ProgresskitError,
    RunnerDetectionError,
)
from progresskit.formats.fileio import StatKey, is_racy, stat_key
from progresskit.formats.lease import LEASE_FILENAME, Lease
from progresskit.formats.lease import load_lease as _load_lease
from progresskit.model.core import ProcessInfo, ProgressInfo, RunStatus, Status
from progresskit.model.unclaimed import ScanResult, Unrecognised
from progresskit.plugin.config import (
    CONFIG_FILENAME,
    Config,
    config_file,
    load_yaml,
    trusted_values,
)
from progresskit.plugin.coreconfig import DEFAULT_SCAN_MAX_DEPTH
from progresskit.plugin.manager import PluginManager, default_plugin_manager
from progresskit.plugin.tracker import BaseProgressTracker, list_entries

__all__ = ["Tracking"]

log = logging.getLogger(__name__)


@attrs.define
class _DirState:
    """What a scan learnt about one directory, valid while its stat key is unchanged."""

    key: StatKey | None
    #: False when the directory changed too recently for its mtime to reveal the next change.
    trusted: bool
    entries: dict[str, bool]
    #: When it was listed (``time.time_ns()``).
    read_at: int = 0
    #: The runner type claimed on file evidence, if one tracker claims it.
    runner_type: str | None = None
    #: Why the directory is a broken run (ambiguous, bad config, unlistable), if it is one.
    error: ProgresskitError | None = None
    #: Which of its subdirectories are symlinks, once a walk asked (a child replaced by
    #: a link changes the directory, and so its state).
    links: frozenset[str] | None = None


@attrs.frozen
class _Read:
    """One evaluation of a run up to the time-dependent rules: what its files said, kept
    to be reused while they say the same (:meth:`Tracking._read`) and for
    :meth:`Tracking.rejudge`."""

    tracker: BaseProgressTracker
    #: The basis: the tracker's answer as it returned it (its cache's object while its
    #: files are unchanged), completion, activity, update times, the log reading it was
    #: filled from (name, reading object) and the lease file's stat key.
    raw: ProgressInfo
    complete: bool
    activity: float | None
    times: Sequence[float]
    log: tuple[str, Any] | None
    lease_key: StatKey | None
    #: What was made of it: the answer with its log filled in and its lease's details.
    progress: ProgressInfo
    lease: Lease | None
    renewed_at: float
    problem: str | None


@attrs.define
class _Tracked:
    tracker: BaseProgressTracker
    runner_type: str
    #: The config object the tracker was made with; a reloaded config is a new object.
    config: dict[str, Any]


class Tracking:
    """A tracking session: the plugin manager, the config in force and the live trackers.

    ``config`` given as a mapping applies to every run (seed 001's library style); given as
    ``None``, each run uses the nearest ``progresskit.yaml`` in its directory or a parent
    (``config_path`` forces one file for all runs).

    ``rhythm``: see :attr:`rhythm`.

    ``record_history``: the session records the finished runs its queries meet into the
    ETA history (one transaction per :meth:`status` or :meth:`scan`). The command line and
    :class:`~progresskit.engine.monitor.Monitor` make such sessions; by default a session
    is a library query and writes nothing.
    """

    def __init__(
        self,
        pm: PluginManager | None = None,
        config: Mapping[str, Any] | None = None,
        config_path: str | os.PathLike[str] | None = None,
        defaults: Mapping[str, Any] | None = None,
        overrides: Mapping[str, Any] | None = None,
        options: argparse.Namespace | None = None,
        record_history: bool = False,
        rhythm: bool = True,
    ):
        self.pm = pm or default_plugin_manager()
        self.record_history = record_history
        #: Whether a run without a lease is judged by its own update rhythm as well as by
        #: ``sleep_time`` (engine/rhythm.py); seed 001's API judges by ``sleep_time`` only.
        self.rhythm = rhythm
        #: Values that config files override (seed 001's ``epochs`` argument, for one).
        self._defaults = dict(defaults or {})
        #: Values that override config files (command-line flags), checked as in a file.
        self._overrides = dict(overrides or {})
        self.pm.schema.validate(self._overrides, "overrides")
        self._options = options
        self._config_path = None if config_path is None else os.fspath(config_path)
        self._explicit: dict[str, Any] | None = None
        if config_path is not None:
            self._explicit = self._validated(load_yaml(config_path), str(config_path))
        elif config is not None:
            self._explicit = self._validated(config, "config")
        self._configs: dict[str, tuple[dict[str, Any], StatKey | None]] = {}
        self._nearest: dict[str, str | None] = {}
        self._dirs: dict[str, _DirState] = {}
        self._trackers: dict[str, _Tracked] = {}
        #: Work dir -> its console logs, for what its tracker leaves unknown (engine/logs.py).
        self._logs: dict[str, LogTail] = {}
        #: Work dir -> (lease file's stat key, the lease or why it could not be read).
        self._leases: dict[str, tuple[StatKey, Lease | str]] = {}
        #: Work dir -> what its last evaluation read (see :class:`_Read`).
        self._reads: dict[str, _Read] = {}
        #: When the query being answered began (see :meth:`_query`); None between queries.
        self._query_began: int | None = None

    # -- config ---------------------------------------------------------------------------

    def _validated(self, values: Mapping[str, Any], where: str) -> dict[str, Any]:
        result = self.pm.schema.validate(values, where, base=self._defaults)
        result.update(self._overrides)
        path = Path(where) if where.endswith((".yaml", ".yml")) else None
        self.pm.hooks.configure(Config(result, path, self._options))
        return result

    def config_for(
        self, directory: str, entries: Mapping[str, bool] | None = None
    ) -> dict[str, Any]:
        """The validated config that applies to ``directory``."""
        if self._explicit is not None:
            return self._explicit
        if entries is not None and entries.get(CONFIG_FILENAME) is False:
            # The listing shows the nearest file already: no need to look for it.
            path: str | None = os.path.join(directory, CONFIG_FILENAME)
        else:
            path = self.config_file_for(directory)
        if path is None:
            if "" not in self._configs:
                self._configs[""] = (self._validated({}, "defaults"), None)
            return self._configs[""][0]
        key = stat_key(path)
        known = self._configs.get(path)
        if known is not None and known[1] == key:
            return known[0]
        # Found by search, not named: its side effects count only if the user trusts it.
        values = self._validated(trusted_values(load_yaml(path), path, self.pm.schema), path)
        self._configs[path] = (values, key)
        return values

    def config_file_for(self, directory: str) -> str | None:
        """The config file in force for ``directory``, by the one rule of
        :func:`~progresskit.plugin.config.config_file` (``config_path``, else the nearest
        ``progresskit.yaml``); ``None`` when a config mapping was given or no file applies."""
        if self._explicit is not None:
            return self._config_path
        if directory not in self._nearest:
            # The cache holds every directory looked at, absolute: parents are shared.
            found = config_file(directory, cache=self._nearest)
            self._nearest[directory] = str(found) if found else None
        return self._nearest[directory]

    def config_origin(self, directory: str) -> str:
        """Where the config in force for ``directory`` comes from, for messages: its file,
        ``"config"`` (a mapping given to the session) or ``"defaults"``."""
        path = self.config_file_for(directory)
        if path is not None:
            return path
        return "defaults" if self._explicit is None else "config"

    def recording(self) -> contextlib.AbstractContextManager[None]:
        """The block around a query of this session. When the session records, the finished
        runs met inside are recorded into the ETA history as it ends
        (:func:`~progresskit.engine.history.record_finished_runs`); otherwise they go to
        an enclosing block if there is one, and nowhere if not."""
        return record_finished_runs() if self.record_history else contextlib.nullcontext()

    # -- one run --------------------------------------------------------------------------

    def tracker_for(
        self, work_dir: str, *, allow_config: bool = True, dir_key: StatKey | None = None
    ) -> BaseProgressTracker:
        """The (kept) tracker of ``work_dir``; raises when detection fails.

        File evidence decides first; with ``allow_config``, config keys may decide for a
        directory that has no files yet (see :func:`~progresskit.engine.detection.detect`).
        """
        state = self._dir_state(work_dir, dir_key)
        if state.key is None or (not state.trusted and not os.path.isdir(work_dir)):
            what = "does not exist" if not os.path.exists(work_dir) else "is not a directory"
            raise NoTrackerError(f"Cannot detect runner type for work_dir: {work_dir} ({what})")
        if state.error is not None:
            raise state.error
        config = self.config_for(work_dir, state.entries)
        runner_type = state.runner_type or detect(
            self.pm,
            work_dir,
            config,
            entries=state.entries,
            allow_config=allow_config,
            files_unclaimed=True,  # the directory's state says so: ask only the config
        )
        return self._tracker(work_dir, runner_type, config)

    def _tracker(
        self, work_dir: str, runner_type: str, config: dict[str, Any]
    ) -> BaseProgressTracker:
        known = self._trackers.get(work_dir)
        if known is not None and known.runner_type == runner_type and known.config is config:
            return known.tracker
        tracker = make_tracker(self.pm, runner_type, work_dir, config)
        state = self._dirs.get(work_dir)
        if state is not None:  # spare the tracker a second listing of the same directory
            tracker.adopt_listing(state.key, dict(state.entries), trusted=state.trusted)
        self._trackers[work_dir] = _Tracked(tracker, runner_type, config)
        return tracker

    def status(
        self,
        work_dir: str,
        *,
        key: str | None = None,
        process: ProcessInfo | None = None,
        discover_processes: bool = True,
        now: float | None = None,
        dir_key: StatKey | None = None,
    ) -> RunStatus:
        """The status of one run. Detection errors raise; unreadable content is a status.

        ``dir_key``: the work dir's stat key, when the caller has just taken it (spares a
        ``stat``)."""
        with self._query():
            tracker = self.tracker_for(work_dir, dir_key=dir_key)
            if process is None and discover_processes:
                process = self.discover_processes([work_dir]).get(work_dir)
            with self.recording():
                return self._evaluate(tracker, key or work_dir, process, now or time.time())

    def rejudge(
        self,
        work_dir: str,
        *,
        key: str | None = None,
        process: ProcessInfo | None = None,
        now: float | None = None,
    ) -> RunStatus:
        """The status of a run whose files its caller knows are unchanged since this session
        last evaluated it (a monitor that no OS notification told of a write): the rules
        applied again to what was read then, at ``now`` and with ``process``, and its lease's
        process looked at again, without a file read or a ``stat`` of the run's own. What
        only time, a process or a scheduler changes (a run falling silent past its limit, a
        lease's process gone, finished becoming outdated) is seen; a file changed unseen is
        not (the caller's periodic full check is for that).

        A run evaluated from no files (a tracker with ``reuse_seconds``: its source is a
        server), or not evaluated yet, is evaluated in full (:meth:`status`)."""
        read = self._reads.get(work_dir)
        known = self._trackers.get(work_dir)
        if (
            read is None
            or known is None
            or known.tracker is not read.tracker
            or read.tracker.reuse_seconds is not None
        ):
            return self.status(
                work_dir, key=key, process=process, discover_processes=False, now=now
            )
        return self._judge(read, key or work_dir, process, now or time.time())

    def _evaluate(
        self, tracker: BaseProgressTracker, key: str, process: ProcessInfo | None, now: float
    ) -> RunStatus:
        try:
            progress, complete, activity = tracker.evaluate()
            times = tracker.update_times() if self.rhythm else ()
        except Exception as exc:  # a tracker bug or an I/O error must not hide other runs
            self._reads.pop(tracker.work_dir, None)
            return broken_status(
                key,
                tracker.work_dir,
                f"tracker '{tracker.get_runner_type()}' failed: {type(exc).__name__}: {exc}",
                runner_type=tracker.get_runner_type(),
                process=process,
            )
        return self._judge(self._read(tracker, progress, complete, activity, times), key,
                           process, now)

    def _read(
        self,
        tracker: BaseProgressTracker,
        raw: ProgressInfo,
        complete: bool,
        activity: float | None,
        times: Sequence[float],
    ) -> _Read:
        """What the run's files say, its log and lease included: the last read again when
        the tracker answered from its cache and the log reading and lease are the same, so
        that a warm query of an unchanged run spends its time on the ``stat`` calls and the
        rules, and its answer is the very same object (a monitor's change key need not be
        made again)."""
        tail = self._log_reading(tracker)
        log = None if tail is None else (tail[0], tail[1])
        lease_key = stat_key(os.path.join(tracker.work_dir, LEASE_FILENAME))
        known = self._reads.get(tracker.work_dir)
        if (
            known is not None
            and known.tracker is tracker
            and known.raw is raw
            and known.complete == complete
            and known.activity == activity
            and known.times == times
            and known.lease_key == lease_key
            and (known.log == log if log is None or known.log is None
                 else known.log[0] == log[0] and known.log[1] is log[1])
        ):
            return known
        progress = raw if tail is None else fill_from_log(raw, tail[1], tail[0])
        lease, renewed_at, problem = self._lease(tracker.work_dir, lease_key)
        read = _Read(
            tracker, raw, complete, activity, times, log, lease_key,
            with_lease_details(progress, lease), lease, renewed_at, problem,
        )
        self._reads[tracker.work_dir] = read
        return read

    def _judge(
        self, read: _Read, key: str, process: ProcessInfo | None, now: float
    ) -> RunStatus:
        """The time-dependent part of an evaluation: the rules applied at ``now`` to what
        :meth:`_read` read, the lease's process looked at now."""
        tracker = read.tracker
        config = tracker.config
        progress, activity, times = _without_future(read.progress, read.activity, read.times, now)
        lease, renewed_at = read.lease, read.renewed_at
        check = None if lease is None else observe(lease, renewed_at)
        decision = apply_rules(
            config,
            progress,
            complete=read.complete,
            last_activity=activity,
            process=process,
            now=now,
            lease=check,
            update_times=times,
            update_times_recorded=tracker.update_times_recorded,
            updates_buffered=tracker.updates_buffered(),
        )
        problem = read.problem
        reason = decision.reason if problem is None else f"{decision.reason}; {problem}"
        if check is not None and process is None:
            process = check.process_info()
        if check is not None and check.process in ("alive", "stopped", "remote"):
            activity = max(activity or renewed_at, renewed_at)
        run = RunStatus(
            key,
            tracker.work_dir,
            for_status(progress, decision.status),
            decision.status,
            process,
            reason,
            activity,
            decision.cause,
        )
        # A scheduler's word (Slurm: OUT_OF_MEMORY, TIMEOUT) beats what files here can show.
        judged = self.pm.hooks.judge_run(run, now)
        if judged is run:
            return run
        return attrs.evolve(judged, progress=for_status(judged.progress, judged.status))

    def _log_reading(self, tracker: BaseProgressTracker) -> tuple[str, Any] | None:
        """(log name, reading) of the run's console log that fills what its tracker leaves
        unknown: the one place where a structured tracker's answer and a log are combined
        (docs/logs.md); ``None`` when there is none, or the tracker is the log's. Costs one
        ``stat`` per log while the logs are unchanged."""
        if tracker.get_runner_type() == LOG_RUNNER_TYPE:
            return None  # its whole answer is the log's already
        globs = log_globs(tracker.config, (tracker.get_log_pattern(),))
        if globs is None:
            return None
        log_dir = tracker.log_dir()
        tail = self._logs.get(tracker.work_dir)
        if tail is None or tail.globs != globs or tail.work_dir != log_dir:
            tail = self._logs[tracker.work_dir] = log_tail_for(log_dir, globs, tracker.config)
        # Right after evaluate(): its listing and log stats are current, no stat again.
        if log_dir != tracker.work_dir:  # the logs sit elsewhere: the tail lists their dir
            newest = tail.newest(tail.entries())
        elif tracker.listing_key() is None:  # a tracker that never listed its work dir
            newest = tail.newest(tracker.entries())
        else:
            newest = tail.newest(tracker.listing(), tracker.log_keys())
        return None if newest is None else (newest[0], newest[1])

    def _lease(
        self, work_dir: str, key: StatKey | None
    ) -> tuple[Lease | None, float, str | None]:
        """The run's lease, the time of its last renewal, and why it was ignored (if it was),
        from the lease file's stat ``key`` just taken: the file is parsed again only when
        its stat key changed (a renewal moves the mtime, which is also the renewal time, so
        nothing stale is used)."""
        path = os.path.join(work_dir, LEASE_FILENAME)
        if key is None:
            self._leases.pop(work_dir, None)
            return None, 0.0, None
        known = self._leases.get(work_dir)
        if known is None or known[0] != key:
            try:
                known = (key, _load_lease(path))
            except (OSError, ProgresskitError) as exc:
                known = (key, f"lease ignored: {exc}")
            self._leases[work_dir] = known
        found = known[1]
        renewed_at = key[0] / 1e9
        if isinstance(found, str):
            return None, renewed_at, found
        return found, renewed_at, None

    # -- many runs ------------------------------------------------------------------------

    def discover_processes(self, work_dirs: Iterable[str]) -> dict[str, ProcessInfo]:
        """Processes working on ``work_dirs``, from every process-source plugin."""
        dirs = list(work_dirs)
        return self.pm.hooks.process_info(dirs) if dirs else {}

    def find_runs(self, root: str) -> list[tuple[str, str | None, str | None]]:
        """Every run under ``root``: (work dir, runner type, problem) in path order.

        A directory that one tracker claims is a run (its subdirectories are not searched);
        one that several claim, or whose config is invalid, is a run with a problem;
        the others are searched down to ``scan_max_depth`` levels. Hidden directories are
        skipped.
        """
        return self._walk(root)[0]

    def survey(
        self, root: str
    ) -> tuple[list[tuple[str, str | None, str | None]], list[Unrecognised]]:
        """:meth:`find_runs` and the run-like directories no tracker claims, from one walk
        and without evaluating a run: what a monitor's periodic check starts with."""
        with self._query():
            return self._walk(root)

    def _walk(
        self, root: str
    ) -> tuple[list[tuple[str, str | None, str | None]], list[Unrecognised]]:
        """:meth:`find_runs`, and the directories that look like runs (run-like files) but
        that no tracker claims and that hold no run below them, in path order."""
        if not os.path.isdir(root):
            what = "does not exist" if not os.path.exists(root) else "is not a directory"
            raise RunnerDetectionError(f"{root}: {what}")
        root_config = self.config_for(root)
        max_depth = int(root_config.get("scan_max_depth", DEFAULT_SCAN_MAX_DEPTH))
        walk = _TreeWalk(root, bool(root_config.get("scan_external_links", False)))
        found: list[tuple[str, str | None, str | None]] = []
        candidates: list[Unrecognised] = []
        # (directory, depth, its real path when known: a directory reached by no symlink
        # is its parent's real path joined with its name, which spares a realpath's lstat
        # of every component)
        stack: list[tuple[str, int, str | None]] = [(root, 0, None)]
        while stack:
            directory, depth, real = stack.pop()
            try:
                st: os.stat_result | None = os.stat(directory)
            except OSError:
                st = None  # vanished or unreadable: _dir_state says why
            if real is None:
                real = os.path.realpath(directory)
            loop = walk.enter(directory, st, real)
            if loop is not None:
                if loop:
                    candidates.append(self._loop_entry(directory, loop))
                continue
            state = self._dir_state(
                directory, None if st is None else (st.st_mtime_ns, st.st_size, st.st_ino)
            )
            if state.runner_type is not None or state.error is not None:
                problem = None if state.error is None else str(state.error)
                found.append((directory, state.runner_type, problem))
                continue
            candidate = unrecognised(self.pm, directory, state.entries)
            if candidate is not None:
                candidates.append(candidate)
            if depth >= max_depth:
                continue
            children = sorted(
                (n for n, is_dir in state.entries.items() if is_dir and not n.startswith(".")),
                reverse=True,
            )
            # Symlinks last (pushed first): a directory is walked under its own path before
            # under a link's, and a link to one already walked is only a duplicate.
            if state.links is None:  # which children are links, while the listing holds
                state.links = frozenset(
                    n for n in children if os.path.islink(os.path.join(directory, n))
                )
            links = state.links
            stack.extend(
                (os.path.join(directory, n), depth + 1, None) for n in children if n in links
            )
            stack.extend(
                (os.path.join(directory, n), depth + 1, os.path.join(real, n))
                for n in children
                if n not in links
            )
        found.sort(key=lambda item: item[0])
        # A directory with runs below it is their parent (a project root with its own
        # config.yaml), not a run that vanished.
        parents: set[str] = set()
        top = os.path.normpath(root)
        for work_dir, _runner_type, _problem in found:
            directory = os.path.normpath(work_dir)
            while directory != top and directory != os.path.dirname(directory):
                directory = os.path.dirname(directory)
                if directory in parents:
                    break  # and so are the ones above it
                parents.add(directory)
        lost = sorted(
            (c for c in candidates if os.path.normpath(c.path) not in parents),
            key=lambda c: c.path,
        )
        # One entry per unclaimed run: its checkpoints/ directory is part of it.
        outer: list[Unrecognised] = []
        for candidate in lost:
            if not any(candidate.path.startswith(os.path.join(o.path, "")) for o in outer):
                outer.append(candidate)
        return found, outer

    def _loop_entry(self, link: str, target: str) -> Unrecognised:
        expects = tuple(f"{d.runner_type}: {d.expects}" for d in self.pm.runner_descriptions())
        return Unrecognised(
            link,
            (f"{os.path.basename(link)} -> {target}",),
            expects,
            problem=f"symlink loop: leads back to {target}, which this scan is inside; "
            "not followed",
        )

    def _dir_state(self, directory: str, key: StatKey | None = None) -> _DirState:
        """The directory's listing and file-evidence verdict, re-made only when it changed.
        ``key``: its stat key if the caller has just taken it."""
        if key is None:
            key = stat_key(directory)
        known = self._dirs.get(directory)
        began = self._query_began
        # An untrusted state read for the query being answered is not read twice in it.
        if (
            known is not None
            and known.key == key
            and (known.trusted or (began is not None and known.read_at >= began))
        ):
            return known
        read_at = time.time_ns()
        try:
            entries = list_entries(directory)
        except OSError as exc:
            error = RunnerDetectionError(
                f"{directory}: cannot list directory: {exc.strerror or exc}"
            )
            return _DirState(key, False, {}, error=error)
        state = _DirState(
            key, key is not None and not is_racy((key,), read_at), entries, read_at=read_at
        )
        try:
            config = self.config_for(directory, entries)
            state.runner_type = detect(
                self.pm, directory, config, entries=entries, allow_config=False
            )
        except NoTrackerError:
            pass  # not a run on file evidence: a root of runs, or a run with no files yet
        except (RunnerDetectionError, ConfigError) as exc:
            state.error = exc
        self._dirs[directory] = state
        return state

    def scan(
        self,
        root: str,
        *,
        processes: Mapping[str, ProcessInfo] | None = None,
        now: float | None = None,
    ) -> ScanResult:
        """The status of every run under ``root`` (``root`` itself, if it is one run), with
        the run-like directories no tracker claims as :attr:`ScanResult.unrecognised
        <progresskit.model.unclaimed.ScanResult.unrecognised>`.

        Never raises for one run's problem: a broken run is a row with status ``unknown``
        and the reason. ``processes`` (work dir -> process) replaces process discovery.
        """
        with self._query():
            runs, lost = self._walk(root)
            now = now or time.time()
            if processes is None:
                processes = self.discover_processes(d for d, rt, _ in runs if rt)
            results = ScanResult(unrecognised=lost)
            with self.recording():
                for work_dir, runner_type, problem in runs:
                    results.append(self._row(work_dir, runner_type, problem, processes, now))
            return results

    # -- what a target is -----------------------------------------------------------------

    def resolve_target(self, target: str) -> list[RunStatus] | None:
        """What a plugin makes of ``target`` (``progresskit_resolve_target``: a ComfyUI
        server's URL is its jobs), given the config in force for it (in the current
        directory, for a target that is no directory); ``None`` when no plugin claims it, so
        that it is a path."""
        config = self.config_for(target if os.path.isdir(target) else os.getcwd())
        with self.recording():  # a plugin's runs (ComfyUI jobs) may finish too
            resolved = self.pm.hooks.resolve_target(target, config)
        if resolved is None:
            return None
        # A plugin's statuses follow the engine's ETA rule too (docs/eta.md).
        return [attrs.evolve(r, progress=for_status(r.progress, r.status)) for r in resolved]

    def runs_of(
        self,
        target: str,
        *,
        strict: bool = False,
        processes: Mapping[str, ProcessInfo] | None = None,
        now: float | None = None,
    ) -> ScanResult:
        """Every run ``target`` stands for: the one rule of what a target is, followed by
        ``progresskit status``, :func:`progresskit.scan` and
        :class:`~progresskit.engine.monitor.Monitor`:

        1. what a plugin resolves it to (:meth:`resolve_target`);
        2. else the directory ``target`` itself, when one tracker claims it by its files;
        3. else every run below it (:meth:`find_runs`), each a row even when broken,
           and the run-like directories no tracker claims (:meth:`scan`).

        A directory is listed and detected once per call. With ``strict``
        (``progresskit status``) ``target`` must be something: a directory claimed by
        several trackers, or with an invalid config, raises that error instead of being a
        row; and one holding no run is the run its config alone identifies (a fresh run
        with no files yet), or the detection error is raised.

        :raises RunnerDetectionError: when ``target`` is no directory and no plugin
            resolves it; with ``strict``, as said above.
        """
        resolved = self.resolve_target(target)
        if resolved is not None:
            return ScanResult(resolved)
        with self._query():
            if strict and os.path.isdir(target):
                error = self._dir_state(target).error
                if error is not None:
                    raise error
            runs = self.scan(target, processes=processes, now=now)
            if runs or not strict:
                return runs
            return ScanResult([self.status(target, now=now)])

    @contextlib.contextmanager
    def _query(self) -> Iterator[None]:
        """The block of one query: inside it a directory is listed and detected once, even
        one that changed too recently for what was read to be kept for later queries."""
        if self._query_began is not None:  # inside a query already
            yield
            return
        self._query_began = time.time_ns()
        try:
            yield
        finally:
            self._query_began = None

    def _row(
        self,
        work_dir: str,
        runner_type: str | None,
        problem: str | None,
        processes: Mapping[str, ProcessInfo],
        now: float,
    ) -> RunStatus:
        """One run of a scan as a status; a problem or an error is a row, never raised."""
        process = processes.get(work_dir)
        if runner_type is None:
            return broken_status(work_dir, work_dir, problem or "", process=process)
        try:
            entries = self._dirs[work_dir].entries if work_dir in self._dirs else None
            tracker = self._tracker(work_dir, runner_type, self.config_for(work_dir, entries))
        except ProgresskitError as exc:
            return broken_status(work_dir, work_dir, str(exc), process=process)
        return self._evaluate(tracker, work_dir, process, now)


#: Seconds a run's time may lie ahead of this host's clock and still be believed (another
#: host's clock, coarse mtimes); later ones (a file saying year 9999) are ignored.
FUTURE_SKEW = 300.0


def _without_future(
    progress: ProgressInfo, activity: float | None, times: Sequence[float], now: float
) -> tuple[ProgressInfo, float | None, Sequence[float]]:
    """A tracker's answer without the times that lie in the future (by more than
    :data:`FUTURE_SKEW`): a run whose files say it updated in year 9999 would otherwise be
    "running" until then. Such a time is dropped, with a warning saying so."""
    limit = now + FUTURE_SKEW
    bogus = [t for t in (activity, progress.last_update_time) if t is not None and not t <= limit]
    if not bogus and all(t <= limit for t in times):
        return progress, activity, times
    warning = (
        f"a time in the run's files is in the future ({_when(max(bogus or times))}, this "
        f"host's clock says {_when(now)}): ignored, so the run is judged without it"
    )
    if progress.last_update_time is not None and not progress.last_update_time <= limit:
        progress = attrs.evolve(progress, last_update_time=None)
    progress = attrs.evolve(progress, warnings=(*progress.warnings, warning))
    activity = None if activity is None or not activity <= limit else activity
    return progress, activity, tuple(t for t in times if t <= limit)


def _when(unix_time: float) -> str:
    try:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(unix_time))
    except (OverflowError, OSError, ValueError):  # beyond year 9999, or not finite
        return f"Unix time {unix_time:.6g}"


class _TreeWalk:
    """Which directories a scan under ``root`` enters: each directory once (by device and
    inode), and through a symlink only when it stays inside the root, unless
    ``external_links`` (the ``scan_external_links`` key) lets it out. A tree of links
    pointing back up is then walked once, not once per path through it, and a link to
    ``/`` does not make a scan of the whole filesystem."""

    def __init__(self, root: str, external_links: bool):
        self.root = os.path.realpath(root)
        self.external_links = external_links
        #: (st_dev, st_ino) -> the real path of each directory entered.
        self.seen: dict[tuple[int, int], str] = {}

    def enter(self, directory: str, st: os.stat_result | None, real: str) -> str | None:
        """``None`` to enter ``directory`` (``st``: its ``os.stat``, ``None`` when it could
        not be taken; ``real``: its real path); else it is skipped: ``""`` silently (a link
        out of the root, a second path to a directory already walked), or the directory it
        leads back to when it is a loop (a link, or a bind mount, to an ancestor)."""
        if st is None:
            return None  # vanished or unreadable: _dir_state says why
        inside = real == self.root or real.startswith(os.path.join(self.root, ""))
        if not inside and not self.external_links:
            log.info("%s: symlink out of the scanned root (to %s): not followed", directory, real)
            return ""
        key = (st.st_dev, st.st_ino)
        known = self.seen.get(key)
        if known is not None:
            parent = os.path.realpath(os.path.dirname(os.path.abspath(directory)))
            ancestor = parent == known or parent.startswith(os.path.join(known, ""))
            return known if ancestor else ""
        self.seen[key] = real
        return None


def broken_status(
    key: str,
    work_dir: str,
    reason: str,
    *,
    runner_type: str = "unknown",
    process: ProcessInfo | None = None,
) -> RunStatus:
    """The row for a run whose state cannot be read: status ``unknown`` and the reason."""
    progress = ProgressInfo(runner_type=runner_type, error_message=reason)
    return RunStatus(key, work_dir, progress, Status.UNKNOWN, process, reason)


def resolve(path: str | os.PathLike[str]) -> str:
    """An absolute, normalised path string: the key a long-lived monitor tracks runs by."""
    return os.path.abspath(os.fspath(path))
