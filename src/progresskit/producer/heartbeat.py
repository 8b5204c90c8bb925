"""The producer's side of the liveness lease: a promise to show a sign of life, and how it ended.

A producer (:class:`~progresskit.producer.statusfile.StatusFileWriter`,
:class:`~progresskit.producer.emitter.EventEmitter`, or :func:`heartbeat` for code that uses
neither) writes the lease (:mod:`progresskit.formats.lease`) into its run directory when it
starts. A sign of life renews the lease by touching the file's mtime (one ``utime``, at most
every :data:`MAX_RENEW_SECONDS`); the content is rewritten (atomically) only when it changes:
at the start, when the promise changes, and at the end, with the final state and its cause.
The engine reads it (:mod:`progresskit.engine.liveness`); docs/liveness.md has the whole story.

This module is what importing the producer costs; the lease machinery
(:mod:`progresskit.producer._lease`: the lease document, attrs, the process hooks) is loaded
with the first lease.
"""

from __future__ import annotations

import math
import os
from types import TracebackType

from progresskit.producer import logger

TYPE_CHECKING = False  # typing's, without importing typing: see progresskit/__init__.py
if TYPE_CHECKING:
    from progresskit.model.core import Cause
    from progresskit.producer._lease import RunLease

__all__ = ["MAX_RENEW_SECONDS", "Heartbeat", "cause_of", "heartbeat", "producer_heartbeat"]

#: Renewals closer together than this are skipped: a training loop may call ``beat()``
#: every step. Readers add it (as the lease's ``slack``) to the promised interval.
MAX_RENEW_SECONDS = 0.5
#: Exception messages longer than this are cut: a CUDA error can be kilobytes long.
_MAX_MESSAGE = 2000


def _type_name(exc_type: type[BaseException]) -> str:
    module = exc_type.__module__
    return exc_type.__qualname__ if module == "builtins" else f"{module}.{exc_type.__qualname__}"


def cause_of(exc: BaseException) -> tuple[str, Cause | None]:
    """The lease state and cause of a run ended by ``exc`` propagating out of it."""
    from progresskit.model.core import Cause

    if isinstance(exc, SystemExit):
        code = exc.code
        if code is None or code == 0:
            return "finished", None
        if isinstance(code, int):
            return "failed", Cause("exit", message="sys.exit", exit_code=code)
        return "failed", Cause("exit", message=str(code)[:_MAX_MESSAGE], exit_code=1)
    if isinstance(exc, KeyboardInterrupt):
        # Python's default SIGINT handler raises it; Ctrl-C is a request to stop.
        return "cancelled", Cause("signal", signal="SIGINT")
    message = str(exc)
    return "failed", Cause(
        "exception",
        exception_type=_type_name(type(exc)),
        message=message[:_MAX_MESSAGE] if message else None,
    )


class Heartbeat:
    """A holder of the lease on one run directory; see :func:`heartbeat`."""

    def __init__(
        self,
        work_dir: str | os.PathLike[str],
        *,
        expect_every: float | None,
        slack: float = 0.0,
        producer: str = "heartbeat",
    ) -> None:
        if expect_every is not None:
            if isinstance(expect_every, bool) or not isinstance(expect_every, (int, float)):
                raise ValueError(f"expect_every must be a number of seconds, got {expect_every!r}")
            if not (math.isfinite(expect_every) and expect_every > 0):
                raise ValueError(f"expect_every must be a finite number > 0, got {expect_every!r}")
        self.work_dir = os.fspath(work_dir)
        self.expect_every = None if expect_every is None else float(expect_every)
        self.slack = float(slack)
        self.producer = producer
        self._closed = False
        from progresskit.producer import _lease  # with the first lease: see the docstring

        self._lease: RunLease = _lease.join(self.work_dir, self)

    @property
    def path(self) -> str:
        """The lease file."""
        return self._lease.path

    def beat(self) -> None:
        """A sign of life. Cheap enough for every step: at most one ``utime`` per 0.5 s."""
        self._lease.renew()

    def close(self, state: str = "finished", cause: Cause | None = None) -> None:
        """Let go of the lease; the last holder records ``state`` and ``cause``. Idempotent."""
        from progresskit.formats.lease import LEASE_STATES  # loaded with the lease

        if state not in LEASE_STATES or state == "running":
            raise ValueError(
                f"state must be one of finished, failed, cancelled, exited; got {state!r}"
            )
        if self._closed:
            return
        self._closed = True
        self._lease.leave(self, state, cause)

    def close_with(self, exc: BaseException | None) -> None:
        """Close as a ``with`` block ending with ``exc`` (``None``: cleanly) would."""
        if exc is None:
            self.close()
        else:
            self.close(*cause_of(exc))

    def __enter__(self) -> Heartbeat:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close_with(exc)


def heartbeat(work_dir: str | os.PathLike[str], *, expect_every: float) -> Heartbeat:
    """Hold the liveness lease of the run in ``work_dir``, promising a sign of life (a
    :meth:`Heartbeat.beat`) at least every ``expect_every`` seconds::

        with progresskit.heartbeat("runs/cifar", expect_every=60) as hb:
            for batch in data:
                train(batch)
                hb.beat()

    A clean end of the ``with`` block records ``finished``; an exception records
    ``failed`` with its type and message; SIGTERM/SIGINT record ``cancelled`` with the
    signal. Without ``with``, call :meth:`Heartbeat.close`, or the interpreter's exit
    records ``exited``. ``work_dir`` must exist.
    """
    if not os.path.isdir(work_dir):
        what = "does not exist" if not os.path.exists(work_dir) else "is not a directory"
        raise ValueError(f"heartbeat: work_dir {os.fspath(work_dir)} {what}")
    return Heartbeat(work_dir, expect_every=expect_every)


def producer_heartbeat(
    work_dir: str | None, *, expect_every: float | None, slack: float, producer: str
) -> Heartbeat | None:
    """The lease holder of a producer writing into ``work_dir``, or ``None`` when that
    directory does not exist (a lease is a bonus; the producer must work without one)."""
    if work_dir is None:
        return None
    try:
        return Heartbeat(work_dir, expect_every=expect_every, slack=slack, producer=producer)
    except OSError as exc:
        logger(__name__).warning("no liveness lease for %s: %s", work_dir, exc)
        return None


