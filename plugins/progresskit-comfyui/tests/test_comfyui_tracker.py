"""The tracker of a work dir that names ComfyUI jobs: what its config must hold, and one
look at the server per status query (the tracker's ``reuse_seconds``)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from progresskit_comfyui.plugin import ComfyUIJobsTracker

from progresskit import ProgressInfo, RunnerDetectionError, Status
from progresskit.engine.session import Tracking
from progresskit.plugin.manager import get_plugin_manager

JOBS = {"comfyui_url": "http://127.0.0.1:8188", "comfyui_prompt_ids": ["p1"]}


def test_a_pinned_runner_type_without_its_jobs_is_a_detection_error(tmp_path: Path) -> None:
    tracking = Tracking(get_plugin_manager(), config={"runner_type": "comfyui"})
    with pytest.raises(RunnerDetectionError) as raised:
        tracking.status(str(tmp_path), discover_processes=False)
    assert str(raised.value) == (
        f"{tmp_path}: runner type 'comfyui' needs 'comfyui_url' and 'comfyui_prompt_ids' "
        f"in its config"
    )


class _Counting(ComfyUIJobsTracker):
    """Counts the looks at the server instead of taking them."""

    looks = 0

    def calculate_progress(self) -> ProgressInfo:
        type(self).looks += 1
        return ProgressInfo(
            runner_type="comfyui",
            progress_percentage=50.0,
            last_update_time=time.time(),
            reported_status=Status.RUNNING,
        )


def test_one_status_query_is_one_look_at_the_server(tmp_path: Path) -> None:
    tracker = _Counting(tmp_path, JOBS)
    progress, complete, _activity = tracker.evaluate()
    assert (progress.progress_percentage, complete) == (50.0, False)
    assert _Counting.looks == 1
    # Nothing on disk tells when the jobs changed: the answer is reused for a second.
    (tmp_path / "comfyui_0.log").write_text("a file changed")
    assert tracker.get_progress() is progress
    assert _Counting.looks == 1
    tracker.get_progress(force_refresh=True)
    assert _Counting.looks == 2
