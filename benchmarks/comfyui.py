"""Benchmark: one StatusMonitor following 500 ComfyUI jobs across 2 replay servers.

Two loopback ComfyUI servers (plugins/progresskit-comfyui/tests/comfyui_replay.py, in a
separate process) replay the captured successful prompt (5 nodes, 16 sampler steps,
previews) for every job, compressed by ``--speed``. Measured in this same run:

  baseline: a bare client per server (the same /ws connection and /queue polling) that only
    decodes each JSON message: the cost of receiving the stream at all;
  monitor:  StatusMonitor following every job, with one progress callback.

Printed: CPU per job update (one callback) and per /ws message, and the delay from the
server sending a message that announces sampler step k of a job to the callback that first
reports step k (p50/p95), each with its ratio to the baseline's receive delay and CPU.

    python benchmarks/comfyui.py                       # 500 jobs, speed 100
    python benchmarks/comfyui.py --jobs 100 --no-previews

``--eta``: ETA accuracy instead. One replay server plays the captured successful prompt
and its second captured run (another colour: other real timings), in turn, compressed by
``--speed`` (default 2), for ``--train`` jobs that teach the monitor, then for
``--measure`` jobs whose ETA is sampled every 20 ms. Measured in the same run with the
same replay: the current monitor, the monitor before issue 21 (``--baseline``, the plugin
at git revision 4bbacb2, run from a copy in a subprocess of its own), and the source's own
step-count estimate (elapsed x (1 - f) / f, f = nodes and steps done, what the server's
numbers alone give). Each job is posted while the one before runs (so it is followed from
its start, whatever the machine's load) with its graph (``monitor_job(prompt=...)``).
Printed: the relative ETA error at 25/50/75% of each job's real duration (from the
server's execution start to when the monitor reports it completed), as the median over
each captured run's jobs and the mean of the two runs' medians, and the ratios.

    python benchmarks/comfyui.py --eta
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import connect

ROOT = Path(__file__).resolve().parents[1]
REPLAY = ROOT / "plugins" / "progresskit-comfyui" / "tests"
sys.path.insert(0, str(REPLAY))

from progresskit_comfyui import ProgressStatus, ProgressUpdate, StatusMonitor  # noqa: E402

from comfyui_replay import recordings  # noqa: E402

Key = tuple[str, str, int]


class Servers:
    """Two replay servers in a child process, holding every job until :meth:`go`."""

    def __init__(self, speed: float, previews: bool, log: Path):
        command = [sys.executable, str(REPLAY / "comfyui_replay.py"), "--servers", "2",
                   "--speed", str(speed), "--send-log", str(log), "--hold"]
        if not previews:
            command.append("--no-previews")
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        text=True)
        assert self.process.stdout is not None
        self.urls = [f"http://127.0.0.1:{self.process.stdout.readline().strip()}"
                     for _ in range(2)]

    def go(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("go\n")
        self.process.stdin.flush()

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(30)


def submit(urls: list[str], jobs: int, client_id: str) -> list[tuple[str, str]]:
    """(server, prompt id) of ``jobs`` prompts, spread over the servers."""
    graph = recordings()["ok"].graph
    submitted = []
    with httpx.Client(timeout=30) as client:
        for n in range(jobs):
            url = urls[n % len(urls)]
            reply = client.post(f"{url}/prompt", json={"prompt": graph, "client_id": client_id})
            reply.raise_for_status()
            submitted.append((url, reply.json()["prompt_id"]))
    return submitted


def sent_times(log: Path) -> dict[Key, float]:
    """When each step of each job was first announced (progress_state or progress)."""
    first: dict[Key, float] = {}
    for line in log.read_text().splitlines():
        prompt_id, node, step, sent = line.split()
        key = (prompt_id, node, int(step))
        first[key] = min(first.get(key, float("inf")), float(sent))
    return first


def delays(sent: dict[Key, float], seen: dict[Key, float]) -> list[float]:
    return sorted(seen[k] - sent[k] for k in seen.keys() & sent.keys())


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 \
        else values[0]


async def run_monitor(urls: list[str], jobs: int, servers: Servers) -> dict[str, Any]:
    seen: dict[Key, float] = {}
    updates = 0
    done: set[str] = set()
    all_done = asyncio.Event()

    def on_update(update: ProgressUpdate) -> None:
        nonlocal updates
        updates += 1
        if update.current_node is not None and update.total_steps:
            seen.setdefault((update.comfyui_prompt_id, update.current_node, update.current_step),
                            time.time())
        if update.status.is_terminal:
            done.add(update.comfyui_prompt_id)
            if len(done) == jobs:
                all_done.set()

    monitor = StatusMonitor(urls)
    messages = 0
    handle: Callable[..., None] = monitor._on_message

    def counting(link: Any, text: str) -> None:
        nonlocal messages
        messages += 1
        handle(link, text)

    monitor._on_message = counting  # type: ignore[method-assign]
    submitted = await asyncio.to_thread(submit, urls, jobs, monitor.client_id)
    for n, (url, prompt_id) in enumerate(submitted):
        monitor.monitor_job(n, prompt_id, "image", server=url)
    monitor.add_progress_callback(on_update)
    await monitor.start_monitoring()
    while not all(monitor._links[u].websocket for u in urls):
        await asyncio.sleep(0.01)
    updates = messages = 0
    cpu, wall = time.process_time(), time.perf_counter()
    servers.go()
    await asyncio.wait_for(all_done.wait(), timeout=600)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    statuses = {monitor.progress_now(n).status for n in range(jobs)}  # type: ignore[union-attr]
    await monitor.stop_monitoring()
    assert statuses == {ProgressStatus.COMPLETED}, statuses
    return {"cpu": cpu, "wall": wall, "updates": updates, "messages": messages, "seen": seen}


async def run_baseline(urls: list[str], jobs: int, servers: Servers) -> dict[str, Any]:
    """Receive and decode everything the monitor receives, and poll /queue as often."""
    client_id = "baseline"
    await asyncio.to_thread(submit, urls, jobs, client_id)
    seen: dict[Key, float] = {}
    messages = 0
    remaining = len(urls)
    finished = asyncio.Event()
    ended = 0

    async def listen(url: str) -> None:
        nonlocal messages, remaining, ended
        async with connect(url.replace("http", "ws") + f"/ws?clientId={client_id}",
                           max_size=None) as ws:
            remaining -= 1
            async for raw in ws:
                if not isinstance(raw, str):
                    continue
                messages += 1
                message = json.loads(raw)
                data = message["data"]
                if message["type"] == "progress":
                    seen.setdefault((data["prompt_id"], data["node"], data["value"]), time.time())
                elif message["type"] == "progress_state":
                    for node, state in data["nodes"].items():
                        if state["state"] == "running" and state["max"] > 1:
                            key = (data["prompt_id"], node, int(state["value"]))
                            seen.setdefault(key, time.time())
                elif message["type"] == "execution_success":
                    ended += 1
                    if ended == jobs:
                        finished.set()

    async def poll(url: str) -> None:
        async with httpx.AsyncClient() as client:
            while True:
                (await client.get(f"{url}/queue")).json()
                await asyncio.sleep(2.0)

    tasks = [asyncio.create_task(listen(u)) for u in urls]
    while remaining:
        await asyncio.sleep(0.01)
    tasks += [asyncio.create_task(poll(u)) for u in urls]
    cpu, wall = time.process_time(), time.perf_counter()
    messages = 0
    servers.go()
    await asyncio.wait_for(finished.wait(), timeout=600)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {"cpu": cpu, "wall": wall, "messages": messages, "seen": seen}


def measure(kind: str, jobs: int, speed: float, previews: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "sent.log"
        servers = Servers(speed, previews, log)
        try:
            runner = run_monitor if kind == "monitor" else run_baseline
            result = asyncio.run(runner(servers.urls, jobs, servers))
        finally:
            servers.close()
        result["delays"] = delays(sent_times(log), result.pop("seen"))
    return result


# -- ETA accuracy -------------------------------------------------------------------------------

QUANTILES = (0.25, 0.5, 0.75)
#: One sample of a job: (unix time, eta seconds, nodes done, nodes, step, steps, started).
Sample = tuple[float, float | None, int, int | None, int, int, float | None]


async def eta_worker(url: str, train: int, measure: int) -> list[dict[str, Any]]:
    """Run in a subprocess with one plugin version on the path: teach a monitor ``train``
    jobs, then sample the ETA of ``measure`` jobs.

    Each job is posted while the one before it runs, so that it is followed before it
    starts: ComfyUI starts a prompt posted to an idle server at once, and whether its first
    events beat ``monitor_job`` would be a race that makes the figures differ from run to
    run (for a monitor that drops such events, as the one before issue 21 does)."""
    # The two captured runs of the workflow (other colours, other real timings), in turn.
    graphs = [recordings()[name].graph for name in ("ok", "ok_2")]
    out = []
    async with StatusMonitor(url, poll_interval=0.5) as monitor, \
            httpx.AsyncClient(timeout=30) as client:
        while not await _ws_up(monitor):
            await asyncio.sleep(0.02)

        async def post(n: int) -> None:
            reply = await client.post(f"{url}/prompt", json={
                "prompt": graphs[n % 2], "client_id": monitor.client_id})
            # As the docs say to: the graph just posted names its nodes at once.
            monitor.monitor_job(n, reply.json()["prompt_id"], "image", prompt=graphs[n % 2])

        await post(0)
        for n in range(train + measure):
            if n + 1 < train + measure:
                await post(n + 1)
            samples: list[Sample] = []
            while True:
                update = monitor.progress_now(n)
                assert update is not None
                if update.status.is_terminal:
                    # The job is over for whoever waits on it when the monitor says so.
                    finished = time.time()
                    break
                if update.status is ProgressStatus.PROCESSING and update.started_at:
                    samples.append((time.time(), update.eta_seconds, update.nodes_completed,
                                    update.nodes_total, update.current_step,
                                    update.total_steps, update.started_at))
                await asyncio.sleep(0.02)
            if n >= train:
                out.append({"run": n % 2, "started": update.started_at, "ended": finished,
                            "status": update.status.value, "samples": samples})
    return out


async def _ws_up(monitor: StatusMonitor) -> bool:
    stats = await monitor.get_queue_statistics()
    return all(s["websocket"] for s in stats["servers"].values())


def step_count_eta(sample: Sample) -> float | None:
    """The source's own numbers alone: elapsed x (1 - f) / f, every node and step alike."""
    t, _eta, done, total, step, steps, started = sample
    if not total or started is None:
        return None
    fraction = (done + (step / steps if steps else 0.0)) / total
    return (t - started) * (1 - fraction) / fraction if fraction > 0 else None


def eta_errors(jobs: list[dict[str, Any]], source: bool) -> dict[float, dict[int, list[float]]]:
    """Per quantile of each job's real duration and per captured run: |ETA - real
    remaining| / real remaining, from the first sample at or after that point (a missing
    ETA counts as 100% off)."""
    errors: dict[float, dict[int, list[float]]] = {q: {} for q in QUANTILES}
    for job in jobs:
        if job["status"] != "completed" or not job["samples"]:
            continue
        start, end = job["started"], job["ended"]
        for q in QUANTILES:
            at = start + q * (end - start)
            sample = next((s for s in job["samples"] if s[0] >= at), None)
            if sample is None:
                continue
            remaining = end - sample[0]
            eta = step_count_eta(sample) if source else sample[1]
            errors[q].setdefault(job["run"], []).append(
                1.0 if eta is None else abs(eta - remaining) / remaining)
    return errors


def summary(errors: dict[int, list[float]]) -> float | None:
    """The median error over each captured run's jobs, averaged over the two runs.

    Not the median over all jobs: the two runs' errors form two groups (one run is 32%
    faster), and the median of an even mix of two groups is either group's edge, whichever
    a single noisy job tips it to (the old estimator's 25% figure read 13-26% so)."""
    medians = [statistics.median(v) for v in errors.values() if v]
    return statistics.fmean(medians) if len(medians) == len(errors) and medians else None


#: The plugin before issue 21 (node-count progress, ETA from the job's own pace and the
#: type's history): the baseline the new ETA is measured against.
BASELINE_REVISION = "4bbacb2"


def committed_plugin(tmp: Path, revision: str) -> Path:
    """The plugin at ``revision``, unpacked into ``tmp``: its ``src`` directory."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", revision, "plugins/progresskit-comfyui/src"],
        check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tmp)], input=archive, check=True)
    return tmp / "plugins" / "progresskit-comfyui" / "src"


def run_eta(url: str, train: int, measure: int, plugin_src: Path | None) -> list[dict[str, Any]]:
    env = dict(os.environ)
    with tempfile.TemporaryDirectory() as tmp:
        # Each version learns from nothing but its own training jobs.
        env["PROGRESSKIT_HISTORY"] = str(Path(tmp) / "history.sqlite3")
        if plugin_src is not None:
            env["PYTHONPATH"] = os.pathsep.join([str(plugin_src), env.get("PYTHONPATH", "")])
        done = subprocess.run(
            [sys.executable, __file__, "--eta-worker", url, str(train), str(measure)],
            env=env, check=True, capture_output=True, text=True)
    result: list[dict[str, Any]] = json.loads(done.stdout)
    return result


def eta_main(speed: float, train: int, measure: int, revision: str) -> None:
    sys.path.insert(0, str(REPLAY))
    from comfyui_replay import ReplayThread

    replay = ReplayThread(speed=speed, previews=True)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            old = run_eta(replay.url, train, measure, committed_plugin(Path(tmp), revision))
        new = run_eta(replay.url, train, measure, None)
    finally:
        replay.close()
    rows = {f"before ({revision})": eta_errors(old, False), "now": eta_errors(new, False),
            "source step count": eta_errors(new, True)}
    print(f"ETA error, captured 5-node prompt (its two captured runs in turn) at speed "
          f"x{speed:g}: {train} jobs to learn from, {measure} measured; median |ETA - real| "
          f"/ real remaining over each run's jobs, and their mean")
    print("                     " + "".join(f"{int(q * 100):>9}%" for q in QUANTILES)
          + "   (run 1 / run 2 at 25%)")
    figures: dict[str, list[float | None]] = {}
    for name, errors in rows.items():
        figures[name] = [summary(errors[q]) for q in QUANTILES]
        cells = "".join("        -" if f is None else f"{f * 100:9.1f}%" for f in figures[name])
        runs = " / ".join(f"{statistics.median(v) * 100:.1f}%" for _, v in
                          sorted(rows[name][QUANTILES[0]].items()))
        print(f"  {name:<19}{cells}   ({runs})")
    for i, q in enumerate(QUANTILES):
        a, b, c = (figures[k][i] for k in ("now", f"before ({revision})", "source step count"))
        if a is not None and b is not None and c is not None:
            print(f"  at {int(q * 100)}%: before/now {b / a if a else float('inf'):.2f}x "
                  f"(target >= 2), source/now {c / a if a else float('inf'):.2f}x (target >= 1)")


def main() -> None:
    # Runs finished here go to an ETA history (and statistics file) of the benchmark's own,
    # never the user's, removed at the end.
    if "PROGRESSKIT_HISTORY" in os.environ:
        run()
        return
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["PROGRESSKIT_HISTORY"] = str(Path(tmp) / "history.sqlite3")
        run()


def run() -> None:
    if sys.argv[1:2] == ["--eta-worker"]:
        url, train, measured = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
        print(json.dumps(asyncio.run(eta_worker(url, train, measured))))
        return
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--speed", type=float, default=None,
                        help="replay this many times faster than the captured prompt "
                        "(default 100; with --eta, 2)")
    parser.add_argument("--no-previews", action="store_true",
                        help="leave out the binary preview frames (about 59 KB each)")
    parser.add_argument("--eta", action="store_true", help="measure ETA accuracy instead")
    parser.add_argument("--train", type=int, default=4, help="--eta: jobs to learn from")
    parser.add_argument("--measure", type=int, default=10, help="--eta: jobs measured")
    parser.add_argument("--baseline", default=BASELINE_REVISION,
                        help="--eta: git revision of the plugin to compare with")
    args = parser.parse_args()
    if args.eta:
        eta_main(args.speed or 2.0, args.train, args.measure, args.baseline)
        return
    args.speed = args.speed or 100.0
    previews = not args.no_previews
    print(f"{args.jobs} jobs on 2 replay servers, speed x{args.speed:g}, "
          f"previews {'on' if previews else 'off'}")
    base = measure("baseline", args.jobs, args.speed, previews)
    mon = measure("monitor", args.jobs, args.speed, previews)

    ms = 1e3
    base_per_msg = base["cpu"] / base["messages"]
    mon_per_msg = mon["cpu"] / mon["messages"]
    print(f"baseline: {base['messages']} messages in {base['wall']:.1f}s wall, "
          f"{base['cpu']:.2f}s CPU = {base_per_msg * 1e6:.1f} us/message")
    print(f"monitor:  {mon['messages']} messages, {mon['updates']} job updates in "
          f"{mon['wall']:.1f}s wall, {mon['cpu']:.2f}s CPU")
    print(f"  CPU per job update: {mon['cpu'] / mon['updates'] * 1e6:.1f} us")
    print(f"  CPU per message:    {mon_per_msg * 1e6:.1f} us "
          f"({mon_per_msg / base_per_msg:.2f}x baseline)")
    print(f"  CPU per job:        {mon['cpu'] / args.jobs * ms:.2f} ms")
    for name, values in (("baseline receive", base["delays"]), ("monitor callback", mon["delays"])):
        print(f"{name} delay after the server sent a step: n={len(values)} "
              f"p50={percentile(values, 50) * ms:.2f} ms p95={percentile(values, 95) * ms:.2f} ms")
    print(f"  ratio monitor/baseline: p50 "
          f"{percentile(mon['delays'], 50) / percentile(base['delays'], 50):.2f}x, p95 "
          f"{percentile(mon['delays'], 95) / percentile(base['delays'], 95):.2f}x")


if __name__ == "__main__":
    main()
