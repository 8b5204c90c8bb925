"""Any loop, one line: :func:`track` and :class:`Progress`, a drop-in for tqdm that publishes
the run's progress (``progresskit-progress.json``, :mod:`progresskit.formats.progressfile`)
and holds its liveness lease.

``update()`` only adds to a counter: a background thread writes the document at most once
per ``interval`` when something changed (the machinery of
:class:`~progresskit.producer.statusfile.StatusFileWriter`, :mod:`progresskit.producer._throttle`),
and every write renews the lease. Nothing here raises into the loop: a failed write is
logged once, a metric that is not a number is logged and left out. tqdm is imported only
when a bar is shown (tqdm installed and the bar's stream is a terminal).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from time import monotonic
from types import FrameType, TracebackType

from progresskit.formats.jsonio import dumps
from progresskit.formats.progressfile import (
    PROGRESS_FILENAME,
    PROGRESS_FORMAT,
    PROGRESS_VERSION,
    UPDATE_TIMES_KEPT,
)
from progresskit.producer import logger
from progresskit.producer._throttle import check_finite, publish, start_flushing
from progresskit.producer.heartbeat import Heartbeat, cause_of, producer_heartbeat

TYPE_CHECKING = False  # typing's, without importing typing: see progresskit/__init__.py
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from typing import Any

__all__ = ["Progress", "track"]

#: The outermost open Progress of each run directory (real path) in this process: a Progress
#: opened for the same directory meanwhile is one of its nested loops, in the same document.
_runs: dict[str, Progress] = {}
_runs_lock = threading.Lock()


def _number(value: float) -> float | int:
    """A step count as written: an int when it is one (tqdm allows float updates)."""
    return int(value) if float(value).is_integer() else round(float(value), 6)


def _total(value: Any) -> float | None:
    if value is None:
        return None
    total = check_finite("total", value)
    if total < 0:
        raise ValueError(f"total must be >= 0 or None, got {value!r}")
    return int(total) if total.is_integer() else total  # tqdm shows 50/50, not 50/50.0


def _bar(total: float | None, desc: str | None, kwargs: dict[str, Any]) -> Any:
    """A tqdm bar when tqdm is installed and its stream is a terminal, else ``None``."""
    stream = kwargs.get("file") or sys.stderr
    try:
        if stream is None or not stream.isatty():
            return None
    except (AttributeError, ValueError):  # no isatty(), or a closed stream
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    try:
        return tqdm(total=total, desc=desc, **kwargs)
    except Exception as exc:  # a bad tqdm argument must not stop the run being published
        logger(__name__).warning("no progress bar: tqdm(%s): %s", kwargs, exc)
        return None


#: The caller's instructions that drop a loop's iterator without raising: ``break`` and
#: ``return`` pop it (``POP_TOP``), ``del`` and a new binding of its name release it. Any
#: other instruction at the moment the loop's generator is closed is one that raised.
_CHOSEN_EXITS = frozenset(
    ("POP_TOP", "DELETE_FAST", "DELETE_NAME", "DELETE_GLOBAL", "DELETE_DEREF",
     "STORE_FAST", "STORE_NAME", "STORE_GLOBAL", "STORE_DEREF")
)


def _left_by_choice(caller: FrameType | None) -> bool:
    """Whether the frame that closed a loop's generator did so by leaving it on purpose.

    An exception leaving the loop's body is invisible to the generator (CPython saves it
    away while finalizing it), so the caller's current instruction tells: one that cannot
    raise (:data:`_CHOSEN_EXITS`) means the code chose to leave. Unknown (no frame, an
    instruction outside the bytecode, a garbage collection run from elsewhere): ``False``,
    the cautious answer, which leaves the run open for the process's end to record.
    """
    if caller is None:
        return False
    import opcode  # only here: importing progresskit.track stays cheap

    code = caller.f_code.co_code
    at = caller.f_lasti
    return 0 <= at < len(code) and opcode.opname[code[at]] in _CHOSEN_EXITS


class Progress:
    """The progress of a loop, published for progresskit; a drop-in for a tqdm bar::

        with progresskit.Progress(total=len(loader), run_dir="runs/cifar") as progress:
            for batch in loader:
                loss = train(batch)
                progress.update()                   # cheap: every step is fine
                progress.set(loss=loss, lr=lr)      # any numbers
            progress.stage("evaluating")            # written at once

    It writes ``progresskit-progress.json`` into ``run_dir`` (created if missing) at most
    once per ``interval`` seconds while something changed, and holds the directory's
    liveness lease: ``expect_every`` (seconds) promises a change at least that often, so a
    hung loop reads stalled; ``None`` promises nothing. The end of a ``with`` block records
    how the run ended: ``finished``, ``failed`` with the exception, ``cancelled`` on Ctrl-C
    or SIGTERM; a SIGKILL leaves the lease of a process that is gone (``crashed``).

    A Progress opened for a directory whose Progress is still open in this process is a
    nested loop of the same run (epochs, then batches): it shares the document, adds a
    level, and its ``desc`` is the run's stage while it is open.

    A bar is shown when tqdm is installed and its stream (``file``, default stderr) is a
    terminal; ``tqdm_kwargs`` go to it unchanged. Writing never raises into the loop: a
    failed write is logged once per kind of failure and the loop goes on. Arguments of the
    wrong type raise ``ValueError`` here, before the loop starts.
    """

    def __init__(
        self,
        total: float | None = None,
        *,
        run_dir: str | os.PathLike[str] = ".",
        desc: str | None = None,
        expect_every: float | None = None,
        interval: float = 1.0,
        unit: str = "it",
        **tqdm_kwargs: Any,
    ) -> None:
        interval = check_finite("interval", interval)
        if interval <= 0:  # update() only counts: the writes are the thread's
            raise ValueError(f"interval must be > 0 seconds, got {interval!r}")
        if desc is not None and not isinstance(desc, str):
            raise ValueError(f"desc must be a string or None, got {desc!r}")
        #: Steps done; public, as tqdm's ``n``.
        self.n: float = 0
        self.total = _total(total)
        self.desc = desc
        self.unit = str(unit)
        self._iterable: Iterable[Any] | None = None
        self._closed = False
        self._bar = _bar(self.total, desc, {"unit": unit, **tqdm_kwargs})
        self._dir = os.path.realpath(os.fspath(run_dir))
        # What the run's document is made of; used on the outermost Progress of a run only,
        # and set before it is registered, where a nested loop may meet it.
        self._pid = os.getpid()
        self._lock = threading.RLock()
        self._levels: list[Progress] = [self]
        self._version = 0
        with _runs_lock:
            run = _runs.get(self._dir)
            if run is None or run._closed or run._pid != self._pid:
                run = _runs[self._dir] = self
        #: The outermost Progress of this run: the one that writes the document. A nested
        #: loop's ``expect_every`` and ``interval`` are its run's.
        self._run = run
        if run is not self:
            with run._lock:
                run._levels.append(self)
                run._version += 1
            return
        try:
            self._start(expect_every, interval)
        except BaseException:  # a bad expect_every: no run was started
            with _runs_lock:
                del _runs[self._dir]
            raise

    def _start(self, expect_every: float | None, interval: float) -> None:
        self._path = os.path.join(self._dir, PROGRESS_FILENAME)
        self._metrics: dict[str, float] = {}
        self._stage: str | None = None
        self._refused: set[str] = set()
        self._written: tuple[Any, ...] | None = None
        #: The times of the last writes, the document's ``update_times``: with them a
        #: one-off query judges the run by its rhythm as a watch does (docs/producers.md).
        self._update_times: list[float] = []
        self._started_at = time.time()
        self._started = monotonic()
        self.last_write_error: OSError | None = None
        with contextlib.suppress(OSError):  # if this fails, the first write says why
            os.makedirs(self._dir, exist_ok=True)
        # A write (hence a renewal) may trail the update it carries by up to ``interval``.
        self._heartbeat: Heartbeat | None = producer_heartbeat(
            self._dir, expect_every=expect_every, slack=interval, producer="progress"
        )
        with self._lock:
            self._write_locked("running")
        self._finalizer = start_flushing(
            self, self._flush_from_thread, interval, f"progresskit-progress:{self._dir}"
        )

    # -- what a loop calls -----------------------------------------------------------------

    @property
    def path(self) -> str:
        """The document this run writes."""
        return self._run._path

    def update(self, n: float = 1) -> None:
        """``n`` more steps done. Cheap enough for every step: it adds to a counter."""
        try:
            self.n += n
        except TypeError:
            self._run._refuse("update", n)
            return
        if self._bar is not None:
            self._bar.update(n)

    def set(self, **metrics: Any) -> None:
        """Set metrics, any numbers (``loss=0.31, lr=3e-4``); ``None`` removes one. A value
        that is not a finite number is logged and left out. Written with the next write."""
        run = self._run
        with run._lock:
            for name, value in metrics.items():
                if value is None:
                    run._metrics.pop(name, None)
                    continue
                try:
                    run._metrics[name] = check_finite(name, value)
                except ValueError as exc:
                    run._refuse(name, exc)
            run._version += 1
        if self._bar is not None:
            self._bar.set_postfix(metrics, refresh=False)

    def stage(self, name: str | None) -> None:
        """What the run does now (``"evaluating"``); written at once. ``None`` gives the
        stage back to the innermost nested loop's ``desc``."""
        run = self._run
        with run._lock:
            run._stage = None if name is None else str(name)
            run._version += 1
            if not run._closed:
                run._write_locked("running")

    def close(self) -> None:
        """The loop is done: a nested loop leaves its run, the outermost one writes
        ``finished`` and ends the lease. Idempotent."""
        self._end("finished", None)

    def __iter__(self) -> Iterator[Any]:
        iterable = self._iterable
        if iterable is None:
            raise TypeError("this Progress has no iterable: use progresskit.track(iterable)")
        self._iterable = None  # one pass, as tqdm
        return self._iterate(iterable)

    def _iterate(self, iterable: Iterable[Any]) -> Iterator[Any]:
        source = self._bar if self._bar is not None else iterable
        if self._bar is not None:
            self._bar.iterable = iterable  # tqdm iterates and draws; we count
        try:
            for item in source:
                yield item
                self.n += 1
        except GeneratorExit:
            # The loop was left before its end: by the code's choice (break, return, del), or
            # by an exception in its body, which Python keeps from this generator. A nested
            # loop leaves its run either way; the run ends ``finished`` at the steps reached
            # when the caller's own instruction says it chose to leave, else it stays open for
            # the process's end (its exit hooks record failed, cancelled or exited).
            if self._run is not self or _left_by_choice(sys._getframe(1)):
                self._end("finished", None)
            else:
                if self._bar is not None:
                    self._bar.close()
                with self._lock:  # the steps reached, for whoever reads how it ended
                    self._write_locked("running")
            raise
        except BaseException as exc:  # raised by the iterable: this loop ended with it
            self._end(*self._how(exc))
            raise
        self._end("finished", None)

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._end(*self._how(exc))

    # -- internals -------------------------------------------------------------------------

    @staticmethod
    def _how(exc: BaseException | None) -> tuple[str, BaseException | None]:
        if exc is None:
            return "finished", None
        return cause_of(exc)[0], exc

    def _end(self, state: str, exc: BaseException | None) -> None:
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
        run = self._run
        if run is not self:
            with run._lock:
                with contextlib.suppress(ValueError):
                    run._levels.remove(self)
                run._version += 1
            return
        self._finalizer()
        error = None
        if exc is not None and state != "finished":
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        with self._lock:
            self._write_locked(state, error)
        if self._heartbeat is not None:
            if state == "finished":
                self._heartbeat.close()
            else:
                self._heartbeat.close_with(exc)
        with _runs_lock:
            if _runs.get(self._dir) is self:
                del _runs[self._dir]

    def _refuse(self, name: str, problem: object) -> None:
        # Logged once per name: a loop sets the same metric every step.
        if name not in self._refused:
            self._refused.add(name)
            logger(__name__).warning(
                "progress of %s: %s not recorded: %s", self._dir, name, problem
            )

    def _snapshot(self) -> tuple[Any, ...]:
        return (self._version, *(level.n for level in self._levels))

    def _flush_from_thread(self) -> None:
        with self._lock:
            if not self._closed and self._snapshot() != self._written:
                self._write_locked("running")

    def _document(self, state: str, error: str | None) -> dict[str, Any]:
        levels = list(self._levels)
        now = monotonic()
        elapsed = now - self._started
        # Of the whole run: each level's done steps plus the part of its current step that
        # the loops inside it did; an unknown total inside counts as none of the step.
        fraction: float | None = None
        for level in reversed(levels):
            if level.total is None or level.total <= 0:
                fraction = None
                continue
            done = max(0.0, float(level.n)) + (fraction or 0.0)
            fraction = min(1.0, done / level.total)
        steps = max(0.0, float(self.n))
        rate = round(steps / elapsed, 6) if steps > 0 and elapsed > 0 else None
        eta: float | None = None
        if state == "finished" or fraction == 1.0:
            eta = 0.0
        elif state == "running" and fraction is not None and fraction > 0:
            eta = round(elapsed * (1.0 - fraction) / fraction, 3)
        stage = self._stage
        if stage is None and len(levels) > 1:
            stage = levels[-1].desc
        wall = time.time()
        return {
            "format": PROGRESS_FORMAT,
            "version": PROGRESS_VERSION,
            "state": state,
            "desc": self.desc,
            "steps": _number(steps),
            "total": None if self.total is None else _number(self.total),
            "unit": self.unit,
            "fraction": None if fraction is None else round(fraction, 6),
            "stage": stage,
            "levels": [
                {
                    "desc": level.desc,
                    "steps": _number(max(0.0, float(level.n))),
                    "total": None if level.total is None else _number(level.total),
                }
                for level in levels
            ],
            "metrics": dict(self._metrics),
            "rate": rate,
            "eta_seconds": eta,
            "started_at": round(self._started_at, 3),
            "updated_at": round(wall, 3),
            "update_times": [*self._update_times, round(wall, 3)][-UPDATE_TIMES_KEPT:],
            "ended_at": None if state == "running" else round(wall, 3),
            "error": error,
        }

    def _write_locked(self, state: str, error: str | None = None) -> None:
        """Write the document (the caller holds the lock); never raises."""
        snapshot = self._snapshot()
        try:
            document = self._document(state, error)
            text = dumps(document, indent=2) + "\n"
        except (TypeError, ValueError) as exc:  # a count that is not a number: update("x")
            self._refuse("steps", exc)
            return
        self.last_write_error = publish(
            self._path, text, self.last_write_error, "progress file", __name__
        )
        if self.last_write_error is not None:
            return
        if self._heartbeat is not None:
            self._heartbeat.beat()
        self._written = snapshot
        self._update_times = document["update_times"]


def track(
    iterable: Iterable[Any],
    total: float | None = None,
    *,
    run_dir: str | os.PathLike[str] = ".",
    desc: str | None = None,
    expect_every: float | None = None,
    **tqdm_kwargs: Any,
) -> Progress:
    """``iterable``, its progress published for progresskit: ``for batch in track(loader):``
    where the loop had ``tqdm(loader)``.

    ``total`` defaults to ``len(iterable)`` when it has one. Returns the :class:`Progress`,
    to iterate once (and to call :meth:`Progress.set` on). Running out of items records
    ``finished``; an exception raised by ``iterable`` records how it ended. A loop left
    early on purpose (``break``, ``return``, ``del`` of its iterator) records ``finished``
    at the steps reached; one left by an exception in its body (which a generator cannot
    see) stays open for the process's end to record (failed with the exception, cancelled
    on Ctrl-C, exited): use ``with Progress(...)`` to record that at once.
    A ``track()`` inside another one for the same ``run_dir`` is a nested loop of the same
    run. ``tqdm_kwargs`` go to the tqdm bar shown on a terminal.
    """
    if total is None:
        with contextlib.suppress(Exception):  # no len(), or one that fails: total unknown
            total = len(iterable)  # type: ignore[arg-type]
    progress = Progress(
        total, run_dir=run_dir, desc=desc, expect_every=expect_every, **tqdm_kwargs
    )
    progress._iterable = iterable
    return progress
