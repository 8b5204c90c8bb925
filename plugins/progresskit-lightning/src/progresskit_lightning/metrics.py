"""``metrics.csv`` of Lightning's CSVLogger, read incrementally and so that a torn read
never shows.

CSVLogger appends rows with ``open(..., "a")`` after every logging call, and when a row
brings a new column it rewrites the whole file in place with ``open(..., "w")``
(``_ExperimentWriter._rewrite_with_new_header`` in ``lightning/fabric/loggers/csv_logs.py``):
truncate, then write. A reader can therefore meet an empty file, a header alone, a row cut
short, or fewer rows than it saw before. Only complete lines count; a read that looks torn
(fewer rows than the last good read, a row with the wrong number of cells, no complete
header) is made once more, and if it is still torn the last good summary is kept with a
warning: the next query sees the rewritten file.

What is kept is a :class:`Summary` (the newest value of each column, the position, what the
first epoch says), not the rows: memory does not grow with the run. While the file only
grows under the same header, only the bytes appended since the last read are parsed.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Iterator, Mapping
from typing import BinaryIO

import attrs

from progresskit import StatKey, stat_key

#: Bytes before the end of the last read that must still be there for the next read to go
#: on from it (else the file was rewritten: read it whole).
_ANCHOR = 64


def _int(text: str) -> int | None:
    value = _float(text)
    if value is None or value < 0 or value != int(value):
        return None
    return int(value)


def _float(text: str) -> float | None:
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


@attrs.frozen
class Summary:
    """What the complete rows of ``metrics.csv`` say, in the order they were logged."""

    header: tuple[str, ...] = ()
    rows: int = 0
    #: ``epoch`` and ``step`` of the newest row that has them.
    last_epoch: int | None = None
    last_step: int | None = None
    #: The newest finite value of every column but ``epoch`` and ``step`` (a row holds
    #: only what its logging call logged; the other cells are empty).
    latest: Mapping[str, float] = attrs.field(factory=dict)
    #: The epoch of the first row, and the last step logged in it while no later epoch
    #: had begun.
    first_epoch: int | None = None
    first_epoch_last_step: int | None = None
    later_epoch_seen: bool = False
    #: The newest epoch a row of which holds an ``*_epoch`` value: Lightning logs the
    #: epoch aggregate of an ``on_step=True, on_epoch=True`` value when the epoch ends.
    closed_epoch: int | None = None

    def epoch_closed(self, epoch: int) -> bool:
        return self.closed_epoch is not None and self.closed_epoch >= epoch

    def steps_per_epoch(self) -> int | None:
        """Steps of one epoch: the last step of the first epoch, plus one, once a later
        epoch began, when the run began at epoch 0 (not resumed mid-way)."""
        if self.first_epoch != 0 or not self.later_epoch_seen:
            return None
        return None if self.first_epoch_last_step is None else self.first_epoch_last_step + 1

    def with_rows(self, rows: Iterable[list[str]], where: str, first_line: int) -> Summary:
        """This summary followed by ``rows`` (cells in header order); :class:`TornRead`
        for a row whose number of cells is not the header's."""
        header = self.header
        closing = [i for i, c in enumerate(header) if c.endswith("_epoch")]
        values = [(i, c) for i, c in enumerate(header) if c not in ("epoch", "step")]
        epoch_at = header.index("epoch") if "epoch" in header else None
        step_at = header.index("step")
        latest = dict(self.latest)
        count, last_epoch, last_step = self.rows, self.last_epoch, self.last_step
        first, first_last, later, closed = (
            self.first_epoch, self.first_epoch_last_step, self.later_epoch_seen,
            self.closed_epoch,
        )
        for cells in rows:
            if len(cells) != len(header):
                raise TornRead(f"{where}: line {first_line + count - self.rows} has "
                               f"{len(cells)} cells, the header {len(header)}")
            count += 1
            epoch = None if epoch_at is None else _int(cells[epoch_at])
            step = _int(cells[step_at])
            if step is not None:
                last_step = step
            if epoch is not None:
                last_epoch = epoch
                if first is None:
                    first = epoch
                if epoch != first:
                    later = True
                elif not later and step is not None:
                    first_last = step
                if any(cells[i] for i in closing):
                    closed = epoch if closed is None else max(closed, epoch)
            for i, column in values:
                value = _float(cells[i])
                if value is not None:
                    latest[column] = value
        return attrs.evolve(
            self, rows=count, last_epoch=last_epoch, last_step=last_step,
            latest={c: latest[c] for _i, c in values if c in latest}, first_epoch=first,
            first_epoch_last_step=first_last, later_epoch_seen=later, closed_epoch=closed,
        )


class TornRead(ValueError):
    """A read that caught the file in the middle of a rewrite."""


def _complete_lines(lines: Iterable[bytes], counted: list[int]) -> Iterator[str]:
    """The lines that end in a newline, decoded; their bytes added up in ``counted[0]``."""
    for line in lines:
        if not line.endswith(b"\n"):
            return  # being appended: counted once its newline is written
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise TornRead(f"not UTF-8 text ({exc.reason})") from None
        counted[0] += len(line)
        yield text


@attrs.define
class _Position:
    """Where the last good read ended, to go on from there."""

    inode: int
    header_line: bytes
    offset: int
    anchor: bytes


@attrs.define
class MetricsFile:
    """One ``metrics.csv``, read again only when its stat key changed, and then only from
    where the last read stopped while the file just grew."""

    path: str
    where: str
    #: The last good summary and the stat key it was read under.
    good: Summary | None = None
    key: StatKey | None = None
    #: Why the last read was not used (the file was torn twice, or unreadable).
    problem: str | None = None
    _position: _Position | None = None
    #: Reads that went on from the last one, and whole reads (for tests and benchmarks).
    appended_reads: int = 0
    full_reads: int = 0

    def read(self) -> Summary | None:
        """The newest complete summary; the last good one when the file is being rewritten."""
        key = stat_key(self.path)
        if key is None:
            self.good, self.key, self.problem, self._position = None, None, None, None
            return None
        if key == self.key:
            return self.good
        if self.key is not None and key[2] != self.key[2]:
            self.good = self._position = None  # another file (a new inode): start afresh
        problem = None
        for _attempt in range(2):  # a rewrite takes microseconds: one more read catches its end
            key = stat_key(self.path) or key
            try:
                summary = self._read_once(key)
            except TornRead as exc:
                problem = str(exc) if str(exc).startswith(self.where) else (
                    f"{self.where}: {exc}")
                self._position = None
                continue
            except OSError as exc:
                problem = f"{self.where}: cannot read: {exc.strerror or exc}"
                break
            self.good, self.key, self.problem = summary, key, None
            return summary
        kept = "" if self.good is None else (
            f"; kept the last complete read ({self.good.rows} rows)"
        )
        self.problem = f"{problem} (being rewritten by Lightning?){kept}"
        return self.good

    def _read_once(self, key: StatKey) -> Summary:
        with open(self.path, "rb") as fh:
            grown = self._appended(fh, key)
            if grown is not None:
                self.appended_reads += 1
                return grown
            self.full_reads += 1
            return self._whole(fh, key)

    def _appended(self, fh: BinaryIO, key: StatKey) -> Summary | None:
        """The summary after the rows appended since the last read, when the file only
        grew under the same header; ``None`` when it must be read whole."""
        at, good = self._position, self.good
        if at is None or good is None or at.inode != key[2] or key[1] < at.offset:
            return None
        if fh.read(len(at.header_line)) != at.header_line:
            return None  # rewritten with a new header
        fh.seek(at.offset - len(at.anchor))
        if fh.read(len(at.anchor)) != at.anchor:
            return None  # rewritten in place: the bytes before the end moved
        counted = [0]
        rows = csv.reader(_complete_lines(fh, counted))
        summary = good.with_rows(rows, self.where, good.rows + 2)
        self._remember(at.header_line, at.offset + counted[0], fh, key)
        return summary

    def _whole(self, fh: BinaryIO, key: StatKey) -> Summary:
        fh.seek(0)
        header_line = fh.readline()
        if not header_line:
            if self.good is None:
                return Summary()  # created, nothing logged yet
            raise TornRead(f"{self.where}: empty, {self.good.rows} rows before")
        if not header_line.endswith(b"\n"):
            raise TornRead(f"{self.where}: no complete header line ({len(header_line)} bytes)")
        counted = [0]
        [header] = list(csv.reader(_complete_lines([header_line], counted))) or [[]]
        if "step" not in header:
            raise TornRead(f"{self.where}: the header {header!r} has no 'step' column")
        rows = csv.reader(_complete_lines(fh, counted))
        summary = Summary(tuple(header)).with_rows(rows, self.where, 2)
        if self.good is not None and summary.rows < self.good.rows:
            raise TornRead(f"{self.where}: {summary.rows} complete rows, {self.good.rows} before")
        self._remember(header_line, counted[0], fh, key)
        return summary

    def _remember(self, header_line: bytes, offset: int, fh: BinaryIO, key: StatKey) -> None:
        start = max(len(header_line), offset - _ANCHOR)
        fh.seek(start)
        anchor = fh.read(offset - start)
        self._position = _Position(key[2], header_line, offset, anchor)
