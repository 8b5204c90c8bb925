"""Fake ``squeue`` / ``sacct`` / ``scancel`` executables that replay real captured output.

Each is a small script on a private ``PATH`` directory: it appends its arguments to
``calls.log`` (so a test or the benchmark counts the subprocesses) and prints a file,
which the test writes from the captures in ``data/captures`` (data/README.md).
"""

from __future__ import annotations

import json
import os
import stat
import sys
from collections.abc import Iterable
from pathlib import Path

CAPTURES = Path(__file__).parent / "data" / "captures"

_SCRIPT = """#!{python}
import sys
from pathlib import Path
here = Path(__file__).parent
with open(here / "calls.log", "a") as log:
    log.write(" ".join(["{name}", *sys.argv[1:]]) + "\\n")
answer = here / "{name}.answer"
rc = here / "{name}.rc"
text = answer.read_text() if answer.exists() else ""
sys.stdout.write("".join(l for l in text.splitlines(True) if not l.startswith("$ ")))
sys.exit(int(rc.read_text()) if rc.exists() else 0)
"""


def squeue_jobs(*captures: str) -> list[dict[str, object]]:
    """The job records of the named ``*.squeue.json`` captures, in order."""
    jobs: list[dict[str, object]] = []
    for name in captures:
        jobs += json.loads((CAPTURES / name).read_text())["jobs"]
    return jobs


def sacct_text(*captures: str) -> str:
    """The named text sacct captures as one ``sacct -P`` answer (one header)."""
    out: list[str] = []
    header = None
    for name in captures:
        for line in (CAPTURES / name).read_text().splitlines():
            if line.startswith("$ ") or not line:
                continue
            if line.startswith("JobID|"):
                if header is None:
                    header = line
                    out.append(line)
                elif line != header:
                    raise ValueError(f"{name}: its sacct header differs from the others'")
                continue
            out.append(line)
    return "\n".join(out) + "\n"


class Replay:
    """A ``PATH`` directory of replaying Slurm commands."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        directory.mkdir(parents=True, exist_ok=True)
        for name in ("squeue", "sacct", "scancel"):
            path = directory / name
            path.write_text(_SCRIPT.format(python=sys.executable, name=name))
            path.chmod(path.stat().st_mode | stat.S_IXUSR)
        self.squeue([])
        self.sacct("")

    @property
    def path(self) -> str:
        return str(self.dir)

    def squeue(self, jobs: Iterable[dict[str, object]]) -> None:
        doc = json.loads((CAPTURES / "squeue-unfiltered-example.json").read_text())
        doc["jobs"] = list(jobs)
        (self.dir / "squeue.answer").write_text(json.dumps(doc, indent=1))

    def sacct(self, text: str, rc: int = 0) -> None:
        (self.dir / "sacct.answer").write_text(text)
        (self.dir / "sacct.rc").write_text(str(rc))

    def calls(self) -> list[str]:
        log = self.dir / "calls.log"
        return log.read_text().splitlines() if log.exists() else []

    def count(self, command: str) -> int:
        return sum(1 for c in self.calls() if c.split()[0] == command)


def env_with(replay: Replay) -> dict[str, str]:
    """The environment with ``replay`` first on ``PATH``."""
    return {**os.environ, "PATH": f"{replay.path}{os.pathsep}{os.environ.get('PATH', '')}"}
