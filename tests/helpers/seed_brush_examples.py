# ruff: noqa
"""FIXTURE, NOT PROGRESSKIT CODE: the seed's own Python examples, kept as the seed wrote them.

Copied from seed 000 (/work/shared/seeds/000_931331ab128c42e2.txt), "Python Integration":
``monitor_training`` (Basic Example) and ``run_brush_training`` (Use Case 1, Python Training
Orchestration). Tests run them unchanged against files that ``StatusFileWriter`` writes, to
prove the file is what Brush's own consumers expect.

Changes: the two snippets' imports are merged at the top (the orchestration snippet uses
``time`` without importing it; the basic one imports it), and the basic example's module-level
usage line ``monitor_training('./training_status.json')`` is left out so that importing this
module does not start monitoring. Every line of the two functions is the seed's. Do not "fix"
them (no timeout, a bare ``json.load`` on every poll): that is how the seed's users read the file.
"""

import json
import subprocess
import time
from pathlib import Path

def monitor_training(status_file_path):
    status_file = Path(status_file_path)

    while True:
        if status_file.exists():
            with open(status_file, 'r') as f:
                status = json.load(f)

            print(f"Progress: {status['progress_percentage']:.1f}% "
                  f"({status['current_iteration']}/{status['total_iterations']})")

            if status['status'] == 'completed':
                print(f"Training completed! Output: {status['current_export_file']}")
                break

        time.sleep(1)


def run_brush_training(dataset_path, output_dir):
    # Start Brush training
    process = subprocess.Popen([
        'cargo', 'run', '--release', '--',
        dataset_path,
        '--save-status',
        '--export-path', output_dir,
        '--status-filename', 'status.json'
    ])

    # Monitor progress
    status_file = Path(output_dir) / 'status.json'
    while process.poll() is None:  # Process still running
        if status_file.exists():
            with open(status_file, 'r') as f:
                status = json.load(f)

            # Your custom logic here
            yield status

        time.sleep(1)

    return process.returncode
