"""What the producer side costs a training job: the modules its import and its use load
(issue 13; the time is measured by benchmarks/imports.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

#: Libraries of the consumer side (engine, plugins, server, CLI) that a training job must never
#: load through progresskit.
CONSUMER_LIBRARIES = {
    "cattrs", "pluggy", "psutil", "rich", "sqlite3", "starlette", "watchfiles", "yaml",
}
#: Layers above the producer (docs/architecture.md).
CONSUMER_LAYERS = {"plugin", "engine", "builtin", "compat", "server", "cli", "testing"}
PRODUCER_IMPORT = (
    "from progresskit import EventEmitter, Progress, StatusFileWriter, heartbeat, track"
)


def modules_after(code: str, *args: str) -> set[str]:
    """The modules loaded once ``code`` ran in a fresh interpreter."""
    script = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))\n"
    completed = subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=60
    )
    assert completed.returncode == 0, completed.stderr
    return set(json.loads(completed.stdout.splitlines()[-1]))


def consumer_side(modules: set[str]) -> list[str]:
    return sorted(
        m for m in modules
        if m.split(".")[0] in CONSUMER_LIBRARIES
        or (m.startswith("progresskit.") and m.split(".")[1] in CONSUMER_LAYERS)
    )


def test_the_producer_import_loads_nothing_of_the_consumer_side() -> None:
    assert consumer_side(modules_after(PRODUCER_IMPORT)) == []


def test_the_producer_import_defers_attrs_typing_and_logging() -> None:
    # What the import time target (<= 1.5x "import json, socket, threading") rests on: attrs
    # alone costs more than that budget. They load with the first lease or log message.
    loaded = {m.split(".")[0] for m in modules_after(PRODUCER_IMPORT)}
    assert loaded & {"attr", "attrs", "typing", "logging", "tempfile"} == set()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="psutil is used without /proc")
def test_using_the_producer_loads_nothing_of_the_consumer_side(tmp_path: Path) -> None:
    code = textwrap.dedent(f"""\
        import os, sys
        {PRODUCER_IMPORT}
        work = sys.argv[1]
        with heartbeat(work, expect_every=60) as hb:
            hb.beat()
        with StatusFileWriter(os.path.join(work, "training_status.json"),
                              total_iterations=10, interval=0) as status:
            status.update(3)
        progress = track(range(3), run_dir=os.path.join(work, "loop"), desc="epoch")
        for epoch in progress:
            with Progress(total=2, run_dir=os.path.join(work, "loop")) as batches:
                batches.update(2)
                batches.set(loss=0.5)
                batches.stage("eval")
        with EventEmitter("run", event_file=os.path.join(work, "events.jsonl")) as events:
            events.progress("training", 30.0)
            events.run_complete("failed")
        """)
    loaded = modules_after(code, str(tmp_path))
    assert consumer_side(loaded) == []
    lease = json.loads((tmp_path / ".progresskit-lease.json").read_text())
    assert lease["state"] == "failed" and lease["producers"] == ["events"]
    assert json.loads((tmp_path / "loop" / "progresskit-progress.json").read_text())["steps"] == 3
