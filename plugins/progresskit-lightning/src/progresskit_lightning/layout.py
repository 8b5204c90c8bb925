"""Where Lightning puts a run's files, and what their names say (no file is opened here).

Lightning's loggers write ``<save_dir>/<name>/version_<N>/`` (``name`` defaults to
``lightning_logs``; ``N`` is the next free number, so a resumed or relaunched job is a new
version of the same experiment): ``hparams.yaml`` always, ``metrics.csv`` for
``CSVLogger``, ``events.out.tfevents.*`` for ``TensorBoardLogger``, and ModelCheckpoint's
``checkpoints/epoch=E-step=S.ckpt`` (plus any ``key=value`` its ``filename`` names).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

import attrs

HPARAMS = "hparams.yaml"
METRICS = "metrics.csv"
CHECKPOINTS = "checkpoints"
#: Written into the version directory by LightningCLI's SaveConfigCallback.
CLI_CONFIG = "config.yaml"
DEFAULT_LOGGER_NAME = "lightning_logs"
EVENTS_PREFIX = "events.out.tfevents."
#: Entries a run directory may hold that say nothing about what it is.
_NEUTRAL = frozenset({"progresskit.yaml"})

VERSION_DIR = re.compile(r"version_(\d+)\Z")
#: ``key=value`` parts of a checkpoint name (ModelCheckpoint's ``{epoch}-{val_loss:.2f}``).
_NAMED_VALUE = re.compile(r"([A-Za-z_][\w/.]*?)=(-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)")


def is_version_dir(entries: Mapping[str, bool]) -> bool:
    """A logger's ``version_N/``: ``hparams.yaml`` next to a CSV or TensorBoard log or
    checkpoints. ``hparams.yaml`` alone is too common a name to claim on."""
    if entries.get(HPARAMS) is not False:
        return False
    return (
        entries.get(METRICS) is False
        or entries.get(CHECKPOINTS) is True
        or any(not d and n.startswith(EVENTS_PREFIX) for n, d in entries.items())
    )


def version_dirs(entries: Mapping[str, bool]) -> list[tuple[int, str]]:
    """``(N, name)`` of the ``version_N/`` directories among ``entries``, oldest first."""
    found = []
    for name, is_dir in entries.items():
        match = VERSION_DIR.match(name)
        if is_dir and match:
            found.append((int(match.group(1)), name))
    return sorted(found)


def is_experiment_dir(entries: Mapping[str, bool]) -> bool:
    """A logger's ``<name>/`` directory: nothing but ``version_N/`` directories (hidden
    files and ``progresskit.yaml`` aside), at least one."""
    seen = False
    for name, is_dir in entries.items():
        if name.startswith(".") or name in _NEUTRAL:
            continue
        if not (is_dir and VERSION_DIR.match(name)):
            return False
        seen = True
    return seen


def claims(entries: Mapping[str, bool]) -> bool:
    """Whether a listing is a Lightning run: a version directory, an experiment directory
    of versions, or a directory holding ``lightning_logs/`` (Lightning's default
    ``default_root_dir`` layout, where a redirected console log usually sits too)."""
    return (
        entries.get(DEFAULT_LOGGER_NAME) is True
        or is_version_dir(entries)
        or is_experiment_dir(entries)
    )


@attrs.frozen
class Checkpoint:
    """One ModelCheckpoint file, by its name."""

    name: str
    epoch: int | None
    #: The 1-based global step (``step=50`` after 50 optimizer steps).
    step: int | None
    #: Every other ``key=value`` of the name (a monitored metric).
    values: Mapping[str, float]


def parse_checkpoint(name: str) -> Checkpoint | None:
    """The checkpoint a ``*.ckpt`` name stands for; ``None`` for other files and for names
    that carry no ``key=value`` (``last.ckpt``, a copy of the newest save)."""
    if not name.endswith(".ckpt"):
        return None
    found: dict[str, float] = {}
    for key, raw in _NAMED_VALUE.findall(name[: -len(".ckpt")]):
        value = float(raw)
        if math.isfinite(value):
            found.setdefault(key, value)
    if not found:
        return None
    epoch, step = found.pop("epoch", None), found.pop("step", None)
    return Checkpoint(
        name,
        None if epoch is None else int(epoch),
        None if step is None else int(step),
        found,
    )
