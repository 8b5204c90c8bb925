"""Seed 002's own emitter (:mod:`helpers.seed_training_events`) run as its users run it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

#: The tests folder: ``helpers`` and the test modules import from there.
TESTS = Path(__file__).resolve().parent.parent


def run_seed_code(code: str, *args: str, event_file: Path, socket: Path) -> None:
    """Run ``code`` (it imports ``helpers.seed_training_events``) with ``args`` in a fresh
    interpreter, its current directory the tests folder. The seed reads where to send its
    events from ``FOXML_TRAINING_EVENT_FILE`` and ``FOXML_TRAINING_EVENT_SOCKET`` when it is
    imported, so each run needs an interpreter of its own."""
    env = {
        **os.environ,
        "PYTHONPATH": str(TESTS),
        "FOXML_TRAINING_EVENT_FILE": str(event_file),
        "FOXML_TRAINING_EVENT_SOCKET": str(socket),
    }
    subprocess.run(
        [sys.executable, "-c", code, *args], check=True, env=env, cwd=TESTS, timeout=60
    )
