"""Run files are untrusted input (issue 16, docs/security.md): a FIFO, a device, a huge or
binary or deeply nested file, a hostile progresskit.yaml, escapes in names. Each is a row
or an error naming the file, never a hang, a traceback or a whole-file read."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from helpers.hostile import brush_run, events_run, hf_run, progress_run, trainer_run
from progresskit.builtin.multistage import MAX_LINE_BYTES
from progresskit.builtin.table import escape_text, plain_table, status_table
from progresskit.engine.session import Tracking
from progresskit.formats.events import encode_event, progress_event, stamp
from progresskit.formats.fileio import (
    MAX_FILE_ENV,
    FileTooLargeError,
    NotRegularFileError,
    read_bytes,
    read_json,
)
from progresskit.model.core import RunStatus
from progresskit.plugin.config import load_yaml
from progresskit.testing import CliResult, plugin_manager

Cli = Callable[..., CliResult]


def scan(root: Path) -> list[RunStatus]:
    return list(Tracking(plugin_manager()).scan(str(root), processes={}))


def only(root: Path) -> RunStatus:
    (run,) = scan(root)
    return run


def said(run: RunStatus) -> str:
    """Everything a row says about its problems."""
    return " | ".join(
        [run.reason or "", run.progress.error_message or "", *run.progress.warnings]
    )


def no_traceback(result: CliResult) -> None:
    assert "Traceback" not in result.stderr, result.stderr
    assert result.ret in (0, 1, 2), result


# -- FIFOs and devices named like expected files -----------------------------------------------

#: A FIFO in place of each file some reader opens: (name, run maker, path in the run).
FIFO_CASES = [
    ("training_status.json", brush_run, "training_status.json"),
    ("config.json", trainer_run, "config.json"),
    ("progress.json", trainer_run, "progress.json"),
    ("trainer_state.json", hf_run, "checkpoint-100/trainer_state.json"),
    ("events.jsonl", None, "events.jsonl"),
    (".progresskit-lease.json", trainer_run, ".progresskit-lease.json"),
    ("progresskit.yaml", trainer_run, "progresskit.yaml"),
    ("progresskit-progress.json", progress_run, "progresskit-progress.json"),
    ("train.log", None, "train.log"),
]


@pytest.mark.parametrize(("name", "make", "where"), FIFO_CASES, ids=[c[0] for c in FIFO_CASES])
def test_a_fifo_named_like_an_expected_file_never_blocks_status(
    cli: Cli, tmp_path: Path, name: str, make: Callable[[Path], Path] | None, where: str
) -> None:
    root = tmp_path / "runs"
    run = root / "run"
    if make is None:
        run.mkdir(parents=True)
    else:
        make(run)
    fifo = run / where
    fifo.unlink(missing_ok=True)
    os.mkfifo(fifo)
    # A FIFO open for reading without O_NONBLOCK waits for a writer: forever, here.
    result = cli("status", str(root), "--json", cwd=tmp_path, timeout=60)
    no_traceback(result)
    document = result.json()
    text = json.dumps(document)
    assert "FIFO" in text, text  # the row (or its warning) says what was found there
    assert name in text or where in text


def test_a_device_named_like_a_status_file_is_not_read(tmp_path: Path) -> None:
    run = hf_run(tmp_path / "run")
    state = run / "checkpoint-100" / "trainer_state.json"
    state.unlink()
    state.symlink_to("/dev/zero")  # reading it whole would exhaust memory
    row = only(tmp_path)
    assert "character device" in said(row), said(row)


def test_the_central_reader_refuses_what_is_not_a_regular_file(tmp_path: Path) -> None:
    fifo = tmp_path / "f"
    os.mkfifo(fifo)
    with pytest.raises(NotRegularFileError, match="FIFO"):
        read_bytes(str(fifo))
    with pytest.raises(NotRegularFileError, match="directory"):
        read_json(str(tmp_path))


# -- size limits -------------------------------------------------------------------------------


def test_a_file_over_the_read_limit_is_not_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = hf_run(tmp_path / "run")
    state = run / "checkpoint-100" / "trainer_state.json"
    # 1 GB, sparse: costs nothing to make; reading it whole would cost a gigabyte.
    with open(state, "r+b") as fh:
        fh.truncate(1 << 30)
    row = only(tmp_path)
    assert "read limit" in said(row) and "PROGRESSKIT_MAX_FILE_MB" in said(row), said(row)


def test_the_read_limit_is_configurable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"pad": "x" * (2 << 20)}))
    assert read_json(str(path))["pad"]  # 2 MiB is under the default
    monkeypatch.setenv(MAX_FILE_ENV, "1")
    with pytest.raises(FileTooLargeError, match="1 MiB read limit"):
        read_json(str(path))


# -- documents that used to be tracebacks ------------------------------------------------------


def test_a_deeply_nested_lease_is_ignored_with_a_reason(tmp_path: Path) -> None:
    run = trainer_run(tmp_path / "run")
    (run / ".progresskit-lease.json").write_text("[" * 100_000 + "]" * 100_000)
    row = only(tmp_path)
    assert row.progress.runner_type == "trainer"
    assert "lease ignored" in row.reason and "nested too deeply" in row.reason, row.reason


HOSTILE_YAML: dict[str, bytes] = {
    "utf16-without-bom": "sleep_time: 5\n".encode("utf-16-le"),
    "invalid-utf8": b"sleep_time: 5\nrunner: \xff\xfe\n",
    "nested-100k": b"runner: " + b"[" * 100_000 + b"]" * 100_000 + b"\n",
    "integer-5000-digits": b"sleep_time: " + b"7" * 5000 + b"\n",
    "billion-laughs": b"a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
    + b"".join(
        f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]\n".encode()
        for p, c in zip("abcdefgh", "bcdefghi", strict=True)
    )
    + b"sinks: *i\n",
    "recursive-alias": b"runner: &r [1, *r]\n",
}


@pytest.mark.parametrize("case", sorted(HOSTILE_YAML))
def test_a_hostile_config_is_an_error_naming_the_file_and_exit_2(
    cli: Cli, tmp_path: Path, case: str
) -> None:
    run = trainer_run(tmp_path / "run")
    config = run / "progresskit.yaml"
    config.write_bytes(HOSTILE_YAML[case])
    started = time.monotonic()
    result = cli("status", str(run), "--json", cwd=tmp_path, timeout=60)
    no_traceback(result)
    assert result.ret == 2, result
    assert str(config) in " ".join(result.json()["errors"]), result
    assert len(result.stdout) + len(result.stderr) < 20_000  # no expanded value in a message
    assert time.monotonic() - started < 30


def test_a_hostile_config_in_a_tree_is_a_row_and_hides_no_other_run(tmp_path: Path) -> None:
    bad = trainer_run(tmp_path / "bad")
    (bad / "progresskit.yaml").write_bytes(HOSTILE_YAML["billion-laughs"])
    trainer_run(tmp_path / "good")
    rows = {Path(r.work_dir).name: r for r in scan(tmp_path)}
    assert rows["good"].progress.runner_type == "trainer"
    assert "aliases" in rows["bad"].reason and "progresskit.yaml" in rows["bad"].reason


def test_a_config_in_utf16_with_its_byte_order_mark_is_read() -> None:
    # YAML's own encodings: UTF-8, or UTF-16/32 announced by a byte-order mark.
    import tempfile

    with tempfile.NamedTemporaryFile("wb", suffix=".yaml", delete=False) as fh:
        fh.write("sleep_time: 5\n".encode("utf-16"))
    try:
        assert load_yaml(fh.name) == {"sleep_time": 5}
    finally:
        os.unlink(fh.name)


def test_a_json_file_path_template_with_an_unknown_field_is_a_config_error(
    cli: Cli, tmp_path: Path
) -> None:
    trainer_run(tmp_path / "run")
    config = tmp_path / "progresskit.yaml"
    config.write_text("sinks:\n  - type: json_file\n    path: '{work_dir}/{run_id}.json'\n")
    result = cli("status", str(tmp_path / "run"), cwd=tmp_path, timeout=60)
    no_traceback(result)
    assert result.ret == 2, result
    assert "{run_id}" in result.stderr and str(config) in result.stderr, result.stderr


HUGE = "1" + "0" * 400  # 10**400: no float holds it


@pytest.mark.parametrize(
    ("make", "where", "field"),
    [
        (progress_run, "progresskit-progress.json", "steps"),
        (brush_run, "training_status.json", "current_iteration"),
        (hf_run, "checkpoint-100/trainer_state.json", "global_step"),
        (trainer_run, "config.json", "epochs"),
    ],
    ids=["progress", "brush", "hf", "trainer-config"],
)
def test_a_number_too_large_for_a_float_is_a_warning_on_its_field(
    tmp_path: Path, make: Callable[[Path], Path], where: str, field: str
) -> None:
    run = make(tmp_path / "run")
    path = run / where
    text = path.read_text()
    document = json.loads(text)
    document[field] = 0  # a placeholder of the field's place, swapped for the raw number
    path.write_text(json.dumps(document).replace(f'"{field}": 0', f'"{field}": {HUGE}'))
    row = only(tmp_path)
    assert "failed" not in row.reason, row.reason  # not "tracker failed: OverflowError"
    assert row.progress.runner_type != "unknown", said(row)
    assert any(field in w for w in row.progress.warnings), said(row)


def test_a_binary_progress_json_is_recomputed(tmp_path: Path) -> None:
    run = trainer_run(tmp_path / "run")
    (run / "progress.json").write_bytes(bytes(range(256)) * 16)
    row = only(tmp_path)
    assert row.progress.runner_type == "trainer" and row.progress.completed_epochs == 2
    assert any("progress.json, recomputed" in w for w in row.progress.warnings), said(row)


# -- timestamps in the future ------------------------------------------------------------------


def test_a_status_file_dated_year_9999_does_not_keep_a_run_running(tmp_path: Path) -> None:
    run = brush_run(tmp_path / "run")
    path = run / "training_status.json"
    document = json.loads(path.read_text())
    document["last_updated"] = "9999-12-31T23:59:59Z"
    path.write_text(json.dumps(document))
    old = time.time() - 3 * 86400  # the file itself was last written three days ago
    os.utime(path, (old, old))
    row = only(tmp_path)
    assert row.status.value != "running", row
    assert any("in the future" in w and "9999" in w for w in row.progress.warnings), said(row)


# -- terminal escapes and markup in names ------------------------------------------------------

NAMES = ["x[/]y", "[red]boom", "clear\x1b[2Jscreen", "link\x1b]8;;evil.example\x07z",
         "rtl\u202etxt.exe", "two\nlines"]


def test_names_are_escaped_in_the_table_and_verbatim_in_json(cli: Cli, tmp_path: Path) -> None:
    root = tmp_path / "runs"
    for name in NAMES:
        trainer_run(root / name)
    table = cli("status", str(root), cwd=tmp_path, timeout=60)
    no_traceback(table)
    for raw in ("\x1b", "\u202e", "\x07"):
        assert raw not in table.stdout
    for name in NAMES:
        assert escape_text(name) in table.stdout, (name, table.stdout)
    data_rows = [line for line in table.stdout.splitlines() if "trainer" in line]
    assert len(data_rows) == len(NAMES), table.stdout  # no fake row from a newline
    listed = cli("status", str(root), "--json", cwd=tmp_path, timeout=60).json()
    # "x[/]y" is the run y in the directory "x[": its path holds the markup.
    assert sorted(os.path.relpath(r["work_dir"], root) for r in listed["runs"]) == sorted(NAMES)


def test_the_rich_table_on_a_terminal_shows_names_not_their_markup_or_escapes(
    tmp_path: Path,
) -> None:
    import io

    from rich.console import Console

    for name in NAMES:
        trainer_run(tmp_path / name)
    rows = scan(tmp_path)
    out = io.StringIO()
    Console(file=out, force_terminal=True, width=300).print(status_table(rows))
    text = out.getvalue()
    assert "x[/]y" in text and "[red]boom" in text
    assert "\x1b[2J" not in text and "\x1b]8" not in text and "\u202e" not in text
    assert plain_table(rows, time.time(), 300) is None or "\x1b" not in str(
        plain_table(rows, time.time(), 300)
    )


def test_escape_text_keeps_printable_text_and_escapes_the_rest() -> None:
    assert escape_text("runs/ünï 日本 C:\\x") == "runs/ünï 日本 C:\\x"
    assert escape_text("a\x1b[2Jb\u202ec\nd") == "a\\x1b[2Jb\\u202ec\\x0ad"


# -- trust of config files found by search -----------------------------------------------------


def _planted_sink(tmp_path: Path) -> tuple[Path, Path, Path]:
    """An ancestor config (in a shared directory) whose sink writes where it says."""
    shared = tmp_path / "shared"
    target = tmp_path / "stolen"
    target.mkdir()
    run = trainer_run(shared / "me" / "run")
    config = shared / "progresskit.yaml"
    config.write_text(
        f"sinks:\n  - type: json_file\n    path: '{target}/{{name}}.json'\n"
    )
    return config, run, target


def test_a_config_others_can_write_sets_no_sinks(cli: Cli, tmp_path: Path) -> None:
    config, run, target = _planted_sink(tmp_path)
    config.chmod(0o666)  # world-writable, as anything in /tmp may be
    result = cli("status", str(run), cwd=run, timeout=60)
    no_traceback(result)
    assert list(target.iterdir()) == []
    assert str(config) in result.stderr and "sinks" in result.stderr, result.stderr


def test_a_config_owned_by_another_user_sets_no_sinks(cli: Cli, tmp_path: Path) -> None:
    if os.getuid() != 0:
        pytest.skip("giving a file to another user takes root")
    config, run, target = _planted_sink(tmp_path)
    os.chown(config, 12345, 12345)
    config.chmod(0o644)
    result = cli("status", str(run), cwd=run, timeout=60)
    assert list(target.iterdir()) == []
    assert "owned by uid 12345" in result.stderr, result.stderr


def test_a_config_named_with_config_or_owned_and_private_is_trusted(
    cli: Cli, tmp_path: Path
) -> None:
    config, run, target = _planted_sink(tmp_path)
    config.chmod(0o666)
    cli("status", str(run), "--config", str(config), cwd=run, timeout=60)
    assert [p.name for p in target.iterdir()] == ["run.json"]
    (target / "run.json").unlink()
    config.chmod(0o644)
    cli("status", str(run), cwd=run, timeout=60)
    assert [p.name for p in target.iterdir()] == ["run.json"]


def test_untrusted_config_keeps_its_harmless_keys(tmp_path: Path) -> None:
    config, run, _target = _planted_sink(tmp_path)
    config.write_text(config.read_text() + "sleep_time: 7\n")
    config.chmod(0o666)
    values = Tracking(plugin_manager()).config_for(str(run))
    assert values["sleep_time"] == 7 and values["sinks"] == []


# -- an event log whose last line has no newline -----------------------------------------------


def test_an_unended_last_line_waits_and_an_overlong_line_is_skipped(tmp_path: Path) -> None:
    run = events_run(tmp_path / "run")
    log = run / "events.jsonl"
    tracking = Tracking(plugin_manager())
    with open(log, "ab") as fh:  # a writer mid-line, or garbage without newlines
        fh.write(b'{"event_type": "progress", "pad": "' + b"x" * (3 << 20))
    first = tracking.status(str(run), discover_processes=False)
    assert first.progress.stage_progress_percentage == 40.0  # the complete lines count
    assert not first.progress.warnings  # an unended line may still be being written
    event = progress_event("training", 80.0, "y2", 3, 5)
    stamp(event, "run-1")
    with open(log, "ab") as fh:
        fh.write(b'"}\n' + encode_event(event))
    second = tracking.status(str(run), discover_processes=False)
    assert second.progress.stage_progress_percentage == 80.0
    assert second.progress.warnings == (
        f"events.jsonl: line 4: longer than {MAX_LINE_BYTES} bytes; line skipped",
    )
