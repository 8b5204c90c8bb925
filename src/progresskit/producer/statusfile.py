"""A writer of Brush's ``training_status.json`` (seed 000; the document is
:mod:`progresskit.formats.statusfile`) for Python trainers.

A trainer that publishes this file can be watched by anything that reads Brush's
``--save-status`` output: the ``progresskit-brush`` plugin, or the seed's own scripts.
:class:`StatusFileWriter` keeps ``update()`` cheap enough to call every step: it stores the
iteration and returns; a background thread writes the file at most once per ``interval``
when something changed, and status changes and ``close()`` write at once. Every write
atomically replaces the file, so a reader never sees half of one.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Mapping
from time import monotonic
from types import TracebackType

from progresskit.formats.jsonio import dumps
from progresskit.formats.statusfile import (
    COMPLETED,
    DEFAULT_STATUS_FILENAME,
    ERROR,
    STATUS_VALUES,
    UPDATE_TIMES_KEPT,
    format_timestamp,
)
from progresskit.producer import logger
from progresskit.producer._throttle import check_count, check_finite, publish, start_flushing
from progresskit.producer.heartbeat import Heartbeat, producer_heartbeat

TYPE_CHECKING = False  # typing's, without importing typing: see progresskit/__init__.py
if TYPE_CHECKING:
    from typing import Any

__all__ = ["StatusFileWriter"]

_TRAINING = "training"


# -- checks of the values a trainer passes -------------------------------------------------


def _text(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string, got {type(value).__name__} {value!r}")
    return value


def _optional(check: Callable[[str, Any], Any]) -> Callable[[str, Any], Any]:
    return lambda name, value: None if value is None else check(name, value)


#: The fields ``set(**fields)`` sets, each with its check (None clears a field).
_SETTABLE: Mapping[str, Callable[[str, Any], Any]] = {
    "total_iterations": lambda name, value: check_count(name, value, minimum=1),
    "current_splat_count": _optional(check_count),
    "last_eval_psnr": _optional(check_finite),
    "last_eval_ssim": _optional(check_finite),
    "export_path": _optional(_text),
    "current_export_file": _optional(_text),
}


class StatusFileWriter:
    """Publish a Python training run as a Brush-compatible ``training_status.json``.

    ::

        with StatusFileWriter("out/training_status.json", total_iterations=30_000) as status:
            for step in range(1, 30_001):
                train_step()
                status.update(step)                      # cheap: every step is fine
                if step % 1000 == 0:
                    status.update(step, "evaluating")    # a status change is written at once
                    psnr, ssim = evaluate()
                    status.set(last_eval_psnr=psnr, last_eval_ssim=ssim)
        # clean exit: "completed"; an exception: "error" with the exception in error_message

    The file is created at once with status ``starting``. ``update()`` without a status
    means ``training``; :meth:`set` changes the other fields. Writes happen at most once per
    ``interval`` seconds, and only when the iteration or a field changed (so
    ``last_updated`` stays a true heartbeat: a trainer that hangs stops refreshing it); a
    change of status, :meth:`flush` and :meth:`close` write immediately. ``interval=0``
    writes on every ``update()`` and :meth:`set`.

    A failed write (disk full, directory gone) is logged and never raised: publishing
    progress must not stop training. Bad values are raised as ``ValueError`` naming the
    field. Use one writer from one thread.

    The writer holds the liveness lease of the status file's directory (docs/liveness.md):
    each write renews it, so ``expect_every`` (seconds) promises a changed iteration or
    field at least that often; ``None`` promises nothing and leaves stall detection to the
    run's ``sleep_time``. :meth:`close` records the end in the lease.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] = DEFAULT_STATUS_FILENAME,
        *,
        total_iterations: int,
        interval: float = 1.0,
        export_path: str | None = None,
        expect_every: float | None = None,
    ) -> None:
        interval = check_finite("interval", interval)
        if interval < 0:
            raise ValueError(f"interval must be >= 0 seconds, got {interval!r}")
        self._path = os.fspath(path)
        self._interval = interval
        self._fields: dict[str, Any] = dict.fromkeys((*_SETTABLE, "error_message"))
        self._fields["total_iterations"] = _SETTABLE["total_iterations"](
            "total_iterations", total_iterations
        )
        self._fields["export_path"] = _optional(_text)("export_path", export_path) or (
            os.path.dirname(self._path) or "."
        )
        self._iteration: Any = 0
        self._good_iteration = 0
        self._status = "starting"
        #: The status for which update() may skip its slow path; None makes every update
        #: take it (a closed writer, or interval 0).
        self._fast_status: str | None = self._status if interval > 0 else None
        self._started = monotonic()
        #: (monotonic time, iteration) of the first training update: the origin of the rate.
        self._rate_origin: tuple[float, int] | None = None
        #: Bumped by every field change; with the iteration, says whether a write is due.
        self._version = 0
        self._written: tuple[Any, int] | None = None
        #: The times of the last writes, the document's ``update_times`` (progresskit's
        #: addition to Brush's fields): a one-off query judges the run by its rhythm.
        self._update_times: list[float] = []
        self._closed = False
        self._lock = threading.Lock()
        self.last_write_error: OSError | None = None
        # Brush creates its --export-path; if this fails, the first write says why.
        with contextlib.suppress(OSError):
            os.makedirs(os.path.dirname(self._path) or ".", exist_ok=True)
        self._thread_problem: str | None = None
        # A write (hence a renewal) may trail the update it carries by up to ``interval``.
        self._heartbeat: Heartbeat | None = producer_heartbeat(
            os.path.dirname(self._path) or ".",
            expect_every=expect_every,
            slack=interval,
            producer="statusfile",
        )
        self._write_locked()
        self._finalizer = start_flushing(
            self,
            self._flush_from_thread,
            interval,
            f"progresskit-statusfile:{os.path.basename(self._path)}",
        )

    # -- what a trainer calls --------------------------------------------------------------

    @property
    def path(self) -> str:
        """The status file being written."""
        return self._path

    @property
    def status(self) -> str:
        """The status last set."""
        return self._status

    def update(self, current_iteration: int, status: str = _TRAINING) -> None:
        """Record progress: the iteration reached, and the status (default ``training``).

        Cheap enough for every step while the status stays the same: it stores the
        iteration and returns. A new status is written at once.
        """
        self._iteration = current_iteration
        if status is not self._fast_status:
            self._update_slow(status)

    def set(self, **fields: Any) -> None:
        """Set status-file fields, written with the next update: ``total_iterations``,
        ``current_splat_count``, ``last_eval_psnr``, ``last_eval_ssim``, ``export_path``,
        ``current_export_file``. ``None`` clears a field. (``error_message`` is set by
        :meth:`close` with status ``error``.)
        """
        unknown = sorted(set(fields) - set(_SETTABLE))
        if unknown:
            raise TypeError(
                f"set() got unknown field(s) {', '.join(unknown)}; settable fields: "
                f"{', '.join(_SETTABLE)} (Brush's status file; for any metrics, such as "
                "loss or lr, use progresskit.Progress)"
            )
        checked = {name: _SETTABLE[name](name, value) for name, value in fields.items()}
        with self._lock:
            self._check_open()
            if all(self._fields[name] == value for name, value in checked.items()):
                return
            self._fields.update(checked)
            self._version += 1
            if self._interval == 0:
                self._write_locked()

    def flush(self) -> None:
        """Write now if anything changed since the last write."""
        with self._lock:
            self._check_open()
            self._check_iteration()
            if (self._iteration, self._version) != self._written:
                self._write_locked()

    def close(self, status: str | None = None, error_message: str | None = None) -> None:
        """Write the final state and stop. Idempotent.

        ``status`` defaults to ``completed``, unless the run already reported ``completed``
        or ``error``, which is kept.
        """
        with self._lock:
            if self._closed:
                return
            final = status or (self._status if self._status in (COMPLETED, ERROR) else COMPLETED)
            if final not in (COMPLETED, ERROR):
                raise ValueError(f"close() status must be 'completed' or 'error', got {final!r}")
            message = _optional(_text)("error_message", error_message)
            if message is not None and final != ERROR:
                raise ValueError("close() takes an error_message only with status 'error'")
            try:
                self._check_iteration()
            except ValueError:
                if final != ERROR:
                    raise
                # Failing already: publish the error with the last good iteration rather
                # than hide it behind a second error.
                self._iteration = self._good_iteration
            if message is not None:
                self._fields["error_message"] = message
            self._status = final
            self._write_locked()
            self._closed = True
            self._fast_status = None
        if self._heartbeat is not None:
            if final == ERROR:
                from progresskit.model.core import Cause  # loaded with the lease

                self._heartbeat.close("failed", Cause("error", message=message))
            else:
                self._heartbeat.close()
        self._finalizer()

    def __enter__(self) -> StatusFileWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._heartbeat is not None:
            # The exception itself says more than the status file's error_message can.
            self._heartbeat.close_with(exc)
        if exc is None:
            self.close()
        else:
            self.close(ERROR, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)

    # -- internals -------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"StatusFileWriter for {self._path} is closed")

    def _check_iteration(self) -> int:
        iteration = check_count("current_iteration", self._iteration)
        self._good_iteration = iteration
        return iteration

    def _update_slow(self, status: str) -> None:
        with self._lock:
            self._check_open()
            if status not in STATUS_VALUES:
                raise ValueError(
                    f"status must be one of {', '.join(STATUS_VALUES)}, got {status!r}"
                )
            iteration = self._check_iteration()
            if self._rate_origin is None and status == _TRAINING:
                self._rate_origin = (monotonic(), iteration)
            changed = status != self._status
            self._status = status
            if self._interval > 0:
                self._fast_status = status
            if changed or self._interval == 0:
                self._write_locked()

    def _flush_from_thread(self) -> None:
        with self._lock:
            if self._closed or (self._iteration, self._version) == self._written:
                return
            try:
                self._write_locked()
            except ValueError as exc:
                # The trainer passed a bad iteration on the fast path; it hears of it on its
                # next status change, flush or close. The file keeps the last good state.
                if str(exc) != self._thread_problem:
                    logger(__name__).warning("status file %s not updated: %s", self._path, exc)
                self._thread_problem = str(exc)

    def _document(self) -> dict[str, Any]:
        iteration = self._check_iteration()
        fields = self._fields
        total: int = fields["total_iterations"]
        now = monotonic()
        wall = time.time()
        remaining: float | None = None
        if self._status == COMPLETED:
            remaining = 0.0
        elif (origin := self._rate_origin) is not None and iteration > origin[1] and (
            self._status != ERROR
        ):
            started, first = origin
            per_iteration = (now - started) / (iteration - first)
            remaining = round(per_iteration * max(0, total - iteration), 3)
        document: dict[str, Any] = {
            "current_iteration": iteration,
            "total_iterations": total,
            "progress_percentage": min(100.0, 100.0 * iteration / total),
            "elapsed_time_seconds": round(now - self._started, 3),
            "estimated_remaining_seconds": remaining,
            "current_splat_count": fields["current_splat_count"],
            "last_eval_psnr": fields["last_eval_psnr"],
            "last_eval_ssim": fields["last_eval_ssim"],
            "export_path": fields["export_path"],
            "current_export_file": fields["current_export_file"],
            "status": self._status,
            "last_updated": format_timestamp(wall),
        }
        if fields["error_message"] is not None:
            document["error_message"] = fields["error_message"]
        document["update_times"] = [*self._update_times, round(wall, 3)][-UPDATE_TIMES_KEPT:]
        return document

    def _write_locked(self) -> None:
        """Write the current state (the caller holds the lock). A bad iteration raises
        ``ValueError``; a failed write is logged and remembered, never raised."""
        document = self._document()
        text = dumps(document, indent=2) + "\n"
        self.last_write_error = publish(
            self._path, text, self.last_write_error, "status file", __name__
        )
        if self.last_write_error is not None:
            return
        self._thread_problem = None
        if self._heartbeat is not None:
            self._heartbeat.beat()
        # The iteration written, not the current one: update() may have moved it meanwhile.
        self._written = (document["current_iteration"], self._version)
        self._update_times = document["update_times"]
