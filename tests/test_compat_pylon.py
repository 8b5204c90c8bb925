"""progresskit.compat.pylon: Pylon's callers, as Pylon's own code calls it (issue 14).

Fabricated Pylon trees: ``configs/<name>.py`` (Python that imports what is not installed
and names real classes), ``logs/<name>/epoch_N/`` with real pickles and a zip laid out as
``torch.save`` writes it, process lists shaped like Pylon's system monitor output.
"""

from __future__ import annotations

import json
import os
import pickle
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

import progresskit
from progresskit import ConfigError, ProcessInfo, RunStatus, Status
from progresskit.compat import pylon
from progresskit.compat.pylon import (
    EvaluatorProgressTracker,
    PylonConfigWarning,
    TrainerProgressTracker,
    build_config_to_process_mapping,
    check_epoch_finished,
    check_file_loadable,
    config_to_process_info,
    create_progress_tracker,
    detect_runner_type,
    get_all_run_status,
    get_epoch_last_update,
    get_log_last_update,
    get_run_status,
    get_session_progress,
    parse_config,
    pylon_work_dir,
    read_pylon_config,
)

EXPECTED = ["training_losses.pt", "optimizer_buffer.json", "validation_scores.json"]
DAY = 86400.0
LSTART = "Mon Jan  1 10:00:00 2024"


# -- real classes, as Pylon configs hold them ------------------------------------------------


class SupervisedSingleTaskTrainer:
    pass


class BaseEvaluator:
    pass


class EarlyStopping:
    pass


class SomeOtherClass:
    pass


class LossMetric:
    DIRECTIONS: ClassVar[dict[str, int]] = {"loss": -1}  # Pylon's convention: lower is better


# -- a Pylon tree ----------------------------------------------------------------------------


def torch_save_zip(path: Path, obj: Any) -> None:
    """A file laid out as ``torch.save`` (zip format) writes it: <name>/data.pkl + version."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("training_losses/data.pkl", pickle.dumps(obj, protocol=2))
        archive.writestr("training_losses/version", "3\n")


def write_epoch(work: Path, epoch: int, loss: float, *, mtime: float, zipped: bool = False) -> None:
    d = work / f"epoch_{epoch}"
    d.mkdir(parents=True, exist_ok=True)
    if zipped:
        torch_save_zip(d / "training_losses.pt", {"loss": loss})
    else:
        (d / "training_losses.pt").write_bytes(pickle.dumps({"loss": loss}))
    (d / "optimizer_buffer.json").write_text(json.dumps({"lr": 0.001}))
    (d / "validation_scores.json").write_text(
        json.dumps({"aggregated": {"loss": loss}, "per_datapoint": {"loss": [loss]}})
    )
    for p in [d, *d.iterdir()]:
        os.utime(p, (mtime, mtime))


def touch(path: Path, mtime: float, text: str = "x\n") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.utime(path, (mtime, mtime))


CONFIG_PY = """\
import torch
from runners.trainers import SupervisedSingleTaskTrainer
from runners.early_stopping import EarlyStopping
from metrics.wrappers import PyTorchMetricWrapper

config = {{
    'runner': SupervisedSingleTaskTrainer,
    'epochs': {epochs},
    'work_dir': './logs/{name}',
    'model': {{'class': torch.nn.Linear, 'args': {{'in_features': 2, 'out_features': 1}}}},
    'metric': {{
        'class': PyTorchMetricWrapper, 'args': {{'metric': torch.nn.MSELoss(reduction='mean')}},
    }},
    'early_stopping': {{'class': EarlyStopping, 'args': {{'enabled': True, 'epochs': {patience}}}}},
}}
config['seed'] = 42
open('EXECUTED', 'w').write('a config file was executed')
"""


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A Pylon checkout: cwd with configs/ and logs/."""
    (tmp_path / "configs").mkdir()
    (tmp_path / "logs").mkdir()
    monkeypatch.chdir(tmp_path)
    yield tmp_path


def make_config(repo: Path, name: str, epochs: int = 100, patience: int = 3) -> str:
    path = repo / "configs" / f"{name}.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(CONFIG_PY.format(name=name, epochs=epochs, patience=patience))
    return f"./configs/{name}.py"


def make_run(
    repo: Path, name: str, losses: list[float], *, age: float, log_age: float | None
) -> Path:
    work = repo / "logs" / name
    work.mkdir(parents=True, exist_ok=True)
    now = time.time()
    for i, loss in enumerate(losses):
        write_epoch(work, i, loss, mtime=now - age - (len(losses) - i) * 60)
    if log_age is not None:
        touch(work / "train_val_latest.log", now - log_age)
    os.utime(work, (now - age, now - age))
    return work


def pylon_process(config: str, pid: str = "12345") -> ProcessInfo:
    return ProcessInfo(
        pid=pid,
        user="testuser",
        cmd=f"python main.py --config-filepath {config}",
        start_time=LSTART,
    )


@dataclass
class GPUStatus:
    """Pylon's later GPUStatus dataclass: attribute access (``gpu.processes``)."""

    server: str
    index: int
    processes: list[Any] | None
    connected: bool = True


@dataclass
class SystemMonitor:
    """The attributes of Pylon's SystemMonitor that its status code reads."""

    connected_gpus: list[Any] = field(default_factory=list)


def tree(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


# -- 1. ProcessInfo --------------------------------------------------------------------------


class TestProcessInfo:
    def test_pylon_shapes_are_kept_as_given(self) -> None:
        p = pylon_process("configs/x.py")
        assert p.pid == "12345" and p.start_time == LSTART
        assert p.to_dict() == {
            "pid": "12345",
            "user": "testuser",
            "cmd": "python main.py --config-filepath configs/x.py",
            "start_time": LSTART,
        }
        assert p["cmd"] == p.cmd and "pid" in p and "host" not in p
        with pytest.raises(KeyError):
            p["nope"]

    def test_start_time_text_is_parsed_in_both_ps_spacings(self) -> None:
        two = ProcessInfo(pid="1", start_time=LSTART).started_at
        one = ProcessInfo(pid="1", start_time="Mon Jan 1 10:00:00 2024").started_at
        assert two is not None and two == one
        assert time.localtime(two)[:6] == (2024, 1, 1, 10, 0, 0)

    def test_unreadable_start_time_is_kept_not_an_error(self) -> None:
        p = ProcessInfo(pid="1", start_time="yesterday-ish")
        assert p.start_time == "yesterday-ish" and p.started_at is None

    def test_native_shapes_unchanged(self) -> None:
        p = ProcessInfo(pid=7, start_time=12)
        assert p.start_time == 12.0 and p.started_at == 12.0 and p.process_id == 7

    def test_a_pid_that_is_not_a_number_is_a_clear_error(self) -> None:
        with pytest.raises(ValueError, match="pid must be a process id"):
            ProcessInfo(pid="abc")


# -- 3. the process mapping --------------------------------------------------------------


class TestProcesses:
    def test_parse_config(self) -> None:
        assert parse_config("python main.py --config-filepath configs/exp1.py") == "configs/exp1.py"
        assert (
            parse_config("python main.py --config-filepath /absolute/path/config.py")
            == "/absolute/path/config.py"
        )
        assert (
            parse_config("python3 main.py --debug --config-filepath configs/test.py --verbose")
            == "configs/test.py"
        )
        assert parse_config("python main.py --config-filepath=configs/a.py") == "configs/a.py"

    @pytest.mark.parametrize(
        "cmd",
        ["python main.py --other-flag configs/exp1.py", "python main.py --config-filepath"],
    )
    def test_parse_config_errors_are_assertion_and_value_errors(self, cmd: str) -> None:
        with pytest.raises(AssertionError) as info:
            parse_config(cmd)
        assert isinstance(info.value, ValueError) and "--config-filepath" in str(info.value)

    @given(
        path=st.text(
            st.characters(blacklist_categories=("Z", "C"), blacklist_characters="="),
            min_size=1,
        ),
        before=st.lists(st.sampled_from(["--debug", "-v", "--seed 3"]), max_size=3),
    )
    def test_parse_config_finds_any_path(self, path: str, before: list[str]) -> None:
        cmd = " ".join(["python main.py", *before, "--config-filepath", path, "--verbose"])
        assert parse_config(cmd) == path
        mapping = build_config_to_process_mapping(
            [{"processes": [ProcessInfo(pid="9", cmd=cmd, start_time=LSTART)]}]
        )
        assert list(mapping) == ([path] if not before else [])  # Pylon's exact prefix only

    def test_parse_config_non_str(self) -> None:
        with pytest.raises(TypeError, match="as a str"):
            parse_config(None)  # type: ignore[arg-type]

    def test_mapping_from_every_record_shape(self) -> None:
        gpus = [
            # the oldest monitor: TypedDicts with dict processes
            {
                "server": "test_server",
                "index": 0,
                "processes": [
                    {
                        "pid": "1",
                        "user": "u",
                        "cmd": "python main.py --config-filepath configs/a.py",
                        "start_time": LSTART,
                    },
                    {"pid": "2", "user": "u", "cmd": "some_other_process", "start_time": LSTART},
                ],
            },
            # ProcessInfo records in a dict GPU
            {"server": "s", "index": 1, "processes": [pylon_process("configs/b.py", "3")]},
            # dataclass GPUs; a failed query (None); a disconnected GPU
            GPUStatus("s", 2, [pylon_process("configs/c.py", "4")]),
            GPUStatus("s", 3, None, connected=False),
            GPUStatus("s", 4, [pylon_process("configs/d.py", "5")], connected=False),
            GPUStatus(
                "s", 5, [ProcessInfo(pid="6", cmd="python3 main.py --config-filepath configs/e.py")]
            ),
        ]
        mapping = build_config_to_process_mapping(gpus)
        assert sorted(mapping) == ["configs/a.py", "configs/b.py", "configs/c.py"]
        assert mapping["configs/a.py"].pid == "1" and mapping["configs/a.py"].start_time == LSTART
        assert mapping["configs/b.py"] is gpus[1]["processes"][0]  # type: ignore[index]
        assert build_config_to_process_mapping([]) == {}
        assert build_config_to_process_mapping([{"index": 0, "processes": []}]) == {}

    def test_later_process_of_a_config_wins(self) -> None:
        gpus = [
            {"processes": [pylon_process("configs/a.py", "1"), pylon_process("configs/a.py", "2")]}
        ]
        assert build_config_to_process_mapping(gpus)["configs/a.py"].pid == "2"

    def test_from_a_system_monitor(self) -> None:
        monitor = SystemMonitor([GPUStatus("s", 0, [pylon_process("configs/x.py")])])
        assert list(config_to_process_info(monitor)) == ["configs/x.py"]
        assert config_to_process_info(None) == {}
        with pytest.raises(TypeError, match="GPU/CPU records"):
            config_to_process_info(42)


# -- 8. Pylon config files --------------------------------------------------------------------


class TestConfigFiles:
    def test_read_with_ast_never_executed(self, repo: Path) -> None:
        make_config(repo, "exp", epochs=100, patience=5)
        with pytest.warns(PylonConfigWarning, match=r"MSELoss\(reduction='mean'\)"):
            config = read_pylon_config(repo / "configs" / "exp.py")
        assert not (repo / "EXECUTED").exists()
        assert config["epochs"] == 100 and config["seed"] == 42
        assert config["runner"].__name__ == "SupervisedSingleTaskTrainer"
        assert config["early_stopping"]["args"] == {"enabled": True, "epochs": 5}
        assert config["early_stopping"]["class"].__name__ == "EarlyStopping"

    def test_a_file_without_config_warns(self, tmp_path: Path) -> None:
        path = tmp_path / "c.py"
        path.write_text("x = 1\n")
        with pytest.warns(PylonConfigWarning, match="no top-level 'config"):
            assert read_pylon_config(path) == {}

    def test_totals_and_early_stopping_from_the_config_file(self, repo: Path) -> None:
        config = make_config(repo, "es", epochs=100, patience=3)
        make_run(repo, "es", [0.5, 0.3, 0.4, 0.5, 0.6, 0.7], age=120, log_age=None)
        with pytest.warns(PylonConfigWarning):
            result = get_run_status(config, EXPECTED, 100, {})
        assert result.progress.total_epochs == 100
        assert result.progress.early_stopped is True
        assert result.progress.early_stopped_at_epoch == 6
        assert result.progress.progress_percentage == 100.0
        # progresskit's documented choice: an early-stopped run is finished.
        assert result.status == "finished"
        assert not (repo / "EXECUTED").exists()


# -- 2. plain config dicts through the seed API ----------------------------------------


PLAIN_CONFIGS: list[dict[str, Any]] = [
    {
        "model": {"class": SomeOtherClass, "args": {}},
        "dataset": "x",
        "epochs": 3,
        "optimizer": {"class": SomeOtherClass},
    },
    {"runner": SupervisedSingleTaskTrainer},
    {"runner": {"class": SupervisedSingleTaskTrainer, "args": {"x": 1}}},
    {
        "runner": SupervisedSingleTaskTrainer,
        "metric": {"class": LossMetric, "args": {}},
        "early_stopping": {"class": EarlyStopping, "args": {"enabled": True, "epochs": 2}},
    },
]


class TestPlainConfigs:
    @pytest.mark.parametrize("config", PLAIN_CONFIGS)
    def test_never_a_config_error(self, config: dict[str, Any], tmp_path: Path) -> None:
        work = tmp_path / "w"
        write_epoch(work, 0, 0.5, mtime=time.time() - 100)
        assert detect_runner_type(work, config) == "trainer"
        tracker = create_progress_tracker(str(work), config)
        assert tracker.config is config
        assert tracker.get_progress().completed_epochs == 1

    @pytest.mark.parametrize(
        "config",
        [
            None,
            {},
            {"some_field": 1},
            {"runner": {}},
            {"runner": {"class": None}},
            {"runner": SomeOtherClass},
        ],
    )
    def test_a_runner_naming_nothing_is_the_seed_detection_error(
        self, config: dict[str, Any] | None, tmp_path: Path
    ) -> None:
        work = tmp_path / "empty"
        work.mkdir()
        (work / "config.json").write_text("{}")
        (work / "git_0.log").write_text("")
        with pytest.raises(ValueError) as info:
            detect_runner_type(work, config)
        assert not isinstance(info.value, ConfigError)
        message = str(info.value)
        assert "Unable to detect runner type" in message
        assert f"Cannot detect runner type for work_dir: {work}" in message
        assert "Available files: ['config.json', 'git_0.log']" in message
        assert "Expected patterns:" in message and "Trainer:" in message
        assert "Evaluator:" in message
        if config:
            assert f"Config keys: {list(config)}" in message
        else:
            assert "No config provided" in message

    def test_class_valued_runner_is_read_by_name(self, tmp_path: Path) -> None:
        (tmp_path / "fresh").mkdir()
        assert detect_runner_type(tmp_path / "fresh", {"runner": BaseEvaluator}) == "evaluator"
        assert (
            detect_runner_type(tmp_path / "fresh", {"runner": {"class": BaseEvaluator}})
            == "evaluator"
        )

    def test_native_api_stays_strict(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError, match="unknown key 'model'"):
            progresskit.status(tmp_path, {"model": 1})


# -- 4/5/6. seed API: detection, signatures, statuses --------------------------------------


class TestDetection:
    def test_evaluator_file_wins_over_epoch_0(self, tmp_path: Path) -> None:
        write_epoch(tmp_path, 0, 0.5, mtime=time.time())
        (tmp_path / "evaluation_scores.json").write_text('{"aggregated": {"acc": 1.0}}')
        assert detect_runner_type(tmp_path) == "evaluator"
        # Files beat the config.
        assert detect_runner_type(tmp_path, {"runner": SupervisedSingleTaskTrainer}) == "evaluator"

    def test_bare_epoch_0_is_a_trainer(self, tmp_path: Path) -> None:
        (tmp_path / "epoch_0").mkdir()
        (tmp_path / "epoch_0" / "some_other_file.txt").write_text("x")
        assert detect_runner_type(tmp_path) == "trainer"

    def test_missing_dir_lists_no_files(self, tmp_path: Path) -> None:
        with pytest.raises(ValueError, match=r"does not exist[\s\S]*Available files: \[\]"):
            detect_runner_type(tmp_path / "nope")


class TestSignatures:
    @pytest.fixture
    def run(self, repo: Path) -> str:
        make_run(repo, "r", [0.5] * 5, age=2 * DAY, log_age=2 * DAY)
        return str(repo / "configs" / "r.py")  # an absolute config path; no file needed

    def test_v3_v5_positional_and_keyword(self, run: str) -> None:
        for result in (
            get_run_status(run, EXPECTED, 100, {}),
            get_run_status(run, EXPECTED, 100, {}, 86400, 30),
            get_run_status(
                config=run, expected_files=EXPECTED, epochs=100, config_to_process_info={}
            ),
        ):
            assert result.status == "failed"
            assert result.work_dir == "./logs/r"
            assert result.config == run
            assert result.process_info is None
            assert result.progress.completed_epochs == 5
            # Pylon V3's progress was a dict.
            assert result.progress["completed_epochs"] == 5 and "early_stopped" in result.progress

    def test_v7_v8_forms(self, run: str) -> None:
        process = pylon_process(run)
        result = get_run_status(run, 100, {run: process})
        assert result.status == "stuck" and result.process_info is process
        assert get_run_status(run, 100, {}, 86400, 30, True).status == "failed"
        assert (
            get_run_status(
                run, epochs=100, config_to_process_info={}, force_progress_recompute=True
            ).status
            == "failed"
        )
        assert get_run_status(run, EXPECTED, 100, {}, force_refresh=True).status == "failed"

    def test_dict_process_records_as_in_pylon_0_3(self, run: str) -> None:
        record = {
            "pid": "1",
            "user": "u",
            "cmd": f"python main.py --config-filepath {run}",
            "start_time": LSTART,
        }
        result = get_run_status(run, EXPECTED, 100, {run: record})
        assert result.status == "stuck" and result.process_info is not None
        assert result.process_info.to_dict() == record

    def test_unfit_call_names_the_forms(self, run: str) -> None:
        with pytest.raises(TypeError) as info:
            get_run_status(run, "100", {})
        message = str(info.value)
        assert "fits none of the accepted forms" in message
        assert "get_run_status(config, expected_files, epochs, config_to_process_info" in message
        assert "get_run_status(config, epochs, config_to_process_info" in message
        # The forms are told apart by the second argument (a file list or None, or an int).
        with pytest.raises(TypeError, match="fits none of") as info:
            get_all_run_status([run], 100, EXPECTED)
        assert "get_all_run_status(config_files, epochs, sleep_time" in str(info.value)

    def test_get_all_run_status_every_form(self, repo: Path, run: str) -> None:
        make_run(repo, "done", [0.5] * 3, age=60, log_age=60)
        done = "./configs/done.py"
        configs = [run, done, "./configs/never.py"]
        monitor = SystemMonitor([GPUStatus("s", 0, [pylon_process(run)])])
        calls = [
            get_all_run_status(configs, EXPECTED, 3, 86400, 30, monitor),
            get_all_run_status(configs, 3, 86400, 30, monitor),
            get_all_run_status(
                config_files=configs, expected_files=EXPECTED, epochs=3, system_monitor=monitor
            ),
            get_all_run_status(
                config_files=configs,
                epochs=3,
                sleep_time=86400,
                outdated_days=30,
                system_monitor=monitor,
                force_progress_recompute=True,
            ),
        ]
        for result in calls:
            assert list(result) == configs
            assert all(result[c].config == c for c in configs)
            assert result[run].status == "stuck"
            assert result[done].status == "finished"
            assert result[done].work_dir == "./logs/done"
            assert result["./configs/never.py"].status == "failed"
        viewer = round(
            sum(s.progress.progress_percentage for s in calls[0].values()) / len(calls[0]), 2
        )
        assert viewer == round((100.0 + 100.0 + 0.0) / 3, 2)
        assert get_all_run_status([], 3, 86400, 30, monitor) == {}

    def test_to_dict_is_json_ready(self, run: str) -> None:
        result = get_run_status(run, 100, {run: pylon_process(run)})
        data = json.loads(json.dumps(result.to_dict()))
        assert set(data) == {"config", "work_dir", "progress", "status", "process_info"}
        assert data["status"] == "stuck"
        assert data["process_info"]["start_time"] == LSTART
        assert data["progress"]["completed_epochs"] == 5
        plain = RunStatus(run, "./logs/r", result.progress, "failed")
        assert plain.process_info is None and plain.to_dict()["process_info"] is None


class TestStatusRules:
    def test_fresh_epochs_under_a_missing_or_stale_log(self, repo: Path) -> None:
        make_run(repo, "nolog", [0.5] * 10, age=5, log_age=None)
        make_run(repo, "stale", [0.5] * 10, age=5, log_age=2 * DAY)
        for name in ("nolog", "stale"):
            config = f"./configs/{name}.py"
            assert get_run_status(config, EXPECTED, 100, {}).status == "failed"
            process = pylon_process(config)
            assert get_run_status(config, EXPECTED, 100, {config: process}).status == "stuck"
        # The native API counts fresh epoch files as a sign of life.
        assert progresskit.status(repo / "logs" / "nolog", {"epochs": 100}).status == "running"

    def test_fresh_log_is_running(self, repo: Path) -> None:
        make_run(repo, "live", [0.5] * 10, age=5, log_age=1)
        assert get_run_status("./configs/live.py", EXPECTED, 100, {}).status == "running"

    def test_complete_finished_and_outdated(self, repo: Path) -> None:
        make_run(repo, "done", [0.5] * 4, age=60, log_age=1)
        make_run(repo, "old", [0.5] * 4, age=31 * DAY, log_age=31 * DAY)
        # Completion wins over a fresh log when no process is known (documented).
        assert get_run_status("./configs/done.py", 4, {}).status == "finished"
        assert get_run_status("./configs/old.py", 4, {}, 86400, 30).status == "outdated"

    def test_never_created_work_dir(self, repo: Path) -> None:
        config = "./configs/never.py"
        result = get_run_status(config, EXPECTED, 100, {})
        assert result.status == "failed" and result.work_dir == "./logs/never"
        assert result.progress.completed_epochs == 0
        assert get_run_status(config, 100, {config: pylon_process(config)}).status == "stuck"

    def test_work_dir_as_pylon_derives_it(self, repo: Path) -> None:
        assert pylon_work_dir("configs/a/b.py") == "./logs/a/b"
        assert pylon_work_dir(str(repo / "configs" / "x.py")) == "./logs/x"

    def test_evaluator_run(self, repo: Path) -> None:
        work = repo / "logs" / "ev"
        work.mkdir()
        (work / "evaluation_scores.json").write_text('{"aggregated": {"acc": 0.9}}')
        result = get_run_status("./configs/ev.py", 100, {})
        assert result.status == "finished" and result.progress.runner_type == "evaluator"

    def test_library_reads_write_nothing(self, repo: Path) -> None:
        make_config(repo, "w")
        make_run(repo, "w", [0.5] * 3, age=100, log_age=100)
        before = tree(repo)
        with pytest.warns(PylonConfigWarning):
            get_all_run_status(["./configs/w.py"], EXPECTED, 100, 86400, 30, SystemMonitor())
            get_session_progress("./logs/w", EXPECTED)
        assert tree(repo) == before


# -- 3. helpers ---------------------------------------------------------------------------------


class TestHelpers:
    def test_check_epoch_finished(self, tmp_path: Path) -> None:
        d = tmp_path / "epoch_0"
        assert check_epoch_finished(str(d), EXPECTED) is False
        d.mkdir()
        assert check_epoch_finished(str(d), EXPECTED) is False
        write_epoch(tmp_path, 0, 0.4, mtime=time.time())
        assert check_epoch_finished(epoch_dir=str(d), expected_files=EXPECTED) is True
        (d / "optimizer_buffer.json").write_text("")
        assert check_epoch_finished(str(d), EXPECTED, check_load=False) is False

    @pytest.mark.parametrize("zipped", [False, True])
    def test_check_load_reads_torch_files_without_executing_them(
        self, tmp_path: Path, zipped: bool
    ) -> None:
        write_epoch(tmp_path, 0, 0.4, mtime=time.time(), zipped=zipped)
        d = tmp_path / "epoch_0"
        pt = d / "training_losses.pt"
        assert check_file_loadable(str(pt)) is True
        data = pt.read_bytes()
        pt.write_bytes(data[: len(data) // 2])  # a write cut short
        assert check_file_loadable(str(pt)) is False
        assert check_epoch_finished(str(d), EXPECTED) is False
        assert check_epoch_finished(str(d), EXPECTED, check_load=False) is True

    def test_pickle_that_would_run_code_is_not_run(self, tmp_path: Path) -> None:
        class Boom:
            def __reduce__(self) -> tuple[Any, ...]:
                return (os.mkdir, (str(tmp_path / "PWNED"),))

        pt = tmp_path / "x.pt"
        pt.write_bytes(pickle.dumps(Boom()))
        assert check_file_loadable(str(pt)) is True
        assert not (tmp_path / "PWNED").exists()

    def test_check_file_loadable_json_and_errors(self, tmp_path: Path) -> None:
        good, bad = tmp_path / "a.json", tmp_path / "b.json"
        good.write_text('{"lr": 0.001}')
        bad.write_text("invalid json content {")
        assert check_file_loadable(str(good)) is True
        assert check_file_loadable(str(bad)) is False
        (tmp_path / "c.txt").write_text("x")
        for path in (tmp_path / "missing.json", tmp_path / "c.txt"):
            with pytest.raises(AssertionError):
                check_file_loadable(str(path))

    def test_last_updates(self, tmp_path: Path) -> None:
        assert get_log_last_update(str(tmp_path / "nope")) is None
        assert get_log_last_update(str(tmp_path)) is None
        touch(tmp_path / "train_val_latest.log", 1000.0)
        touch(tmp_path / "eval_1.log", 2000.0)
        assert get_log_last_update(str(tmp_path)) == 1000.0
        assert get_log_last_update(str(tmp_path), "eval_*.log") == 2000.0
        assert get_epoch_last_update(str(tmp_path), EXPECTED) is None
        (tmp_path / "epoch_0").mkdir()
        # Epoch dirs holding none of the expected files: None (Pylon raised ValueError).
        assert get_epoch_last_update(str(tmp_path), ["evaluation_scores.json"]) is None
        write_epoch(tmp_path, 0, 0.4, mtime=3000.0)
        assert get_epoch_last_update(str(tmp_path), EXPECTED) == 3000.0


class TestSessionProgress:
    def test_counts_consecutive_epochs(self, repo: Path) -> None:
        make_config(repo, "s", epochs=10)
        work = make_run(repo, "s", [0.5] * 4, age=100, log_age=None)
        write_epoch(work, 5, 0.5, mtime=time.time() - 100)  # after a gap: not counted
        (work / "epoch_3" / "validation_scores.json").unlink()
        with pytest.warns(PylonConfigWarning):
            progress = get_session_progress("./logs/s", EXPECTED)
        assert progress.completed_epochs == 3
        assert progress.progress_percentage == 30.0
        # The oldest form: a third positional total, an int back, capped.
        with pytest.warns(PylonConfigWarning):
            assert get_session_progress("./logs/s", EXPECTED, 2) == 2

    def test_old_progress_json_loads_and_stale_or_corrupt_is_recomputed(
        self, tmp_path: Path
    ) -> None:
        work = tmp_path / "w"
        for i in range(3):
            write_epoch(work, i, 0.5, mtime=time.time() - 1000)
        cache = work / "progress.json"
        cache.write_text(
            json.dumps(
                {
                    "completed_epochs": 3,
                    "progress_percentage": 60.0,
                    "early_stopped": False,
                    "early_stopped_at_epoch": None,
                }
            )
        )
        progress = get_session_progress(str(work), EXPECTED)
        assert progress.completed_epochs == 3 and progress.runner_type == "trainer"
        write_epoch(work, 3, 0.5, mtime=time.time())  # newer than the cache: stale
        assert get_session_progress(str(work), EXPECTED).completed_epochs == 4
        cache.write_text("")
        assert get_session_progress(str(work), EXPECTED, True).completed_epochs == 4
        progress = get_session_progress(str(work), EXPECTED, force_progress_recompute=True)
        assert progress.completed_epochs == 4


# -- 7. trackers -------------------------------------------------------------------------------


class TestTrackers:
    @pytest.mark.parametrize("cls", [TrainerProgressTracker, EvaluatorProgressTracker])
    def test_construction_validates_work_dir(self, cls: type[Any], tmp_path: Path) -> None:
        with pytest.raises(TypeError, match="work_dir must be str") as info:
            cls(123)
        assert isinstance(info.value, AssertionError)
        with pytest.raises(ValueError, match="work_dir does not exist") as missing:
            cls(str(tmp_path / "nope"))
        assert isinstance(missing.value, AssertionError)

    @pytest.mark.parametrize("config", [None, {}, {"runner": {}}, {"model": SomeOtherClass}])
    def test_config_is_what_was_passed(self, config: Any, tmp_path: Path) -> None:
        tracker = TrainerProgressTracker(str(tmp_path), config)
        assert tracker.config is config and tracker.work_dir == str(tmp_path)
        assert tracker.get_progress().total_epochs is None

    def test_trainer(self, tmp_path: Path) -> None:
        for i in range(2):
            write_epoch(tmp_path, i, 0.5, mtime=time.time() - 100)
        tracker = progresskit.TrainerProgressTracker(str(tmp_path), {"epochs": 4, "model": 1})
        assert tracker.get_runner_type() == "trainer"
        assert tracker.get_expected_files() == EXPECTED
        assert tracker.get_log_pattern() == "train_val*.log"
        first = tracker.get_progress()
        assert first.total_epochs == 4 and first.progress_percentage == 50.0
        assert tracker.get_progress() == first
        assert tracker.get_progress(force_refresh=True) == first
        assert tracker.get_progress(force_progress_recompute=True) == first

    def test_evaluator(self, tmp_path: Path) -> None:
        (tmp_path / "epoch_0").mkdir()
        scores = tmp_path / "evaluation_scores.json"
        scores.write_text("{not json")
        tracker = progresskit.EvaluatorProgressTracker(str(tmp_path), {"epochs": 100})
        assert tracker.get_progress().completed_epochs == 0
        scores.write_text('{"aggregated": {"acc": 1.0}}')
        progress = tracker.get_progress(force_refresh=True)
        assert (progress.completed_epochs, progress.progress_percentage) == (1, 100.0)
        assert progress.total_epochs == 1 and progress.runner_type == "evaluator"
        assert tracker.get_log_pattern() == "eval_*.log"


class PylonStyleTracker(pylon.BaseProgressTracker):
    """A user's tracker as Pylon V6-V7 wrote them: the four methods, nothing else."""

    def get_runner_type(self) -> str:
        return "trainer"

    def get_expected_files(self) -> list[str]:
        return ["done.json"]

    def get_log_pattern(self) -> str:
        return "*.log"

    def calculate_progress(self) -> progresskit.ProgressInfo:
        done = os.path.exists(os.path.join(self.work_dir, "done.json"))
        return progresskit.ProgressInfo(completed_epochs=int(done), progress_percentage=0.0)


class Pylon08StyleTracker(PylonStyleTracker):
    def calculate_progress(  # type: ignore[override]
        self, force_progress_recompute: bool = False
    ) -> progresskit.ProgressInfo:
        return super().calculate_progress()


class TestUserTrackers:
    @pytest.mark.parametrize("cls", [PylonStyleTracker, Pylon08StyleTracker])
    def test_subclass_with_pylons_methods(self, cls: type[Any], tmp_path: Path) -> None:
        tracker = cls(str(tmp_path))
        assert tracker.config is None
        assert tracker.get_progress().completed_epochs == 0
        (tmp_path / "done.json").write_text("{}")
        assert tracker.get_progress(force_progress_recompute=True).completed_epochs == 1
        assert tracker.get_progress().completed_epochs == 1

    def test_construction_checks_and_abstract_base(self, tmp_path: Path) -> None:
        with pytest.raises(AssertionError, match="work_dir must be str"):
            PylonStyleTracker(123)
        with pytest.raises(AssertionError, match="work_dir does not exist"):
            PylonStyleTracker(str(tmp_path / "nope"))
        with pytest.raises(TypeError):
            pylon.BaseProgressTracker(str(tmp_path))  # type: ignore[abstract]


def test_names_importable_from_the_top_level() -> None:
    for name in (
        "TrainerProgressTracker",
        "EvaluatorProgressTracker",
        "check_epoch_finished",
        "check_file_loadable",
        "get_session_progress",
        "get_log_last_update",
        "get_epoch_last_update",
        "parse_config",
        "config_to_process_info",
        "get_run_status",
        "get_all_run_status",
        "create_progress_tracker",
        "detect_runner_type",
        "ProgressInfo",
    ):
        assert getattr(progresskit, name) is getattr(pylon, name), name
    assert Status.FAILED == "failed"
