"""Loading the plugin (what every progresskit command does) leaves the job model, the
protocol and the HTTP client unloaded until a ComfyUI run or URL is met."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_loading_the_plugin_imports_neither_job_nor_protocol(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from progresskit import get_plugin_manager\n"
        "pm = get_plugin_manager()\n"
        "assert pm.has_plugin('comfyui')\n"
        "from progresskit_comfyui.plugin import ComfyUIJobsTracker\n"
        "assert ComfyUIJobsTracker.runner_type == 'comfyui'\n"
        "print(sorted(m for m in sys.modules if m.startswith('progresskit_comfyui.')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "['progresskit_comfyui.plugin']"
