"""Directories that look like runs but that no tracker claims: reported, never dropped."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import attrs

from progresskit.model.core import RunStatus

__all__ = ["ScanResult", "Unrecognised"]


@attrs.frozen
class Unrecognised:
    """A directory a scan met that holds run-like files (a log matching a tracker's
    pattern, ``config.json``/``config.yaml``, a lease, checkpoints) but that no loaded
    tracker claims: the scan's fail-fast diagnostic, kept as an entry (docs/cli.md)."""

    path: str
    #: The run-like files (and ``name/`` directories) that made it look like a run.
    files: tuple[str, ...]
    #: What each loaded tracker plugin expects: ``"trainer: epoch_0/ directory ..."``.
    expects: tuple[str, ...]
    #: Why the scan did not go in, when that is the story (a symlink loop), not the files.
    problem: str | None = None

    @property
    def reason(self) -> str:
        """One line for tables: what it holds and that nothing claims it."""
        if self.problem is not None:
            return self.problem
        shown = ", ".join(self.files[:4]) + (", ..." if len(self.files) > 4 else "")
        return f"looks like a run ({shown}) but no installed tracker claims it"

    def document(self) -> dict[str, Any]:
        """The entry as ``progresskit status --json`` and the dashboard's API give it."""
        return {
            "path": self.path,
            "files": list(self.files),
            "reason": self.reason,
            "expects": list(self.expects),
        }


class ScanResult(list[RunStatus]):
    """A scan's answer: the runs, a list of :class:`RunStatus` as it always was, plus
    :attr:`unrecognised`, the run-like directories no tracker claims."""

    def __init__(
        self, runs: Iterable[RunStatus] = (), unrecognised: Iterable[Unrecognised] = ()
    ) -> None:
        super().__init__(runs)
        self.unrecognised: list[Unrecognised] = list(unrecognised)
