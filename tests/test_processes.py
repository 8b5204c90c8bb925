"""Process discovery (the builtin ``psutil`` plugin) on real processes: the ``/proc`` reader
finds what psutil finds, field for field."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from progresskit.builtin import processes

pytestmark = pytest.mark.skipif(processes._PROC is None, reason="reads /proc: Linux only")

SLEEP = "import time\nwhile True: time.sleep(0.2)"


def _started(procs: list[subprocess.Popen[bytes]]) -> None:
    """Wait until each child runs its own program (after exec, its cmdline is final)."""
    deadline = time.monotonic() + 10
    for proc in procs:
        while len(psutil.Process(proc.pid).cmdline()) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)


@pytest.fixture
def jobs(tmp_path: Path) -> Iterator[tuple[dict[str, Path], list[subprocess.Popen[bytes]]]]:
    """Real processes working on runs: by cwd, by an argument inside the run, under a
    name the kernel truncates, and an onlooker."""
    runs = {name: tmp_path / name for name in ("by_cwd", "by_arg", "long", "tail")}
    for run in runs.values():
        run.mkdir()
    (runs["by_arg"] / "config.yaml").write_text("x: 1\n")
    (runs["tail"] / "train.log").write_text("")
    # A program whose name is longer than the kernel keeps (15 characters).
    long_name = tmp_path / "a_very_long_trainer_name"
    long_name.symlink_to(sys.executable)
    procs = [
        subprocess.Popen([sys.executable, "-c", SLEEP], cwd=runs["by_cwd"]),
        subprocess.Popen(
            [sys.executable, "-c", SLEEP, "--config", str(runs["by_arg"] / "config.yaml")],
            cwd=tmp_path,
        ),
        subprocess.Popen([str(long_name), "-c", SLEEP], cwd=runs["long"]),
        subprocess.Popen(["tail", "-f", str(runs["tail"] / "train.log")], cwd=runs["tail"]),
    ]
    try:
        _started(procs)
        yield runs, procs
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def _with_psutil(monkeypatch: pytest.MonkeyPatch, dirs: list[str]) -> dict[str, object]:
    with monkeypatch.context() as patch:
        patch.setattr(processes, "_PROC", None)
        return dict(processes.progresskit_process_info(dirs))


def test_proc_finds_what_psutil_finds(
    jobs: tuple[dict[str, Path], list[subprocess.Popen[bytes]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    runs, procs = jobs
    dirs = [str(path) for path in runs.values()]
    ours = processes.progresskit_process_info(dirs)
    theirs = _with_psutil(monkeypatch, dirs)
    assert ours == theirs
    found = {run: info.pid for run, info in ours.items()}
    assert found[str(runs["by_cwd"])] == procs[0].pid
    assert found[str(runs["by_arg"])] == procs[1].pid
    assert found[str(runs["long"])] == procs[2].pid
    assert str(runs["tail"]) not in found  # `tail -f` on a run's log is an onlooker
    info = ours[str(runs["by_cwd"])]
    assert info.start_time == psutil.Process(procs[0].pid).create_time()
    assert info.user == psutil.Process(procs[0].pid).username()


def test_every_field_of_every_child_reads_as_psutil_reads_it(
    jobs: tuple[dict[str, Path], list[subprocess.Popen[bytes]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, procs = jobs
    mine = {p.pid for p in procs} | {1, os.getppid()}

    def table(found: Iterator[processes.Candidate]) -> dict[int, tuple[object, ...]]:
        return {pid: (cmdline, cwd, owner()) for pid, cmdline, cwd, owner in found if pid in mine}

    ours = table(processes.candidates())
    with monkeypatch.context() as patch:
        patch.setattr(processes, "_PROC", None)
        theirs = table(processes.candidates())
    assert ours == theirs
    assert {p.pid for p in procs[:3]} <= set(ours)  # the tail is an onlooker: left out


def test_a_process_that_has_exited_is_not_reported(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", SLEEP], cwd=tmp_path)
    _started([proc])
    found = {pid: owner for pid, _, _, owner in processes.candidates()}
    proc.kill()
    proc.wait()
    assert found[proc.pid]() is None  # its user and start time can no longer be read
    assert str(tmp_path) not in processes.progresskit_process_info([str(tmp_path)])


def test_status_does_not_import_psutil(tmp_path: Path) -> None:
    # The point of the reader: a command finds a run's processes without psutil.
    code = (
        "import sys\n"
        "from progresskit.plugin.manager import get_plugin_manager\n"
        "pm = get_plugin_manager()\n"
        f"pm.hooks.process_info([{str(tmp_path)!r}])\n"
        "print('psutil' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"


def test_the_callers_own_pipeline_and_ancestors_do_not_work_on_the_run(tmp_path: Path) -> None:
    # `cd run; progresskit status . --json | jq`: the reader of the output sits in the run's
    # directory, and so may the program that started the query (a wrapper, `uv run`); none
    # of them is the run's process. A real training process there still is.
    run = tmp_path / "run"
    run.mkdir()
    query = (
        "import json, sys\n"
        "from progresskit.builtin import processes\n"
        f"found = processes.progresskit_process_info([{str(run)!r}])\n"
        "print(json.dumps({k: v.process_id for k, v in found.items()}))\n"
    )
    reader = "import sys; sys.stdout.write(sys.stdin.read())"
    wrapper = (  # the query's parent, in the run's directory: an ancestor
        "import subprocess, sys\n"
        f"sys.exit(subprocess.call([sys.executable, '-c', {query!r}]))\n"
    )
    python = shlex.quote(sys.executable)
    command = f"{python} -c {shlex.quote(wrapper)} | {python} -c {shlex.quote(reader)}"
    pipeline = subprocess.run(
        command, shell=True, cwd=run, capture_output=True, text=True, check=True
    )
    assert pipeline.stdout.strip() == "{}", pipeline.stdout
    trainer = subprocess.Popen([sys.executable, "-c", SLEEP], cwd=run)
    try:
        _started([trainer])
        pipeline = subprocess.run(
            command, shell=True, cwd=run, capture_output=True, text=True, check=True
        )
        assert pipeline.stdout.strip() == f'{{"{run}": {trainer.pid}}}', pipeline.stdout
    finally:
        trainer.kill()
        trainer.wait()
