"""The status table: the plain renderer prints, byte for byte, what rich prints to a pipe,
or leaves the table to rich; and ``progresskit status`` piped does not load rich for it."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

from hypothesis import event, given, settings
from hypothesis import strategies as st
from rich.console import Console

from helpers.runs import make_trainer_run
from progresskit.builtin.table import plain_table, render_table
from progresskit.model.core import ProgressInfo, RunStatus, Status

NOW = 1_800_000_000.0


def _rich(runs: list[RunStatus], width: int) -> str:
    """What rich prints on a console of ``width`` columns that is no terminal."""
    out = io.StringIO()
    render_table(runs, Console(file=out, width=width), NOW)
    return out.getvalue()


# Text from the plain alphabet, and from beyond it: markup, emoji codes, wide characters,
# combining marks, tabs and newlines, which only rich may lay out. Brackets, colons and
# backslashes are plain unless they make rich syntax: pieces of real markup, escapes and
# emoji codes (valid and not) are mixed with plain text to find where the line runs.
_PLAIN_ASCII = [chr(c) for c in range(0x20, 0x7F)]
_RICH_PIECES = [
    "[bold]", "[/bold]", "[/]", "[red]x[/red]", "[#f00]", "[@click]", "[link=x]", "[1]",
    "[ ]", "[]", "\\[", "\\[bold]", "\\\\[b]", ":smile:", ":a:", ":x:", ":heart-emoji:",
    ":no_such_code:", "12:30:00", "C:\\runs", "error: x", "a:b", "::", ": :", "]", "\\",
]
_text = st.one_of(
    st.text(st.sampled_from(_PLAIN_ASCII), max_size=40),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40),
    st.text(st.sampled_from("ab /._-[]:\\\t\n✔…█é中\u0301😀"), max_size=30),
    st.lists(st.sampled_from([*_RICH_PIECES, "a", " ", "b/c"]), max_size=6).map("".join),
)


@st.composite
def _runs(draw: st.DrawFn) -> RunStatus:
    total = draw(st.one_of(st.none(), st.integers(0, 10_000)))
    steps = draw(st.one_of(st.none(), st.integers(0, 10**6)))
    eta = draw(st.one_of(st.none(), st.floats(0, 10**7)))
    low = draw(st.one_of(st.none(), st.floats(0, 10**7)))
    progress = ProgressInfo(
        completed_epochs=draw(st.integers(0, 10_000)),
        total_epochs=total,
        progress_percentage=draw(st.floats(0, 100)),
        runner_type=draw(st.sampled_from(["trainer", "evaluator", "multi_stage", "comfyui"])),
        completed_steps=steps,
        total_steps=draw(st.one_of(st.none(), st.integers(1, 10**6))) if steps else None,
        last_update_time=draw(st.one_of(st.none(), st.floats(NOW - 10**6, NOW))),
        eta_seconds=eta,
        eta_low_seconds=low,
        eta_high_seconds=None if low is None else low + draw(st.floats(0, 10**5)),
    )
    return RunStatus(
        draw(_text),
        draw(_text),
        progress,
        draw(st.sampled_from(list(Status))),
        None,
        draw(_text),
        draw(st.one_of(st.none(), st.floats(NOW - 10**7, NOW))),
    )


@settings(max_examples=500, deadline=None)
@given(st.lists(_runs(), min_size=1, max_size=6), st.sampled_from([40, 80, 120, 160, 200]))
def test_the_plain_table_is_what_rich_prints_or_nothing(
    runs: list[RunStatus], width: int
) -> None:
    plain = plain_table(runs, NOW, width)
    event("plain" if plain is not None else "rich")
    if plain is not None:
        assert plain == _rich(runs, width)


def test_a_typical_table_is_plain(tmp_path: Path) -> None:
    # The common case must take the plain path, or the renderer saves nothing.
    runs = [
        RunStatus(
            f"/data/runs/exp_{i}", f"/data/runs/exp_{i}",
            ProgressInfo(completed_epochs=i, total_epochs=10, progress_percentage=10.0 * i,
                         runner_type="trainer", last_update_time=NOW - 30,
                         eta_seconds=600.0, eta_low_seconds=500.0, eta_high_seconds=900.0),
            status, None, "last sign of life 30s ago", NOW - 30,
        )
        for i, status in enumerate(Status)
    ]
    plain = plain_table(runs, NOW, 160)
    assert plain is not None
    assert plain == _rich(runs, 160)


def test_colons_and_brackets_that_are_no_rich_syntax_are_plain() -> None:
    # Paths and reasons hold colons and brackets; only markup and emoji codes need rich.
    def run(work_dir: str, reason: str) -> RunStatus:
        progress = ProgressInfo(completed_epochs=2, total_epochs=10, progress_percentage=20.0,
                                runner_type="trainer", last_update_time=NOW - 30)
        return RunStatus(work_dir, work_dir, progress, Status.FAILED, None, reason, NOW - 30)

    runs = [
        run("C:\\runs\\exp 1", "error: CUDA out of memory"),
        run("/runs/a[1]", "exit 1: [0] of [ 2]"),
    ]
    plain = plain_table(runs, NOW, 160)
    assert plain is not None
    assert plain == _rich(runs, 160)
    for reason in ("[bold]x", "see :warning:", "a\\[b"):
        assert plain_table([run("/runs/b", reason)], NOW, 160) is None


def test_piped_status_prints_rich_table_without_loading_rich(tmp_path: Path) -> None:
    make_trainer_run(tmp_path / "run", 2, total=10, age=7200)
    # The target relative to the cwd, so the table fits in the 160 columns of a pipe (a
    # long temporary path would be folded, by rich: see the property test above).
    # One process, one run: `status` as it is, then with the plain renderer refusing (so
    # rich lays the table out), both to the same pipe.
    code = (
        "import sys\n"
        "from progresskit.builtin import table\n"
        "from progresskit.cli.main import main\n"
        "first = main(['status', sys.argv[1]])\n"
        "print('rich' in sys.modules, file=sys.stderr)\n"
        "print('=====', flush=True)\n"
        "table.plain_table = lambda *args: None\n"
        "second = main(['status', sys.argv[1]])\n"
        "print(first, second, file=sys.stderr)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE")}
    env["PROGRESSKIT_HISTORY"] = "off"
    out = subprocess.run(
        [sys.executable, "-c", code, "run"], cwd=tmp_path, env=env,
        capture_output=True, text=True, check=True,
    )
    plain, rich = out.stdout.split("=====\n")
    assert out.stderr.split() == ["False", "0", "0"], out.stdout
    assert plain == rich
    assert "▶ running" in plain and "2h 0m ago" in plain


def test_unknown_progress_and_epochs_are_a_dash_not_zero() -> None:
    # Issue 15: unknown progress read as an empty bar at 0.0% and epochs as "0/? ep".
    import time

    from progresskit.builtin.table import row_cells

    progress = ProgressInfo(progress_percentage=None, completed_epochs=None,
                            runner_type="heartbeat")
    cells = row_cells(RunStatus("job", "/w", progress, Status.RUNNING), time.time())
    assert cells[3] == "-" and cells[4] == "-"
