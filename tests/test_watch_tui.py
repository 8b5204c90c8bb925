"""The full-screen ``progresskit watch`` (issue 20), for real: Textual's pilot pressing keys
over a real Monitor of real run directories (and a real job to cancel), and the real
command in a pseudo-terminal."""

from __future__ import annotations

import asyncio
import os
import pty
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

pytest.importorskip("textual")

from helpers.jobs import start_producer, stop
from helpers.runs import make_evaluator_run, make_trainer_run
from helpers.webhook_receiver import wait_for
from progresskit import get_plugin_manager
from progresskit.cli.tui.app import WatchApp
from progresskit.cli.tui.runtable import RunTable
from progresskit.cli.tui.screens import ConfirmCancel, DetailScreen
from progresskit.cli.tui.view import CHANGE_MARK, ViewState, default_filters
from progresskit.engine.monitor import Monitor
from progresskit.model.core import Status


def _tree(root: Path) -> None:
    make_trainer_run(root / "sweep" / "lr_0.1", 2, total=4)
    make_trainer_run(root / "sweep" / "lr_0.01", 1, total=4)
    make_evaluator_run(root / "evals" / "done", scores={"acc": 0.4})
    crashed = make_trainer_run(root / "crashed", 1, total=4, age=3 * 86400)
    (crashed / "train_val_0.log").write_text(
        "epoch 1\nTraceback (most recent call last):\n  File \"train.py\", line 9\n"
        "RuntimeError: CUDA out of memory\n"
    )


def _screen_lines(app: WatchApp) -> list[str]:
    """What the table draws, line by line (its rendered strips, not its data)."""
    table = app.screen_stack[0].query_one("#runs", RunTable)
    return [table.render_line(y).text.rstrip() for y in range(table.size.height)]


def _names(app: WatchApp) -> list[str]:
    return [line.split("│")[1].strip() for line in _screen_lines(app) if "│" in line]


async def _until(pilot: object, test: Callable[[], bool], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not test():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.05)  # type: ignore[attr-defined]


def _app(root: Path, **state: object) -> tuple[WatchApp, Monitor]:
    pm = get_plugin_manager()
    monitor = Monitor(root, {"watch_heartbeat": 0}, pm=pm)
    view = ViewState(monitor.root, **state)  # type: ignore[arg-type]
    return WatchApp(monitor, pm, view, threading.Event(), grace_seconds=5), monitor


def test_scroll_sort_filter_search_and_a_runs_page(tmp_path: Path, isolated_cwd: Path) -> None:
    root = tmp_path / "runs"
    _tree(root)
    app, monitor = _app(root)

    async def drive() -> None:
        monitor.start()
        async with app.run_test(size=(120, 30)) as pilot:
            await _until(pilot, lambda: len(_names(app)) == 4, "4 rows")
            summary = str(app.screen_stack[0].query_one("#summary").render())
            assert "4 runs:" in summary and "sort urgency" in summary
            names = _names(app)
            # urgency: the crashed (failed) run first, the finished one last; relative names
            assert names[0] == "crashed" and names[-1] == "evals/done"
            assert not any(str(root) in line for line in _screen_lines(app))

            await pilot.press("s")  # -> name
            await _until(pilot, lambda: _names(app) == sorted(names), "sorted by name")
            assert "sort name" in str(app.screen_stack[0].query_one("#summary").render())

            await pilot.press("f")  # -> attention: crashed, failed, stuck, unknown
            await _until(pilot, lambda: _names(app) == ["crashed"], "the attention filter")
            await pilot.press("f", "f", "f")  # back to all
            await _until(pilot, lambda: len(_names(app)) == 4, "all again")

            await pilot.press("slash", "l", "r", "_", "0", ".", "0")
            await _until(pilot, lambda: _names(app) == ["sweep/lr_0.01"], "the search")
            await pilot.press("enter")  # applies the search, back to the table
            await pilot.press("slash", "escape")  # clears it
            await _until(pilot, lambda: len(_names(app)) == 4, "the search cleared")

            # The cursor moves with the keys and the page opens on the run under it.
            await pilot.press("home")
            assert app.selected() is not None and app.selected().config.endswith("crashed")
            await pilot.press("enter")
            await _until(pilot, lambda: isinstance(app.screen, DetailScreen), "the page")
            page = app.screen._text  # type: ignore[union-attr]
            assert "status    ✖ failed" in page or "status    ✖ crashed" in page
            assert "RuntimeError: CUDA out of memory" in page  # the log's tail
            assert "log       train_val_0.log" in page
            await pilot.press("escape")
            await _until(pilot, lambda: not isinstance(app.screen, DetailScreen), "back")

            await pilot.press("end")  # still sorted by name
            assert app.selected().config.endswith("sweep/lr_0.1")  # type: ignore[union-attr]
            await pilot.press("home", "down")
            assert app.selected().config.endswith("evals/done")  # type: ignore[union-attr]
            await pilot.press("c")  # a finished run: nothing to cancel, nothing asked
            await pilot.pause(0.2)
            assert not isinstance(app.screen, ConfirmCancel)
            await pilot.press("q")

    try:
        asyncio.run(drive())
    finally:
        monitor.stop()


def test_a_changed_row_is_marked(
    tmp_path: Path, isolated_cwd: Path
) -> None:
    root = tmp_path / "runs"
    _tree(root)
    app, monitor = _app(root)

    async def drive() -> None:
        monitor.start()
        async with app.run_test(size=(120, 30)) as pilot:
            await _until(pilot, lambda: len(_names(app)) == 4, "4 rows")
            assert not any(CHANGE_MARK in line for line in _screen_lines(app))
            make_trainer_run(root / "sweep" / "lr_0.1", 3, total=4)  # epoch 3 of 4
            await _until(
                pilot,
                lambda: any(CHANGE_MARK in line and "sweep/lr_0.1" in line
                            for line in _screen_lines(app)),
                "the changed row marked",
            )
            marked = [line for line in _screen_lines(app) if CHANGE_MARK in line]
            assert len(marked) == 1 and "75.0%" in marked[0]
            await pilot.press("q")

    try:
        asyncio.run(drive())
    finally:
        monitor.stop()


def test_the_table_repaints_only_the_lines_that_changed() -> None:
    from textual.app import App, ComposeResult

    class One(App[None]):
        def compose(self) -> ComposeResult:
            yield RunTable(id="runs")

    app = One()
    keys = [f"run_{i}" for i in range(50)]
    texts = {k: (" ", k, "▶ running", f"{i}%") for i, k in enumerate(keys)}
    styles = dict.fromkeys(keys, "blue")

    async def drive() -> None:
        async with app.run_test(size=(80, 20)) as pilot:
            table = app.query_one(RunTable)
            table.show(keys, texts, styles, (1, 6, 9, 3))
            await pilot.pause()
            drawn = {k: table._strips.get((k, k == "run_0")) for k in keys[:19]}
            assert all(drawn.values())  # the lines on screen were drawn, once
            changed = {**texts, "run_3": (CHANGE_MARK, "run_3", "✔ finished", "100%")}
            table.show(keys, changed, {**styles, "run_3": "green"}, (1, 6, 10, 4))
            await pilot.pause()  # other widths: every line is drawn again
            assert table._strips[("run_5", False)] is not drawn["run_5"]
            again = {k: table._strips.get((k, False)) for k in keys[1:19]}
            changed["run_7"] = (" ", "run_7", "✖ failed", "7%")
            table.show(keys, changed, {**styles, "run_3": "green", "run_7": "red"},
                       (1, 6, 10, 4))
            await pilot.pause()
            assert table._strips[("run_7", False)] is not again["run_7"]
            assert all(table._strips[(k, False)] is again[k] for k in keys[1:19] if k != "run_7")
            assert "✖ failed" in table.render_line(7).text
            table.move_to(30)  # below the screen: scrolled into view
            await pilot.pause()
            assert table.scroll_offset.y > 0 and table.cursor_key == "run_30"

    asyncio.run(drive())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="cancel proves via /proc")
def test_cancel_asks_then_stops_the_real_job(tmp_path: Path, isolated_cwd: Path) -> None:
    root = tmp_path / "runs"
    run = root / "job"
    run.mkdir(parents=True)
    job, _children = start_producer(run)
    app, monitor = _app(root, filters=default_filters({Status.RUNNING, Status.PENDING}))
    try:

        async def drive() -> None:
            monitor.start()
            async with app.run_test(size=(120, 30)) as pilot:
                await _until(pilot, lambda: _names(app) == ["job"], "the job's row")
                await pilot.press("c")
                await _until(pilot, lambda: isinstance(app.screen, ConfirmCancel), "the question")
                assert "Cancel job (running" in app.screen.question  # type: ignore[union-attr]
                await pilot.press("n")  # declined: the job lives on
                await pilot.pause(0.3)
                assert job.poll() is None
                await pilot.press("c")
                await _until(pilot, lambda: isinstance(app.screen, ConfirmCancel), "asked again")
                await pilot.press("y")
                await _until(pilot, lambda: job.poll() is not None, "the job to stop", 30)
                await _until(pilot, lambda: any("cancel requested" in n for n in app.notices),
                             "the notice")
                await pilot.press("q")

        asyncio.run(drive())
        assert job.returncode == -signal.SIGTERM
    finally:
        monitor.stop()
        stop(job)


def test_the_command_on_a_terminal_takes_keys_and_quits(
    tmp_path: Path, isolated_cwd: Path
) -> None:
    root = tmp_path / "runs"
    _tree(root)
    master, slave = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "progresskit", "watch", str(root), "--heartbeat", "0",
         "--sort", "name"],
        stdin=slave, stdout=slave, stderr=subprocess.PIPE, cwd=isolated_cwd,
        env={**os.environ, "COLUMNS": "120", "LINES": "30", "TERM": "xterm-256color"},
    )
    os.close(slave)
    screen = bytearray()

    def seen() -> str:
        while select.select([master], [], [], 0.05)[0]:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            screen.extend(chunk)
        return screen.decode("utf-8", "replace")

    try:
        wait_for(lambda: "sort name" in seen() and "evals/done" in seen(), what="the screen")
        os.write(master, b"f")
        wait_for(lambda: "filter attention" in seen(), what="the filter key")
        os.write(master, b"q")
        deadline = time.monotonic() + 30
        while process.poll() is None and time.monotonic() < deadline:
            seen()
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(30)
        assert process.stderr is not None
        err = process.stderr.read().decode()
        os.close(master)
    assert process.returncode == 0, err
    assert "Traceback" not in err
    text = screen.decode("utf-8", "replace")
    assert all(word in text for word in ("Sort", "Filter", "Search", "Quit"))  # the footer
