"""A TensorBoardLogger version's scalars, as a :class:`~progresskit_lightning.metrics.Summary`.

TensorBoardLogger writes what CSVLogger writes into ``metrics.csv`` as TensorBoard events:
each ``log_metrics`` call's scalars at the global step, Lightning's ``epoch`` among them.
They are read incrementally with progresskit-tensorboard's event file reader (its
``EventFile``: CRC-checked, bounded per call) when that distribution is installed (the
README's install command installs it); without it, a TensorBoardLogger run is read from
its checkpoints and console log alone, and :data:`AVAILABLE` is false.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from progresskit_lightning.metrics import Summary

try:  # an optional reader: another plugin distribution
    from progresskit_tensorboard.eventfile import EventFile, TagState
    from progresskit_tensorboard.tracker import MAX_BYTES_PER_CALL, merge_tags
except ImportError:  # pragma: no cover - progresskit-tensorboard not installed
    AVAILABLE = False
else:
    AVAILABLE = True

__all__ = ["AVAILABLE", "EventsReader"]

#: Tags that are not the run's metrics: the epoch (a position) and the placeholder that
#: ``log_hyperparams`` writes (``hp_metric`` = -1) until the user logs one.
_NOT_METRICS = frozenset({"epoch", "hp_metric"})


class EventsReader:
    """The event files of one version directory, each read only from where it stopped."""

    def __init__(self) -> None:
        self._files: dict[str, EventFile] = {}

    def read(self, paths: Sequence[str], problems: list[str]) -> Summary | None:
        """What the events of ``paths`` (oldest first) say so far; ``None`` before any
        scalar was written. Unreadable files and corrupt records are told in ``problems``."""
        budget = MAX_BYTES_PER_CALL
        for path in paths:
            event_file = self._files.get(path)
            if event_file is None:
                event_file = self._files[path] = EventFile(path)
            if budget <= 0:
                break  # the rest at the next query
            try:
                budget -= event_file.read(budget)
            except OSError as exc:
                problems.append(f"{path}: cannot read: {exc.strerror or exc}")
        files = [self._files[p] for p in paths if p in self._files]
        for event_file in files:
            problems.extend(event_file.warnings())
        tags = merge_tags(files)
        scalars = {t: s for t, s in tags.items() if s.is_scalar}
        if not scalars:
            return None
        steps = [f.max_step for f in files if f.max_step is not None]
        epoch = scalars.get("epoch")
        last_epoch = None
        if epoch is not None and epoch.latest is not None and math.isfinite(epoch.latest):
            last_epoch = int(epoch.latest)
        return Summary(
            header=tuple(scalars),
            rows=sum(f.events for f in files),
            last_epoch=last_epoch,
            last_step=max(steps) if steps else None,
            latest={
                t: s.latest for t, s in scalars.items()
                if t not in _NOT_METRICS and s.latest is not None
            },
            closed_epoch=_closed_epoch(scalars, epoch, last_epoch),
        )


def _closed_epoch(
    scalars: Mapping[str, TagState], epoch: TagState | None, last_epoch: int | None
) -> int | None:
    """The newest epoch whose ``*_epoch`` aggregates were logged (Lightning logs them when
    the epoch ends): the current one (``last_epoch``, the ``epoch`` tag's latest) when they
    were logged at its newest step, else the one before it."""
    if last_epoch is None or epoch is None:
        return None
    closing = [s for t, s in scalars.items() if t.endswith("_epoch")]
    if not closing:
        return None
    newest = max(s.last_step for s in closing)
    if newest >= epoch.last_step:
        return last_epoch
    return last_epoch - 1 if last_epoch > 0 else None
