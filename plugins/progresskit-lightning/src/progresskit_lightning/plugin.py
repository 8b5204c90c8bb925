"""The progresskit hooks of the Lightning plugin (entry point ``lightning``)."""

from __future__ import annotations

from typing import Any

from progresskit import ConfigSchema, Target, TrackerSpec, hookimpl
from progresskit_lightning.layout import claims
from progresskit_lightning.tracker import LightningTracker


def _claims(target: Target) -> bool:
    return claims(target.entries)


tracker = TrackerSpec(
    LightningTracker,
    claim=_claims,
    expects=(
        "PyTorch Lightning: a lightning_logs/ directory, a logger directory of version_N/ "
        "directories, or a version_N/ with hparams.yaml next to metrics.csv, "
        "events.out.tfevents.* or checkpoints/"
    ),
)
progresskit_detect_runner, progresskit_make_tracker, progresskit_describe_runner = tracker.hooks


@hookimpl
def progresskit_addconfig(schema: ConfigSchema) -> None:
    schema.add(
        "max_epochs",
        (int, type(None)),
        default=None,
        help="A Lightning run's Trainer(max_epochs=...): its number of epochs, which "
        "Lightning's files do not record (LightningCLI's config.yaml aside).",
        check=_check_epochs,
    )


def _check_epochs(value: Any) -> None:
    if value is not None and (isinstance(value, bool) or value < 1):
        raise ValueError(f"expected an integer >= 1 (Trainer's max_epochs), got {value!r}")
