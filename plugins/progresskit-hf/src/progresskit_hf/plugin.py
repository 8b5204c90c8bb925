"""The progresskit hooks of the Hugging Face Trainer plugin (entry point ``hf``)."""

from __future__ import annotations

from progresskit import Target, TrackerSpec
from progresskit_hf.tracker import CHECKPOINT_DIR, STATE_FILE, HFTrainerTracker


def _claims(target: Target) -> bool:
    return target.has_file(STATE_FILE) or any(
        is_dir and CHECKPOINT_DIR.match(name) for name, is_dir in target.entries.items()
    )


tracker = TrackerSpec(
    HFTrainerTracker,
    claim=_claims,
    expects=f"{STATE_FILE} file, or checkpoint-<step>/ directories (transformers Trainer)",
)
progresskit_detect_runner, progresskit_make_tracker, progresskit_describe_runner = tracker.hooks
