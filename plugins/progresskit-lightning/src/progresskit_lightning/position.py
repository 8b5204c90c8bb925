"""Where a Lightning run is and how far it goes, from its metrics, checkpoints and config.

Pure functions over what was read: no file is opened here.
"""

from __future__ import annotations

import attrs

from progresskit_lightning.cliconfig import Limits
from progresskit_lightning.layout import Checkpoint
from progresskit_lightning.metrics import Summary


@attrs.frozen
class Position:
    """Steps and epochs done, the totals when known, and whether they are reached."""

    completed_steps: int | None
    completed_epochs: int
    total_steps: int | None
    total_epochs: int | None

    @property
    def finished(self) -> bool:
        by_epochs = self.total_epochs is not None and self.completed_epochs >= self.total_epochs
        by_steps = (
            self.total_steps is not None
            and self.completed_steps is not None
            and self.completed_steps >= self.total_steps
        )
        return by_epochs or by_steps

    @property
    def percentage(self) -> float | None:
        """Steps done of the total steps, else epochs done of the total epochs; ``None``
        when neither total is known."""
        if self.finished:
            return 100.0
        if self.total_steps and self.completed_steps is not None:
            return min(100.0, 100.0 * self.completed_steps / self.total_steps)
        if self.total_epochs:
            return min(100.0, 100.0 * self.completed_epochs / self.total_epochs)
        return None


def position(
    summary: Summary | None,
    newest: Checkpoint | None,
    max_epochs: int | None,
    limits: Limits,
) -> Position:
    """The run's position. ``metrics.csv`` counts steps from 0 (its last row's ``step`` + 1
    steps are done), checkpoint names from 1 (``step=50`` after 50 steps); the newest of the
    two wins. An epoch is done once the next one began or its ``*_epoch`` values are
    logged. ``max_epochs`` (the config) wins over ``config.yaml``'s."""
    logged = None if summary is None or summary.last_step is None else summary.last_step + 1
    steps = [s for s in (logged, None if newest is None else newest.step) if s is not None]
    epoch = None if summary is None else summary.last_epoch
    if epoch is None and newest is not None:
        epoch = newest.epoch
    done_epochs = 0 if epoch is None else epoch
    if summary is not None and epoch is not None and summary.epoch_closed(epoch):
        done_epochs = epoch + 1
    total_epochs = max_epochs if max_epochs is not None else limits.max_epochs
    total_steps = limits.max_steps
    per_epoch = None if summary is None else summary.steps_per_epoch()
    if total_steps is None and per_epoch and total_epochs:
        total_steps = per_epoch * total_epochs
    if total_epochs is not None:
        done_epochs = min(done_epochs, total_epochs)
    return Position(max(steps) if steps else None, done_epochs, total_steps, total_epochs)
