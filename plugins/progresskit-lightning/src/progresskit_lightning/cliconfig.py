"""The totals in a ``config.yaml`` that LightningCLI's SaveConfigCallback wrote.

SaveConfigCallback dumps the parsed configuration into the logger's version directory
(``lightning_logs/version_7/config.yaml``) when training starts: a first line
``# lightning.pytorch==2.x``, then ``trainer:`` with every Trainer argument, among them
``max_epochs`` (``null`` or ``-1``: no limit) and ``max_steps`` (``-1``: no limit).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
import yaml

from progresskit import StatKey, stat_key

#: More than any Trainer configuration; a larger file is not parsed.
MAX_BYTES = 4 * 1024 * 1024


@attrs.frozen
class Limits:
    """``trainer.max_epochs`` and ``trainer.max_steps``, when they set a limit."""

    max_epochs: int | None = None
    max_steps: int | None = None
    problem: str | None = None


def _limit(trainer: Mapping[str, Any], key: str) -> int | None:
    value = trainer.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        return None  # null, -1 (Lightning's "no limit"), or not a number
    return value


def parse_limits(text: str, where: str) -> Limits:
    """The limits in a config.yaml's text; a problem instead when it cannot be read."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        return Limits(problem=f"{where}: not valid YAML ({exc.__class__.__name__})")
    if not isinstance(data, Mapping):
        return Limits(problem=f"{where}: expected a mapping, got {type(data).__name__}")
    trainer = data.get("trainer")
    if not isinstance(trainer, Mapping):
        return Limits()  # a config.yaml of another tool: nothing of Lightning's in it
    return Limits(_limit(trainer, "max_epochs"), _limit(trainer, "max_steps"))


@attrs.define
class CliConfig:
    """One version's ``config.yaml``, parsed again only when its stat key changed."""

    path: str
    where: str
    key: StatKey | None = None
    limits: Limits = attrs.field(factory=Limits)

    def read(self) -> Limits:
        key = stat_key(self.path)
        if key is None:
            self.key, self.limits = None, Limits()
        elif key != self.key:
            if key[1] > MAX_BYTES:
                self.limits = Limits(problem=f"{self.where}: larger than 4 MiB; not read")
            else:
                try:
                    with open(self.path, encoding="utf-8", errors="replace") as fh:
                        self.limits = parse_limits(fh.read(), self.where)
                except OSError as exc:
                    self.limits = Limits(problem=f"{self.where}: cannot read: {exc.strerror}")
            self.key = key
        return self.limits
