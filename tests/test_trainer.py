from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from helpers.runs import make_trainer_run
from progresskit import create_progress_tracker, structure
from progresskit.builtin.trainer import TrainerProgressTracker
from progresskit.formats.jsonio import to_json
from progresskit.model.core import ProgressInfo


def tracker(path: Path, **config: object) -> TrainerProgressTracker:
    return TrainerProgressTracker(str(path), config)


def test_counts_complete_epochs_and_percentage(tmp_path: Path) -> None:
    run = make_trainer_run(tmp_path / "r", 4)
    progress = tracker(run, epochs=10).get_progress()
    assert progress.completed_epochs == 4
    assert progress.progress_percentage == 40.0
    assert progress.total_epochs == 10
    assert progress.runner_type == "trainer"
    assert progress.latest_score == {"acc": 0.53, "loss": 0.97}


def test_first_gap_stops_the_count(tmp_path: Path) -> None:
    run = make_trainer_run(tmp_path / "r", 5)
    (run / "epoch_2" / "optimizer_buffer.json").unlink()
    assert tracker(run, epochs=10).get_progress().completed_epochs == 2


def test_missing_epoch_directory_stops_the_count(tmp_path: Path) -> None:
    run = make_trainer_run(tmp_path / "r", 5)
    os.rename(run / "epoch_1", run / "epoch_9")
    assert tracker(run, epochs=10).get_progress().completed_epochs == 1


def test_empty_expected_file_means_incomplete_epoch(tmp_path: Path) -> None:
    run = make_trainer_run(tmp_path / "r", 3)
    (run / "epoch_2" / "training_losses.pt").write_bytes(b"")
    assert tracker(run, epochs=3).get_progress().completed_epochs == 2
    assert not tracker(run, epochs=3).is_complete()


def test_epoch_dirs_with_no_expected_files_do_not_crash(tmp_path: Path) -> None:
    run = tmp_path / "r"
    for i in range(3):
        (run / f"epoch_{i}").mkdir(parents=True)
    progress = tracker(run, epochs=3).get_progress()
    assert progress.completed_epochs == 0
    assert progress.progress_percentage == 0.0


def test_expected_files_are_configurable(tmp_path: Path) -> None:
    run = tmp_path / "r"
    (run / "epoch_0").mkdir(parents=True)
    (run / "epoch_0" / "model.ckpt").write_text("w")
    t = tracker(run, epochs=2, expected_files=["model.ckpt"])
    assert t.get_expected_files() == ["model.ckpt"]
    assert t.get_progress().completed_epochs == 1


def test_complete_when_all_epochs_done(tmp_path: Path) -> None:
    run = make_trainer_run(tmp_path / "r", 3)
    t = tracker(run, epochs=3)
    assert t.is_complete()
    assert t.get_progress().progress_percentage == 100.0
    assert t.get_progress().eta_seconds == 0.0


def test_total_unknown_is_reported_not_guessed(tmp_path: Path) -> None:
    run = make_trainer_run(tmp_path / "r", 3)
    progress = tracker(run).get_progress()
    assert progress.total_epochs is None
    assert progress.progress_percentage == 0.0
    assert any("total epochs unknown" in w for w in progress.warnings)
    assert not tracker(run).is_complete()


def test_total_epochs_from_the_runs_own_config_json(tmp_path: Path) -> None:
    run = make_trainer_run(tmp_path / "r", 3)
    (run / "config.json").write_text(json.dumps({"epochs": 6, "model": "resnet"}))
    assert tracker(run).get_progress().progress_percentage == 50.0


@pytest.mark.parametrize(
    ("values", "direction", "stopped"),
    [
        ([0.5, 0.6, 0.7, 0.69, 0.68, 0.67], "max", True),
        ([0.5, 0.6, 0.7, 0.69, 0.71, 0.67], "max", False),  # improvement resets the counter
        ([0.5, 0.6, 0.7, 0.69, 0.68], "max", False),  # window not full yet: patience + 1
        ([0.9, 0.8, 0.7, 0.75, 0.76, 0.77], "min", True),
        ([0.9, 0.8, 0.7, 0.75, 0.69, 0.77], "min", False),
    ],
)
def test_early_stopping_replays_the_last_patience_plus_one_epochs(
    tmp_path: Path, values: list[float], direction: str, stopped: bool
) -> None:
    # Windows compare with their own first epoch, as seed 001's counter did.
    run = make_trainer_run(tmp_path / "r", len(values), scores=[{"acc": v} for v in values])
    t = tracker(
        run, epochs=50, early_stopping={"patience": 3, "metric": "acc", "direction": direction}
    )
    progress = t.get_progress()
    assert progress.early_stopped is stopped
    if stopped:
        assert progress.early_stopped_at_epoch == len(values)
        assert progress.progress_percentage == 100.0
        assert t.is_complete()
    else:
        assert progress.early_stopped_at_epoch is None
        assert not t.is_complete()


def test_early_stopping_short_form_with_top_level_metric(tmp_path: Path) -> None:
    values = [0.5, 0.6, 0.7, 0.69, 0.68, 0.67]
    run = make_trainer_run(tmp_path / "r", len(values), scores=[{"acc": v} for v in values])
    t = tracker(run, epochs=50, early_stopping=3, metric="acc", metric_direction="max")
    assert t.get_progress().early_stopped


def test_early_stopping_with_missing_metric_is_a_warning(tmp_path: Path) -> None:
    run = make_trainer_run(tmp_path / "r", 6, scores=[{"loss": 1.0}] * 6)
    progress = tracker(run, epochs=50, early_stopping=3, metric="acc").get_progress()
    assert not progress.early_stopped
    assert any("early stopping not judged" in w for w in progress.warnings)


def test_best_score_follows_metric_direction(tmp_path: Path) -> None:
    rows = [{"acc": 0.25, "loss": 0.75}, {"acc": 0.875, "loss": 0.5}, {"acc": 0.5, "loss": 0.25}]
    run = make_trainer_run(tmp_path / "r", 3, scores=rows)
    assert tracker(run, epochs=5, metric="acc").get_progress().best_score == rows[1]
    best_min = tracker(run, epochs=5, metric="loss", metric_direction="min").get_progress()
    assert best_min.best_score == rows[2]
    assert tracker(run, epochs=5).get_progress().best_score is None


def test_corrupt_validation_scores_are_warnings(tmp_path: Path) -> None:
    run = make_trainer_run(tmp_path / "r", 3)
    (run / "epoch_2" / "validation_scores.json").write_text('{"aggregated": {"acc": 0.')
    progress = tracker(run, epochs=3, metric="acc").get_progress()
    assert progress.completed_epochs == 3
    assert progress.latest_score is None
    assert any("not valid JSON" in w and "epoch_2" in w for w in progress.warnings)


def test_nested_scores_are_flattened(tmp_path: Path) -> None:
    run = make_trainer_run(
        tmp_path / "r",
        1,
        scores=[{"acc": 0.5, "per_class": {"cat": 0.4, "dog": 0.6}, "hist": [1, 2], "flag": True}],
    )
    latest = tracker(run, epochs=2).get_progress().latest_score
    assert latest == {"acc": 0.5, "per_class.cat": 0.4, "per_class.dog": 0.6}


def test_eta_from_median_epoch_time(tmp_path: Path) -> None:
    run = make_trainer_run(tmp_path / "r", 4, epoch_seconds=100.0)
    progress = tracker(run, epochs=10).get_progress()
    assert progress.eta_seconds == pytest.approx(600.0, abs=1.0)


class TestCache:
    def test_unchanged_run_is_not_recomputed(self, tmp_path: Path) -> None:
        run = make_trainer_run(tmp_path / "r", 3, age=10)
        t = tracker(run, epochs=5)
        first = t.get_progress()
        calls = []
        original = t.calculate_progress
        t.calculate_progress = lambda: calls.append(1) or original()  # type: ignore[method-assign]
        assert t.get_progress() is first
        assert calls == []

    def test_new_epoch_invalidates_the_cache(self, tmp_path: Path) -> None:
        run = make_trainer_run(tmp_path / "r", 3, age=10)
        t = tracker(run, epochs=5)
        assert t.get_progress().completed_epochs == 3
        make_trainer_run(run, 4, age=0)
        assert t.get_progress().completed_epochs == 4

    def test_file_filled_in_place_invalidates_the_cache(self, tmp_path: Path) -> None:
        run = make_trainer_run(tmp_path / "r", 3, age=10)
        partial = run / "epoch_3"
        partial.mkdir()
        for name in ("training_losses.pt", "optimizer_buffer.json", "validation_scores.json"):
            (partial / name).write_text("")
        old = time.time() - 10
        for p in (partial, *partial.iterdir()):
            os.utime(p, (old, old))
        t = tracker(run, epochs=5)
        assert t.get_progress().completed_epochs == 3
        for name in ("training_losses.pt", "optimizer_buffer.json"):
            (partial / name).write_text("x")
        (partial / "validation_scores.json").write_text('{"aggregated": {"acc": 1}}')
        assert t.get_progress().completed_epochs == 4

    def test_force_refresh_recomputes(self, tmp_path: Path) -> None:
        run = make_trainer_run(tmp_path / "r", 2, age=10)
        t = tracker(run, epochs=5)
        assert t.get_progress(force_refresh=True) is not t.get_progress(force_refresh=True)


class TestProgressJsonCache:
    def _write(self, run: Path, info: ProgressInfo, age: float) -> None:
        path = run / "progress.json"
        path.write_text(to_json(info))
        when = time.time() - age
        os.utime(path, (when, when))

    def test_newer_matching_cache_is_trusted(self, tmp_path: Path) -> None:
        run = make_trainer_run(tmp_path / "r", 3, age=100)
        self._write(
            run,
            ProgressInfo(
                completed_epochs=3,
                progress_percentage=60,
                best_score={"acc": 0.99},
                latest_score={"acc": 0.42},
            ),
            0,
        )
        progress = tracker(run, epochs=5, metric="acc").get_progress()
        assert progress.best_score == {"acc": 0.99}  # from the cache, not the score files

    def test_cache_older_than_the_epochs_is_recomputed(self, tmp_path: Path) -> None:
        run = make_trainer_run(tmp_path / "r", 3, age=0)
        self._write(run, ProgressInfo(completed_epochs=3, best_score={"acc": 0.99}), 1000)
        progress = tracker(run, epochs=5, metric="acc").get_progress()
        assert progress.best_score == {"acc": 0.52, "loss": 0.98}

    def test_cache_with_another_epoch_count_is_recomputed(self, tmp_path: Path) -> None:
        run = make_trainer_run(tmp_path / "r", 3, age=100)
        self._write(run, ProgressInfo(completed_epochs=2, best_score={"acc": 0.99}), 0)
        assert tracker(run, epochs=5, metric="acc").get_progress().best_score == {
            "acc": 0.52,
            "loss": 0.98,
        }

    def test_corrupt_cache_is_recomputed_with_a_warning(self, tmp_path: Path) -> None:
        run = make_trainer_run(tmp_path / "r", 3, age=100)
        (run / "progress.json").write_text('{"completed_epochs": 3, "progr')
        progress = tracker(run, epochs=5).get_progress()
        assert progress.completed_epochs == 3
        assert any("corrupt progress.json" in w for w in progress.warnings)


def test_seed_api_create_progress_tracker(tmp_path: Path) -> None:
    run = make_trainer_run(tmp_path / "r", 2)
    t = create_progress_tracker(str(run), {"epochs": 4})
    assert t.get_runner_type() == "trainer"
    assert t.get_expected_files() == [
        "training_losses.pt",
        "optimizer_buffer.json",
        "validation_scores.json",
    ]
    assert t.get_log_pattern() == "train_val*.log"
    assert t.calculate_progress().completed_epochs == 2
    assert not t.is_complete()
    info = t.get_progress()
    assert structure(info.to_dict(), ProgressInfo) == info
