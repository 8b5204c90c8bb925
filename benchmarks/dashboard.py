"""Benchmark: the dashboard in headless Chromium with many runs (issue 20).

Generates R trainer runs (benchmarks/serve.py's layout), starts a real ``progresskit
serve`` on loopback and opens its dashboard in Debian's chromium through Playwright. All
times are taken in the page with ``performance.now()``:

  first render:  from navigation start to the first page of cards in the DOM (the stream's
                 greeting of every run fetched, parsed, filtered, sorted and rendered);
  filter change: from a click on a status chip to the next frame after it (the new page
                 rendered, styled and laid out);
  live update:   from the WebSocket message announcing one run's new epoch to that run's
                 card changing in the DOM (a script added before the page's own wraps the
                 socket to time its messages; a MutationObserver times the card).

Measured in this same run at a baseline of 100 runs and at R (default 10,000); printed
with the ratio R / baseline. Targets: first render and filter change <= 1 s, live update
<= 50 ms, at 10,000 runs.

    python benchmarks/dashboard.py                    # 10,000 runs
    python benchmarks/dashboard.py --runs 2000 --updates 5
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serve import generate, start_server, wait_for_runs, write_epoch

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--disable-background-networking", "--disable-component-update"]
BASELINE_RUNS = 100
TARGETS = {"first render": 1000.0, "filter change": 1000.0, "live update": 50.0}

#: Runs before the page's own scripts: times each stream message naming the watched run
#: and the first change of that run's card after it.
INSTRUMENT = """
window.__bench = {watch: null, received: null, updated: [], rendered: null};
const Native = window.WebSocket;
window.WebSocket = function (...args) {
  const socket = new Native(...args);
  socket.addEventListener("message", (event) => {
    const b = window.__bench;
    if (b.watch && b.received === null && event.data.includes(b.watch)) {
      b.received = performance.now();
    }
  });
  return socket;
};
window.WebSocket.prototype = Native.prototype;
Object.assign(window.WebSocket, {CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3});
const inCard = (record, id) => {
  const node = record.target.nodeType === 1 ? record.target : record.target.parentElement;
  return node && node.closest(`[data-id='${id}']`);
};
new MutationObserver((records) => {
  const b = window.__bench;
  if (b.rendered === null && document.querySelectorAll("#jobs .card").length) {
    b.rendered = performance.now();
  }
  if (b.received !== null && records.some((r) => inCard(r, b.watch))) {
    b.updated.push(performance.now() - b.received);
    b.received = null;
    b.watch = null;
  }
}).observe(document, {subtree: true, childList: true, characterData: true, attributes: true});
"""

FILTER = """async (status) => {
  const chip = document.querySelector(`.chip[data-status='${status}']`);
  const t0 = performance.now();
  chip.click();
  await new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)));
  return performance.now() - t0;
}"""


def measure(browser: Any, runs: int, updates: int) -> dict[str, float]:
    root = tempfile.mkdtemp(prefix="pk-dash-bench-")
    proc = None
    try:
        dirs = generate(root, runs)
        for finished in dirs[::10]:  # a tenth finished (1 epoch of 1): a filter to change to
            with open(os.path.join(finished, "progresskit.yaml"), "w") as fh:
                fh.write("epochs: 1\n")
        proc, url = start_server(root)
        ids = {rid: d for d, rid in wait_for_runs(url, runs).items()}
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.add_init_script(INSTRUMENT)
        page.goto(url)
        page.wait_for_function("() => window.__bench.rendered !== null", timeout=120_000)
        first = float(page.evaluate("window.__bench.rendered"))
        page.wait_for_selector("#conn[data-state='live']")
        filters = [float(page.evaluate(FILTER, status)) for status in ("finished", "all") * 3]
        # "finished": a tenth of the runs, another first page; "all": back to the first.
        lives: list[float] = []
        epoch = {d: 1 for d in dirs}
        for _ in range(updates):
            rid = page.evaluate("document.querySelector('#jobs .card').dataset.id")
            # The page is told only the 16-digit id: the message of its change carries it.
            page.evaluate("(rid) => { window.__bench.watch = rid; }", rid)
            work_dir = ids[rid]
            write_epoch(work_dir, epoch[work_dir])
            epoch[work_dir] += 1
            page.wait_for_function("() => window.__bench.watch === null", timeout=30_000)
            lives.append(float(page.evaluate("window.__bench.updated.at(-1)")))
            time.sleep(0.3)
        page.close()
        return {
            "first render": first,
            "filter change": statistics.median(filters),
            "filter change (max)": max(filters),
            "live update": statistics.median(lives),
            "live update (max)": max(lives),
        }
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(30)
        shutil.rmtree(root, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--updates", type=int, default=10, help="live updates timed")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            base = measure(browser, BASELINE_RUNS, args.updates)
            load = measure(browser, args.runs, args.updates)
        finally:
            browser.close()
    print(f"{'':22}{BASELINE_RUNS:>10} runs{args.runs:>10} runs     ratio   target")
    failed = False
    for name, value in load.items():
        target = TARGETS.get(name)
        mark = ""
        if target is not None:
            ok = value <= target
            failed |= not ok
            mark = f"<= {target:.0f} ms {'ok' if ok else 'MISSED'}"
        ratio = value / base[name] if base[name] else float("nan")
        print(f"{name:22}{base[name]:>11.1f} ms{value:>11.1f} ms{ratio:>9.2f}x   {mark}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
