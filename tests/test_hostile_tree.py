"""Hostile tree shapes under a scanned root (issue 16): symlink loops, links pointing back
up, a link to ``/``, links out of the root. Each real directory is walked once; a loop is
one ``unrecognised`` entry; the root is left through a link only when asked."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from helpers.hostile import trainer_run
from progresskit.engine.session import Tracking
from progresskit.model.unclaimed import ScanResult
from progresskit.testing import CliResult, plugin_manager, write_config


def scan(root: Path) -> ScanResult:
    return Tracking(plugin_manager()).scan(str(root), processes={})


def names(result: ScanResult, root: Path) -> list[str]:
    return sorted(os.path.relpath(r.work_dir, root) for r in result)


def test_a_symlink_loop_hides_no_run(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    trainer_run(root / "a")
    (root / "self").symlink_to("self")  # ELOOP on every stat
    (root / "ping").symlink_to("pong")
    (root / "pong").symlink_to("ping")
    assert names(scan(root), root) == ["a"]


def test_links_back_up_give_one_row_per_run_and_one_entry_per_loop(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    trainer_run(root / "project" / "run")
    level = root / "project"
    for i in range(4):  # k=4 links to the root: 4**8 paths down to scan_max_depth
        (level / f"up{i}").symlink_to(root, target_is_directory=True)
    result = scan(root)
    assert names(result, root) == ["project/run"]
    loops = sorted(os.path.relpath(e.path, root) for e in result.unrecognised)
    assert loops == [f"project/up{i}" for i in range(4)]
    assert all("symlink loop" in e.reason for e in result.unrecognised)


def test_a_link_to_the_filesystem_root_is_not_followed(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    trainer_run(root / "a")
    (root / "slash").symlink_to("/", target_is_directory=True)
    result = scan(root)
    assert names(result, root) == ["a"]
    assert result.unrecognised == []


def test_links_out_of_the_root_are_followed_only_when_asked(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    elsewhere = trainer_run(tmp_path / "elsewhere" / "b")
    trainer_run(root / "a")
    (root / "b").symlink_to(elsewhere, target_is_directory=True)
    assert names(scan(root), root) == ["a"]
    write_config(root, {"scan_external_links": True})
    assert names(scan(root), root) == ["a", "b"]


def test_a_link_inside_the_root_to_a_run_is_that_run_once(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    trainer_run(root / "run5")
    (root / "latest").symlink_to("run5", target_is_directory=True)
    (root / "zlatest").symlink_to("run5", target_is_directory=True)
    result = scan(root)
    assert names(result, root) == ["run5"]
    assert result.unrecognised == []


def test_a_scanned_tree_of_links_is_fast_from_the_command_line(
    cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    root = tmp_path / "runs"
    trainer_run(root / "x" / "run")
    for i in range(4):
        (root / "x" / f"up{i}").symlink_to("..", target_is_directory=True)
    (root / "loop").symlink_to("loop")
    result = cli("status", str(root), "--json", cwd=tmp_path, timeout=60)
    assert "Traceback" not in result.stderr
    document = result.json()
    assert [Path(r["work_dir"]).name for r in document["runs"]] == ["run"]
    assert document["summary"]["unrecognised"] == 4
