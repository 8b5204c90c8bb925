"""Continuous monitoring: the engine behind ``progresskit watch`` and :class:`Monitor`.

A :class:`Monitor` keeps one :class:`~progresskit.engine.session.Tracking` session on a root
(so each
re-evaluation costs a few ``stat`` calls per run), re-evaluates the root when the OS says
a file changed (watchfiles) or, on filesystems that do not notify, every poll interval,
and hands each run whose status or progress changed to every sink and subscriber.

What counts as a change (docs/watch.md): everything in a :class:`RunStatus` except what
moves by itself while nothing happens, namely the reason's wording (``"last sign of life
12s ago"``), the last activity and heartbeat times, elapsed time and the ETA figures.
A run whose log grows but whose status and progress stay put is restated by the periodic
heartbeat, not on every write.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

import attrs

from progresskit.engine.session import Tracking, broken_status, resolve
from progresskit.errors import NoTrackerError, ProgresskitError, RunnerDetectionError
from progresskit.formats.change import Change, change_key
from progresskit.model.core import ProcessInfo, RunStatus
from progresskit.model.unclaimed import Unrecognised
from progresskit.plugin.config import CONFIG_FILENAME
from progresskit.plugin.coreconfig import (
    DEFAULT_SCAN_MAX_DEPTH,
    DEFAULT_WATCH_HEARTBEAT,
    DEFAULT_WATCH_MODE,
    DEFAULT_WATCH_POLL_INTERVAL,
)
from progresskit.plugin.manager import PluginManager, default_plugin_manager
from progresskit.plugin.sink import Sink, build_sinks, emit_changes

__all__ = ["Monitor", "WatchSettings"]

log = logging.getLogger(__name__)

#: Filesystems whose writes by other hosts raise no local notification.
_NETWORK_FILESYSTEMS = frozenset(
    {"nfs", "nfs4", "cifs", "smb3", "smbfs", "afs", "9p", "fuse.sshfs", "lustre", "gpfs",
     "ceph", "fuse.ceph", "glusterfs", "fuse.glusterfs", "beegfs", "fuse.s3fs", "panfs"}
)
#: watchfiles waits this long (ms) for a burst of events to end before reporting it...
NOTIFY_STEP_MS = 20
#: ...but never longer than this (ms) in total, so a busy writer still gets reported. 50 ms,
#: not more: with 200 ms the dashboard's change-to-client p95 (benchmarks/serve.py) was 297 ms
#: against its 250 ms target, and 50 ms brought it to 150 ms. Only the runs whose files
#: changed are re-evaluated, so the extra rounds under a steady stream of writes are cheap.
NOTIFY_DEBOUNCE_MS = 50
#: With notifications, the periodic check's liveness cycle (what time and processes change
#: while no file is written: a run falling silent, a process exiting, a lease's process
#: killed) spends at most this share of a core, in CPU time of the monitor's thread as
#: measured: it looks at the processes, then judges the active runs a few at a time from
#: what their last evaluation read, without reading a file (no notification named them:
#: their files are as read). A tree whose cycle costs less is judged every poll interval;
#: a bigger one in a longer cycle, so that an idle monitor costs the same on 10,000 runs
#: as on 1,000 (docs/watch.md, "What watching costs").
SWEEP_CPU_SHARE = 0.0015
#: The full check (what a dropped notification hides: a walk of the tree, then every run
#: re-evaluated from its files) is a safety net: it begins at most every
#: FULL_CHECK_SECONDS and spends at most this share of a core. With the liveness cycle,
#: 0.2% in all, where a walk and a re-evaluation of every run in each cycle within 0.3%
#: made an idle server on 10,000 runs cost 0.6-1.9% of a core (benchmarks/serve.py).
FULL_CHECK_CPU_SHARE = 0.0005
FULL_CHECK_SECONDS = 60.0
#: A change that no known run holds (a log in an unclaimed directory, a tree of runs moved
#: in, a config file) needs a walk and an evaluation of every run; those get at most this
#: share of a core, so that a busy unclaimed directory cannot keep the monitor scanning.
RESCAN_CPU_SHARE = 0.05
#: Seconds of those shares that may be saved up: after a quiet hour the periodic check does
#: not re-evaluate a whole big tree at once (a change would wait behind it), nor do full
#: scans run back to back.
BUDGET_SAVED_SECONDS = 5.0
#: A target a plugin follows live (progresskit_follow_target) is resolved again at most this
#: often, however many changes it announces: a busy server's steps cost a few evaluations a
#: second, and a change still shows well within half a second.
FOLLOW_MIN_GAP = 0.1


@attrs.frozen
class WatchSettings:
    """The watcher's config keys (``watch_*``), validated by the core schema."""

    mode: str = DEFAULT_WATCH_MODE
    poll_interval: float = DEFAULT_WATCH_POLL_INTERVAL
    #: Seconds between heartbeats; 0 turns them off.
    heartbeat: float = DEFAULT_WATCH_HEARTBEAT

    @classmethod
    def from_config(cls, values: Mapping[str, Any]) -> WatchSettings:
        return cls(
            mode=str(values.get("watch_mode", DEFAULT_WATCH_MODE)),
            poll_interval=float(values.get("watch_poll_interval", DEFAULT_WATCH_POLL_INTERVAL)),
            heartbeat=float(values.get("watch_heartbeat", DEFAULT_WATCH_HEARTBEAT)),
        )


def filesystem_type(path: str) -> str | None:
    """The type of the filesystem holding ``path`` (Linux ``/proc/self/mounts``), if known."""
    try:
        with open("/proc/self/mounts", encoding="utf-8") as fh:
            mounts = [line.split()[:3] for line in fh]
    except OSError:
        return None
    best, best_type = "", None
    target = os.path.realpath(path)
    for fields in mounts:
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, best_type = point, fields[2]
    return best_type


def _resolve_mode(mode: str, root: str) -> str:
    if mode != "auto":
        return mode
    fs = filesystem_type(root)
    if fs in _NETWORK_FILESYSTEMS:
        log.info("%s is on %s, which does not notify about remote writes: polling", root, fs)
        return "poll"
    return "notify"


Subscriber = Callable[[Change], None]

#: What change_key leaves out of a run besides its progress's clocks (formats/change.py).
_UNKEYED = frozenset({"reason", "last_activity"})
_KEYED = tuple(f.name for f in attrs.fields(RunStatus) if f.name not in _UNKEYED)


def _same_key(before: RunStatus, run: RunStatus) -> bool:
    """Whether ``run``'s change key is surely ``before``'s: every field the key covers is
    the same (its progress the very same answer, or an equal one), so the key need not be
    made (a run re-judged from what was read keeps its answer object). ``False`` means
    "make the key and compare"."""
    for name in _KEYED:
        a, b = getattr(before, name), getattr(run, name)
        if a is not b and a != b:
            return False
    return True


@attrs.define
class _Budget:
    """CPU time the monitor may spend on one kind of periodic work: ``share`` of a core,
    earned as time passes (at most ``cap`` seconds saved up: no burst after a quiet hour),
    spent by what each piece of work measured."""

    share: float
    cap: float
    credit: float = 0.0
    at: float = attrs.field(factory=time.monotonic)

    def available(self, now: float) -> bool:
        self.credit = min(self.cap, self.credit + self.share * (now - self.at))
        self.at = now
        return self.credit > 0

    def spend(self, cpu_seconds: float) -> None:
        self.credit -= cpu_seconds


class Monitor:
    """Watches every run under ``root`` and reports each change to sinks and subscribers.

    Each run uses its nearest ``progresskit.yaml`` (``config_path`` forces one file);
    ``config``, a mapping, is layered over it: defaults < the run's file < ``config`` <
    ``overrides``, so ``Monitor(root, {"watch_heartbeat": 0})`` changes that key only and
    every run keeps its own settings (docs/watch.md). The ``watch_*`` keys and
    ``sinks`` are read from the config that applies to ``root``; ``sinks`` given here
    replace the configured ones. Everything that can be wrong with the set-up (root,
    config, sinks) raises here, before anything runs.

    Start it with :meth:`start` (a background thread) or :meth:`run` (this thread), or
    iterate it with ``async for change in monitor``; :meth:`stop` ends it and closes every
    sink. The first evaluation reports every run as ``new``. The finished runs it meets
    are recorded into the ETA history (docs/eta.md).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        config: Mapping[str, Any] | None = None,
        *,
        config_path: str | os.PathLike[str] | None = None,
        pm: PluginManager | None = None,
        sinks: Sequence[Sink] | None = None,
        overrides: Mapping[str, Any] | None = None,
        options: argparse.Namespace | None = None,
    ):
        pm = pm or default_plugin_manager()
        # A monitor is where the ETA history learns from: it records the finished runs.
        self._tracking = Tracking(
            pm,
            config_path=config_path,
            overrides={**(config or {}), **(overrides or {})},
            options=options,
            record_history=True,
        )
        #: The directory watched (absolute), or a target that a plugin resolves (a ComfyUI
        #: server's URL: its jobs), which is polled. What a target is: Tracking.runs_of.
        self.root = resolve(root)
        directory = os.path.isdir(self.root)
        if not directory:
            if self._tracking.resolve_target(os.fspath(root)) is None:
                what = "does not exist" if not os.path.exists(self.root) else "is not a directory"
                raise RunnerDetectionError(f"{self.root}: {what}")
            self.root = os.fspath(root)
        # The watcher's keys and sinks: the config in force in the root, or where the
        # monitor runs for a target that is no directory.
        here = self.root if directory else os.getcwd()
        values = self._tracking.config_for(here)
        self.settings = WatchSettings.from_config(values)
        #: How changes are noticed: "notify" or "poll" ("auto" resolved at start-up).
        self.mode = _resolve_mode(self.settings.mode, self.root) if directory else "poll"
        #: Where the watcher's keys and sinks come from: a file, "config" or "defaults".
        self.config_origin = self._tracking.config_origin(here)
        if sinks is None:
            sinks = build_sinks(values.get("sinks") or [], pm.sink_types, self.config_origin)
        self._sinks = list(sinks)
        self._subscribers: list[Subscriber] = []
        self._closers: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        #: Set by stop() and by a plugin following the target live (``changed()``).
        self._wake = threading.Event()
        self._unfollow: Callable[[], None] | None = None
        self._finished = threading.Event()
        self._thread: threading.Thread | None = None
        #: The thread running the engine (start()'s or run()'s caller).
        self._runner: threading.Thread | None = None
        self._started = False
        # Tracking is not thread-safe: check() from a caller and the engine take turns.
        self._evaluating = threading.Lock()
        self._last: dict[str, tuple[str, RunStatus]] = {}
        self._unrecognised: list[Unrecognised] = []
        self._processes: dict[str, ProcessInfo] | None = None
        self._last_error: str | None = None
        # The periodic check with notifications (see SWEEP_CPU_SHARE): the runs left to
        # judge in this liveness cycle (work dir, whether re-evaluated from its files rather
        # than judged from what was read) and when it began; the runs left to re-evaluate
        # in this full check (FULL_CHECK_CPU_SHARE) and when it began.
        self._sweep: collections.deque[tuple[str, bool]] = collections.deque()
        self._cycle_began = time.monotonic()
        self._full: collections.deque[str] = collections.deque()
        self._full_began = -FULL_CHECK_SECONDS
        #: The runs the last walk found broken (no runner type): no process is looked for.
        self._broken: set[str] = set()
        self._sweep_budget = _Budget(SWEEP_CPU_SHARE, SWEEP_CPU_SHARE * BUDGET_SAVED_SECONDS)
        self._full_budget = _Budget(
            FULL_CHECK_CPU_SHARE, FULL_CHECK_CPU_SHARE * BUDGET_SAVED_SECONDS
        )
        self._rescan_budget = _Budget(RESCAN_CPU_SHARE, RESCAN_CPU_SHARE * BUDGET_SAVED_SECONDS)
        #: A notification no known run holds asked for a full scan (paced: RESCAN_CPU_SHARE).
        self._rescan_wanted = False
        #: CPU seconds one run's re-evaluation from its files, and one judgement from what
        #: was read, cost as last measured (guesses until then).
        self._run_cost = 1e-4
        self._rejudge_cost = 2e-5

    # -- the public API -------------------------------------------------------------------

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback(change)`` for every change, from the monitor's thread.

        A callback that raises is logged and keeps being called. Returns a function that
        unsubscribes.
        """
        with self._lock:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._lock, contextlib.suppress(ValueError):
                self._subscribers.remove(callback)

        return unsubscribe

    @property
    def sinks(self) -> tuple[Sink, ...]:
        """The sinks every change goes to."""
        return tuple(self._sinks)

    @property
    def runs(self) -> list[RunStatus]:
        """The latest status of every run, in path order."""
        with self._lock:
            return [run for _key, run in self._last.values()]

    @property
    def unrecognised(self) -> list[Unrecognised]:
        """The run-like directories no tracker claimed at the latest full scan."""
        with self._lock:
            return list(self._unrecognised)

    def config_for(self, work_dir: str) -> dict[str, Any]:
        """The validated config a run in ``work_dir`` is evaluated with (its nearest
        ``progresskit.yaml`` or the one given, under the monitor's overrides): for a
        tracker made aside for one run (``progresskit serve``'s run page)."""
        with self._evaluating:  # the session's caches are not thread-safe
            return self._tracking.config_for(work_dir)

    def start(self) -> None:
        """Run the monitor in a background thread (no-op when it already runs)."""
        with self._lock:
            self._check_not_stopped()
            if self._started:
                return
            self._started = True
            self._thread = threading.Thread(
                target=self._main, name="progresskit-monitor", daemon=True
            )
            self._thread.start()

    def run(self) -> None:
        """Run the monitor in this thread until :meth:`stop` is called (from elsewhere)."""
        with self._lock:
            if self._started:
                raise RuntimeError("this monitor is already running")
            self._check_not_stopped()
            self._started = True
        self._main()

    def stop(self, timeout: float | None = None) -> None:
        """Stop watching, deliver what is pending and close every sink.

        Safe to call from any thread, a signal handler's thread or a subscriber; waits (up
        to ``timeout``) for the sinks to be closed unless called from the monitor itself.
        """
        self._stop.set()
        self._wake.set()
        with self._lock:
            started = self._started
            self._started = True  # a monitor never started cannot be started after stop
        if not started:
            self._shutdown()
            return
        if self._runner is not threading.current_thread():
            self._finished.wait(timeout)

    @property
    def stopped(self) -> bool:
        """Whether :meth:`stop` was called."""
        return self._stop.is_set()

    def check(self) -> list[Change]:
        """Re-evaluate every run now (processes included), report and return the changes."""
        return self._tick(refresh_processes=True)

    def __aiter__(self) -> AsyncIterator[Change]:
        return self._changes()

    def __enter__(self) -> Monitor:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # -- the engine -----------------------------------------------------------------------

    def _check_not_stopped(self) -> None:
        if self._stop.is_set():
            raise RuntimeError("this monitor was stopped; create a new one")

    async def _changes(self) -> AsyncIterator[Change]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Change | None] = asyncio.Queue()

        def put(item: Change | None) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is reading
                loop.call_soon_threadsafe(queue.put_nowait, item)

        unsubscribe = self.subscribe(put)
        closer = lambda: put(None)  # noqa: E731
        with self._lock:
            self._closers.append(closer)
            done = self._finished.is_set()
        if done:
            put(None)
        else:
            self.start()
        try:
            while (item := await queue.get()) is not None:
                yield item
        finally:
            unsubscribe()
            with self._lock, contextlib.suppress(ValueError):
                self._closers.remove(closer)

    def _main(self) -> None:
        self._runner = threading.current_thread()
        try:
            self._tick(refresh_processes=True)
            if self.mode == "notify":
                self._watch_notifications()
            elif not os.path.isdir(self.root):
                self._follow()
            if not self._stop.is_set():
                self._watch_polling()
        except Exception:  # the loop itself failing must still close the sinks
            log.exception("monitor of %s failed", self.root)
        finally:
            self._shutdown()

    def _watch_notifications(self) -> None:
        import watchfiles

        tick = self.settings.poll_interval
        # Due at once: the first full check, after the OS watch is set up, catches what
        # changed between the first evaluation and then.
        self._cycle_began = time.monotonic() - tick
        self._full_began = time.monotonic() - FULL_CHECK_SECONDS
        next_heartbeat = self._next_heartbeat()
        try:
            for events in watchfiles.watch(
                self.root,
                stop_event=self._stop,
                debounce=NOTIFY_DEBOUNCE_MS,
                step=NOTIFY_STEP_MS,
                rust_timeout=max(1, int(min(tick, 1.0) * 1000)),
                yield_on_timeout=True,
                raise_interrupt=False,
                ignore_permission_denied=True,
            ):
                if events:
                    self._notified({path for _, path in events})
                now = time.monotonic()
                self._periodic(now)
                if next_heartbeat is not None and now >= next_heartbeat:
                    self._heartbeat()
                    next_heartbeat = self._next_heartbeat()
        except Exception as exc:
            # Too many directories for the OS's watch limit, the root replaced under us...:
            # polling still works, so the monitor goes on.
            log.warning(
                "file notifications for %s failed (%s: %s); polling every %gs instead",
                self.root, type(exc).__name__, exc, tick,
            )
            self.mode = "poll"

    def _follow(self) -> None:
        """Let the plugin that resolves the target follow it live, if it can: then a
        change it announces is evaluated at once rather than at the next poll."""
        try:
            config = self._tracking.config_for(os.getcwd())
            self._unfollow = self._tracking.pm.hooks.follow_target(
                self.root, config, self._wake.set)
        except Exception:
            log.exception("following %s live failed; polling it instead", self.root)

    def _watch_polling(self) -> None:
        next_heartbeat = self._next_heartbeat()
        while True:
            self._wake.wait(self.settings.poll_interval)
            if self._stop.is_set():
                break
            self._wake.clear()
            self._tick(refresh_processes=True)
            if next_heartbeat is not None and time.monotonic() >= next_heartbeat:
                self._heartbeat()
                next_heartbeat = self._next_heartbeat()
            if self._unfollow is not None and self._stop.wait(FOLLOW_MIN_GAP):
                break

    def _next_heartbeat(self) -> float | None:
        every = self.settings.heartbeat
        return time.monotonic() + every if every > 0 else None

    def _scan(self, refresh_processes: bool) -> list[RunStatus] | None:
        processes = None if refresh_processes or self._processes is None else self._processes
        try:
            statuses = self._tracking.runs_of(self.root, processes=processes)
        except Exception as exc:
            self._failed(exc)
            return None
        self._recovered()
        if processes is None:
            self._processes = {
                run.work_dir: run.process_info for run in statuses if run.process_info
            }
        with self._lock:
            self._unrecognised = list(statuses.unrecognised)
        return statuses

    def _failed(self, exc: Exception) -> None:
        """The root vanished or its config became invalid: say so once; the last known
        statuses stay, and the next change or tick tries again."""
        expected = isinstance(exc, ProgresskitError)
        message = str(exc) if expected else f"{type(exc).__name__}: {exc}"
        if message != self._last_error:
            # An unexpected error is a bug somewhere: its traceback is worth the noise.
            log.error("cannot evaluate %s: %s", self.root, message, exc_info=not expected)
            self._last_error = message

    def _recovered(self) -> None:
        if self._last_error is not None:
            log.warning("%s can be evaluated again", self.root)
            self._last_error = None

    def _tick(self, *, refresh_processes: bool) -> list[Change]:
        """Evaluate every run, report and return the changes."""
        with self._evaluating:
            statuses = self._scan(refresh_processes)
            changes = [] if statuses is None else self._diff(statuses, complete=True)
            if statuses is not None:  # a whole cycle of the periodic check, done at once
                self._rescan_wanted = False
                self._sweep.clear()
                self._full.clear()
                self._cycle_began = self._full_began = time.monotonic()
        self._publish(changes)
        return changes

    # -- with notifications: only what changed, and a periodic check spread out ------------

    def _notified(self, paths: set[str]) -> None:
        """Re-evaluate the runs holding ``paths`` (the files an OS notification named), and
        take in the new runs among them; what only a walk can tell is left to
        :meth:`_periodic` (``_rescan_wanted``)."""
        with self._evaluating:
            runs: set[str] = set()
            for path in paths:
                work_dir = self._run_holding(path)
                if work_dir is None:
                    work_dir = self._new_run(path)
                if work_dir:
                    runs.add(work_dir)
            changes = self._refresh(sorted(runs))
        self._publish(changes)

    def _run_holding(self, path: str) -> str | None:
        """The known run ``path`` is in (or is), if any: a walk up from it, no I/O."""
        known = self._last  # written by this thread only: read without the lock
        current = path
        while current not in known:
            parent = os.path.dirname(current)
            if parent == current or not current.startswith(self.root + os.sep):
                return None
            current = parent
        return current

    def _new_run(self, path: str) -> str:
        """The directory of ``path``, a path in no known run, when its files make it a run
        that a walk would find; ``""`` when the change matters to no run (a hidden
        directory, one deeper than ``scan_max_depth``), and a full scan is wanted for the
        rest (a config file, a file in an unclaimed directory, a tree moved in)."""
        directory = path if os.path.isdir(path) else os.path.dirname(path)
        relative = os.path.relpath(directory, self.root)
        outside = relative in (os.curdir, os.pardir) or relative.startswith(os.pardir + os.sep)
        if outside or os.path.basename(path) == CONFIG_FILENAME:
            self._rescan_wanted = True  # the root itself, or a config: every run below
            return ""
        parts = relative.split(os.sep)
        max_depth = int(self._tracking.config_for(self.root).get(
            "scan_max_depth", DEFAULT_SCAN_MAX_DEPTH
        ))
        if any(part.startswith(".") for part in parts) or len(parts) > max_depth:
            return ""  # the walk never enters it
        try:
            self._tracking.tracker_for(directory, allow_config=False)
        except ProgresskitError:
            self._rescan_wanted = True
            return ""
        return directory

    def _periodic(self, now: float) -> None:
        """What no file write announces, within the CPU budgets: the full scan a
        notification asked for; else the next runs of the current liveness cycle (the
        processes looked at, then the runs whose process changed re-evaluated and the active
        runs judged from what was read) and of the full check (a walk of the tree, then
        every run re-evaluated from its files). A liveness cycle begins at most every poll
        interval, a full check at most every :data:`FULL_CHECK_SECONDS`."""
        if self._rescan_wanted:
            if self._rescan_budget.available(now):
                began = time.thread_time()
                self._tick(refresh_processes=True)
                self._rescan_budget.spend(time.thread_time() - began)
            return
        changes: list[Change] = []
        with self._evaluating:
            if self._sweep_budget.available(now):
                changes += self._liveness_step(now)
            if self._full_budget.available(now):
                changes += self._full_step(now)
        self._publish(changes)

    def _liveness_step(self, now: float) -> list[Change]:
        budget = self._sweep_budget
        if not self._sweep:
            if now - self._cycle_began < self.settings.poll_interval:
                return []
            began = time.thread_time()
            self._begin_cycle(now)
            budget.spend(time.thread_time() - began)
        from_files: list[str] = []
        judged: list[str] = []
        spent = 0.0
        # Each kind of work costs about the same per run: the budget left buys that many
        # runs, at the costs measured last time.
        while self._sweep and spent < budget.credit:
            work_dir, read = self._sweep.popleft()
            (from_files if read else judged).append(work_dir)
            spent += self._run_cost if read else self._rejudge_cost
        changes = self._measured(from_files, budget, from_files=True)
        return changes + self._measured(judged, budget, from_files=False)

    def _full_step(self, now: float) -> list[Change]:
        budget = self._full_budget
        changes: list[Change] = []
        if not self._full:
            if now - self._full_began < FULL_CHECK_SECONDS:
                return []
            began = time.thread_time()
            changes = self._begin_full_check(now)
            budget.spend(time.thread_time() - began)
        due: list[str] = []
        while self._full and len(due) * self._run_cost < budget.credit:
            due.append(self._full.popleft())
        return changes + self._measured(due, budget, from_files=True)

    def _measured(self, due: list[str], budget: _Budget, *, from_files: bool) -> list[Change]:
        """:meth:`_refresh` of ``due``, its CPU time spent from ``budget`` and kept as the
        cost of one such run."""
        if not due:
            return []
        began = time.thread_time()
        changes = self._refresh(due, from_files=from_files)
        cost = max((time.thread_time() - began) / len(due), 1e-6)
        budget.spend(cost * len(due))
        if from_files:
            self._run_cost = cost
        else:
            self._rejudge_cost = cost
        return changes

    def _begin_cycle(self, now: float) -> None:
        """A liveness cycle: look at the processes of the known runs, and queue the runs
        whose process changed (re-evaluated from their files), then the active runs (judged
        again from what was read: no notification named them, so their files are as read;
        a run falling silent or a lease's process killed is what this is for). A finished
        or failed run changes only by its files or its process."""
        log.debug("%s: periodic check: the last cycle took %.1fs", self.root,
                  now - self._cycle_began)
        self._cycle_began = now
        known = self._last
        names = list(known)
        processes = self._tracking.discover_processes(n for n in names if n not in self._broken)
        before = self._processes or {}
        self._processes = processes
        changed = {n for n in names if processes.get(n) != before.get(n)}
        self._sweep = collections.deque(
            [(n, True) for n in names if n in changed]
            + [(n, False) for n in names if n not in changed and known[n][1].status.is_active]
        )

    def _begin_full_check(self, now: float) -> list[Change]:
        """A full check: walk the tree (the runs gone are removed, the unrecognised
        directories listed again) and queue every run for re-evaluation from its files, the
        new ones first: what catches a notification the OS dropped."""
        self._full_began = now
        try:
            found, lost = self._tracking.survey(self.root)
        except Exception as exc:
            self._failed(exc)
            return []
        self._recovered()
        names = [work_dir for work_dir, _runner_type, _problem in found]
        self._broken = {work_dir for work_dir, rt, _problem in found if not rt}
        with self._lock:
            self._unrecognised = list(lost)
        known = self._last
        self._full = collections.deque(
            [n for n in names if n not in known] + [n for n in names if n in known]
        )
        present = set(names)
        return self._diff([], removed=[name for name in known if name not in present])

    def _refresh(self, work_dirs: Sequence[str], *, from_files: bool = True) -> list[Change]:
        """Re-evaluate ``work_dirs`` (known runs, or directories a tracker claims) and
        return the changes; a run whose directory is gone is removed, one that its files no
        longer make a run is left to a full scan. Without ``from_files`` the runs' files
        are known unchanged (no notification named them): each is judged again from what
        its last evaluation read (:meth:`Tracking.rejudge`)."""
        statuses: list[RunStatus] = []
        removed: list[str] = []
        processes = self._processes or {}
        for work_dir in work_dirs:
            process = processes.get(work_dir)
            try:
                if not from_files:
                    statuses.append(self._tracking.rejudge(work_dir, process=process))
                    continue
                # Still a run by its files, or the full scan decides what it is now.
                self._tracking.tracker_for(work_dir, allow_config=False)
                statuses.append(
                    self._tracking.status(work_dir, process=process, discover_processes=False)
                )
            except NoTrackerError:
                if os.path.lexists(work_dir):
                    self._rescan_wanted = True
                else:
                    removed.append(work_dir)
            except ProgresskitError as exc:
                # Claimed by several trackers, an invalid config, unlistable: a scan's row.
                statuses.append(broken_status(work_dir, work_dir, str(exc), process=process))
        return self._diff(statuses, removed=removed)

    def _diff(
        self, statuses: list[RunStatus], *, complete: bool = False, removed: Sequence[str] = ()
    ) -> list[Change]:
        """Changes between ``statuses`` and what was last reported, and ``removed`` (names
        of runs gone); with ``complete``, the statuses are every run, and a known run
        missing from them was removed. Costs what ``statuses`` hold, not every known run."""
        changes: list[Change] = []
        fresh: dict[str, tuple[str, RunStatus]] = {}
        for run in statuses:
            before = self._last.get(run.config)
            # A run judged again from the same answer has the same key: not made again.
            key = before[0] if before is not None and _same_key(before[1], run) else change_key(run)
            if before is None:
                changes.append(Change("new", run))
            elif before[0] != key:
                changes.append(Change("changed", run, previous_status=before[1].status))
            fresh[run.config] = (key, run)
        with self._lock:
            if complete:
                gone = [run for name, (_key, run) in self._last.items() if name not in fresh]
                self._last = fresh
            else:
                gone = [self._last.pop(name)[1] for name in removed if name in self._last]
                added = any(name not in self._last for name in fresh)
                self._last.update(fresh)
                if added:  # runs stay in path order
                    self._last = dict(sorted(self._last.items()))
        changes.extend(Change("removed", run, previous_status=run.status) for run in gone)
        return changes

    def _heartbeat(self) -> None:
        """Restate every run as last evaluated, without evaluating again: polling
        re-evaluates every interval, and the periodic check keeps the statuses as fresh
        as its cycle with notifications."""
        self._publish([Change("heartbeat", run) for run in self.runs])

    def _publish(self, changes: list[Change]) -> None:
        if not changes:
            return
        # Sinks first: a subscriber that sees a change may rely on it being in the sinks
        # (the webhook's spool) already.
        for sink in self._sinks:
            try:
                emit_changes(sink, changes)
            except Exception:
                log.exception("sink %s failed; the monitor goes on", type(sink).__name__)
        with self._lock:
            subscribers = list(self._subscribers)
        for change in changes:
            for callback in subscribers:
                try:
                    callback(change)
                except Exception:
                    log.exception("subscriber %r failed on a change; it stays subscribed",
                                  callback)

    def _shutdown(self) -> None:
        if self._unfollow is not None:
            try:
                self._unfollow()
            except Exception:
                log.exception("stopping the live follower of %s failed", self.root)
        for sink in self._sinks:
            try:
                sink.close()
            except Exception:
                log.exception("closing sink %s failed", type(sink).__name__)
        with self._lock:
            closers = list(self._closers)
        for closer in closers:
            closer()
        self._finished.set()

