"""The full-screen ``progresskit watch``: a table of every run that scrolls, sorts and
filters, a summary always on screen, changed rows marked, a page per run and cancel
(docs/watch.md).

The screen draws only what changed: the monitor's changes are coalesced into one update,
and each update (or the once-a-second tick that moves the ages and ETAs of the rows on
screen on) hands the table its rows' texts; the table (:mod:`.runtable`) repaints only the
lines whose text differs. An idle tree costs a comparison of texts per second.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import Any, ClassVar

from rich.cells import cell_len
from rich.text import Text
from textual import events
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.driver import Driver
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Input, Static

from progresskit.builtin.table import STATUS_STYLE
from progresskit.builtin.tablefit import Column, Fitted, fit
from progresskit.cli.tui.runtable import RunTable, line_text
from progresskit.cli.tui.screens import ConfirmCancel, DetailScreen
from progresskit.cli.tui.view import SCREEN_COLUMNS, ViewState
from progresskit.engine.cancel import CancelRefused, cancel_run
from progresskit.engine.monitor import Monitor
from progresskit.formats.change import Change
from progresskit.model.core import RunStatus
from progresskit.plugin.manager import PluginManager

__all__ = ["WatchApp", "run_screen"]

#: How long a burst of changes is gathered into one update: a person does not read faster,
#: and each update lays out every row again.
_COALESCE_SECONDS = 0.2
#: How the screen's name and reason columns are cut (the table's rules: names in the
#: middle, reasons at their end); the other columns are as wide as their texts.
_SCREEN_FIT = tuple(
    Column(h, cut="middle", minimum=16)
    if h == "run"
    else Column(h, cut="end", minimum=16)
    if h == "reason"
    else Column(h)
    for h in SCREEN_COLUMNS
)
def _cells_of(text: str) -> int:
    """Terminal cells of ``text``: its length when it is ASCII (nearly always)."""
    return len(text) if text.isascii() else cell_len(text)


#: The vertical scroll bar's width.
_SCROLLBAR = 2


def _stdout_driver() -> type[Driver]:
    """Textual's terminal driver, drawing on standard output, the terminal ``watch``
    checked, rather than on standard error (which may be a log file)."""
    if sys.platform == "win32":  # Textual's Windows driver
        from textual.drivers.windows_driver import WindowsDriver

        return WindowsDriver
    from textual.drivers.linux_driver import LinuxDriver

    class StdoutDriver(LinuxDriver):
        def __init__(self, app: App[Any], **kwargs: Any) -> None:
            super().__init__(app, **kwargs)
            self._file = sys.__stdout__

    return StdoutDriver


class _Update(Message):
    """The monitor reported changes (posted once per burst)."""


class _Notice(Message):
    """A log record or a line written to stderr while the screen is up."""

    def __init__(self, text: str, severity: str) -> None:
        super().__init__()
        self.text = text
        self.severity = severity


class _Stop(Message):
    """SIGINT or SIGTERM: leave."""


class _ToApp(logging.Handler):
    """The process's log records, while the screen is up, as notifications (a line on
    the terminal would tear the screen)."""

    def __init__(self, app: WatchApp) -> None:
        super().__init__(logging.WARNING)
        self.app = app

    def emit(self, record: logging.LogRecord) -> None:
        severity = "error" if record.levelno >= logging.ERROR else "warning"
        self.app.post_message(_Notice(record.getMessage(), severity))


class WatchApp(App[None]):
    """The screen of ``progresskit watch`` over a started :class:`Monitor`."""

    TITLE = "progresskit watch"
    ENABLE_COMMAND_PALETTE = False
    CSS = """
    #summary { height: 2; padding: 0 1; background: $boost; }
    #header { height: 1; text-style: bold; }
    #search { dock: bottom; display: none; }
    #search.shown { display: block; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("s", "sort", "Sort"),
        Binding("f", "filter", "Filter"),
        Binding("slash", "search", "Search"),
        # A priority binding: over the search box, Enter applies the search.
        Binding("enter", "detail", "Details", priority=True),
        Binding("c", "cancel", "Cancel run"),
        Binding("q", "quit", "Quit"),
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True),
    ]

    def __init__(
        self,
        monitor: Monitor,
        pm: PluginManager,
        state: ViewState,
        done: threading.Event,
        grace_seconds: float,
        driver_class: type[Driver] | None = None,
    ) -> None:
        super().__init__(driver_class=driver_class)
        self.monitor = monitor
        self.pm = pm
        self.state = state
        self.done = done
        self.grace_seconds = grace_seconds
        #: What went to the log or stderr while the screen was up, said again after it.
        self.notices: list[str] = []
        self._lock = threading.Lock()
        self._pending: list[tuple[str, str]] = []
        self._posted = False
        self._showing = False
        self._first_update_done = False
        self._runs: dict[str, RunStatus] = {}
        self._summary = ""
        self._fitted: Fitted | None = None
        self._header = ""
        self._can_cancel: bool | None = None
        self._handlers: list[logging.Handler] = []
        self._unsubscribe = monitor.subscribe(self._on_change)

    # -- layout ---------------------------------------------------------------------------

    @property
    def _base(self) -> Screen[Any]:
        """The screen of the table, under a run's page or the confirmation."""
        return self.screen_stack[0]

    @property
    def _table(self) -> RunTable:
        return self._base.query_one("#runs", RunTable)

    def compose(self) -> ComposeResult:
        yield Static(id="summary")
        yield Static(id="header")
        yield RunTable(id="runs")
        yield Input(placeholder="search run names (Enter: apply, Esc: clear)", id="search")
        yield Footer()

    def on_mount(self) -> None:
        root = logging.getLogger()
        self._handlers = list(root.handlers)
        for handler in self._handlers:
            root.removeHandler(handler)
        root.addHandler(_ToApp(self))
        self.begin_capture_print(self, stdout=False, stderr=True)
        threading.Thread(target=self._wait_for_signal, daemon=True).start()
        self.set_interval(1.0, self._tick)  # ages and ETAs move on
        self._showing = True
        self._render()
        self._table.focus()

    def on_unmount(self) -> None:
        self._showing = False
        self._unsubscribe()
        root = logging.getLogger()
        for handler in list(root.handlers):
            if isinstance(handler, _ToApp):
                root.removeHandler(handler)
        for handler in self._handlers:
            root.addHandler(handler)

    def on_resize(self, _event: events.Resize) -> None:
        if self._showing:
            self._render()

    # -- what comes in --------------------------------------------------------------------

    def _on_change(self, change: Change) -> None:
        """The monitor's subscriber (its thread): remember, and post one update a burst."""
        with self._lock:
            self._pending.append((change.kind, change.run.config))
            if self._posted or not self._showing:
                return
            self._posted = True
        self.post_message(_Update())

    def _wait_for_signal(self) -> None:
        self.done.wait()
        self.post_message(_Stop())

    def on__update(self, _message: _Update) -> None:
        self.set_timer(_COALESCE_SECONDS, self._apply_changes)

    def on__stop(self, _message: _Stop) -> None:
        self.exit()

    def on__notice(self, message: _Notice) -> None:
        self.notices.append(message.text)
        self.notify(message.text, severity=message.severity, timeout=10)  # type: ignore[arg-type]

    def on_print(self, event: events.Print) -> None:
        if event.text.strip():
            self.on__notice(_Notice(event.text.strip(), "warning"))

    def _apply_changes(self) -> None:
        with self._lock:
            pending, self._pending, self._posted = self._pending, [], False
        at = time.monotonic()
        for kind, config in pending:
            # The first evaluation reports every run as new: only later arrivals are news.
            if kind in ("changed", "removed") or (kind == "new" and self._first_update_done):
                self.state.mark(config, at)
        self._first_update_done = True
        self._render()

    # -- drawing --------------------------------------------------------------------------

    def _render(self) -> None:
        """Bring the whole screen up to date (a change, a key, a resize): the rows
        filtered, sorted and fitted to the width; the table repaints what differs."""
        if not self._showing:
            return
        runs = self.monitor.runs
        now, mono = time.time(), time.monotonic()
        shown = self.state.shown(runs, now)
        self._runs = {run.config: run for run in runs}
        summary = self.state.summary(runs, len(self.monitor.unrecognised), len(shown))
        if summary != self._summary:
            self._summary = summary
            self._base.query_one("#summary", Static).update(Text(summary))
        rows = [self.state.cells(run, now, mono) for run in shown]
        width = max(40, self.size.width - _SCROLLBAR - 1)
        self._fitted = fit(_SCREEN_FIT, rows, width, (), measure=_cells_of)
        widths = [
            max(_cells_of(text) for text in column)
            for column in zip(self._fitted.headers, *self._fitted.rows, strict=True)
        ]
        header = line_text(self._fitted.headers, widths)
        if header != self._header:
            self._header = header
            self._base.query_one("#header", Static).update(Text(header))
        keys = [run.config for run in shown]
        self._table.show(
            keys,
            dict(zip(keys, self._fitted.rows, strict=True)),
            {run.config: STATUS_STYLE[run.status][0] for run in shown},
            widths,
        )
        self._after_render()

    def _tick(self) -> None:
        """Once a second: the clocks of the rows on screen move on (ages, ETAs), in the
        order and cut of the last full render. A row scrolled into view is at most a
        tick behind."""
        if not self._showing or self._fitted is None:
            return
        table = self._table
        now, mono = time.time(), time.monotonic()
        # Marks older than MARK_SECONDS are forgotten here: a row loses its mark within a
        # second, with no update of its own.
        self.state.forget_marks(mono)
        for key in table.visible_keys():
            run = self._runs.get(key)
            if run is None:
                continue
            row = self._fitted.cut(_SCREEN_FIT, self.state.cells(run, now, mono), _cells_of)
            if not table.update_row(key, row, STATUS_STYLE[run.status][0]):
                self._render()  # a text outgrew its column
                return
        self._after_render()

    def _after_render(self) -> None:
        if isinstance(self.screen, DetailScreen) and self.screen.run.config in self._runs:
            self.screen.show(self._runs[self.screen.run.config])
        self._offer_cancel()

    def _offer_cancel(self) -> None:
        """Grey Cancel out in the footer, or not, when that changes (redrawing the footer
        costs more than the rest of an update)."""
        run = self.selected()
        can = run is not None and run.status.is_active
        if can != self._can_cancel:
            self._can_cancel = can
            self.refresh_bindings()

    def selected(self) -> RunStatus | None:
        """The run under the cursor (or on the open page)."""
        if isinstance(self.screen, DetailScreen):
            return self._runs.get(self.screen.run.config, self.screen.run)
        key = self._table.cursor_key
        return None if key is None else self._runs.get(key)

    # -- keys -----------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Cancel is offered (not greyed out) only for an active run; the table's keys
        only over the table."""
        if action == "cancel":
            run = self.selected() if self._showing else None
            return (run is not None and run.status.is_active) or None
        if action in ("sort", "filter", "search", "detail"):
            return self.screen is self.screen_stack[0]
        return True

    def on_run_table_highlighted(self, _event: RunTable.Highlighted) -> None:
        self._offer_cancel()

    def action_sort(self) -> None:
        self.state.next_sort()
        self._render()

    def action_filter(self) -> None:
        self.state.next_filter()
        self._render()

    def action_search(self) -> None:
        search = self._base.query_one("#search", Input)
        search.add_class("shown")
        search.value = self.state.search
        search.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        self.state.search = event.value
        self._render()

    def on_input_submitted(self, _event: Input.Submitted) -> None:
        self._close_search()

    def on_key(self, event: events.Key) -> None:
        search = self._base.query_one("#search", Input)
        if event.key == "escape" and search.has_focus:
            search.value = ""
            self._close_search()
            event.stop()

    def _close_search(self) -> None:
        self._base.query_one("#search", Input).remove_class("shown")
        self._table.focus()

    def action_detail(self) -> None:
        if self._base.query_one("#search", Input).has_focus:
            self._close_search()
            return
        if self.screen is not self.screen_stack[0]:  # a page or the confirmation is open
            return
        run = self.selected()
        if run is not None:
            self.push_screen(DetailScreen(run, self.state.name(run)))

    def action_cancel(self) -> None:
        run = self.selected()
        if run is None:
            return
        name = self.state.name(run)
        if not run.status.is_active:
            self.notify(f"{name} is {run.status.value}: nothing to cancel", severity="warning")
            return
        info = run.process_info
        process = "" if info is None else f"; process {info.pid}" + (
            f" on {info.host}" if info.host else ""
        )
        question = (
            f"Cancel {name} ({run.status.value}, {run.progress.runner_type}{process})?\n"
            f"A local job gets SIGTERM, then SIGKILL after {self.grace_seconds:g}s; another "
            "job is stopped by its plugin."
        )

        def answered(yes: bool | None) -> None:
            if yes:
                self.run_worker(
                    lambda: self._cancel(run, name), thread=True, exit_on_error=False
                )

        self.push_screen(ConfirmCancel(question), answered)

    def _cancel(self, run: RunStatus, name: str) -> None:
        """The stop (a worker thread: it blocks until the job is gone or killed)."""
        from progresskit.builtin.local_process import wait_for_stops

        try:
            cancel_run(self.pm, run, self.grace_seconds)
        except CancelRefused as exc:
            self.post_message(_Notice(f"{name}: not cancelled: {exc}", "error"))
            return
        self.post_message(_Notice(f"{name}: cancel requested", "information"))
        for stop in wait_for_stops():
            ended, line = stop.described()
            self.post_message(_Notice(f"{name}: {line}", "information" if ended else "error"))

    def action_quit(self) -> None:  # type: ignore[override]
        self.exit()


def run_screen(
    monitor: Monitor, pm: PluginManager, state: ViewState, done: threading.Event, grace: float
) -> list[str]:
    """Show the screen over ``monitor`` (started here) until ``q``, Ctrl-C or ``done``;
    returns what was logged meanwhile."""
    app = WatchApp(monitor, pm, state, done, grace, driver_class=_stdout_driver())
    monitor.start()
    app.run()
    return app.notices

