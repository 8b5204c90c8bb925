"""The status of 10,000 MLflow runs in one SQLite store, against MLflow's own search.

The store is written by MLflow itself (``MlflowClient``: ``create_run``, one ``log_batch``
of 20 steps of ``loss`` and ``lr`` and 5 params, ``set_terminated``), 80% FINISHED, 10%
FAILED, 5% KILLED and 5% left RUNNING, and kept between runs of this script (``--data``).
Measured in this one run, each warm (one call first, then the median of ``--repeat``):

* baseline: ``MlflowClient("sqlite:///...").search_runs(every experiment,
  max_results=N)``, the runs with their latest metrics, params and tags, in MLflow's
  environment (a subprocess);
* progresskit: ``Tracking().runs_of("sqlite:///...")``, every run's status through the
  plugin's ``progresskit_resolve_target`` (read-only SQLite, the status rules, the rhythm
  of the RUNNING runs); target: at most 1.5x the baseline;
* for information: ``progresskit status --json`` on the same target, in-process, with the
  JSON written.

MLflow is never installed in progresskit's environment. Make its own once:

    python -m venv /tmp/work/mlflow-venv
    /tmp/work/mlflow-venv/bin/pip install mlflow-skinny==3.17.2 sqlalchemy alembic

Usage: python benchmarks/mlflow.py [--runs 10000] [--repeat 5]
       [--mlflow-python /tmp/work/mlflow-venv/bin/python] [--data /tmp/work/mlflow-bench]
Without that interpreter (or with one that cannot import mlflow) it prints why and exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from progresskit import Tracking
from progresskit.cli.main import main as cli_main

TARGET_RATIO = 1.5
DEFAULT_PYTHON = "/tmp/work/mlflow-venv/bin/python"

GENERATE = textwrap.dedent("""\
    import math, sqlite3, sys, time
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    path, runs = sys.argv[1], int(sys.argv[2])
    client = MlflowClient(tracking_uri=f"sqlite:///{path}")
    experiment = client.create_experiment("bench")
    # Writing: WAL spares a journal file per commit; MLflow's default (delete) is put back
    # at the end, so the store read is as MLflow leaves it.
    sqlite3.connect(path).execute("PRAGMA journal_mode=WAL").connection.close()
    now = int(time.time() * 1000)
    for i in range(runs):
        status = ("FINISHED" if i % 20 < 16 else "FAILED" if i % 20 < 18
                  else "KILLED" if i % 20 == 18 else "RUNNING")
        start = now - (runs - i) * 60_000
        run = client.create_run(experiment, start_time=start, run_name=f"run-{i}")
        metrics = []
        for step in range(20):
            t = start + step * 2000
            metrics.append(Metric("loss", 2.5 * math.exp(-step / 20), t, step))
            metrics.append(Metric("lr", 1e-3 * (1 - step / 20), t + 1, step))
        params = [Param("steps", "20"), Param("lr", "0.001"), Param("batch_size", "32"),
                  Param("epochs", "2"), Param("seed", str(i))]
        client.log_batch(run.info.run_id, metrics=metrics, params=params)
        if status != "RUNNING":
            client.set_terminated(run.info.run_id, status, end_time=start + 40_000)
    client._tracking_client.store.engine.dispose()
    sqlite3.connect(path).execute("PRAGMA journal_mode=DELETE").connection.close()
    print("generated", runs)
""")

SEARCH = textwrap.dedent("""\
    import json, statistics, sys, time
    from mlflow.tracking import MlflowClient

    path, runs, repeat = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    client = MlflowClient(tracking_uri=f"sqlite:///{path}")
    ids = [e.experiment_id for e in client.search_experiments()]

    def search():
        return client.search_runs(ids, max_results=runs)

    found = len(search())  # warm: engine, schema check, caches
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        search()
        times.append(time.perf_counter() - began)
    print(json.dumps({"runs": found, "seconds": statistics.median(times)}))
""")


def has_mlflow(python: str) -> str | None:
    """Why ``python`` cannot serve as MLflow's environment, or ``None`` when it can."""
    if not os.path.exists(python):
        return f"{python} does not exist"
    probe = subprocess.run([python, "-c", "import mlflow; print(mlflow.__version__)"],
                           capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        return f"{python} cannot import mlflow: {probe.stderr.strip().splitlines()[-1:]}"
    return None


def mlflow_env() -> dict[str, str]:
    env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="1")
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def store(python: str, data: Path, runs: int) -> Path:
    """The store of ``runs`` runs, written by MLflow (once; kept under ``data``)."""
    path = data / f"mlflow-{runs}.db"
    if path.exists():
        return path
    data.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    print(f"writing {runs} runs with MLflow into {path} (once) ...", flush=True)
    began = time.perf_counter()
    subprocess.run([python, "-c", GENERATE, str(partial), str(runs)], check=True,
                   env=mlflow_env(), cwd=data)
    os.replace(partial, path)
    print(f"  took {time.perf_counter() - began:.0f}s", flush=True)
    return path


def search_runs(python: str, path: Path, runs: int, repeat: int) -> tuple[int, float]:
    done = subprocess.run([python, "-c", SEARCH, str(path), str(runs), str(repeat)],
                          check=True, capture_output=True, text=True, env=mlflow_env())
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    return int(answer["runs"]), float(answer["seconds"])


def timed(call: object, repeat: int) -> float:
    assert callable(call)
    call()  # warm
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        call()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--mlflow-python", default=DEFAULT_PYTHON)
    parser.add_argument("--data", type=Path, default=Path("/tmp/work/mlflow-bench"))
    args = parser.parse_args()

    missing = has_mlflow(args.mlflow_python)
    if missing is not None:
        print(f"SKIPPED: MLflow's environment is not there ({missing}). Make it with:\n"
              f"  python -m venv /tmp/work/mlflow-venv\n"
              f"  /tmp/work/mlflow-venv/bin/pip install mlflow-skinny==3.17.2 sqlalchemy "
              f"alembic\nor pass --mlflow-python PATH.")
        return 0
    path = store(args.mlflow_python, args.data, args.runs)
    target = f"sqlite:///{path}"

    found, baseline = search_runs(args.mlflow_python, path, args.runs, args.repeat)
    tracking = Tracking()
    statuses = tracking.runs_of(target)
    if len(statuses) != found:
        print(f"FAIL: progresskit found {len(statuses)} runs, MLflow {found}")
        return 1
    ours = timed(lambda: tracking.runs_of(target), args.repeat)

    def command() -> None:
        with contextlib.redirect_stdout(io.StringIO()):
            cli_main(["status", "--json", target])

    cli = timed(command, max(1, args.repeat // 2))
    by_status: dict[str, int] = {}
    for run in statuses:
        by_status[run.status.value] = by_status.get(run.status.value, 0) + 1

    ratio = ours / baseline
    print(f"runs: {found} ({', '.join(f'{n} {s}' for s, n in sorted(by_status.items()))})")
    print(f"MlflowClient().search_runs       {baseline * 1000:8.1f} ms (baseline)")
    print(f"progresskit Tracking().runs_of   {ours * 1000:8.1f} ms  ratio {ratio:.2f}x "
          f"(target <= {TARGET_RATIO}x)")
    print(f"progresskit status --json (CLI)  {cli * 1000:8.1f} ms  ratio {cli / baseline:.2f}x "
          f"(for information)")
    verdict = "PASS" if ratio <= TARGET_RATIO else "FAIL"
    print(f"{verdict}: status of {found} runs at {ratio:.2f}x MLflow's own search_runs")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
