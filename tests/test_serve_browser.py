"""The dashboard in a real headless Chromium (Debian's ``chromium``, driven by Playwright).

Screenshots are kept in ``test-artifacts/`` at the repository root. Accessibility is
checked with axe-core (the copy the ``axe-playwright-python`` package ships), run in the
page: every view, at desktop and phone width, has no violation.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers.runs import make_evaluator_run, make_trainer_run
from helpers.serve import TOKEN, Server, add_epoch, serve, start_job
from progresskit.producer.emitter import EventEmitter
from progresskit.server.views import run_id

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
#: The widths every view is checked at: a desktop and a phone.
WIDTHS = ((1280, 900), (390, 844))

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


@pytest.fixture(scope="module")
def axe_source() -> str:
    try:
        import axe_playwright_python
    except ImportError:
        message = "the axe-playwright-python package (dev extra) is not installed"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}; under CI this is a failure")
        pytest.skip(message)
    return (Path(axe_playwright_python.__file__).parent / "axe.min.js").read_text("utf-8")


def _axe_violations(page: Any, axe: str) -> list[str]:
    """axe-core's violations on the page as it is now, one line each."""
    # Evaluated through the DevTools protocol: the page's Content Security Policy, which
    # allows no injected script, does not apply.
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(axe)
    found = page.evaluate(
        r"""() => axe.run(document, {resultTypes: ['violations']}).then(r => r.violations.map(
               v => `${v.id}: ${v.nodes.length} node(s), e.g. ${v.nodes[0].target.join(' ')}`
                    + ` (${v.nodes[0].failureSummary.replace(/\s+/g, ' ')})`))"""
    )
    return list(found)


def _check_view(page: Any, axe: str, name: str, width: int) -> None:
    """No axe-core violation, no horizontal overflow, and a screenshot of the view."""
    assert _axe_violations(page, axe) == [], name
    overflow = page.evaluate("document.documentElement.scrollWidth")
    assert overflow <= width, f"{name} overflows {width}px ({overflow}px)"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}-{width}.png"), full_page=True)


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


def _names(page: Any, selector: str = ".card h2.name") -> list[str]:
    return [str(n) for n in page.locator(selector).all_inner_texts()]


def _mixed_root(root: Path) -> None:
    """Runs of several statuses: failed (silent for 2 h, incomplete, no process), running,
    finished, an evaluation; 60 in all, so that the cards take two pages."""
    for i in range(50):
        age = 7200 if i % 5 == 0 else 0
        make_trainer_run(root / f"sweep/lr_{i:02d}", 5 + i % 4, total=10, age=age)
    for i in range(8):
        make_trainer_run(root / f"done/d{i}", 10, total=10, age=3600)
    make_evaluator_run(root / "eval_a", scores={"aggregated": {"psnr": 27.1}})
    make_evaluator_run(root / "eval_b", scores={"aggregated": {"psnr": 25.0}})


def test_filter_search_sort_list_and_pages(browser: Any, axe_source: str, tmp_path: Path) -> None:
    root = tmp_path / "runs"
    _mixed_root(root)
    job = start_job(root / "sweep/lr_01")
    try:
        with serve(root) as server:
            _wait_for_process(server, "sweep/lr_01", job.pid)
            views = server.json("/api/runs")["runs"]
            failed = sorted(v["name"] for v in views if v["status"] == "failed")
            assert len(failed) == 10, [v["status"] for v in views]
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(server.url)
            page.wait_for_function("() => document.querySelectorAll('.card').length === 48")
            assert "Showing 1\u201348 of 60 runs" in page.locator("#shown").inner_text()
            # Urgency first: every failed run comes before every running one.
            statuses = page.locator(".card .badge").all_inner_texts()
            assert statuses[:10] == ["Failed"] * 10 and "Failed" not in statuses[10:]
            # Cancel only where the API says a plugin can: the one run with a process.
            visible = [c for c in page.locator(".card").all() if c.locator(".cancel").is_visible()]
            assert [c.locator("h2.name").inner_text() for c in visible] == ["sweep/lr_01"]
            _check_view(page, axe_source, "dashboard-cards", 1280)

            page.locator("#next").click()
            page.wait_for_function("() => document.querySelectorAll('.card').length === 12")
            assert "page=2" in page.url

            page.locator(".chip[data-status='failed']").click()
            page.wait_for_function("() => document.querySelectorAll('.card').length === 10")
            assert _names(page) == failed, "a filter goes back to page 1, urgency then name"
            chip = page.locator(".chip[data-status='failed']")
            assert chip.get_attribute("aria-pressed") == "true"
            assert "status=failed" in page.url
            page.locator(".chip[data-status='finished']").click()
            page.wait_for_function("() => document.querySelectorAll('.card').length === 20")
            page.locator(".chip[data-status='all']").click()
            page.wait_for_function("() => document.querySelectorAll('.card').length === 48")

            page.locator("#search").fill("LR_4")
            page.wait_for_function("() => document.querySelectorAll('.card').length === 10")
            assert all(n.startswith("sweep/lr_4") for n in _names(page))
            assert page.locator(".chip[data-status='all']").inner_text().endswith("All 10")
            page.locator("#sort").select_option("name")
            page.wait_for_function(
                "() => document.querySelector('.card h2.name').textContent === 'sweep/lr_40'"
            )
            assert _names(page) == [f"sweep/lr_{i}" for i in range(40, 50)]
            page.locator("#sort").select_option("progress")
            page.wait_for_timeout(100)
            pcts = [float(v) for v in page.locator(".card .progress").evaluate_all(
                "bars => bars.map(b => b.getAttribute('aria-valuenow'))")]
            assert pcts == sorted(pcts, reverse=True)

            page.locator("#view-list").click()
            page.wait_for_function("() => document.querySelectorAll('#rows tr').length === 10")
            assert page.locator(".card").count() == 0
            assert page.locator("#rows tr .badge svg").count() == 10
            assert page.locator("#rows [role='progressbar']").count() == 10
            _check_view(page, axe_source, "dashboard-list", 1280)
            # The address keeps it all: a reload shows the same view.
            page.reload()
            page.wait_for_function("() => document.querySelectorAll('#rows tr').length === 10")
            assert page.locator("#search").input_value() == "LR_4"
            assert page.locator("#sort").input_value() == "progress"

            page.set_viewport_size({"width": 390, "height": 844})
            _check_view(page, axe_source, "dashboard-list", 390)
            page.locator("#view-cards").click()
            page.locator("#search").fill("")
            page.wait_for_function("() => document.querySelectorAll('.card').length === 20")
            _check_view(page, axe_source, "dashboard-cards", 390)
            page.locator("#search").fill("lr_01")
            page.wait_for_function("() => document.querySelectorAll('.card').length === 1")
            _card(page, "sweep/lr_01").locator(".cancel").click()
            assert page.locator("dialog#confirm").is_visible()
            assert _axe_violations(page, axe_source) == [], "the cancel dialog"
            page.locator("#keep").click()
            assert errors == []
            page.close()
    finally:
        job.kill()
        job.wait()


def test_the_run_page_shows_the_curves_from_disk_after_a_restart(
    browser: Any, axe_source: str, tmp_path: Path
) -> None:
    root = tmp_path / "runs"
    run = make_trainer_run(root / "exp", 3, total=12)
    with serve(root) as server:
        for epoch in range(3, 8):
            add_epoch(run, epoch, {"acc": 0.5 + 0.05 * epoch, "loss": 1.0 / (epoch + 1)})
        server.wait_for("epoch 8", lambda: server.run_named("exp")["run"]["progress"][
            "completed_epochs"] == 8)
    with serve(root) as server:  # restarted: the page's curves must come from the disk
        for width, height in WIDTHS:
            page = browser.new_page(viewport={"width": width, "height": height})
            errors: list[str] = []
            page.on("pageerror", lambda exc, errors=errors: errors.append(str(exc)))
            page.goto(server.url)
            page.locator(".card h2.name a", has_text="exp").click()
            page.wait_for_url(f"**/runs/{run_id(str(run))}")
            page.wait_for_selector(".curve")
            assert page.locator("#run-name").inner_text() == "exp"
            curves = {
                fig.locator("figcaption strong").inner_text(): fig
                for fig in page.locator(".curve").all()
            }
            assert sorted(curves) == ["acc", "loss"]
            acc = curves["acc"]
            points = acc.locator("polyline.line").get_attribute("points").split()
            assert len(points) == 8, "every epoch on disk, not only those since the restart"
            assert acc.locator(".dot").count() == 8
            labels = acc.locator(".axis text").all_text_contents()
            assert "epoch" in labels and "2" in labels and "8" in labels
            assert "by epoch" in acc.locator("figcaption").inner_text()
            assert "→" in acc.locator("figcaption").inner_text(), "the epochs' times"
            assert "8 points" in acc.locator("svg").get_attribute("aria-label")
            assert "train_val_0.log" in page.locator("#log-note").inner_text()
            assert '"epochs": 12' in page.locator("#config").inner_text()
            assert page.locator("#statuses tr").count() == 1
            assert page.locator("#run-actions .cancel").count() == 0, "nothing can cancel it"
            _check_view(page, axe_source, "run-page", width)
            assert errors == []
            page.close()


def test_the_run_page_follows_its_run_live(browser: Any, tmp_path: Path) -> None:
    root = tmp_path / "runs"
    run = make_trainer_run(root / "live", 2, total=10)
    job = start_job(run)
    try:
        with serve(root) as server:
            _wait_for_process(server, "live", job.pid)
            page = browser.new_page(viewport={"width": 1000, "height": 800})
            page.goto(f"{server.url}runs/{run_id(str(run))}")
            page.wait_for_selector("#conn[data-state='live']")
            page.wait_for_selector("#run-actions .cancel")
            assert page.locator("#run-progress .pct").inner_text() == "20.0%"
            add_epoch(run, 2)
            page.wait_for_function(
                "() => document.querySelector('#run-progress .pct').textContent === '30.0%'",
                timeout=15_000,
            )
            page.wait_for_function(
                "() => document.querySelector('.curve polyline.line').getAttribute('points')"
                ".split(' ').length === 3",
                timeout=15_000,
            )
            assert "process" in page.locator("#process").inner_text().lower()
            assert str(job.pid) in page.locator("#process").inner_text()
            page.close()
    finally:
        job.kill()
        job.wait()


def test_cards_are_dimmed_while_the_server_is_unreachable(browser: Any, tmp_path: Path) -> None:
    root = tmp_path / "runs"
    make_trainer_run(root / "alpha", 2, total=10)
    page = browser.new_page(viewport={"width": 800, "height": 600})
    with serve(root) as server:
        page.goto(server.url)
        page.wait_for_selector("#conn[data-state='live']")
        assert page.evaluate("getComputedStyle(document.querySelector('.card')).opacity") == "1"
    # The server is gone: the socket closes, the poll fails, what the page shows is stale.
    page.wait_for_selector("#conn[data-state='offline']", timeout=15_000)
    assert "server unreachable" in page.locator("#conn").inner_text()
    assert page.evaluate("getComputedStyle(document.querySelector('.card')).opacity") == "0.6"
    assert page.locator(".card h2.name").inner_text() == "alpha", "nothing is thrown away"
    page.close()
