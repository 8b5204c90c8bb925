"""Benchmark: the status of 1,000 Slurm jobs, per poll: subprocesses and parse time.

The 1,000-job answers are real captured records recombined
(plugins/progresskit-slurm/tests/data/captures): every ``*.squeue.json`` job record of every
scenario, repeated with fresh job ids, for ``squeue --json``; the captured text ``sacct -P``
job and step lines, likewise, for the jobs that ``squeue`` no longer holds (a tenth of them,
as after ``MinJobAge``). The replaying ``squeue``/``sacct`` on ``PATH`` log every call.

Measured in this same run:

  baseline: ``json.loads`` of the same ``squeue --json`` text alone (what reading it costs
    at all);
  parse:    the plugin's parse of that text and of the sacct text into jobs; then also
    every job's run (status, cause, reason).

Printed: squeue and sacct calls over 5 polls of 1,000 runs each (target: <= 1 + 1 per poll),
and the parse time per 1,000 jobs (target: <= 50 ms) with its ratio to the baseline.

    python benchmarks/slurm.py            # 1,000 jobs
    python benchmarks/slurm.py --jobs 5000
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins" / "progresskit-slurm" / "tests"))

from progresskit_slurm.client import SlurmView  # noqa: E402
from progresskit_slurm.jobs import parse_sacct, parse_squeue_json  # noqa: E402
from progresskit_slurm.runs import job_run  # noqa: E402

from slurm_replay import CAPTURES, Replay  # noqa: E402


def squeue_records(count: int, first_id: int) -> list[dict[str, Any]]:
    pool = []
    for capture in sorted(CAPTURES.glob("**/*.squeue.json")):
        pool += json.loads(capture.read_text())["jobs"]
    records = []
    for i in range(count):
        rec = dict(pool[i % len(pool)])
        job_id = first_id + i
        if rec.get("array_job_id"):
            rec["array_job_id"] = job_id  # a one-task array of its own
        rec["job_id"] = job_id
        records.append(rec)
    return records


def sacct_lines(count: int, first_id: int) -> str:
    header = None
    groups: list[list[str]] = []
    for capture in sorted(CAPTURES.glob("*/*.sacct.txt")):
        lines = [ln for ln in capture.read_text().splitlines()
                 if ln and not ln.startswith("$ ")]
        if not lines or not lines[0].startswith("JobID|JobName|Partition|State|ExitCode|"):
            continue
        header = header or lines[0]
        if lines[0] != header:
            continue
        job: list[str] = []
        for line in lines[1:]:
            if "." not in line.split("|", 1)[0] and job:
                groups.append(job)
                job = []
            job.append(line)
        if job:
            groups.append(job)
    out = [header or ""]
    for i in range(count):
        job_id = str(first_id + i)
        for line in groups[i % len(groups)]:
            cell, rest = line.split("|", 1)
            step = cell.partition(".")[1:]
            out.append(f"{job_id}{''.join(step)}|{rest}")
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--polls", type=int, default=5)
    args = parser.parse_args()
    n_sacct = args.jobs // 10
    n_squeue = args.jobs - n_sacct
    squeue = squeue_records(n_squeue, 100000)
    sacct = sacct_lines(n_sacct, 500000)
    wanted = [str(100000 + i) for i in range(n_squeue)] + [str(500000 + i)
                                                           for i in range(n_sacct)]

    with tempfile.TemporaryDirectory() as tmp:
        replay = Replay(Path(tmp) / "bin")
        replay.squeue(squeue)
        replay.sacct(sacct)
        squeue_text = (replay.dir / "squeue.answer").read_text()
        view = SlurmView(1.0, path=replay.path)
        for poll in range(args.polls):
            now = float(poll)  # one poll interval later each time
            jobs = view.jobs(wanted, now=now)
            for job_id in wanted:  # every run asks; the answers come from the one snapshot
                view.job(job_id, now=now + 0.5)
        missing = [j for j in wanted if j not in jobs]
        squeues, saccts = replay.count("squeue"), replay.count("sacct")
        print(f"{args.jobs} jobs ({n_squeue} held by squeue, {n_sacct} only in sacct), "
              f"{args.polls} polls, each job asked for {args.polls * 2} times")
        print(f"  squeue calls: {squeues} ({squeues / args.polls:.2f} per poll), sacct calls: "
              f"{saccts} ({saccts / args.polls:.2f} per poll; finished jobs are kept)")
        print(f"  jobs not found: {len(missing)}")

        def best(fn: Any, repeat: int = 7) -> float:
            times = []
            for _ in range(repeat):
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
            return min(times)

        baseline = best(lambda: json.loads(squeue_text))

        def parse() -> None:
            parsed = parse_squeue_json(squeue_text) + parse_sacct(sacct)
            now = time.time()
            for job in parsed:
                job_run(job, None, {}, now)

        parsed_only = best(lambda: (parse_squeue_json(squeue_text), parse_sacct(sacct)))
        took = best(parse)
        per_k = parsed_only * 1000 / args.jobs * 1000
        print(f"  baseline json.loads of squeue --json: {baseline * 1000:.1f} ms")
        print(f"  parse of squeue --json and sacct -P: {parsed_only * 1000:.1f} ms = "
              f"{per_k:.1f} ms per 1,000 jobs ({parsed_only / baseline:.2f}x the baseline); "
              f"target <= 50 ms per 1,000")
        print(f"  parse + every job's run (status, cause, reason): {took * 1000:.1f} ms "
              f"({took / baseline:.2f}x the baseline)")
        print(f"  median of one run's question (view.job) from the snapshot: "
              f"{statistics.median(_cached(view, wanted)) * 1e6:.0f} us")


def _cached(view: SlurmView, wanted: list[str]) -> list[float]:
    args_now = 4.75  # inside the last poll's interval: no command
    out = []
    for job_id in wanted[:200]:
        t0 = time.perf_counter()
        view.job(job_id, now=args_now)
        out.append(time.perf_counter() - t0)
    return out


if __name__ == "__main__":
    main()
