"""Liveness by the run's own rhythm in a one-off ``progresskit status`` (issue 15), for the
trackers whose update times come from one file rewritten in place: the ``progress`` file of
track()/Progress and the Brush status file of StatusFileWriter carry the times of their last
writes (``update_times``), so a one-off query judges a silent run as a watch that saw every
write does. A document without them (track()'s version 1, Brush's own file) leaves a one-off
query ``sleep_time`` only."""

from __future__ import annotations

import json
import shutil
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import progresskit.producer.statusfile as statusfile_module
import progresskit.producer.track as track_module
from progresskit import Progress, StatusFileWriter, Tracking
from progresskit.formats.progressfile import PROGRESS_FILENAME, UPDATE_TIMES_KEPT
from progresskit.testing import CliResult

#: The producer's cadence, its number of writes, and how long ago it fell silent: the rhythm
#: rule allows 7 x 6 s = 42 s of silence; sleep_time (a day) would allow all of it.
CADENCE = 6.0
WRITES = 8
SILENT = 150.0


class Clock:
    """The wall clock a producer module reads (``time.time()``), set by the test: a run
    written over a minute in a few milliseconds, its writes ``CADENCE`` apart."""

    def __init__(self, now: float):
        self.now = now

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[Clock]:
    start = time.time() - SILENT - CADENCE * (WRITES - 1)
    fake = Clock(start)
    # Only the producers' own reading of the clock: their leases, the tests' process and
    # the status rules keep the real one.
    for module in (track_module, statusfile_module):
        monkeypatch.setattr(module, "time", types.SimpleNamespace(time=fake.time))
    yield fake


def _produce(source: Path, synced: Path, name: str, write: Callable[[int], None],
             clock: Clock) -> Tracking:
    """Make ``WRITES`` writes ``CADENCE`` apart; after each, the file is copied to ``synced``
    (the run as another machine sees it: its files synced, not its host-bound lease) and a
    watching session reads it, as ``progresskit watch`` reads every write."""
    watch = Tracking()
    synced.mkdir()
    for i in range(WRITES):
        if i:
            clock.now += CADENCE
        write(i)
        shutil.copy2(source / name, synced / name)
        seen = watch.status(str(synced), now=clock.now + 1.0)
        assert seen.status.value == "running", seen.reason
    return watch


def _one_shot(cli: Callable[..., CliResult], run: Path) -> dict[str, object]:
    result = cli("status", str(run), "--json", in_process=False)
    [entry] = json.loads(result.stdout)["runs"]
    assert isinstance(entry, dict)
    return entry


def _pace(reason: str) -> str:
    """The part of a reason that says the run's rhythm (the silence's own length differs
    between two queries by the time between them)."""
    return reason.split("; ")[1]


def test_a_track_run_reads_failed_in_one_shot_as_in_watch(
    tmp_path: Path, clock: Clock, cli: Callable[..., CliResult]
) -> None:
    source, synced = tmp_path / "job", tmp_path / "synced"
    progress = Progress(total=100, run_dir=source, interval=3600.0)
    try:
        def write(i: int) -> None:
            if i:
                progress.update()
                progress.stage(f"step {i}")  # written at once

        watch = _produce(source, synced, PROGRESS_FILENAME, write, clock)
    finally:
        progress.close()
    document = json.loads((synced / PROGRESS_FILENAME).read_text())
    assert document["version"] == 2
    assert len(document["update_times"]) == WRITES
    assert document["update_times"][-1] == document["updated_at"]

    watched = watch.status(str(synced))
    assert watched.status.value == "failed"
    assert "it updated every ~6.0s" in (watched.reason or "")
    once = _one_shot(cli, synced)
    assert once["status"] == "failed"
    assert _pace(str(once["reason"])) == _pace(watched.reason or "")

    # A document of version 1 lists no times: a one-off query has sleep_time only.
    del document["update_times"]
    document["version"] = 1
    (synced / PROGRESS_FILENAME).write_text(json.dumps(document))
    assert _one_shot(cli, synced)["status"] == "running"


def test_update_times_are_bounded(tmp_path: Path, clock: Clock) -> None:
    with Progress(total=None, run_dir=tmp_path, interval=3600.0) as progress:
        for i in range(UPDATE_TIMES_KEPT + 10):
            clock.now += 1.0
            progress.stage(f"stage {i}")
        times = json.loads((tmp_path / PROGRESS_FILENAME).read_text())["update_times"]
    assert len(times) == UPDATE_TIMES_KEPT
    assert times == sorted(times) and times[-1] == pytest.approx(clock.now)


def test_a_bad_update_times_field_is_a_warning(tmp_path: Path) -> None:
    from progresskit.builtin.progressfile import ProgressFileTracker

    with Progress(total=10, run_dir=tmp_path, interval=3600.0):
        pass
    path = tmp_path / PROGRESS_FILENAME
    document = json.loads(path.read_text())
    document["update_times"] = [1.0, "soon"]
    path.write_text(json.dumps(document))
    tracker = ProgressFileTracker(tmp_path)
    progress = tracker.get_progress()
    assert any("'update_times' expects a list of Unix times" in w for w in progress.warnings)
    assert progress.progress_percentage == 0.0  # the other fields still count
    # The bad list is not used: the times are those this tracker read (the start, the write).
    assert list(tracker.update_times()) == [document["started_at"], document["updated_at"]]


def test_a_status_file_writer_run_reads_failed_in_one_shot_as_in_watch(
    tmp_path: Path, clock: Clock, cli: Callable[..., CliResult]
) -> None:
    source, synced = tmp_path / "job", tmp_path / "synced"
    name = "training_status.json"
    writer = StatusFileWriter(source / name, total_iterations=1000, interval=0)
    try:
        # interval 0: every update is written, at the producer's (test's) clock.
        watch = _produce(source, synced, name, lambda i: writer.update(5 * i) if i else None,
                         clock)
    finally:
        writer.close()
    document = json.loads((synced / name).read_text())
    assert len(document["update_times"]) == WRITES

    watched = watch.status(str(synced))
    assert watched.status.value == "failed" and "it updated every ~6.0s" in (watched.reason or "")
    once = _one_shot(cli, synced)
    assert once["status"] == "failed"
    assert _pace(str(once["reason"])) == _pace(watched.reason or "")

    # Brush's own file (seed 000) has no such field: a one-off query sees one write, so
    # sleep_time alone decides; only a watch learns its rhythm.
    del document["update_times"]
    (synced / name).write_text(json.dumps(document))
    assert _one_shot(cli, synced)["status"] == "running"
