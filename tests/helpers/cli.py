"""The ``progresskit`` command as the tests run it."""

from __future__ import annotations

import functools
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Mapping
from pathlib import Path

from progresskit.testing import run_cli as _run_cli

#: ``run_cli("status", str(run), cwd=tmp_path)``: :func:`progresskit.testing.run_cli` in a
#: subprocess of this interpreter, because what these tests check is what a user's shell sees
#: (exit codes, both streams, plugins loaded by a clean interpreter).
run_cli = functools.partial(_run_cli, in_process=False)


def start_cli(
    *args: str, cwd: Path, env: Mapping[str, str] | None = None
) -> tuple[subprocess.Popen[str], queue.Queue[str]]:
    """Start ``progresskit ARGS...`` (a ``watch`` that runs until stopped) in a subprocess;
    its standard output's lines arrive in the queue as it prints them."""
    process = subprocess.Popen(
        [sys.executable, "-m", "progresskit", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
    )
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return process, lines
