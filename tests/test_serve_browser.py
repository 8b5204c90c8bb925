"""The dashboard in a real headless Chromium (Debian's ``chromium``, driven by Playwright).

Screenshots are kept in ``test-artifacts/`` at the repository root.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers.runs import make_trainer_run
from helpers.serve import TOKEN, Server, add_epoch, serve, start_job
from progresskit.producer.emitter import EventEmitter

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    missing = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing = "the playwright package (dev extra) is not installed"
    if missing is None and not os.path.exists(CHROMIUM):
        missing = f"{CHROMIUM} is missing (apt-get install chromium)"
    if missing is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{missing}; .ci/run installs it, so under CI this is a failure")
        pytest.skip(f"{missing}; not running under CI=true, where this would fail instead")
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


def _multi_stage_run(path: Path) -> EventEmitter:
    path.mkdir(parents=True)
    emitter = EventEmitter("run-17", event_file=path / "events.jsonl")
    emitter.stage_change(None, "feature_selection")
    emitter.progress("feature_selection", 100.0, targets_total=3)
    emitter.stage_change("feature_selection", "training")
    emitter.target_complete("fwd_ret_5m", "success", models_trained=4, metrics={"psnr": 27.31})
    emitter.target_complete("fwd_ret_15m", "success", models_trained=4, metrics={"psnr": 26.9})
    emitter.progress("training", 50.0, current_target="fwd_ret_60m", targets_complete=2,
                     targets_total=3)
    return emitter


def _card(page: Any, name: str) -> Any:
    return page.locator(".card", has=page.locator("h2.name", has_text=name))


def _value_now(card: Any) -> float:
    return float(card.locator(".progress").get_attribute("aria-valuenow"))


def _wait_progress(page: Any, name: str, above: float, timeout: float) -> None:
    page.wait_for_function(
        """([name, above]) => [...document.querySelectorAll('.card')].some(card =>
               card.querySelector('h2.name').textContent === name && parseFloat(
                   card.querySelector('.progress').getAttribute('aria-valuenow')) > above)""",
        arg=[name, above],
        timeout=timeout * 1000,
    )


def _wait_for_process(server: Server, name: str, pid: int) -> None:
    server.wait_for(
        f"the server to see process {pid} working on {name}",
        lambda: (server.run_named(name)["run"]["process_info"] or {}).get("pid") == pid,
        timeout=30,
    )


def test_cards_update_live_and_cancel_asks_first(browser: Any, tmp_path: Path) -> None:
    root = tmp_path / "runs"
    make_trainer_run(root / "resnet50", 3, total=10)
    make_trainer_run(root / "baseline", 10, total=10, age=7200)
    emitter = _multi_stage_run(root / "foxml-17")
    add_epoch(root / "resnet50", 3)  # two points: the card has a chart
    job = start_job(root / "resnet50")
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        with serve(root, "--grace", "2") as server:
            _wait_for_process(server, "resnet50", job.pid)
            add_epoch(root / "resnet50", 4)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(server.url + "#token=" + TOKEN)
            page.wait_for_selector(".card")
            page.wait_for_function("document.querySelectorAll('.card').length === 3")
            page.wait_for_selector("#conn[data-state='live']")
            assert page.url == server.url, "the token must leave the address bar"

            resnet = _card(page, "resnet50")
            assert "Running" in resnet.locator(".badge").inner_text()
            assert resnet.locator(".badge svg").count() == 1, "status needs an icon, not colour"
            assert _value_now(resnet) == pytest.approx(50.0)
            assert resnet.locator(".pct").inner_text() == "50.0%"
            assert resnet.locator(".m-steps").inner_text() == "5 / 10"
            assert resnet.locator(".m-eta").inner_text().startswith("~")
            assert resnet.locator(".cancel").is_visible()
            baseline = _card(page, "baseline")
            assert "Finished" in baseline.locator(".badge").inner_text()
            assert not baseline.locator(".cancel").is_visible()
            foxml = _card(page, "foxml-17")
            assert "Stage: training" in foxml.locator(".stage").inner_text()
            assert "Current target: fwd_ret_60m" in foxml.inner_text()
            assert "psnr 27.31" in foxml.locator(".targets").inner_text()
            ticking = foxml.locator(".m-elapsed")
            first = ticking.inner_text()
            page.wait_for_timeout(2100)
            assert ticking.inner_text() != first, "an active job's elapsed time must tick"

            add_epoch(root / "resnet50", 5)
            _wait_progress(page, "resnet50", 50.0, timeout=15)
            assert _value_now(resnet) == pytest.approx(60.0)
            assert resnet.locator(".chart polyline").count() >= 1
            page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)

            page.set_viewport_size({"width": 390, "height": 844})
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, f"the page overflows a phone's width ({width}px)"
            page.screenshot(path=str(ARTIFACTS / "dashboard-phone.png"), full_page=True)
            page.set_viewport_size({"width": 1280, "height": 900})

            resnet.locator(".cancel").click()
            dialog = page.locator("dialog#confirm")
            assert dialog.is_visible() and "resnet50" in dialog.inner_text()
            page.screenshot(path=str(ARTIFACTS / "dashboard-cancel-dialog.png"))
            page.locator("#keep").click()
            assert not dialog.is_visible()
            page.wait_for_timeout(500)
            assert job.poll() is None, "keeping the job must not stop it"

            resnet.locator(".cancel").click()
            page.locator("#do-cancel").click()
            assert job.wait(15) == -signal.SIGTERM
            page.wait_for_selector("dialog#confirm:not([open])", state="attached")
            assert "Cancel requested" in resnet.locator(".reason").inner_text()
            assert errors == []
            page.close()
    finally:
        emitter.close()
        if job.poll() is None:
            job.kill()
            job.wait()


def test_without_the_stream_the_page_polls(browser: Any, tmp_path: Path) -> None:
    root = tmp_path / "runs"
    make_trainer_run(root / "alpha", 2, total=10)
    with serve(root) as server:
        page = browser.new_page(viewport={"width": 800, "height": 600})
        page.route_web_socket("**/ws", lambda ws: ws.close())
        page.goto(server.url)
        page.wait_for_selector("#conn[data-state='polling']")
        page.wait_for_function("document.querySelectorAll('.card').length === 1")
        add_epoch(root / "alpha", 2)
        _wait_progress(page, "alpha", 20.0, timeout=15)
        page.close()


def test_an_empty_root_says_so(browser: Any, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with serve(tmp_path / "empty") as server:
        page = browser.new_page(viewport={"width": 390, "height": 700})
        page.goto(server.url)
        page.wait_for_selector("#conn[data-state='live']")
        empty = page.locator("#empty")
        assert empty.is_visible() and "No jobs yet" in empty.inner_text()
        assert str(tmp_path / "empty") in empty.inner_text()
        assert page.locator(".card").count() == 0
        page.close()


def test_a_cards_silence_in_its_reason_grows_with_its_age(browser: Any, tmp_path: Path) -> None:
    # The server decides "no sign of life for 40s" once and resends nothing while nothing
    # changes: the card must recompute it from the run's last activity (issue 15: it froze).
    root = tmp_path / "runs"
    make_trainer_run(root / "quiet", 3, total=10, age=40.0, epoch_seconds=600.0)
    with serve(root) as server:
        page = browser.new_page(viewport={"width": 1000, "height": 700})
        page.goto(server.url + "#token=" + TOKEN)
        page.wait_for_function("document.querySelectorAll('.card').length === 1")
        reason = _card(page, "quiet").locator(".reason")

        def seconds() -> int:
            text = reason.inner_text()
            assert "sign of life" in text, text
            digits = text.split("sign of life", 1)[1].split("s", 1)[0]
            return int("".join(c for c in digits if c.isdigit()))

        first = seconds()
        page.wait_for_timeout(3000)
        later = seconds()
        assert later >= first + 2, (first, later, reason.inner_text())
        page.close()
