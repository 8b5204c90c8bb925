"""The watch screen's table: one line per run, scrolled, with a cursor.

Textual's ``DataTable`` repaints every visible cell whenever one cell changes (its render
cache is keyed on a table-wide update count); with hundreds of runs and ten changes a
second that is most of a core. This widget keeps each row's rendered line (a ``Strip``)
until that row's texts change, and repaints only the lines that did, so an update costs in
proportion to what changed on screen.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

__all__ = ["RunTable", "line_text"]

#: Between two columns.
_RULE = " │ "


def line_text(cells: Sequence[str], widths: Sequence[int]) -> str:
    """The cells laid out in columns of ``widths`` (the header line's text, and a row's)."""
    return " " + _RULE.join(c + " " * (w - cell_len(c)) for c, w in zip(cells, widths, strict=True))


class RunTable(ScrollView, can_focus=True):
    """Rows of texts keyed by run, one styled column (the status) and a cursor."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {"runtable--cursor", "runtable--rule"}
    DEFAULT_CSS = """
    RunTable { height: 1fr; overflow-x: auto; overflow-y: auto; }
    RunTable > .runtable--cursor { background: $accent 40%; text-style: bold; }
    RunTable > .runtable--rule { color: $foreground 40%; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,k", "move(-1)", "Up", show=False),
        Binding("down,j", "move(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home", "move(-1000000000)", "First", show=False),
        Binding("end", "move(1000000000)", "Last", show=False),
    ]

    class Highlighted(Message):
        """The cursor moved to another run (or the run under it changed)."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.keys: list[str] = []
        self.row_texts: dict[str, tuple[str, ...]] = {}
        self.row_styles: dict[str, str] = {}
        self.widths: tuple[int, ...] = ()
        #: The index of the styled column (the status word).
        self.styled_column = 2
        self.cursor = 0
        self._index: dict[str, int] = {}
        self._strips: dict[tuple[str, bool], Strip] = {}
        self._parsed: dict[str, Style] = {}

    # -- what it shows --------------------------------------------------------------------

    @property
    def cursor_key(self) -> str | None:
        """The run under the cursor."""
        return self.keys[self.cursor] if 0 <= self.cursor < len(self.keys) else None

    def show(
        self,
        keys: Sequence[str],
        texts: Mapping[str, tuple[str, ...]],
        styles: Mapping[str, str],
        widths: Sequence[int],
    ) -> None:
        """Show these rows, in this order; repaint only the lines that changed."""
        under = self.cursor_key
        keys = list(keys)
        widths = tuple(widths)
        moved = keys != self.keys or widths != self.widths
        changed = [
            k
            for k in keys
            if self.row_texts.get(k) != texts[k] or self.row_styles.get(k) != styles[k]
        ]
        self.keys, self.widths = keys, widths
        self.row_texts = {k: texts[k] for k in keys}
        self.row_styles = {k: styles[k] for k in keys}
        self._index = {k: i for i, k in enumerate(keys)}
        if moved:
            self._strips.clear()
        else:
            for key in changed:
                self._strips.pop((key, True), None)
                self._strips.pop((key, False), None)
        self.virtual_size = Size(cell_len(line_text(("",) * len(widths), widths)), len(keys))
        if under is not None and under in self._index:
            self.cursor = self._index[under]
        self.cursor = max(0, min(self.cursor, len(keys) - 1))
        if moved:
            self.refresh()
        else:
            for key in changed:
                self.refresh_line(self._index[key])
        if moved or under != self.cursor_key or under in changed:
            self.post_message(self.Highlighted())

    def update_row(self, key: str, texts: tuple[str, ...], style: str) -> bool:
        """Change one row's texts in place (a clock moved on); ``False`` when they no
        longer fit its columns (the caller lays the table out again)."""
        if key not in self._index:
            return True
        if any(cell_len(t) > w for t, w in zip(texts, self.widths, strict=True)):
            return False
        if self.row_texts[key] != texts or self.row_styles[key] != style:
            self.row_texts[key], self.row_styles[key] = texts, style
            self._strips.pop((key, True), None)
            self._strips.pop((key, False), None)
            self.refresh_line(self._index[key])
        return True

    def visible_keys(self) -> list[str]:
        """The runs on screen now."""
        top = int(self.scroll_offset.y)
        return self.keys[top : top + self.size.height]

    # -- drawing --------------------------------------------------------------------------

    def _style(self, text: str) -> Style:
        if text not in self._parsed:
            self._parsed[text] = Style.parse(text) if text else Style.null()
        return self._parsed[text]

    def _strip(self, key: str, selected: bool) -> Strip:
        cached = self._strips.get((key, selected))
        if cached is not None:
            return cached
        rule = self.get_component_rich_style("runtable--rule")
        segments = [Segment(" ")]
        for i, (text, width) in enumerate(zip(self.row_texts[key], self.widths, strict=True)):
            if i:
                segments.append(Segment(_RULE, rule))
            style = self._style(self.row_styles[key]) if i == self.styled_column else None
            if i == 0 and text.strip():
                style = self._style("bold yellow")
            segments.append(Segment(text, style))
            segments.append(Segment(" " * (width - cell_len(text))))
        if selected:
            segments = list(
                Segment.apply_style(segments, post_style=self.get_component_rich_style(
                    "runtable--cursor"
                ))
            )
        strip = Strip(segments)
        self._strips[key, selected] = strip
        return strip

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        index = scroll_y + y
        width = self.size.width
        if index >= len(self.keys):
            return Strip.blank(width, self.rich_style)
        strip = self._strip(self.keys[index], index == self.cursor)
        return strip.crop_extend(scroll_x, scroll_x + width, self.rich_style)

    # -- keys and mouse -------------------------------------------------------------------

    def move_to(self, index: int) -> None:
        """Put the cursor on row ``index`` (clamped) and scroll it into view."""
        if not self.keys:
            return
        index = max(0, min(index, len(self.keys) - 1))
        if index == self.cursor:
            return
        old, self.cursor = self.cursor, index
        for row in (old, index):
            if 0 <= row < len(self.keys):
                self._strips.pop((self.keys[row], True), None)
                self.refresh_line(row)
        top, height = int(self.scroll_offset.y), max(1, self.size.height)
        if index < top:
            self.scroll_to(y=index, animate=False)
        elif index >= top + height:
            self.scroll_to(y=index - height + 1, animate=False)
        self.post_message(self.Highlighted())

    def action_move(self, delta: int) -> None:
        self.move_to(self.cursor + delta)

    def action_page(self, direction: int) -> None:
        self.move_to(self.cursor + direction * max(1, self.size.height - 1))

    def on_click(self, event: events.Click) -> None:
        self.move_to(int(self.scroll_offset.y) + event.y)
