"""One TensorBoard event file, read incrementally: what its events say about each tag.

The file is read from the offset where the last complete record ended, so a query reads
only what was appended since (event files are append-only: a writer never rewrites them).
A file that shrank or was replaced (another inode) is read again from its start. Only a
summary of each tag is kept, never the events, so memory does not grow with the file.
"""

from __future__ import annotations

import collections
import math
import os

import attrs

from progresskit import open_regular
from progresskit_tensorboard.proto import DecodeError, Value, decode_event
from progresskit_tensorboard.tfrecord import Corruption, split_records

__all__ = ["CHUNK_BYTES", "EventFile", "TagState", "is_better", "is_minimised"]

#: Bytes asked of the file per ``read`` call.
CHUNK_BYTES = 1 << 20
#: Problems listed one by one in the warnings; beyond that they are only counted.
MAX_LISTED_PROBLEMS = 10
#: ``(wall time, step)`` of the newest step changes kept, for the ETA.
MAX_STEP_POINTS = 256
#: Update times kept for the run's rhythm (the newest).
MAX_BEATS = 64
#: Update times closer than this are one: writers buffer events and flush them every
#: ``flush_secs`` (120 s by default in torch's and tensorboardX's ``SummaryWriter``), so
#: an event reaches the file up to that late and a faster cadence would call a healthy
#: run silent.
BEAT_SECONDS = 120.0
#: Plugins whose one-element numeric tensors are scalars (``None``: no metadata seen).
SCALAR_PLUGINS = (None, "scalars")


def is_minimised(tag: str) -> bool:
    """Whether a lower value of ``tag`` is better: tags naming a loss (``*loss*``, any
    case); every other scalar (accuracy, learning rate, ...) counts higher as better."""
    return "loss" in tag.lower()


def is_better(tag: str, value: float, best: float | None) -> bool:
    """Whether ``value`` beats ``best`` for ``tag`` (:func:`is_minimised`)."""
    return best is None or (value < best if is_minimised(tag) else value > best)


@attrs.define
class TagState:
    """What the events of one tag said so far. Mutable: folded event by event."""

    tag: str
    #: ``scalar``, ``tensor``, ``histogram``, ``image``, ``audio`` or ``other``.
    kind: str
    last_step: int
    last_wall_time: float
    count: int = 0
    latest: float | None = None
    best: float | None = None
    best_step: int | None = None
    #: NaN or infinite values seen (they are neither latest nor best).
    non_finite: int = 0

    @property
    def is_scalar(self) -> bool:
        return self.latest is not None or (self.kind == "scalar" and self.non_finite > 0)

    def add(self, step: int, wall_time: float, number: float | None) -> None:
        self.count += 1
        # Newest by the writer's clock: a resumed run's file may repeat older steps.
        newest = wall_time >= self.last_wall_time
        if newest:
            self.last_step, self.last_wall_time = step, wall_time
        if number is None:
            return
        if not math.isfinite(number):
            self.non_finite += 1
            return
        if newest or self.latest is None:
            self.latest = number
        if is_better(self.tag, number, self.best):
            self.best, self.best_step = number, step


class EventFile:
    """The incremental reader of one event file, and what it has folded so far."""

    def __init__(self, path: str):
        self.path = path
        self.name = os.path.basename(path)
        self._restart()
        #: Warnings about the file itself (replaced, unreadable) from the last read.
        self.notes: list[str] = []

    def _restart(self) -> None:
        self.inode: int | None = None
        self.size = 0
        #: Where the next record starts: the end of the last complete record read.
        self.offset = 0
        #: Bytes after :attr:`offset` present at the last read: a record not yet complete.
        self.pending = 0
        self.tags: dict[str, TagState] = {}
        self._plugins: dict[str, str | None] = {}
        self.events = 0
        self.first_wall_time: float | None = None
        self.last_wall_time: float | None = None
        #: The lowest step that carried a scalar: 0 means the writer counts steps from 0.
        self.min_scalar_step: int | None = None
        self.max_step: int | None = None
        self.steps: collections.deque[tuple[float, int]] = collections.deque(
            maxlen=MAX_STEP_POINTS
        )
        #: Wall times of step changes, at least :data:`BEAT_SECONDS` apart: the rhythm.
        self.beats: collections.deque[float] = collections.deque(maxlen=MAX_BEATS)
        self.problems: list[str] = []
        self.problem_count = 0
        self._last_corruption: Corruption | None = None

    @property
    def behind(self) -> bool:
        """Whether bytes present at the last read were left for a later one (budget)."""
        return self.offset + self.pending < self.size

    def read(self, budget: int) -> int:
        """Fold the records appended since the last read, reading at most about ``budget``
        bytes (a record is always read whole). Returns the bytes read.

        :raises OSError: when the file cannot be opened or read.
        """
        self.notes = []
        # A FIFO or a device named like an event file is refused without ever blocking.
        fd, st = open_regular(self.path)
        with open(fd, "rb") as fh:
            if self.inode is not None and (st.st_ino != self.inode or st.st_size < self.offset):
                self._restart()
                self.notes.append(
                    f"{self.name}: replaced or truncated since the last read; read again "
                    f"from its start"
                )
            first = self.inode is None
            self.inode, self.size = st.st_ino, st.st_size
            if not first and st.st_size == self.offset + self.pending:
                return 0  # nothing new; a torn tail stays torn until more arrives
            fh.seek(self.offset)
            buf, spent, want = b"", 0, CHUNK_BYTES
            while spent < budget:
                chunk = fh.read(max(want, CHUNK_BYTES))
                if not chunk:
                    break
                spent += len(chunk)
                buf = buf + chunk if buf else chunk
                split = split_records(buf, self.offset)
                for offset, data in split.records:
                    self._record(offset, data)
                for corruption in split.problems:
                    self._corruption(corruption)
                buf = buf[split.consumed :]
                self.offset += split.consumed
                want = split.needed
            self.pending = len(buf)
            self.size = max(self.size, self.offset + self.pending)
            return spent

    def _record(self, offset: int, data: bytes) -> None:
        try:
            event = decode_event(data)
        except DecodeError as exc:
            self._problem(f"record at byte {offset}: not a TensorBoard Event ({exc}); skipped")
            return
        self.events += 1
        wall = event.wall_time
        if self.first_wall_time is None or wall < self.first_wall_time:
            self.first_wall_time = wall
        if self.last_wall_time is None or wall > self.last_wall_time:
            self.last_wall_time = wall
        if not event.values:
            return  # file_version, graph, session log: no tag advanced
        step = event.step
        if self.max_step is None or step > self.max_step:
            self.max_step = step
        if not self.steps or self.steps[-1][1] != step:
            self.steps.append((wall, step))
            if not self.beats or wall - self.beats[-1] >= BEAT_SECONDS:
                self.beats.append(wall)
        for value in event.values:
            self._value(value, step, wall)

    def _value(self, value: Value, step: int, wall: float) -> None:
        tag = value.tag
        if value.plugin is not None or tag not in self._plugins:
            self._plugins[tag] = "scalars" if value.scalar_class else value.plugin
        state = self.tags.get(tag)
        if state is None:
            state = self.tags[tag] = TagState(tag, value.kind, step, wall)
        number = value.number
        if value.kind == "tensor" and self._plugins[tag] not in SCALAR_PLUGINS:
            number = None  # a text or hparams tensor that happens to hold one number
        if number is not None and (self.min_scalar_step is None or step < self.min_scalar_step):
            self.min_scalar_step = step
        state.add(step, wall, number)

    def _corruption(self, corruption: Corruption) -> None:
        last = self._last_corruption
        if (
            last is not None
            and last.offset + last.skipped == corruption.offset
            and last.reason == corruption.reason
            and self.problems
        ):
            # The same corrupt stretch, met again as more bytes arrived: one warning.
            merged = Corruption(last.offset, last.skipped + corruption.skipped, last.reason)
            self._last_corruption = merged
            if self.problem_count <= MAX_LISTED_PROBLEMS:
                self.problems[-1] = _describe(merged)
            return
        self._last_corruption = corruption
        self._problem(_describe(corruption))

    def _problem(self, text: str) -> None:
        self.problem_count += 1
        if self.problem_count <= MAX_LISTED_PROBLEMS:
            self.problems.append(text)

    def warnings(self) -> list[str]:
        """The file's problems, each naming the file and the byte where it starts."""
        out = [*self.notes, *(f"{self.name}: {p}" for p in self.problems)]
        hidden = self.problem_count - len(self.problems)
        if hidden > 0:
            out.append(f"{self.name}: {hidden} more problems not listed")
        return out


def _describe(corruption: Corruption) -> str:
    return (
        f"byte {corruption.offset}: {corruption.reason}; {corruption.skipped} bytes skipped"
    )
