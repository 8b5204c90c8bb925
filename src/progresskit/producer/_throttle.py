"""What the producers that publish a document share: value checks, the atomic write whose
failures are logged once per kind, and the background thread that writes at most once per
interval (:class:`~progresskit.producer.statusfile.StatusFileWriter`,
:class:`~progresskit.producer.track.Progress`)."""

from __future__ import annotations

import contextlib
import math
import operator
import threading
import weakref

from progresskit.formats.fileio import atomic_write_text
from progresskit.producer import logger

TYPE_CHECKING = False  # typing's, without importing typing: see progresskit/__init__.py
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

__all__ = ["check_count", "check_finite", "publish", "start_flushing"]


def check_count(name: str, value: Any, minimum: int = 0) -> int:
    """``value`` as an ``int`` >= ``minimum`` (numpy/torch integer scalars too; not a float
    or a bool), else ``ValueError`` naming ``name``."""
    try:
        number = operator.index(value)
    except TypeError:
        number = None
    if number is None or isinstance(value, bool) or number < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return number


def check_finite(name: str, value: Any) -> float:
    """``value`` as a finite ``float`` (int, float, numpy/torch scalars), else
    ``ValueError`` naming ``name``."""
    number = None
    if not isinstance(value, (bool, str, bytes)):
        with contextlib.suppress(TypeError, ValueError):
            number = float(value)
    if number is None or not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return number


def publish(
    path: str, text: str, last_error: OSError | None, what: str, log: str
) -> OSError | None:
    """Replace ``path`` by ``text`` atomically; the error if that failed, else ``None``.

    Never raises ``OSError``: publishing progress must not stop the job. A failure is
    logged (to the producer's logger ``log``) when it differs in kind from ``last_error``
    (the previous write's), so that a full disk is reported once, not once a second (the
    message names a random temp file).
    """
    try:
        atomic_write_text(path, text)
    except OSError as exc:
        if last_error is None or (type(last_error), last_error.errno) != (type(exc), exc.errno):
            logger(log).warning("cannot write %s %s: %s", what, path, exc.strerror or exc)
        return exc
    return None


def _flush_periodically(
    flush: weakref.WeakMethod[Callable[[], None]], stop: threading.Event, interval: float
) -> None:
    # Holds the writer only while flushing, so a writer nobody closed can still be collected.
    while not stop.wait(interval):
        bound = flush()
        if bound is None:
            return
        bound()
        del bound


def _stop_thread(stop: threading.Event, thread: threading.Thread | None) -> None:
    stop.set()
    if thread is not None and thread is not threading.current_thread():
        thread.join()


def start_flushing(
    owner: object, flush: Callable[[], None], interval: float, name: str
) -> weakref.finalize[Any, Any]:
    """Call ``flush`` (a method of ``owner``) every ``interval`` seconds from a daemon thread
    (none when ``interval`` is 0); the finalizer that stops it.

    The finalizer runs when ``owner`` is collected or at interpreter exit, so the thread is
    never killed half way through replacing a file; call it to stop the thread now.
    """
    stop = threading.Event()
    thread = None
    if interval > 0:
        thread = threading.Thread(
            target=_flush_periodically,
            args=(weakref.WeakMethod(flush), stop, interval),
            name=name,
            daemon=True,
        )
        thread.start()
    return weakref.finalize(owner, _stop_thread, stop, thread)
