"""progresskit plugin for Hugging Face ``transformers`` Trainer output directories."""

from progresskit_hf.tracker import RUNNER_TYPE, HFTrainerTracker

__all__ = ["RUNNER_TYPE", "HFTrainerTracker"]
