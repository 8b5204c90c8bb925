"""progresskit plugin for TensorBoard event files (``events.out.tfevents.*``)."""

from progresskit_tensorboard.tracker import RUNNER_TYPE, TensorBoardTracker

__all__ = ["RUNNER_TYPE", "TensorBoardTracker"]
