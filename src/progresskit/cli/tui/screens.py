"""The watch screen's pages over the table: a run's page and the cancel confirmation."""

from __future__ import annotations

import time
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Footer, Static

from progresskit.cli.tui.detail import detail_lines
from progresskit.model.core import RunStatus

__all__ = ["ConfirmCancel", "DetailScreen"]


class DetailScreen(Screen[None]):
    """Everything known about one run: reason and cause in full, metrics, ETA band, the
    log's tail. Redrawn when its run changes."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,backspace", "app.pop_screen", "Back"),
        Binding("c", "app.cancel", "Cancel run"),
    ]

    def __init__(self, run: RunStatus, name: str) -> None:
        super().__init__()
        self.run = run
        self.run_name = name
        self._text = ""

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(id="detail")
        yield Footer()

    def on_mount(self) -> None:
        self.show(self.run)

    def show(self, run: RunStatus) -> None:
        """Draw ``run`` (when anything on the page differs)."""
        self.run = run
        text = "\n".join(detail_lines(run, self.run_name, time.time()))
        if text != self._text:
            self._text = text
            self.query_one("#detail", Static).update(Text(text))


class ConfirmCancel(ModalScreen[bool]):
    """``Cancel this run? [y/N]``: True for y."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Yes, cancel it"),
        Binding("n,escape,q", "answer(False)", "No"),
    ]
    DEFAULT_CSS = """
    ConfirmCancel { align: center middle; }
    ConfirmCancel > Vertical {
        width: 80%; height: auto; border: thick $error; background: $surface; padding: 1 2;
    }
    """

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(Text(self.question))
            yield Static(Text("[y] cancel the run   [n] keep it", style="bold"))

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)
