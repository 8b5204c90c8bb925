"""End to end: the real `progresskit` command in a subprocess, on fabricated trees."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers.cli import run_cli
from helpers.runs import DAY, make_evaluator_run, make_trainer_run
from progresskit.testing import CliResult


def statuses(result: CliResult) -> dict[str, str]:
    document = json.loads(result.stdout)
    return {Path(r["work_dir"]).name: r["status"] for r in document["runs"]}


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    make_trainer_run(root / "running", 2, total=10)
    make_trainer_run(root / "finished", 3, total=3, age=3600)
    make_trainer_run(root / "outdated", 3, total=3, age=60 * DAY)
    make_trainer_run(root / "failed", 1, total=3, age=3 * DAY)
    values = [0.5, 0.6, 0.7, 0.69, 0.68, 0.67]
    make_trainer_run(
        root / "early",
        6,
        scores=[{"acc": v} for v in values],
        age=3600,
        config={"epochs": 30, "early_stopping": {"patience": 3, "metric": "acc"}},
    )
    make_evaluator_run(root / "evals" / "done", scores={"aggregated": {"acc": 0.9}})
    make_evaluator_run(root / "evals" / "corrupt", raw='{"aggre', age=3 * DAY)
    return root


def test_json_output_covers_every_status(tree: Path, tmp_path: Path) -> None:
    result = run_cli("status", str(tree), "--json", cwd=tmp_path)
    assert result.ret == 1, result.stderr
    assert statuses(result) == {
        "running": "running",
        "finished": "finished",
        "outdated": "outdated",
        "failed": "failed",
        "early": "finished",
        "done": "finished",
        "corrupt": "failed",
    }
    document = json.loads(result.stdout)
    assert document["format"] == "progresskit.status" and document["version"] == 1
    assert document["summary"]["total"] == 7
    assert document["errors"] == []
    early = next(r for r in document["runs"] if r["work_dir"].endswith("early"))
    assert early["progress"]["early_stopped"] is True
    assert early["progress"]["early_stopped_at_epoch"] == 6
    corrupt = next(r for r in document["runs"] if r["work_dir"].endswith("corrupt"))
    assert "not valid JSON" in corrupt["reason"]


def test_stuck_with_a_real_process_working_in_the_run(tmp_path: Path) -> None:
    run = make_trainer_run(tmp_path / "hung", 1, total=3, age=3 * DAY)
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], cwd=run)
    try:
        time.sleep(0.2)
        result = run_cli("status", str(run), "--json", cwd=tmp_path)
        document = json.loads(result.stdout)
        assert document["runs"][0]["status"] == "stuck"
        assert document["runs"][0]["process_info"]["pid"] == proc.pid
        assert result.ret == 1
    finally:
        proc.kill()
        proc.wait()
    after = run_cli("status", str(run), "--json", cwd=tmp_path)
    assert json.loads(after.stdout)["runs"][0]["status"] == "failed"


def test_human_table(tree: Path, tmp_path: Path) -> None:
    result = run_cli("status", str(tree), cwd=tmp_path)
    assert result.ret == 1
    for word in (
        "running",
        "finished",
        "outdated",
        "failed",
        "20.0%",
        "2/10 ep",
        "trainer",
        "evaluator",
    ):
        assert word in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_healthy_tree_exits_zero(tmp_path: Path) -> None:
    make_trainer_run(tmp_path / "a", 2, total=10)
    make_trainer_run(tmp_path / "b", 2, total=2)
    result = run_cli("status", str(tmp_path), cwd=tmp_path)
    assert result.ret == 0, result.stdout + result.stderr


def test_undetectable_directory_exits_2_with_diagnostics(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "notes.txt").write_text("hi")
    result = run_cli("status", str(tmp_path / "x"), cwd=tmp_path)
    assert result.ret == 2
    assert "Cannot detect runner type" in result.stderr
    assert "notes.txt" in result.stderr
    assert "epoch_0/" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_target_exits_2_but_other_targets_still_report(tmp_path: Path) -> None:
    run = make_trainer_run(tmp_path / "ok", 1, total=2)
    result = run_cli("status", str(tmp_path / "missing"), str(run), "--json", cwd=tmp_path)
    assert result.ret == 2
    document = json.loads(result.stdout)
    assert [Path(r["work_dir"]).name for r in document["runs"]] == ["ok"]
    assert "does not exist" in document["errors"][0]


def test_ambiguous_single_target_exits_2(tmp_path: Path) -> None:
    run = make_trainer_run(tmp_path / "r", 1)
    make_evaluator_run(run, scores={"acc": 1})
    result = run_cli("status", str(run), cwd=tmp_path)
    assert result.ret == 2
    assert "Ambiguous runner type" in result.stderr
    (run / "progresskit.yaml").write_text("runner_type: evaluator\n")
    pinned = run_cli("status", str(run), "--json", cwd=tmp_path)
    assert pinned.ret == 0
    assert json.loads(pinned.stdout)["runs"][0]["progress"]["runner_type"] == "evaluator"


def test_fresh_run_identified_by_its_config_alone(tmp_path: Path) -> None:
    run = tmp_path / "fresh"
    run.mkdir()
    (run / "progresskit.yaml").write_text("epochs: 5\n")
    result = run_cli("status", str(run), "--json", cwd=tmp_path)
    document = json.loads(result.stdout)
    assert document["runs"][0]["progress"]["runner_type"] == "trainer"
    assert document["runs"][0]["status"] == "failed"


def test_invalid_config_exits_2_naming_file_and_key(tmp_path: Path) -> None:
    run = make_trainer_run(tmp_path / "r", 1)
    config = tmp_path / "bad.yaml"
    config.write_text("epochs: 3\nepoch_count: 4\n")
    result = run_cli("status", str(run), "--config", str(config), cwd=tmp_path)
    assert result.ret == 2
    assert f"{config}: unknown key 'epoch_count'" in result.stderr


def test_bad_sink_in_config_fails_before_reading_runs(tmp_path: Path) -> None:
    run = make_trainer_run(tmp_path / "r", 1, total=2)
    (tmp_path / "progresskit.yaml").write_text("sinks:\n  - type: smoke_signals\n")
    result = run_cli("status", str(run), cwd=tmp_path)
    assert result.ret == 2
    assert "unknown sink type 'smoke_signals'" in result.stderr


def test_json_file_sink_from_config(tmp_path: Path) -> None:
    run = make_trainer_run(tmp_path / "r", 1, total=2)
    (tmp_path / "progresskit.yaml").write_text("sinks:\n  - type: json_file\n")
    result = run_cli("status", str(run), cwd=tmp_path)
    assert result.ret == 0, result.stderr
    assert json.loads((run / "progress.json").read_text())["completed_epochs"] == 1


def test_cli_overrides(tmp_path: Path) -> None:
    run = make_trainer_run(tmp_path / "r", 1, total=3, age=600)
    assert statuses(run_cli("status", str(run), "--json", cwd=tmp_path)) == {"r": "running"}
    result = run_cli("status", str(run), "--json", "--sleep-time", "60", cwd=tmp_path)
    assert statuses(result) == {"r": "failed"}


def test_plugins_lists_builtins_with_their_origin(tmp_path: Path) -> None:
    result = run_cli("plugins", "--json", cwd=tmp_path)
    assert result.ret == 0
    plugins = {p["name"]: p for p in json.loads(result.stdout)}
    assert plugins["trainer"]["origin"] == "builtin"
    assert plugins["trainer"]["distribution"] == "progresskit"
    assert plugins["trainer"]["runner_types"] == ["trainer"]
    assert plugins["json_file"]["sink_types"] == ["json_file"]
    assert "progresskit_process_info" in plugins["psutil"]["hooks"]
    table = run_cli("plugins", cwd=tmp_path)
    assert "evaluator" in table.stdout and "builtin" in table.stdout


def test_p_no_disables_a_plugin(tmp_path: Path) -> None:
    run = make_trainer_run(tmp_path / "r", 1)
    result = run_cli("-p", "no:trainer", "status", str(run), cwd=tmp_path)
    assert result.ret == 2
    assert "Cannot detect runner type" in result.stderr
    # The disabled plugin's config keys are unknown now, and said so.
    (run / "progresskit.yaml").write_text("epochs: 2\n")
    keyed = run_cli("status", str(run), "-p", "no:trainer", cwd=tmp_path)
    assert keyed.ret == 2 and "unknown key 'epochs'" in keyed.stderr
    listed = json.loads(run_cli("-p", "no:trainer", "plugins", "--json", cwd=tmp_path).stdout)
    assert "trainer" not in {p["name"] for p in listed}
    bad = run_cli("-p", "trainer", "plugins", cwd=tmp_path)
    assert bad.ret == 2 and "expected -p no:NAME" in bad.stderr


def _fake_distribution(site: Path, name: str, module_source: str) -> None:
    """A real installed distribution (dist-info + module) that exposes an entry point."""
    info = site / f"{name}-1.2.3.dist-info"
    info.mkdir(parents=True)
    (site / f"{name}.py").write_text(module_source)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text(f"[progresskit]\n{name} = {name}\n")


def test_third_party_plugin_through_entry_points(tmp_path: Path) -> None:
    site = tmp_path / "site"
    _fake_distribution(
        site,
        "pk_notebook",
        (
            "from progresskit import hookimpl\n"
            "@hookimpl\n"
            "def progresskit_detect_runner(target):\n"
            "    return 'notebook' if target.has_file('run.ipynb') else None\n"
        ),
    )
    result = run_cli("plugins", "--json", cwd=tmp_path, env={"PYTHONPATH": str(site)})
    plugin = {p["name"]: p for p in json.loads(result.stdout)}["pk_notebook"]
    assert plugin["origin"] == "entry point"
    assert (plugin["distribution"], plugin["version"]) == ("pk_notebook", "1.2.3")


def test_plugin_that_fails_to_import_is_named(tmp_path: Path) -> None:
    site = tmp_path / "site"
    _fake_distribution(site, "pk_broken", "raise ImportError('needs torch')\n")
    result = run_cli("plugins", cwd=tmp_path, env={"PYTHONPATH": str(site)})
    assert result.ret == 2
    assert "plugin 'pk_broken'" in result.stderr and "needs torch" in result.stderr
    assert "-p no:pk_broken" in result.stderr
    ok = run_cli("-p", "no:pk_broken", "plugins", cwd=tmp_path, env={"PYTHONPATH": str(site)})
    assert ok.ret == 0


def test_plugin_with_an_unknown_hook_is_named(tmp_path: Path) -> None:
    site = tmp_path / "site"
    _fake_distribution(site, "pk_typo", "def progresskit_detect_runer(target):\n    return None\n")
    result = run_cli("plugins", cwd=tmp_path, env={"PYTHONPATH": str(site)})
    assert result.ret == 2
    assert "plugin 'pk_typo' implements an unknown hook" in result.stderr


def test_bundled_example_tree(tmp_path: Path) -> None:
    examples = Path(__file__).resolve().parent.parent / "examples" / "runs"
    result = run_cli("status", str(examples), "--json", cwd=tmp_path)
    found = statuses(result)
    assert found["early_stop"] == "finished"
    # Dead whatever the clone's file times: its log ends in the traceback that killed it.
    assert found["cifar_resnet"] == "failed"
    assert found["eval_interrupted"] == "failed"
    assert found["cifar_vit"] == "finished"
    assert found["foxml_pipeline"] == "finished"
    assert found["brush_garden"] == "finished"
    assert set(found) == {
        "brush_garden",
        "foxml_pipeline",
        "cifar_resnet",
        "cifar_vit",
        "early_stop",
        "eval_cifar",
        "eval_interrupted",
    }


def test_plugin_cli_option_and_config_key_reach_configure(tmp_path: Path) -> None:
    site = tmp_path / "site"
    seen = tmp_path / "seen.json"
    _fake_distribution(site, "pk_opts", (
        "import json\n"
        "def progresskit_addoption(parser):\n"
        "    parser.add_argument('--opts-colour', default='none')\n"
        "def progresskit_addconfig(schema):\n"
        "    schema.add('opts_level', int, default=1, help='a level')\n"
        "def progresskit_configure(config):\n"
        f"    open({str(seen)!r}, 'w').write(json.dumps(\n"
        "        [config.get('opts_level'), getattr(config.options, 'opts_colour', None)]))\n"
    ))
    run = make_trainer_run(tmp_path / "r", 1, config={"epochs": 2, "opts_level": 7})
    env = {"PYTHONPATH": str(site)}
    result = run_cli("status", str(run), "--opts-colour", "blue", cwd=tmp_path, env=env)
    assert result.ret == 0, result.stderr
    assert json.loads(seen.read_text()) == [7, "blue"]
    (run / "progresskit.yaml").write_text("epochs: 2\nopts_level: high\n")
    bad = run_cli("status", str(run), cwd=tmp_path, env=env)
    assert bad.ret == 2 and "key 'opts_level' expects integer" in bad.stderr


def test_output_piped_into_a_reader_that_leaves(tmp_path: Path) -> None:
    # Well over a pipe buffer (64 KiB) of JSON, so the writer is still writing when head quits.
    for i in range(120):
        make_trainer_run(tmp_path / "runs" / f"r{i:03d}", 1, total=2)
    pipeline = subprocess.run(
        f"{sys.executable} -m progresskit status {tmp_path / 'runs'} --json | head -c 100",
        shell=True, capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )
    assert "Traceback" not in pipeline.stderr
    assert "BrokenPipe" not in pipeline.stderr
