"""What a sink lost, recorded where it survives the failure that lost it.

A full disk or an unwritable spool is exactly when a new file cannot be written. The record
(``dropped.json`` in the spool: how many events were lost, the first and the last, when and
why) is therefore one block allocated while the spool was still writable and rewritten in
place, which needs no new space. When even that fails (the spool was removed, its
permissions taken away), the record lives on in memory, and ``watch`` and the sink's close
report it. ``progresskit serve`` reads the record back for ``/metrics``
(:func:`read_drop_record`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import stat
import threading
import time
from typing import Any

from progresskit.formats import jsonio

__all__ = ["DROP_RECORD", "DropRecorder", "describe_losses", "read_drop_record"]

log = logging.getLogger(__name__)

#: The record's file name in the spool.
DROP_RECORD = "dropped.json"
#: The record's fixed size: allocated once, rewritten in place.
_SIZE = 4096
#: Longest text kept for a run or a reason, so the record always fits its block.
_TEXT = 600


def _cut(text: str) -> str:
    return text if len(text) <= _TEXT else text[: _TEXT - 1] + "…"


class DropRecorder:
    """The drop record of the spool ``spool_dir``: counts carry over from earlier
    processes, every drop is written through at once."""

    def __init__(self, spool_dir: str):
        self.path = os.path.join(spool_dir, DROP_RECORD)
        self._lock = threading.Lock()
        self._record: dict[str, Any] = read_drop_record(spool_dir) or {
            "format": "progresskit.dropped",
            "version": 1,
            "count": 0,
            "first": None,
            "last": None,
        }
        self._fd: int | None = None
        self._warned = False
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            if os.fstat(self._fd).st_size < _SIZE:
                os.posix_fallocate(self._fd, 0, _SIZE)
                self._write()
        except OSError as exc:
            self._close_fd()
            log.warning(
                "webhook spool: cannot prepare %s (%s): losses will be reported but not kept",
                self.path,
                exc.strerror or exc,
            )

    @property
    def count(self) -> int:
        """Events lost since the record began."""
        return int(self._record["count"])

    def snapshot(self) -> dict[str, Any]:
        """A copy of the record: ``count``, and ``first`` and ``last`` (``event_id``,
        ``run``, ``at``, ``why``), ``None`` before any loss."""
        with self._lock:
            return json.loads(json.dumps(self._record))  # type: ignore[no-any-return]

    def record(self, event_id: str, run: str, why: str) -> None:
        """Record the loss of event ``event_id`` of ``run``, for ``why``."""
        entry = {"event_id": event_id, "run": _cut(run), "at": time.time(), "why": _cut(why)}
        with self._lock:
            self._record["count"] += 1
            self._record["first"] = self._record["first"] or entry
            self._record["last"] = entry
            if self._fd is None:
                return
            try:
                self._write()
            except OSError as exc:
                if not self._warned:
                    self._warned = True
                    log.error(
                        "webhook spool: cannot update %s (%s): losses are counted in memory",
                        self.path,
                        exc.strerror or exc,
                    )

    def close(self) -> None:
        with self._lock:
            self._close_fd()

    def _write(self) -> None:
        assert self._fd is not None
        data = (jsonio.dumps(self._record, sort_keys=True) + "\n").encode()
        # Spaces after the document: JSON readers skip them, and the block stays whole.
        os.pwrite(self._fd, data.ljust(_SIZE, b" ")[:_SIZE], 0)
        os.fsync(self._fd)

    def _close_fd(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None


def read_drop_record(spool_dir: str) -> dict[str, Any] | None:
    """The drop record of ``spool_dir``; ``None`` when there is none or it is not readable
    (half-written, not a regular file)."""
    path = os.path.join(spool_dir, DROP_RECORD)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        data = os.read(fd, 2 * _SIZE)
    except OSError:
        return None
    finally:
        os.close(fd)
    try:
        record = json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError):
        return None
    if not isinstance(record, dict) or not isinstance(record.get("count"), int):
        return None
    return record


def describe_losses(where: str, record: dict[str, Any]) -> str:
    """One line saying what ``record`` (of the sink or spool ``where``) lost."""
    first, last = record.get("first") or {}, record.get("last") or {}
    return (
        f"{where}: {record['count']} event(s) lost (first {first.get('event_id')} of "
        f"{first.get('run')}: {first.get('why')}; last {last.get('event_id')} of "
        f"{last.get('run')}: {last.get('why')})"
    )
