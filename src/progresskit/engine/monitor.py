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
import contextlib
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

import attrs

from progresskit.engine.session import Tracking, resolve
from progresskit.errors import ProgresskitError, RunnerDetectionError
from progresskit.formats.change import Change, change_key
from progresskit.model.core import ProcessInfo, RunStatus
from progresskit.model.unclaimed import Unrecognised
from progresskit.plugin.coreconfig import (
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
            if not self._stop.is_set():
                self._watch_polling()
        except Exception:  # the loop itself failing must still close the sinks
            log.exception("monitor of %s failed", self.root)
        finally:
            self._shutdown()

    def _watch_notifications(self) -> None:
        import watchfiles

        tick = self.settings.poll_interval
        # Due at once: the first round, after the OS watch is set up, catches what changed
        # between the first evaluation and then.
        next_tick = time.monotonic()
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
                now = time.monotonic()
                periodic = now >= next_tick
                if periodic:
                    next_tick = now + tick
                if periodic:
                    self._tick(refresh_processes=True)
                elif events:
                    self._tick(refresh_processes=False, paths={path for _, path in events})
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

    def _watch_polling(self) -> None:
        next_heartbeat = self._next_heartbeat()
        while not self._stop.wait(self.settings.poll_interval):
            self._tick(refresh_processes=True)
            if next_heartbeat is not None and time.monotonic() >= next_heartbeat:
                self._heartbeat()
                next_heartbeat = self._next_heartbeat()

    def _next_heartbeat(self) -> float | None:
        every = self.settings.heartbeat
        return time.monotonic() + every if every > 0 else None

    def _scan(self, refresh_processes: bool) -> list[RunStatus] | None:
        processes = None if refresh_processes or self._processes is None else self._processes
        try:
            statuses = self._tracking.runs_of(self.root, processes=processes)
        except Exception as exc:
            # The root vanished or its config became invalid: say so once, keep the last
            # known statuses and try again at the next change or tick.
            expected = isinstance(exc, ProgresskitError)
            message = str(exc) if expected else f"{type(exc).__name__}: {exc}"
            if message != self._last_error:
                # An unexpected error is a bug somewhere: its traceback is worth the noise.
                log.error("cannot evaluate %s: %s", self.root, message, exc_info=not expected)
                self._last_error = message
            return None
        if self._last_error is not None:
            log.warning("%s can be evaluated again", self.root)
            self._last_error = None
        if processes is None:
            self._processes = {
                run.work_dir: run.process_info for run in statuses if run.process_info
            }
        with self._lock:
            self._unrecognised = list(statuses.unrecognised)
        return statuses

    def _tick(self, *, refresh_processes: bool, paths: set[str] | None = None) -> list[Change]:
        """Evaluate, report and return the changes: of every run, or only of the known runs
        holding ``paths`` (the files an OS notification named) when that is enough."""
        with self._evaluating:
            partial = None if paths is None else self._evaluate_runs_of(paths)
            if partial is not None:
                changes = self._diff(partial, complete=False)
            else:
                statuses = self._scan(refresh_processes)
                changes = [] if statuses is None else self._diff(statuses, complete=True)
        self._publish(changes)
        return changes

    def _evaluate_runs_of(self, paths: set[str]) -> list[RunStatus] | None:
        """The fresh status of each known run holding one of ``paths``; ``None`` when a
        full scan is needed (a path outside every known run: a new run, a config change...).

        A full scan costs a few stats per run: on a tree of thousands of runs, where some
        log is written every moment, evaluating only the runs written to keeps the
        notification path fast.
        """
        with self._lock:
            known = set(self._last)
        runs: set[str] = set()
        for path in paths:
            current = path
            while current not in known:
                parent = os.path.dirname(current)
                if parent == current or not current.startswith(self.root + os.sep):
                    return None
                current = parent
            runs.add(current)
        statuses = []
        for work_dir in sorted(runs):
            try:
                # Still this run on file evidence, or the full scan decides what it is now.
                self._tracking.tracker_for(work_dir, allow_config=False)
                statuses.append(
                    self._tracking.status(
                        work_dir,
                        process=(self._processes or {}).get(work_dir),
                        discover_processes=False,
                    )
                )
            except ProgresskitError:
                return None
        return statuses

    def _diff(self, statuses: list[RunStatus], *, complete: bool) -> list[Change]:
        """Changes between ``statuses`` and what was last reported; with ``complete``, the
        statuses are every run, and a known run missing from them was removed."""
        changes: list[Change] = []
        current: dict[str, tuple[str, RunStatus]] = {} if complete else dict(self._last)
        for run in statuses:
            key = change_key(run)
            before = self._last.get(run.config)
            if before is None:
                changes.append(Change("new", run))
            elif before[0] != key:
                changes.append(Change("changed", run, previous_status=before[1].status))
            current[run.config] = (key, run)
        for name, (_key, run) in self._last.items():
            if complete and name not in current:
                changes.append(Change("removed", run, previous_status=run.status))
        with self._lock:
            self._last = current
        return changes

    def _heartbeat(self) -> None:
        just_reported = {c.run.config for c in self._tick(refresh_processes=True)}
        self._publish(
            [Change("heartbeat", run) for run in self.runs if run.config not in just_reported]
        )

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

