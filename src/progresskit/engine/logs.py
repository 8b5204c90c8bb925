"""Progress from a run's console log: the bounded, incremental read and the one merge rule.

Two users, one piece: the builtin ``log`` tracker (:mod:`progresskit.builtin.logtail`)
reports a directory whose only evidence is a log holding a bar, and the session
(:mod:`progresskit.engine.session`) fills what another tracker's answer lacks from the
run's log with :func:`fill_from_log`: structured files win, the log adds only what they
left unknown (docs/logs.md).

Reading is bounded: only the last ``log_tail_kb`` KiB of a log are read (64 by default),
whatever its size. It is incremental: a log whose stat key (mtime, size, inode) is
unchanged is not read again (unless it was written within the racy window of its last
read, :func:`~progresskit.formats.fileio.is_racy`), so an idle run costs one ``stat`` per
log per query; a log
that grew is read from where the last read stopped (checking that the bytes just before
are still the ones read) and only its new redraws are parsed, while its tail holds no
traceback, epoch line or end of training; anything else (truncated, replaced, rewritten,
grown by more than half the tail, a marker) is a full tail read.

Bars beyond the tail: when a changed log's tail holds no bar (a traceback, or a flood of
log lines after the last bar), the log is read further back, one tail at a time, up to
:data:`LOOKBACK_TAILS` tails before its end (1 MiB by default), never the whole file; what
that search found (or that it found nothing) is kept while the log only grows, so the next
query searches only what was appended since.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from progresskit.formats.fileio import StatKey, is_racy, key_of, open_regular, stat_key
from progresskit.formats.progressbar import (
    DEFAULT_UNIT_DIVISOR,
    Bar,
    LogReading,
    TqdmValues,
    fraction_of,
    may_hold_bar,
    parse_appended,
    parse_log,
    plain_appended,
    settled,
)
from progresskit.model.core import ProgressInfo, Status, prechecked
from progresskit.plugin.tracker import list_entries

__all__ = [
    "DEFAULT_LOG_FILES",
    "DEFAULT_TAIL_KB",
    "DEFAULT_UNIT_DIVISOR",
    "LOG_RUNNER_TYPE",
    "LOOKBACK_TAILS",
    "Checked",
    "LogTail",
    "fill_from_log",
    "log_globs",
    "log_tail_for",
    "progress_from_log",
    "read_tail",
]

#: The stat keys and the ``stat`` of a run's logs, in :meth:`LogTail.names` order, from one
#: ``stat`` of each (:meth:`LogTail.stats`; a missing log: ``None`` and ``None``).
Checked = tuple[Sequence[StatKey | None], Sequence[os.stat_result | None]]
#: The runner type of a run known by its log alone (the builtin ``log`` tracker's).
LOG_RUNNER_TYPE = "log"
#: The globs of a run's log files when the config's ``log_files`` does not say.
DEFAULT_LOG_FILES: tuple[str, ...] = ("*.log", "*.out", "slurm-*.out")
#: KiB read from the end of a log.
DEFAULT_TAIL_KB = 64
#: How far back a log whose tail holds no bar is searched for one: this many tails before
#: its end (the tail included), read one tail at a time.
LOOKBACK_TAILS = 16


def read_tail(
    path: str,
    max_bytes: int,
    resume: tuple[int, bytes] | None = None,
    st_mode: int | None = None,
) -> tuple[bytes, int, bool]:
    """(data, end, appended): what ``path`` holds up to byte ``end``, read at its end.

    With ``resume=(offset, seen)``, where ``seen`` is what was read just before ``offset``
    (from the ``\\r`` or ``\\n`` that starts its newest redraw), when the file still holds
    ``seen`` there and ``seen`` and what was appended after it are less than half of
    ``max_bytes``, ``data`` is ``seen`` and those appended bytes (``appended`` true).
    Otherwise (first read, truncated, rewritten, grown a lot) it is the last ``max_bytes``
    of the file, without a first, cut redraw. ``st_mode``: the mode of the ``stat`` of
    ``path`` just taken by the caller (:func:`open_regular`). Raises ``OSError`` when the
    file cannot be read (:class:`NotRegularFileError` for a FIFO or a device).
    """
    # os-level calls: Python's buffered open() alone costs about one 64 KiB read. Regular
    # files only, opened without blocking: a FIFO named train.log must not hang a query.
    fd, st = open_regular(path, st_mode)
    try:
        return _tail_of(fd, st.st_size, max_bytes, resume)  # size: the fstat just taken
    finally:
        os.close(fd)


def _tail_of(
    fd: int, size: int, max_bytes: int, resume: tuple[int, bytes] | None
) -> tuple[bytes, int, bool]:
    """:func:`read_tail` of the open file ``fd`` of ``size`` bytes."""
    # pread, not lseek and read: one system call less per query of a growing log.
    if resume is not None:
        offset, seen = resume
        start = offset - len(seen)
        if start >= 0 and offset <= size and size - start <= max_bytes // 2:
            raw = os.pread(fd, size - start, start)
            if raw.startswith(seen):
                return raw, start + len(raw), True
    start = max(0, size - max_bytes)
    raw = os.pread(fd, max_bytes, start)
    end = start + len(raw)
    if start > 0:  # the first bytes are the end of a line or redraw cut in the middle
        cuts = [i for i in (raw.find(b"\n"), raw.find(b"\r")) if i >= 0]
        raw = raw[min(cuts) + 1 :] if cuts else b""
    return raw, end, False


def _close(fd: int) -> None:
    # A descriptor given up by the pool: a failed close must not fail a read that succeeded.
    with contextlib.suppress(OSError):
        os.close(fd)


class _Descriptors:
    """Descriptors of logs kept open between their reads, in this process.

    A log read at every query (a job's growing log) then costs its ``stat`` and one
    ``pread``, not also an ``open``, ``fstat`` and ``close`` (benchmarks/logtail.py). A
    kept descriptor is used only for the file a ``stat`` of its path just found (same
    device and inode: the path was not replaced since; an open file's inode number is not
    given to another file). At most :data:`KEPT_LOGS` are kept, the least recently read
    closed first, and none that was not read for :data:`KEPT_QUIET_SECONDS`: they are
    closed at the next look at any log, or by a timer when nothing looks (a one-shot
    status, a process that stopped querying), so a quiet, finished or deleted log keeps no
    file system busy and no disk space in use for long. A forked child closes what it
    inherited.

    Whoever takes an entry out of :attr:`_kept` (one atomic ``pop``, or the ``setdefault``
    that puts one in) owns its descriptor: no two readers ever hold the same one, and a
    descriptor is closed only by its owner, so its number cannot be reused by another
    ``open`` while a reader still reads it. The path of every read takes no lock.
    """

    def __init__(self, limit: int, quiet_seconds: float):
        self.limit = limit
        self.quiet_ns = int(quiet_seconds * 1e9)
        #: path -> (fd, st_dev, st_ino, monotonic ns of its last read), oldest read first
        #: (a dict keeps insertion order; a read takes its entry out and puts it back).
        self._kept: dict[str, tuple[int, int, int, int]] = {}
        self._lock = threading.Lock()  # one sweep at a time, and the timer's arming
        self._next_sweep = 0
        self._timer: threading.Timer | None = None

    def open(self, path: str, st: os.stat_result) -> tuple[int, int, int, int, bool]:
        """(fd, size, st_dev, st_ino, kept) of the file that ``st``, a ``stat`` of ``path``
        just taken, describes: its kept descriptor (``kept`` true), else a new one
        (:func:`open_regular`, whose ``fstat`` then says the rest). The caller owns ``fd``
        until it gives it back to :meth:`keep` or closes it."""
        kept = self._kept.pop(path, None)
        if kept is not None:
            fd, dev, ino, _read_at = kept
            if dev == st.st_dev and ino == st.st_ino:
                return fd, st.st_size, dev, ino, True
            _close(fd)  # replaced (rotated, rewritten by rename): another file
        fd, opened = open_regular(path, st.st_mode)
        return fd, opened.st_size, opened.st_dev, opened.st_ino, False

    def keep(self, path: str, fd: int, dev: int, ino: int) -> None:
        """Keep ``fd``, just read, for the next read of ``path``."""
        entry = (fd, dev, ino, time.monotonic_ns())
        if self._kept.setdefault(path, entry) is not entry:
            _close(fd)  # another reader kept one for the path meanwhile: one is enough
            return
        if len(self._kept) > self.limit:
            self.sweep()
        if self._timer is None:
            self._arm()

    def discard(self, path: str) -> None:
        """Close ``path``'s kept descriptor, if any (its log is gone)."""
        kept = self._kept.pop(path, None)
        if kept is not None:
            _close(kept[0])

    def sweep(self, *, now: bool = False) -> None:
        """Close the descriptors over the limit or not read for :attr:`quiet_ns`: at most
        once a second (a look at a log asks for it every time), unless ``now``."""
        if not self._kept:
            return
        at = time.monotonic_ns()
        if not now and at < self._next_sweep and len(self._kept) <= self.limit:
            return
        closing: list[int] = []
        with self._lock:
            self._next_sweep = at + 1_000_000_000
            try:
                listed = list(self._kept.items())
            except RuntimeError:  # changed by a finalizer that ran during the copy
                return
            for path, (_fd, _dev, _ino, read_at) in listed:
                if len(self._kept) <= self.limit and at - read_at <= self.quiet_ns:
                    break  # the rest were read later
                taken = self._kept.pop(path, None)  # what is there now: its fd is ours
                if taken is not None:
                    closing.append(taken[0])
        for fd in closing:
            _close(fd)

    def _arm(self) -> None:
        """Start the timer that sweeps when no log is looked at, unless it runs."""
        with self._lock:
            if self._timer is not None or not self._kept:
                return
            self._timer = threading.Timer(self.quiet_ns / 1e9 + 1.0, self._on_timer)
            self._timer.daemon = True
            self._timer.name = "progresskit-kept-logs"
        self._timer.start()

    def _on_timer(self) -> None:
        with self._lock:
            self._timer = None
        self.sweep(now=True)
        self._arm()

    def after_fork_in_child(self) -> None:
        """Forget, and close, what the parent kept: a child holds no log open."""
        self._lock = threading.Lock()
        self._timer = None
        kept, self._kept = self._kept, {}
        for fd, _dev, _ino, _read_at in kept.values():
            _close(fd)


#: At most this many log descriptors are kept open between reads in a process.
KEPT_LOGS = 64
#: A log descriptor kept open is closed when its log was not read for this long.
KEPT_QUIET_SECONDS = 10.0
_KEPT = _Descriptors(KEPT_LOGS, KEPT_QUIET_SECONDS)
os.register_at_fork(after_in_child=_KEPT.after_fork_in_child)


def _resume_at(data: bytes, end: int) -> tuple[int, bytes] | None:
    """Where a read of a log that ended at byte ``end`` with ``data`` resumes: ``end`` and
    ``data``'s newest redraw, from its ``\\r`` or ``\\n`` (:func:`read_tail`); ``None``
    when ``data`` holds no ``\\r`` or ``\\n``."""
    cut = max(data.rfind(b"\n"), data.rfind(b"\r"))
    return None if cut < 0 else (end, data[cut:])


def _still_holds(path: str, resume: tuple[int, bytes] | None) -> bool:
    """Whether ``path`` still holds, before byte ``offset``, the bytes ``seen`` that a read
    ending there ended with (``resume``, :func:`_resume_at`)."""
    if resume is None:
        return False
    offset, seen = resume
    fd, _st = open_regular(path)
    try:
        return os.pread(fd, len(seen), offset - len(seen)) == seen
    finally:
        os.close(fd)


def log_globs(config: Mapping[str, Any], named: Sequence[str] = ()) -> tuple[str, ...] | None:
    """The globs naming a run's logs: ``named`` (the logs its tracker names) and the config's
    ``log_files``. ``None`` when the ``log_files`` key is not declared: the log tracker
    plugin is not loaded (``-p no:log``), so logs are not read for progress."""
    configured = config.get("log_files")
    if configured is None:
        return None
    return tuple(dict.fromkeys((*named, *configured)))


def log_tail_for(work_dir: str, globs: Sequence[str], config: Mapping[str, Any]) -> LogTail:
    """The :class:`LogTail` of the logs ``globs`` names in ``work_dir``, read as the run's
    config says (``log_tail_kb``, ``log_unit_divisor``)."""
    return LogTail(
        work_dir,
        globs,
        int(config.get("log_tail_kb", DEFAULT_TAIL_KB)),
        int(config.get("log_unit_divisor", DEFAULT_UNIT_DIVISOR)),
    )


@attrs.define
class _Read:
    key: StatKey
    #: What the log says; ``None`` while :attr:`plain` says it (:meth:`full` builds it).
    reading: LogReading | None
    #: Bytes of the log read so far, and the redraw they end in (from its ``\\r``/``\\n``):
    #: where the next read resumes. ``None``: the next read is a full tail read.
    resume: tuple[int, bytes] | None
    #: Whether the tail held no marker (:func:`settled`): the next redraws alone then say
    #: what the log says (:func:`parse_appended`).
    settled: bool
    #: The end of what was read (the log's size then).
    end: int = 0
    #: When the tail held no bar, what the search before it found: the older reading and
    #: the offset of the chunk that held it, or ``None`` (nothing within the bound).
    older: tuple[int, LogReading] | None = None
    #: Whether :attr:`older` is a search's answer (else no search was made).
    searched: bool = False
    #: The values of the plain tqdm bar that is the whole reading, when the last read was
    #: of appended bytes whose newest redraw is one (:func:`plain_appended`): the answer is
    #: built from them, and the reading only when something asks for it.
    plain: TqdmValues | None = None
    #: When (``time.time_ns()``) the read began: a log whose stat key is unchanged is read
    #: again when it was written within the racy window of that (:func:`is_racy`).
    read_at: int = 0

    def full(self) -> LogReading:
        """What the log says, as a :class:`LogReading`."""
        if self.reading is None:
            assert self.plain is not None  # one of the two always says it
            self.reading = LogReading(Bar("tqdm", *self.plain))
        return self.reading


class LogTail:
    """The console logs of one run, each read (its tail) only when its stat key changed,
    and then, while it only grows, only from where the last read stopped."""

    def __init__(
        self,
        work_dir: str,
        globs: Sequence[str],
        tail_kb: int = DEFAULT_TAIL_KB,
        unit_divisor: int = DEFAULT_UNIT_DIVISOR,
    ):
        self.work_dir = work_dir
        self.globs = tuple(globs)
        self.tail_bytes = tail_kb * 1024
        #: The job's tqdm ``unit_divisor``: what a ``k`` in a scaled count stands for.
        self.unit_divisor = unit_divisor
        self._dir_key: StatKey | None = None
        self._dir_entries: dict[str, bool] = {}
        self._reads: dict[str, _Read] = {}
        self._listing: Mapping[str, bool] | None = None
        self._names: list[str] = []
        #: (name, path) of each of :attr:`_names`: joined once per listing, not per query.
        self._paths: list[tuple[str, str]] = []
        #: Problems met reading a log (unreadable file), for the answer's warnings.
        self.problems: list[str] = []

    def names(self, entries: Mapping[str, bool]) -> list[str]:
        """The log files among ``entries`` (the work dir's listing), in name order."""
        if entries is not self._listing:  # a tracker's listing is one object until it changes
            self._listing = entries
            self._names = sorted(
                name
                for name, is_dir in entries.items()
                if not is_dir and any(fnmatch.fnmatchcase(name, g) for g in self.globs)
            )
            paths = [(name, os.path.join(self.work_dir, name)) for name in self._names]
            for name, gone in set(self._paths).difference(paths):
                self._reads.pop(name, None)
                _KEPT.discard(gone)  # deleted or renamed away: no descriptor holds it
            self._paths = paths
        return self._names

    def entries(self) -> Mapping[str, bool]:
        """:attr:`work_dir`'s listing, made again only when its stat key changed: for logs
        read from a directory that is not their tracker's work dir (its :meth:`log_dir`)."""
        key = stat_key(self.work_dir)
        if key is None:
            self._dir_key, self._dir_entries = None, {}
        elif key != self._dir_key:
            read_at = time.time_ns()
            try:
                self._dir_entries = list_entries(self.work_dir)
            except OSError:
                self._dir_entries = {}
            # A listing made while the directory changes is made again at the next call.
            self._dir_key = None if is_racy((key,), read_at) else key
        return self._dir_entries

    def fingerprint(self, entries: Mapping[str, bool]) -> tuple[StatKey | None, ...]:
        """Stat keys of the logs: what :meth:`newest` depends on."""
        self.names(entries)
        _KEPT.sweep()
        return tuple(stat_key(path) for _name, path in self._paths)

    def stats(self, entries: Mapping[str, bool]) -> Checked:
        """The stat keys (:meth:`fingerprint`) and stats of the logs, from one ``stat`` of
        each: for a caller that checks them for changes, then passes them to :meth:`newest`
        to be read under."""
        self.names(entries)
        _KEPT.sweep()
        keys: list[StatKey | None] = []
        stats: list[os.stat_result | None] = []
        for _name, path in self._paths:
            try:
                st = os.stat(path)
            except OSError:
                keys.append(None)
                stats.append(None)
                continue
            keys.append(key_of(st))
            stats.append(st)
        return keys, stats

    def newest(
        self,
        entries: Mapping[str, bool],
        known_keys: Mapping[str, StatKey | None] | None = None,
        checked: Checked | None = None,
    ) -> tuple[str, LogReading, float] | None:
        """(log name, reading, mtime) of the most recently written log that shows a bar or
        ends in a traceback; ``None`` when none does. One ``stat`` per log, none for a log
        in ``known_keys`` (stat keys just taken by the caller) nor with ``checked`` (what
        :meth:`stats` just returned: the one ``stat`` of a log then also serves its read's
        refusal of a FIFO or a device); a log is read again only when it changed."""
        newest = self._newest(entries, known_keys, checked)
        if newest is None:
            return None
        name, read, mtime = newest
        return name, read.full(), mtime

    def newest_progress(
        self, runner_type: str, entries: Mapping[str, bool], checked: Checked
    ) -> ProgressInfo | None:
        """:func:`progress_from_log` of what :meth:`newest` finds (``None``: nothing), built
        straight from the bar's values when the log's last read was of appended redraws, the
        newest a plain tqdm bar (:func:`plain_appended`): no reading is built for it."""
        newest = self._newest(entries, None, checked)
        if newest is None:
            return None
        name, read, mtime = newest
        if read.plain is not None:
            return _plain_progress(runner_type, read.plain, name, mtime)
        return progress_from_log(runner_type, read.full(), name, mtime)

    def _newest(
        self,
        entries: Mapping[str, bool],
        known_keys: Mapping[str, StatKey | None] | None,
        checked: Checked | None,
    ) -> tuple[str, _Read, float] | None:
        """:meth:`newest`, with the log's read state instead of its reading."""
        if self.problems:
            self.problems = []
        newest: tuple[int, str, _Read] | None = None
        self.names(entries)
        for at, (name, path) in enumerate(self._paths):
            st: os.stat_result | None = None
            if checked is not None:
                key, st = checked[0][at], checked[1][at]
            elif known_keys and name in known_keys:
                key = known_keys[name]
            else:
                key = stat_key(path)
            if key is None:
                self._reads.pop(name, None)
                _KEPT.discard(path)
                continue
            known = self._reads.get(name)
            if known is None or known.key != key or is_racy((key,), known.read_at):
                try:
                    known = self._read(path, key, known, st)
                except OSError as exc:
                    self.problems.append(f"{name}: cannot read log: {exc.strerror or exc}")
                    continue
                self._reads[name] = known
            said = None if known.plain is not None else known.full()  # plain: a bar
            shows = said is None or said.bar is not None or said.failure is not None
            # The newest by write time, then name (names are in order, and never equal).
            if shows and (newest is None or key[0] >= newest[0]):
                newest = (key[0], name, known)
        if newest is None:
            return None
        mtime_ns, name, read = newest
        return name, read, mtime_ns / 1e9

    def _read(
        self, path: str, key: StatKey, known: _Read | None, st: os.stat_result | None = None
    ) -> _Read:
        """The log read again: only its new bytes while it grows and its tail was settled,
        else its whole tail (replaced by another file: a new inode; an unchanged stat key
        of a log written within the racy window: nothing of the last read is trusted).
        ``st``: the ``stat`` of it that gave ``key``, when the caller took one (its
        descriptor is then kept open for the next read, :class:`_Descriptors`)."""
        read_at = time.time_ns()
        if known is not None and known.key == key:
            known = None
        resume = None
        if known is not None and known.settled and known.key[2] == key[2]:
            resume = known.resume
        divisor = self.unit_divisor
        data, end, appended = self._tail(path, resume, st)
        if appended and known is not None:  # the same read, gone on: in place when it can
            plain = plain_appended(data, divisor)
            reading = None if plain is not None else parse_appended(data, divisor)
            if plain is not None or reading is not None:
                known.key, known.reading, known.plain = key, reading, plain
                known.resume, known.end, known.read_at = _resume_at(data, end), end, read_at
                known.older, known.searched = None, False
                return known
        if appended:  # the new bytes alone cannot tell: read the whole tail
            data, end, _ = self._tail(path, None, st)
        whole = parse_log(data, divisor)
        read = _Read(key, whole, _resume_at(data, end), settled(data), end, read_at=read_at)
        start = end - len(data)
        if whole.bar is None and start > 0:
            self._look_back(path, read, start, known)
        return read

    def _tail(
        self, path: str, resume: tuple[int, bytes] | None, st: os.stat_result | None
    ) -> tuple[bytes, int, bool]:
        """:func:`read_tail` of the log ``path``, through its kept descriptor when the
        caller's ``stat`` of it (``st``) says it is still the file it was opened on."""
        if st is None:
            return read_tail(path, self.tail_bytes, resume)
        while True:
            fd, size, dev, ino, kept = _KEPT.open(path, st)
            try:
                read = _tail_of(fd, size, self.tail_bytes, resume)
            except OSError:
                _close(fd)
                if kept:
                    # A kept descriptor gone stale (NFS: the log recreated by another
                    # machine with the same inode number): the next open is a new one.
                    continue
                raise
            except BaseException:
                _close(fd)
                raise
            _KEPT.keep(path, fd, dev, ino)
            return read

    def _look_back(self, path: str, read: _Read, start: int, known: _Read | None) -> None:
        """Search the log before ``start`` (where ``read``'s tail begins, at a redraw's
        start) for the newest bar, down to :data:`LOOKBACK_TAILS` tails before its end,
        and complete ``read`` with it; only what ``known`` (the previous read of the same,
        grown file) did not search is read."""
        limit = max(0, read.end - LOOKBACK_TAILS * self.tail_bytes)
        older: tuple[int, LogReading] | None = None
        stop = limit
        grown = (
            known is not None
            and known.key[2] == read.key[2]
            and known.end <= read.end
            and _still_holds(path, known.resume)  # not truncated and written again since
        )
        if known is not None and grown and (known.searched or known.full().bar is not None):
            # That read saw its bar, or searched up to its end: only the bytes after are new.
            stop = max(limit, min(known.end, start))
            if known.searched:
                older = known.older if known.older and known.older[0] >= limit else None
            elif known.end - self.tail_bytes >= limit:  # its tail held the bar
                older = (known.end - self.tail_bytes, known.full())
        found = self._search(path, stop, start)
        read.older = found or older
        read.searched = True
        if read.older is not None:
            tail, bars = read.full(), read.older[1]
            read.reading = attrs.evolve(
                bars, failure=tail.failure, failure_type=tail.failure_type
            )

    def _search(self, path: str, stop: int, end: int) -> tuple[int, LogReading] | None:
        """(chunk offset, reading) of the newest bar in the log's bytes ``stop`` to ``end``
        (``end`` at a redraw's start), read backwards one tail at a time; ``None`` when
        there is none. Each chunk is cut after its first ``\\r``/``\\n`` (unless it starts
        at ``stop``) and the next one ends there, so no redraw is read cut in two."""
        if end <= stop:
            return None
        fd, _st = open_regular(path)
        try:
            while end > stop:
                low = max(stop, end - self.tail_bytes)
                chunk = os.pread(fd, end - low, low)
                if low > stop:
                    cuts = [i for i in (chunk.find(b"\n"), chunk.find(b"\r")) if i >= 0]
                    if not cuts or min(cuts) + 1 == len(chunk):
                        end = low  # the end of one line longer than a tail: not a bar
                        continue
                    chunk = chunk[min(cuts) + 1 :]
                if may_hold_bar(chunk):  # most chunks of a flood of lines are ruled out
                    reading = parse_log(chunk, self.unit_divisor)
                    if reading.bar is not None:
                        return end - len(chunk), reading
                end -= len(chunk)
        finally:
            os.close(fd)
        return None


def _percentage(reading: LogReading) -> float | None:
    bar = reading.bar
    fraction = None if bar is None else bar.fraction
    if reading.epochs_total and reading.epochs_done is not None and bar is not None:
        # Per-epoch bars (Keras, Lightning): the epochs done plus this epoch's share.
        within = 0.0 if fraction is None or bar.done else fraction
        return min(100.0, 100.0 * (reading.epochs_done + within) / reading.epochs_total)
    if reading.epochs_done is not None and not reading.epochs_total:
        return None  # Lightning's bar counts one epoch of an unknown number of epochs
    return None if fraction is None else 100.0 * fraction


def fill_from_log(progress: ProgressInfo, reading: LogReading, log_name: str) -> ProgressInfo:
    """``progress`` with the fields it leaves unknown taken from ``reading``: the answer of
    another tracker, completed by the run's log.

    The one merge rule: a field the tracker set is kept; ``None`` fields (steps, total,
    stage, the source's ETA, epochs, an error) are taken from the log, and metrics the
    tracker did not report are added. A traceback that ends the log makes the run failed
    (cancelled for ``KeyboardInterrupt``) only when the tracker reports no status itself.
    """
    return attrs.evolve(progress, **_filled(progress, reading, log_name))


def _filled(progress: ProgressInfo, reading: LogReading, log_name: str) -> dict[str, Any]:
    """The fields :func:`fill_from_log` changes, and their new values."""
    bar = reading.bar
    changes: dict[str, Any] = {}
    if bar is not None:
        _fill_bar(
            changes, progress, bar.desc, bar.n, bar.total, bar.rate, bar.remaining,
            bar.elapsed, bar.fraction, bar.metrics,
        )
    inner = reading.inner
    if inner is not None and progress.current_item is None:
        changes["current_item"] = inner.desc or "nested bar"
        if progress.items_total is None and inner.total is not None:
            changes["items_total"] = int(inner.total)
            changes["items_completed"] = None if inner.n is None else int(inner.n)
    if progress.total_epochs is None and reading.epochs_total is not None:
        changes["total_epochs"] = reading.epochs_total
    if not progress.completed_epochs and reading.epochs_done:
        changes["completed_epochs"] = reading.epochs_done
    if reading.failure is not None and progress.reported_status is None:
        cancelled = reading.failure_type == "KeyboardInterrupt"
        changes["reported_status"] = Status.CANCELLED if cancelled else Status.FAILED
        changes["source_status"] = f"traceback at the end of {log_name}"
        if progress.error_message is None:
            changes["error_message"] = f"{log_name}: {reading.failure}"
    elif reading.finished and progress.reported_status is None:
        changes["reported_status"] = Status.FINISHED
        if progress.progress_percentage is None:
            changes["progress_percentage"] = 100.0
        changes["source_status"] = f"{log_name}: training stopped at max_epochs"
    details = dict(progress.details)
    details.setdefault("log_file", log_name)
    changes["details"] = details
    return changes


def _fill_bar(
    changes: dict[str, Any],
    progress: ProgressInfo,
    desc: str,
    n: float | None,
    total: float | None,
    rate: float | None,
    remaining: float | None,
    elapsed: float | None,
    fraction: float | None,
    metrics: dict[str, float],
) -> None:
    """The fields :func:`fill_from_log` takes from the run's bar (its :class:`Bar` fields
    and :attr:`Bar.fraction`) into ``changes``: one rule for a bar and for the values of
    :func:`plain_appended`."""
    # The bar's n and total are one counter: its total is the run's only with its count
    # (Lightning's and Keras's bars count one epoch's steps, which a tracker that knows
    # the global step must not get as its run's total).
    if progress.completed_steps is None and n is not None:
        changes["completed_steps"] = int(n)
        if progress.total_steps is None and total is not None:
            changes["total_steps"] = int(total)
    if progress.source_eta_seconds is None and remaining is not None:
        changes["source_eta_seconds"] = remaining
    if progress.current_stage is None and desc:
        changes["current_stage"] = desc
    if progress.stage_progress_percentage is None and fraction is not None:
        changes["stage_progress_percentage"] = 100.0 * fraction
    if progress.elapsed_seconds is None and elapsed is not None:
        changes["elapsed_seconds"] = elapsed
    merged = {**metrics, **progress.metrics}
    if rate is not None and "rate" not in progress.metrics:
        merged["rate"] = rate  # the tool's own items per second
    changes["metrics"] = merged


def _warnings(percentage: float | None, epochs_done: int | None, log_name: str) -> tuple[str, ...]:
    """Why the answer of a run known by its log alone has no overall percentage."""
    if percentage is not None:
        return ()
    if epochs_done is not None:
        return (
            f"{log_name}: the bar counts the steps of one epoch and the number of epochs is "
            "not shown; overall progress unknown",
        )
    return (f"{log_name}: the bar shows no total; overall progress unknown",)


def progress_from_log(
    runner_type: str, reading: LogReading, log_name: str, mtime: float
) -> ProgressInfo:
    """The whole answer of a run known by its log alone: :func:`fill_from_log` over an
    empty answer, with the overall percentage and the log's write time as the heartbeat."""
    percentage = _percentage(reading)
    # One construction, not an empty answer then a filled copy, and one that skips the
    # converters: this runs on every query of a growing log (benchmarks/logtail.py), and
    # every value here is already of its field's type (floats from the parser, fresh
    # dicts, a tuple of str); the validators still run.
    fields: dict[str, Any] = {"completed_epochs": None, "progress_percentage": percentage}
    fields.update(_filled(_EMPTY, reading, log_name))
    return prechecked(
        runner_type=runner_type,
        last_update_time=mtime,
        warnings=_warnings(percentage, reading.epochs_done, log_name),
        **fields,
    )


def _plain_progress(
    runner_type: str, plain: TqdmValues, log_name: str, mtime: float
) -> ProgressInfo:
    """:func:`progress_from_log` of ``LogReading(Bar("tqdm", *plain))`` (a plain tqdm bar,
    no epochs, nested bar or traceback), built from the values without those objects: what
    a query of a log growing by tqdm redraws costs (benchmarks/logtail.py)."""
    desc, n, total, rate, remaining, elapsed, shown, metrics = plain
    fraction = fraction_of(n, total, shown)
    percentage = None if fraction is None else 100.0 * fraction  # _percentage, no epochs
    fields: dict[str, Any] = {"completed_epochs": None, "progress_percentage": percentage}
    _fill_bar(fields, _EMPTY, desc, n, total, rate, remaining, elapsed, fraction, metrics)
    fields["details"] = {"log_file": log_name}  # _filled's, over _EMPTY's empty details
    return prechecked(
        runner_type=runner_type,
        last_update_time=mtime,
        warnings=_warnings(percentage, None, log_name),
        **fields,
    )


#: What a tracker that knows nothing answers: every field the log may fill is unknown (not
#: seed 001's 0% and 0 epochs).
_EMPTY = ProgressInfo(completed_epochs=None, progress_percentage=None)
