"""What ``progresskit status RUN`` loads: none of the libraries it has no use for on a
plain run (issue 13's start-up). Each is loaded where it is needed, which the tests of its
module show (a table to fold: rich; a history file: sqlite3; a webhook: hashlib, socket)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.runs import make_trainer_run

UNNEEDED = (
    "importlib.metadata", "email", "zipfile", "psutil", "rich", "sqlite3", "hashlib", "hmac",
    "socket", "signal", "progresskit_comfyui.job", "progresskit_comfyui.protocol",
)


# A colon or a bracket in a path is no rich markup: such a table is still printed without rich.
@pytest.mark.parametrize("name", ["run", "lr:0.1 [1]"])
def test_status_of_a_run_loads_nothing_it_does_not_use(tmp_path: Path, name: str) -> None:
    make_trainer_run(tmp_path / name, 2, total=10)
    code = (
        "import sys\n"
        "from progresskit.cli.main import main\n"
        f"code = main(['status', {name!r}])\n"
        "sys.stdout.flush()\n"
        f"print(sorted(m for m in {UNNEEDED!r} if m in sys.modules), code, file=sys.stderr)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE")}
    env["PROGRESSKIT_HISTORY"] = str(tmp_path / "history.sqlite3")  # no history yet
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
        check=True,
    )
    assert out.stderr.strip() == "[] 0", out.stderr
    assert "▶ running" in out.stdout
