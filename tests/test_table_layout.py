"""The status table at scale (issue 20): fitted to 80, 120 and 200 columns without folding a
cell, columns giving way in the documented order, one-line reasons, names relative to the
root, the urgency order, filters, the summary and TSV; through the real command."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.cells import cell_len
from rich.console import Console

from helpers.cli import run_cli
from helpers.runs import make_evaluator_run, make_trainer_run
from progresskit.builtin.runorder import URGENCY, parse_statuses, sort_runs, summary_text
from progresskit.builtin.table import plain_table, render_table
from progresskit.builtin.tablefit import ELLIPSIS, Column, cut_end, cut_middle, fit
from progresskit.cli.status import reasons_text
from progresskit.model.core import ProgressInfo, RunStatus, Status

NOW = 1_800_000_000.0
LONG_REASON = (
    "Traceback (most recent call last):\n"
    '  File "train.py", line 12, in <module>\n'
    "    main()\n"
    "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 15.78 GiB total)"
)


def _run(name: str, status: Status, *, pct: float | None = 40.0, eta: float | None = None,
         reason: str = "last sign of life 30s ago", activity: float = NOW - 30) -> RunStatus:
    progress = ProgressInfo(
        completed_epochs=4, total_epochs=10, progress_percentage=pct, runner_type="trainer",
        last_update_time=NOW - 30, eta_seconds=eta,
        eta_low_seconds=None if eta is None else eta * 0.8,
        eta_high_seconds=None if eta is None else eta * 1.5,
    )
    return RunStatus(name, name, progress, status, None, reason, activity)


def _sample() -> list[RunStatus]:
    return [
        _run("brush_garden/sweep_lr_0.0003_wd_0.01/seed_1234", Status.RUNNING, eta=4000.0),
        _run("brush_garden/sweep_lr_0.0001_wd_0.10/seed_4321", Status.FAILED, reason=LONG_REASON),
        _run("evals/30000/3/0000", Status.FINISHED, pct=100.0, reason="complete"),
        _run("short", Status.STUCK, reason="no sign of life for 2h 0m (sleep_time 30m)"),
    ]


def _rich_lines(runs: list[RunStatus], width: int) -> list[str]:
    out = io.StringIO()
    render_table(runs, Console(file=out, width=width), NOW)
    return out.getvalue().splitlines()


@pytest.mark.parametrize("width", [80, 120, 200])
def test_no_cell_is_folded_at_80_120_and_200_columns(width: int) -> None:
    runs = _sample()
    plain = plain_table(runs, NOW, width)
    assert plain is not None  # plain text: the fast path serves it
    lines = plain.splitlines()
    # header, rule, one line per run, summary: nothing wrapped onto a second line
    assert len(lines) == 2 + len(runs) + 1
    assert all(len(line) <= width for line in lines)
    assert plain.splitlines() == _rich_lines(runs, width)
    body = "\n".join(lines[2:-1])
    # A name is cut with an ellipsis (both of its ends kept), never split over lines.
    assert "br\n" not in body and "/ush" not in body
    for run, line in zip(runs, lines[2:-1], strict=True):
        head, _, tail = line.split("│")[0].strip().partition(ELLIPSIS)
        assert run.config.startswith(head) and run.config.endswith(tail)
    if width == 200:
        assert "brush_garden/sweep_lr_0.0003_wd_0.01/seed_1234" in body
    else:
        assert ELLIPSIS in body


def test_columns_give_way_in_the_documented_order() -> None:
    runs = _sample()

    def headers(width: int) -> list[str]:
        text = plain_table(runs, NOW, width)
        assert text is not None
        return [h.strip() for h in text.splitlines()[0].split("┃")]

    assert headers(200) == ["run", "type", "status", "progress", "done", "ETA", "last update",
                            "reason"]
    assert headers(120) == ["run", "status", "progress", "done", "ETA", "last update",
                            "reason"]
    assert headers(100) == ["run", "status", "progress", "ETA", "reason"]
    # at 80 the bar goes too (the percentage stays), then the reason, then the ETA
    text = plain_table(runs, NOW, 80)
    assert text is not None and "█" not in text and "40.0%" in text
    assert headers(80) == ["run", "status", "progress", "ETA", "reason"]
    assert headers(60) == ["run", "status", "progress", "ETA"]
    assert headers(50) == ["run", "status", "progress"]


def test_a_wide_character_table_is_fitted_by_rich_the_same_way() -> None:
    runs = [_run("実験/スイープ/学習率_0.0003/シード_1234", Status.RUNNING), *_sample()]
    assert plain_table(runs, NOW, 80) is None  # only rich measures these
    lines = _rich_lines(runs, 80)
    assert len(lines) == 2 + len(runs) + 1
    assert all(cell_len(line) <= 80 for line in lines)


def test_a_reason_is_one_line_in_the_table() -> None:
    text = plain_table(_sample(), NOW, 200)
    assert text is not None
    assert "Traceback (most recent call last): (+3 lines)" in text
    assert "CUDA out of memory" not in text


def test_the_urgency_order_then_eta() -> None:
    runs = [
        _run("f", Status.FINISHED), _run("p", Status.PENDING), _run("r_late", Status.RUNNING,
        eta=9000.0), _run("r_soon", Status.RUNNING, eta=60.0), _run("r_none", Status.RUNNING),
        _run("s", Status.STUCK), _run("x", Status.FAILED), _run("c", Status.CRASHED),
    ]
    names = [r.config for r in sort_runs(runs, "urgency", NOW)]
    assert names == ["c", "x", "s", "r_soon", "r_late", "r_none", "p", "f"]
    assert [r.config for r in sort_runs(runs, "name", NOW)] == sorted(names)
    by_progress = [_run("a", Status.RUNNING, pct=90.0), _run("b", Status.RUNNING, pct=None),
                   _run("c", Status.RUNNING, pct=10.0)]
    assert [r.config for r in sort_runs(by_progress, "progress", NOW)] == ["c", "a", "b"]
    updated = [_run("old", Status.FINISHED, activity=NOW - 900),
               _run("new", Status.FINISHED, activity=NOW - 5)]
    assert [r.config for r in sort_runs(updated, "updated", NOW)] == ["new", "old"]
    assert summary_text(runs, 2) == (
        "8 runs: 1 crashed, 1 failed, 1 stuck, 3 running, 1 pending, 1 finished; 2 unrecognised"
    )
    assert URGENCY[:3] == (Status.CRASHED, Status.FAILED, Status.STUCK)


def test_bad_status_words_are_named() -> None:
    assert parse_statuses("crashed, FAILED,stuck") == {Status.CRASHED, Status.FAILED,
                                                       Status.STUCK}
    with pytest.raises(ValueError, match=r"got 'crashd'; expected .*crashed, failed"):
        parse_statuses("crashd,failed")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60), st.integers(0, 70))
def test_cuts_fit_and_keep_the_ends(text: str, width: int) -> None:
    for cut in (cut_end, cut_middle):
        out = cut(text, width)
        assert len(out) <= width or (width == 0 and out == "")
        if len(text) <= width:
            assert out == text
        elif width > 2:
            assert out.count(ELLIPSIS) >= 1 and text.startswith(out.split(ELLIPSIS)[0])
    if len(text) > width > 2:
        assert text.endswith(cut_middle(text, width).rsplit(ELLIPSIS, 1)[1])


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.text("abc/_-", max_size=50), st.text("xyz ", max_size=80)),
             min_size=1, max_size=8),
    st.integers(30, 200),
)
def test_fit_never_exceeds_the_width_when_the_minimums_fit(
    rows: list[tuple[str, str]], width: int
) -> None:
    columns = (Column("run", cut="middle", minimum=12), Column("status"),
               Column("reason", cut="end", minimum=10))
    cells = [(name, "running", reason) for name, reason in rows]
    fitted = fit(columns, cells, width, [(2, "drop")])
    widths = [max(len(t) for t in col) for col in zip(fitted.headers, *fitted.rows, strict=True)]
    assert sum(widths) + 3 * (len(widths) - 1) <= width


# -- through the command ----------------------------------------------------------------


def _tree(root: Path) -> None:
    make_trainer_run(root / "sweep" / "lr_0.1", 2, total=4)
    make_trainer_run(root / "sweep" / "lr_0.01", 1, total=4, age=7200)
    make_evaluator_run(root / "evals" / "ok", scores={"acc": 0.4})
    (root / "mystery").mkdir(parents=True)
    (root / "mystery" / "config.json").write_text("{}")


def test_status_names_are_relative_and_urgent_runs_first(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    _tree(root)
    result = run_cli("status", str(root), cwd=tmp_path)
    lines = result.stdout.splitlines()
    rows = [line for line in lines[2:] if "│" in line]
    names = [row.split("│")[0].strip() for row in rows]
    assert names[-1] == "evals/ok"  # finished last
    assert set(names) == {"sweep/lr_0.1", "sweep/lr_0.01", "evals/ok"}
    assert str(root) not in "\n".join(rows)
    summary = next(line for line in lines if line.startswith("3 runs:"))
    assert summary.endswith("; 1 unrecognised")


def test_filters_sort_and_limit(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    _tree(root)
    only = run_cli("status", str(root), "--status", "finished", cwd=tmp_path)
    rows = [line for line in only.stdout.splitlines()[2:] if "│" in line]
    assert [row.split("│")[0].strip() for row in rows] == ["evals/ok"]
    assert "; 1 shown" in only.stdout
    assert only.ret == 1  # the exit code is the tree's (an unrecognised dir), not the view's

    limited = run_cli("status", str(root), "--sort", "name", "--limit", "1", "--json",
                      cwd=tmp_path)
    document = json.loads(limited.stdout)
    assert [r["config"] for r in document["runs"]] == [str(root / "evals" / "ok")]
    assert document["summary"]["total"] == 3 and document["summary"]["shown"] == 1

    active = run_cli("status", str(root), "--active", "--format", "json", cwd=tmp_path)
    assert {r["status"] for r in json.loads(active.stdout)["runs"]} <= {"running", "stuck",
                                                                        "pending"}

    bad = run_cli("status", str(root), "--status", "crashd", cwd=tmp_path)
    assert bad.ret == 2
    assert "argument --status: got 'crashd'; expected a comma-separated list" in bad.stderr
    zero = run_cli("status", str(root), "--limit", "0", cwd=tmp_path)
    assert zero.ret == 2 and "expected a whole number >= 1, got '0'" in zero.stderr


def test_verbose_and_json_keep_the_full_reason(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "crashed"
    make_trainer_run(run, 1, total=4)
    (run / "train_val_0.log").write_text(
        "training\nTraceback (most recent call last):\n  File \"x.py\", line 1\n"
        "ValueError: bad shape (3, 4)\n"
    )
    table = run_cli("status", str(tmp_path / "runs"), cwd=tmp_path)
    verbose = run_cli("status", str(tmp_path / "runs"), "-v", cwd=tmp_path)
    document = json.loads(run_cli("status", str(tmp_path / "runs"), "--json",
                                  cwd=tmp_path).stdout)
    reason = document["runs"][0]["reason"]
    assert "ValueError: bad shape (3, 4)" in reason
    assert reason[:20] in table.stdout and "reasons:" not in table.stdout
    assert f"crashed: {reason}" in verbose.stdout.splitlines()
    # A reason of several lines: its first line in the table, every line with --verbose.
    run_status = _run("runs/x", Status.FAILED, reason=LONG_REASON)
    text = reasons_text([run_status], {"runs/x": "x"})
    assert text.splitlines()[:2] == ["reasons:", "x: Traceback (most recent call last):"]
    assert "    RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB" in text


def test_tsv_is_one_line_per_run_with_numbers(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    _tree(root)
    result = run_cli("status", str(root), "--format", "tsv", cwd=tmp_path)
    rows = list(csv.DictReader(io.StringIO(result.stdout), delimiter="\t"))
    assert [r["run"] for r in rows][-1] == "evals/ok"
    by_name = {r["run"]: r for r in rows}
    assert by_name["sweep/lr_0.1"]["percent"] == "50.0"
    assert by_name["sweep/lr_0.1"]["epochs_done"] == "2"
    assert by_name["sweep/lr_0.1"]["epochs_total"] == "4"
    assert float(by_name["evals/ok"]["last_activity"]) > 0
    assert all("\t" not in v and "\n" not in v for r in rows for v in r.values())


def test_piped_width_follows_columns(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    make_trainer_run(root / ("a_rather_long_experiment_name_" * 3), 2, total=4)
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE")}
    env["PROGRESSKIT_HISTORY"] = "off"
    for columns, limit in (("80", 80), (None, 160)):
        if columns is None:
            env.pop("COLUMNS", None)
        else:
            env["COLUMNS"] = columns
        out = subprocess.run([sys.executable, "-m", "progresskit", "status", str(root)],
                             cwd=tmp_path, env=env, capture_output=True, text=True)
        lines = out.stdout.splitlines()
        assert max(len(line) for line in lines) <= limit
        assert len([line for line in lines if "│" in line]) == 1
