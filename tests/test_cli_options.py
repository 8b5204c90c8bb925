"""Command-line overrides take one validated path: the config schema checks each exactly as
the key it overrides is checked in a file, so an invalid one is refused (exit 2) with a
message naming the option, by every command alike."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers.cli import run_cli
from helpers.runs import make_trainer_run
from progresskit import ConfigError, Monitor, Tracking, get_plugin_manager

INVALID = [
    ("status", "--sleep-time", "-5", "must be > 0 seconds"),
    ("status", "--sleep-time", "0", "must be > 0 seconds"),
    ("status", "--outdated-days", "0", "must be > 0 days"),
    ("status", "--outdated-days", "-1", "must be > 0 days"),
    ("watch", "--poll-interval", "-5", "must be > 0 seconds"),
    ("watch", "--poll-interval", "0", "must be > 0 seconds"),
    ("watch", "--heartbeat", "-1", "must be >= 0 seconds"),
    ("serve", "--grace", "-1", "must be >= 0 seconds"),
    ("serve", "--ping-interval", "0", "must be > 0 seconds"),
]


@pytest.mark.parametrize(("command", "option", "value", "reason"), INVALID)
def test_an_invalid_override_exits_2_naming_the_option(
    tmp_path: Path, command: str, option: str, value: str, reason: str
) -> None:
    run = make_trainer_run(tmp_path / "runs" / "r", 1, total=3)
    target = run if command == "status" else run.parent
    result = run_cli(command, str(target), option, value, cwd=tmp_path)
    assert result.ret == 2, result.stdout + result.stderr
    assert f"{option}:" in result.stderr and reason in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""  # refused before any run is read


def test_a_valid_override_still_applies(tmp_path: Path) -> None:
    run = make_trainer_run(tmp_path / "r", 1, total=3, age=600)
    assert run_cli("status", str(run), "--json", cwd=tmp_path).json()["runs"][0]["status"] == (
        "running"
    )
    result = run_cli("status", str(run), "--json", "--sleep-time", "60", cwd=tmp_path)
    assert result.json()["runs"][0]["status"] == "failed"


def test_a_value_that_is_no_number_is_argparse_s_to_refuse(tmp_path: Path) -> None:
    result = run_cli("status", str(tmp_path), "--sleep-time", "soon", cwd=tmp_path)
    assert result.ret == 2
    assert "argument --sleep-time: invalid float value: 'soon'" in result.stderr


def test_library_overrides_are_checked_as_well(tmp_path: Path) -> None:
    pm = get_plugin_manager()
    with pytest.raises(ConfigError, match="overrides: key 'sleep_time': must be > 0 seconds"):
        Tracking(pm, overrides={"sleep_time": -5})
    with pytest.raises(ConfigError, match="key 'watch_poll_interval': must be > 0 seconds"):
        Monitor(tmp_path, pm=pm, sinks=[], overrides={"watch_poll_interval": -5})
