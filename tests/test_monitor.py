"""The monitoring engine: what a change is, who hears of it, and that nothing stops it."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
from collections.abc import Sequence
from pathlib import Path

import attrs
import pytest

from helpers.runs import make_evaluator_run, make_trainer_run
from helpers.webhook_receiver import wait_for
from progresskit import Change, Monitor, RunnerDetectionError, RunStatus, Status, scan
from progresskit.formats.change import change_key
from progresskit.formats.fileio import atomic_write_text

QUIET = {"watch_heartbeat": 0}


class Recording:
    """A plain sink (no emit_changes): it gets the changed runs' statuses."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.closed = 0

    def emit(self, statuses: Sequence[RunStatus]) -> None:
        self.batches.append([s.work_dir for s in statuses])

    def close(self) -> None:
        self.closed += 1


def _score(run: Path, value: float) -> None:
    atomic_write_text(run / "evaluation_scores.json", json.dumps({"acc": value}))


def test_change_key_ignores_what_moves_by_itself(tmp_path: Path) -> None:
    (run,) = scan(make_trainer_run(tmp_path / "r", 2, total=4))
    volatile = attrs.evolve(
        run,
        reason="last sign of life 59s ago",
        last_activity=(run.last_activity or 0) + 59,
        progress=attrs.evolve(
            run.progress, last_update_time=123.0, elapsed_seconds=99.0, eta_seconds=5.0
        ),
    )
    assert change_key(volatile) == change_key(run)
    for changed in (
        attrs.evolve(run, status=Status.STUCK),
        attrs.evolve(run, progress=attrs.evolve(run.progress, completed_epochs=3)),
        attrs.evolve(run, progress=attrs.evolve(run.progress, current_stage="export")),
        attrs.evolve(run, progress=attrs.evolve(run.progress, error_message="disk full")),
    ):
        assert change_key(changed) != change_key(run)


def test_check_reports_new_changed_removed_and_nothing_when_nothing_changed(
    tmp_path: Path,
) -> None:
    root = tmp_path / "runs"
    a = make_evaluator_run(root / "a", scores={"acc": 0.1})
    b = make_evaluator_run(root / "b", scores={"acc": 0.2})
    sink = Recording()
    monitor = Monitor(root, QUIET, sinks=[sink])
    first = monitor.check()
    assert [(c.kind, c.run.work_dir) for c in first] == [("new", str(a)), ("new", str(b))]
    assert monitor.check() == []
    _score(a, 0.5)
    (changed,) = monitor.check()
    assert (changed.kind, changed.run.work_dir) == ("changed", str(a))
    assert changed.previous_status is Status.FINISHED
    assert changed.run.progress.latest_score == {"acc": 0.5}
    shutil.rmtree(b)
    (removed,) = monitor.check()
    assert (removed.kind, removed.run.work_dir) == ("removed", str(b))
    # The plain sink got the new and changed runs, never the removed one.
    assert sink.batches == [[str(a), str(b)], [str(a)]]
    monitor.stop()
    assert sink.closed == 1


def test_notifications_pick_up_changes_and_new_runs(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    a = make_evaluator_run(root / "a", scores={"acc": 0.1})
    # A poll interval far beyond the test's waits: only a notification can be the cause.
    monitor = Monitor(root, {"watch_mode": "notify", "watch_poll_interval": 3600, **QUIET})
    seen: list[Change] = []
    monitor.subscribe(seen.append)
    monitor.start()
    try:
        wait_for(lambda: len(seen) == 1, what="the first evaluation")
        assert monitor.mode == "notify"
        _score(a, 0.9)
        wait_for(lambda: any(c.kind == "changed" for c in seen), what="the change")
        make_evaluator_run(root / "later" / "c", scores={"acc": 0.3})
        wait_for(
            lambda: any(c.kind == "new" and c.run.work_dir.endswith("c") for c in seen),
            what="the new run",
        )
        shutil.rmtree(a)
        wait_for(lambda: any(c.kind == "removed" for c in seen), what="the removed run")
    finally:
        monitor.stop()
    assert [(c.kind, Path(c.run.work_dir).name) for c in seen] == [
        ("new", "a"), ("changed", "a"), ("new", "c"), ("removed", "a")
    ]


def test_polling_picks_up_changes(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    a = make_evaluator_run(root / "a", scores={"acc": 0.1})
    monitor = Monitor(root, {"watch_mode": "poll", "watch_poll_interval": 0.1, **QUIET})
    seen: list[Change] = []
    monitor.subscribe(seen.append)
    with monitor:
        assert monitor.mode == "poll"
        wait_for(lambda: len(seen) == 1, what="the first evaluation")
        _score(a, 0.7)
        wait_for(lambda: len(seen) == 2, what="the change")
    assert seen[1].run.progress.latest_score == {"acc": 0.7}


def test_auto_mode_polls_on_a_network_filesystem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import progresskit.engine.monitor as monitor_module

    monkeypatch.setattr(monitor_module, "filesystem_type", lambda _path: "nfs4")
    assert Monitor(tmp_path, QUIET).mode == "poll"
    monkeypatch.setattr(monitor_module, "filesystem_type", lambda _path: "ext4")
    assert Monitor(tmp_path, QUIET).mode == "notify"


def test_filesystem_type_of_this_directory_is_known(tmp_path: Path) -> None:
    from progresskit.engine.monitor import filesystem_type

    assert filesystem_type(str(tmp_path))


def test_heartbeat_restates_unchanged_runs(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    make_evaluator_run(root / "a", scores={"acc": 0.1})
    monitor = Monitor(root, {"watch_mode": "poll", "watch_poll_interval": 0.05,
                             "watch_heartbeat": 0.2})
    kinds: list[str] = []
    monitor.subscribe(lambda c: kinds.append(c.kind))
    with monitor:
        wait_for(lambda: kinds.count("heartbeat") >= 2, what="two heartbeats")
    assert kinds[0] == "new" and set(kinds) == {"new", "heartbeat"}


def test_a_raising_subscriber_or_sink_is_logged_and_the_monitor_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "runs"
    a = make_evaluator_run(root / "a", scores={"acc": 0.1})

    class Broken:
        def emit(self, statuses: Sequence[RunStatus]) -> None:
            raise OSError("disk on fire")

        def close(self) -> None:
            raise OSError("still on fire")

    def explode(change: Change) -> None:
        raise ValueError(f"subscriber bug on {change.kind}")

    good = Recording()
    monitor = Monitor(root, QUIET, sinks=[Broken(), good])
    seen: list[str] = []
    monitor.subscribe(explode)
    monitor.subscribe(lambda c: seen.append(c.kind))
    with caplog.at_level(logging.ERROR, logger="progresskit.engine.monitor"):
        monitor.check()
        _score(a, 0.2)
        monitor.check()
        monitor.stop()
    assert seen == ["new", "changed"]
    assert len(good.batches) == 2 and good.closed == 1
    messages = [r.getMessage() for r in caplog.records]
    assert sum("subscriber" in m and "stays subscribed" in m for m in messages) == 2
    assert sum(m.startswith("sink Broken failed") for m in messages) == 2
    assert any("closing sink Broken failed" in m for m in messages)


def test_unsubscribe_and_stop_from_a_subscriber(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    a = make_evaluator_run(root / "a", scores={"acc": 0.1})
    sink = Recording()
    monitor = Monitor(root, {"watch_mode": "poll", "watch_poll_interval": 0.05, **QUIET},
                      sinks=[sink])
    heard: list[str] = []
    unsubscribe = monitor.subscribe(lambda c: heard.append(c.kind))
    monitor.subscribe(lambda c: monitor.stop() if c.kind == "changed" else None)
    monitor.start()
    wait_for(lambda: heard == ["new"], what="the first evaluation")
    unsubscribe()
    _score(a, 0.4)
    wait_for(lambda: sink.closed == 1, what="the stop requested by a subscriber")
    assert heard == ["new"]
    assert monitor.stopped
    with pytest.raises(RuntimeError, match="stopped; create a new one"):
        monitor.start()


def test_async_iteration(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    make_evaluator_run(root / "a", scores={"acc": 0.1})
    monitor = Monitor(root, {"watch_mode": "poll", "watch_poll_interval": 0.05, **QUIET})

    async def consume() -> list[tuple[str, str]]:
        got: list[tuple[str, str]] = []
        async for change in monitor:
            got.append((change.kind, Path(change.run.work_dir).name))
            if len(got) == 1:
                await asyncio.to_thread(make_evaluator_run, root / "b", scores={"acc": 0.2})
            if len(got) == 2:
                await asyncio.to_thread(monitor.stop)
        return got

    got = asyncio.run(asyncio.wait_for(consume(), timeout=60))
    assert got == [("new", "a"), ("new", "b")]


def test_a_vanished_root_is_reported_once_and_watched_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "runs"
    make_evaluator_run(root / "a", scores={"acc": 0.1})
    monitor = Monitor(root, QUIET)
    monitor.check()
    moved = tmp_path / "elsewhere"
    root.rename(moved)
    with caplog.at_level(logging.ERROR, logger="progresskit.engine.monitor"):
        assert monitor.check() == []
        assert monitor.check() == []
    assert len([r for r in caplog.records if "cannot evaluate" in r.getMessage()]) == 1
    assert [r.work_dir for r in monitor.runs] == [str(root / "a")]  # the last known state
    moved.rename(root)
    _score(root / "a", 0.3)
    (change,) = monitor.check()
    assert change.kind == "changed"
    monitor.stop()


def test_start_up_errors_are_raised_by_the_constructor(tmp_path: Path) -> None:
    with pytest.raises(RunnerDetectionError, match="does not exist"):
        Monitor(tmp_path / "nope")
    with pytest.raises(ValueError, match="key 'watch_mode': must be one of auto, notify, poll"):
        Monitor(tmp_path, {"watch_mode": "inotify"})
    with pytest.raises(ValueError, match="unknown sink type 'pigeon'"):
        Monitor(tmp_path, {"sinks": [{"type": "pigeon"}]})
