"""The real Lightning runs in tests/data, restored as they were on disk (tests/data/README.md).

The samples were copied without their checkpoint weights; ``tree.txt`` lists every file the
run left, with its size and mtime. :func:`restore` puts a sample back: the copied files,
an empty file in place of each weight file left out (progresskit reads their names, never
their contents), and every mtime as ``tree.txt`` recorded it, shifted so that the run's
last write was ``age`` seconds ago.
"""

from __future__ import annotations

import datetime
import os
import shutil
import time
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"
#: Files of the capture, not of the run.
_GENERATOR_FILES = ("tree.txt", "train.log.run.json")


def tree(sample: str) -> list[tuple[str, float, bool]]:
    """(path, mtime, left out) of every file ``sample`` held right after its run."""
    found = []
    for line in (DATA / sample / "tree.txt").read_text().splitlines():
        if line.startswith("#") or line.startswith("path "):
            continue
        parts = line.split()
        when = datetime.datetime.fromisoformat(parts[2]).timestamp()
        found.append((parts[0], when, parts[-1] == "out"))
    return found


def restore(sample: str, dest: Path, *, age: float = 3600.0, pin: bool = False) -> Path:
    """``sample`` put back at ``dest``, its last write ``age`` seconds ago. ``pin``: with a
    ``progresskit.yaml`` pinning ``runner_type: lightning`` (the job directory, which holds
    the console log, is then the run)."""
    shutil.copytree(DATA / sample, dest, ignore=shutil.ignore_patterns(*_GENERATOR_FILES))
    if pin:
        (dest / "progresskit.yaml").write_text("runner_type: lightning\n")
    times = real_times(sample, age)
    for rel in times:
        target = dest / rel
        if not target.exists():  # a weight file left out of the copy
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(b"")
    for path in [*dest.rglob("*"), dest]:
        path.chmod(0o755 if path.is_dir() else 0o644)
        rel = path.relative_to(dest).as_posix()
        when = times.get(rel, max(times.values()))  # directories: the run's last write
        os.utime(path, (when, when))
    return dest


def real_times(sample: str, age: float = 3600.0) -> dict[str, float]:
    """Path -> the mtime :func:`restore` gives it: ``tree.txt``'s, shifted so that the
    newest is ``age`` seconds ago."""
    files = tree(sample)
    newest = max(when for _path, when, _out in files)
    shift = time.time() - age - newest
    return {rel: when + shift for rel, when, _out in files}
