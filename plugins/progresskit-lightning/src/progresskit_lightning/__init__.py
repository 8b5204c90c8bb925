"""progresskit plugin for PyTorch Lightning runs (CSVLogger and TensorBoardLogger
directories, ModelCheckpoint files, the console bar through progresskit's log reading)."""

from progresskit_lightning.tracker import RUNNER_TYPE, LightningTracker

__all__ = ["RUNNER_TYPE", "LightningTracker"]
