"""The dashboard in a real browser: ``streamlit run`` on a free port, headless Chromium.

Each page is opened and saved as a screenshot in ``test-artifacts/screenshots/``; the trigger
form enqueues a run (a toast confirms it, the store has it) and an invalid backfill is refused
with a message. Chromium is Debian's ``/usr/bin/chromium``: CI installs it, so a missing one fails.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from pipeline.states import State
from pipeline.store import Store
from tests.dashboard_seed import seed_history

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "test-artifacts" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"
PAGES = [("overview", "/"), ("runs", "/runs"), ("upcoming", "/upcoming"), ("trends", "/trends"),
         ("trigger", "/trigger")]

pytestmark = pytest.mark.timeout(180)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(command: list[str], history, log: Path) -> subprocess.Popen:
    """A child process on the seeded history; its output goes to ``log`` (a pipe could fill up)."""
    env = {**os.environ, "FHV_HOME": str(history.settings.home), "FHV_DATA_URL": "demo:3000"}
    with log.open("w") as out:
        return subprocess.Popen([sys.executable, *command], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT, text=True)


def stop(process: subprocess.Popen, seconds: float = 40) -> None:
    process.terminate()
    try:
        process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def wait_healthy(url: str, process: subprocess.Popen, log: Path, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"streamlit exited with {process.returncode}: {log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.25)
    raise TimeoutError(f"{url}/_stcore/health did not answer within {seconds} s")


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    return seed_history(tmp_path_factory.mktemp("browser") / "fhv")


@pytest.fixture(scope="module")
def dashboard(history):
    port = free_port()
    log = history.settings.home / "streamlit.log"
    process = start(["-m", "streamlit", "run", "dashboard/app.py", "--server.port", str(port),
                     "--server.headless", "true"], history, log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process, log)
        yield url
    finally:
        stop(process)


@pytest.fixture
def scheduler(history):
    """``python -m pipeline scheduler`` on the same history, with small synthetic months."""
    process = start(["-m", "pipeline", "scheduler"], history, history.settings.home / "scheduler.log")
    yield process
    stop(process)


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium).")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    opened = context.new_page()
    yield opened
    context.close()


def open_page(page, url: str) -> None:
    """Go to ``url`` and wait until the page's script ran (its title is there) and is idle."""
    page.goto(url)
    page.wait_for_selector("[data-testid='stMain'] h1", timeout=60_000)
    page.wait_for_selector(IDLE, timeout=60_000)
    page.wait_for_timeout(1200)  # charts and data grids draw after the script finished
    page.wait_for_selector(IDLE, timeout=30_000)


def screenshot(page, name: str) -> Path:
    """The whole page: grow the viewport to the content's height, then shoot."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    height = page.evaluate("document.querySelector('[data-testid=\"stMainBlockContainer\"]').scrollHeight")
    page.set_viewport_size({"width": 1440, "height": min(max(int(height) + 120, 900), 4000)})
    page.wait_for_timeout(600)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def assert_no_exception(page) -> None:
    errors = page.locator("[data-testid='stException']")
    assert errors.count() == 0, errors.first.inner_text()


@pytest.mark.parametrize("name, path", PAGES)
def test_each_page_renders_in_chromium_and_is_screenshotted(page, dashboard, name, path):
    open_page(page, dashboard + path)
    assert_no_exception(page)
    assert screenshot(page, name).stat().st_size > 10_000


def test_a_row_of_the_runs_table_opens_the_run_in_a_new_tab(page, dashboard, history):
    open_page(page, dashboard + "/runs")
    grid = page.locator("[data-testid='stDataFrame']").first.bounding_box()
    first_row = (grid["x"] + 30, grid["y"] + 35 + 17)  # the Run column of the first row, under the header
    page.mouse.move(*first_row)
    with page.context.expect_page(timeout=10_000) as opened:
        page.mouse.click(*first_row)
    detail = opened.value
    detail.wait_for_selector("[data-testid='stMain'] h1", timeout=60_000)
    detail.wait_for_selector(IDLE, timeout=60_000)
    assert "/run?id=" in detail.url
    assert detail.locator("h1").first.inner_text() in detail.url
    detail.close()


def test_run_detail_of_the_failed_run_shows_its_reason_and_tasks_not_run(page, dashboard, history):
    open_page(page, f"{dashboard}/run?id={history.failed}")
    assert_no_exception(page)
    body = page.locator("[data-testid='stMain']").inner_text()
    assert "sarcastic-lorikeet" in body and "train_model" in body and "no trip lasts" in body
    screenshot(page, "run_detail_failed")
    open_page(page, f"{dashboard}/run?id={history.completed[-1]}")
    assert_no_exception(page)
    screenshot(page, "run_detail")


def test_run_detail_tabs_show_logs_with_a_level_filter_and_metrics(page, dashboard, history):
    open_page(page, f"{dashboard}/run?id={history.completed[-1]}")
    page.get_by_role("tab", name="Logs").click()
    page.get_by_role("button", name="DEBUG (1)").click()
    page.wait_for_selector(IDLE, timeout=30_000)
    page.wait_for_timeout(800)
    assert page.get_by_role("button", name="DEBUG (1)").get_attribute("aria-pressed") in ("true", None)
    screenshot(page, "run_detail_logs")
    page.get_by_role("tab", name="Metrics and data").click()
    page.wait_for_timeout(500)
    body = page.locator("[data-testid='stMain']").inner_text()
    assert "Validation RMSE (min)" in body and "Validation MSE (min²)" in body and "one-hot features" in body
    screenshot(page, "run_detail_metrics")


def test_overview_says_loudly_that_the_scheduler_is_down(page, dashboard):
    open_page(page, dashboard + "/")
    body = page.locator("[data-testid='stMain']").inner_text()
    assert "Scheduler down" in body and "python -m pipeline scheduler" in body


def test_a_triggered_run_is_scheduled_then_completed_by_the_scheduler(page, dashboard, history, scheduler):
    before = _runs_named(history)
    open_page(page, dashboard + "/trigger")
    page.get_by_role("button", name="Enqueue run").click()
    toast = page.locator("[data-testid='stToast']")
    toast.first.wait_for(timeout=20_000)
    assert "Enqueued" in toast.first.inner_text()
    (run_id,) = _runs_named(history) - before
    assert _state(history, run_id) in (State.SCHEDULED, State.PENDING, State.RUNNING, State.COMPLETED)
    screenshot(page, "trigger_enqueued")
    assert _wait_for_state(history, run_id, State.COMPLETED, seconds=120) == State.COMPLETED
    open_page(page, f"{dashboard}/run?id={run_id}")
    assert "Completed" in page.locator("[data-testid='stMain']").inner_text()
    screenshot(page, "run_detail_live")
    open_page(page, dashboard + "/")
    assert "Scheduler alive" in page.locator("[data-testid='stApp']").inner_text()
    screenshot(page, "overview_live")


def test_backfill_ending_before_it_starts_is_refused_and_writes_nothing(page, dashboard, history):
    before = _runs_named(history)
    open_page(page, dashboard + "/trigger")
    last = page.locator("[data-testid='stDateInput']").filter(has_text="Last run date").locator("input")
    last.fill("2020-01-15")
    last.press("Enter")
    page.keyboard.press("Escape")
    page.wait_for_selector(IDLE, timeout=30_000)
    page.get_by_role("button", name="Preview").click()
    alert = page.locator("[data-testid='stAlert']").filter(has_text="before")
    alert.first.wait_for(timeout=20_000)
    assert _runs_named(history) == before
    screenshot(page, "trigger_invalid_backfill")


def _state(history, run_id: str) -> str:
    store = Store(history.settings.db_path, readonly=True)
    try:
        return store.get_run(run_id)["state"]
    finally:
        store.close()


def _wait_for_state(history, run_id: str, state: State, *, seconds: float) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        current = _state(history, run_id)
        if current == state or State(current).is_final:
            return current
        time.sleep(0.5)
    return _state(history, run_id)


def _runs_named(history) -> set[str]:
    store = Store(history.settings.db_path, readonly=True)
    try:
        return {r["id"] for r in store.runs(limit=10_000)}
    finally:
        store.close()
