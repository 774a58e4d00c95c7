"""The dashboard in a real browser: ``streamlit run`` on a free port, headless Chromium.

Each page is opened and saved as a screenshot in the folder FHV_SCREENSHOTS names (else a
temporary folder; the path is printed). An invalid backfill is refused with a message; the runs
grid fits a wide screen and a phone; runs selected in the grid are cancelled together. Chromium
is Debian's ``/usr/bin/chromium``: CI installs it, so a missing one fails. A run watched from
Scheduled to Completed is in ``test_browser_run.py``, the login and roles in
``test_browser_access.py`` (files of their own, so that they run beside these), with the fixtures
and helpers of this file.

The months come from a local mirror serving demo months of 3,000 trips, each download taking
DATA_DELAY_S: with ``demo:3000`` generated in the process a run is Running for some 50 ms,
less than the pages' refresh interval, so no page could ever show it.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Callable, Mapping
from urllib.parse import urlsplit

import pytest

from dashboard import labels, widgets
from pipeline.training import demo
from pipeline.config import load_settings
from pipeline.training.months import month_of, months_for, parse_month, shift_month
from pipeline.store import Store
from tests.dashboard_seed import monthly_history, seed_history
from tests.httpserver import serve

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"
PAGES = [("overview", "/"), ("runs", "/runs"), ("upcoming", "/upcoming"), ("trends", "/trends"),
         ("trigger", "/trigger")]
DATA_DELAY_S = 5.0  # per month: the watched run stays Running ~10 s, longer than a refresh (5 s + 2 s cache)
FAST_SCHEDULER = ["--tick", "0.2", "--materialise-every", "1"]
IN_FLIGHT = re.compile(r"\b(Pending|Running)\b")

pytestmark = pytest.mark.timeout(180)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(command: list[str], history, log: Path, data_url: str) -> subprocess.Popen:
    """A child process on the seeded history; its output goes to ``log`` (a pipe could fill up)."""
    env = {**os.environ, "FHV_HOME": str(history.settings.home), "FHV_DATA_URL": data_url}
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


def screenshot_folder(env: Mapping[str, str], tmp_path_factory) -> Path:
    """FHV_SCREENSHOTS when it is set, else a new temporary folder: never the working directory."""
    folder = Path(env["FHV_SCREENSHOTS"]) if env.get("FHV_SCREENSHOTS") else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def shots(tmp_path_factory, request) -> Path:
    folder = screenshot_folder(os.environ, tmp_path_factory)
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        print(f"\nbrowser screenshots: {folder}")  # shown even when pytest captures output
    return folder


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    """The seeded history plus a run a month for five years: trends of 70 months with two gaps."""
    seeded = seed_history(tmp_path_factory.mktemp("browser") / "fhv")
    store = Store(seeded.settings.db_path)
    try:
        monthly_history(store)
    finally:
        store.close()
    return seeded


def run_date_to_watch(today: dt.date) -> dt.date:
    """The run date the browser test triggers: months no seeded run reads (the seeded late run,
    which the scheduler starts too, is due today, and would leave today's months in the cache)."""
    year, month = parse_month(shift_month(month_of(today), -3))
    return dt.date(year, month, 15)


@pytest.fixture(scope="module")
def data_url(tmp_path_factory):
    """A local mirror of the TLC files with demo months of 3,000 trips; the months of the run
    the browser test watches take DATA_DELAY_S each to download."""
    folder = tmp_path_factory.mktemp("mirror")
    today = dt.datetime.now(dt.timezone.utc).date()
    watched = set(months_for(run_date_to_watch(today)))
    months = watched | {m for day in (today, today - dt.timedelta(days=1)) for m in months_for(day)}
    with serve() as server:
        for month in sorted(months):
            body = demo.write_month(folder / f"fhv_tripdata_{month}.parquet", month, rows=3000).read_bytes()
            server.route(f"/fhv_tripdata_{month}.parquet", body=body, delay=DATA_DELAY_S if month in watched else 0)
        yield server.url("/fhv_tripdata_{month}.parquet")


@pytest.fixture(scope="module")
def dashboard(history, data_url):
    port = free_port()
    log = history.settings.home / "streamlit.log"
    process = start(["-m", "streamlit", "run", "dashboard/app.py", "--server.port", str(port),
                     "--server.headless", "true"], history, log, data_url)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process, log)
        yield url
    finally:
        stop(process)


@pytest.fixture
def start_scheduler(history) -> Callable[[str], subprocess.Popen]:
    """Start the scheduler with a shell command (the one the dashboard shows) and fast ticks."""
    started: list[subprocess.Popen] = []

    def run(command: str) -> subprocess.Popen:
        path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"  # a bare "python" is ours
        env = {k: v for k, v in os.environ.items() if not k.startswith("FHV_")} | {"PATH": path}
        with (history.settings.home / "scheduler.log").open("w") as out:
            started.append(subprocess.Popen(["bash", "-c", f"{command} {' '.join(FAST_SCHEDULER)}"], cwd="/",
                                            env=env, stdout=out, stderr=subprocess.STDOUT, text=True))
        return started[-1]

    yield run
    for process in started:
        stop(process)  # bash runs the last command of ``cd … && …`` in its own process: this is the scheduler
    _stop_recorded_scheduler(history, [p.pid for p in started])


def _stop_recorded_scheduler(history, pids: list[int]) -> None:
    """If a shell did not exec the scheduler, its pid (in the history) is another child of ours: stop it."""
    status = _read(history, lambda store: store.scheduler_status()) or {}
    pid = status.get("pid")
    if pid and pid not in pids and not status.get("stopped_at") and Path(f"/proc/{pid}").exists():
        os.kill(pid, 15)


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
    """A 1440 px page; every request it makes must stay on this machine (no font server, no CDN)."""
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    opened = context.new_page()
    hosts: set[str] = set()
    opened.on("request", lambda request: hosts.add(urlsplit(request.url).hostname))
    yield opened
    context.close()
    assert hosts <= {"127.0.0.1"}, f"requests left the machine: {hosts - {'127.0.0.1'}}"


def open_page(page, url: str) -> None:
    """Go to ``url`` and wait until the page's script ran (its title is there) and is idle.

    A first visit that shows no title within 40 s is loaded once more: on a loaded 2-core machine the
    first page a fresh server draws has twice stalled before its script's first message (the server log
    quiet, no exception); the second load must then draw it."""
    page.goto(url)
    try:
        page.wait_for_selector("[data-testid='stMain'] h1", timeout=40_000)
    except Exception:  # playwright's TimeoutError
        page.reload()
        page.wait_for_selector("[data-testid='stMain'] h1", timeout=60_000)
    page.wait_for_selector(IDLE, timeout=60_000)
    page.wait_for_timeout(400)  # charts and data grids draw after the script finished (a screenshot waits more)
    page.wait_for_selector(IDLE, timeout=30_000)


def screenshot(page, folder: Path, name: str) -> Path:
    """The whole page: grow the viewport to the content's height, then shoot."""
    height = page.evaluate("document.querySelector('[data-testid=\"stMainBlockContainer\"]').scrollHeight")
    page.set_viewport_size({"width": 1440, "height": min(max(int(height) + 120, 900), 4000)})
    page.wait_for_timeout(600)
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def assert_no_exception(page) -> None:
    errors = page.locator("[data-testid='stException']")
    assert errors.count() == 0, errors.first.inner_text()


def watch(watched: dict, state: re.Pattern, suffix: str, shots: Path, seconds: float = 60) -> None:
    """Poll each (page, element) until its text has shown ``state`` once; screenshot it then.

    The pages are polled together, so that each is seen in a state however short that state is,
    as long as it lasts one refresh of the page.
    """
    seen: dict[str, str] = {}
    deadline = time.monotonic() + seconds
    while len(seen) < len(watched) and time.monotonic() < deadline:
        for name, (page, element) in watched.items():
            text = element.inner_text(timeout=10_000)
            if name not in seen and state.search(text):
                seen[name] = text
                screenshot(page, shots, f"{name}_{suffix}")
        time.sleep(0.2)
    last = {name: element.inner_text() for name, (_, element) in watched.items() if name not in seen}
    assert not last, f"never showed {state.pattern} within {seconds:g} s; last seen: {last}"


def shown_command(page) -> str:
    """The scheduler command a page shows in its main part."""
    code = page.locator("[data-testid='stMain'] code").filter(has_text="-m pipeline scheduler")
    return code.first.inner_text().strip()


def test_screenshots_go_to_the_folder_fhv_screenshots_names_or_a_temporary_one(tmp_path_factory, tmp_path):
    named = tmp_path / "artifacts" / "screenshots"
    assert screenshot_folder({"FHV_SCREENSHOTS": str(named)}, tmp_path_factory) == named and named.is_dir()
    default = screenshot_folder({}, tmp_path_factory)
    assert default.is_relative_to(tmp_path_factory.getbasetemp()) and not default.is_relative_to(ROOT)


@pytest.mark.parametrize("name, path", PAGES)
def test_each_page_renders_in_chromium_and_is_screenshotted(page, dashboard, shots, name, path):
    open_page(page, dashboard + path)
    assert_no_exception(page)
    assert screenshot(page, shots, name).stat().st_size > 10_000


def test_a_row_of_the_runs_table_opens_the_run_in_a_new_tab(page, dashboard, history):
    open_page(page, dashboard + "/runs")
    grid = page.locator("[data-testid='stDataFrame']").first
    grid.scroll_into_view_if_needed()
    grid = grid.bounding_box()
    first_row = (grid["x"] + 34 + 104 + 92 + 78 + 30, grid["y"] + 35 + 17)  # the Run column of the first row
    page.mouse.move(*first_row)
    with page.context.expect_page(timeout=10_000) as opened:
        page.mouse.click(*first_row)
    detail = opened.value
    detail.wait_for_selector("[data-testid='stMain'] h1", timeout=60_000)
    detail.wait_for_selector(IDLE, timeout=60_000)
    assert "/run?id=" in detail.url
    assert detail.locator("h1").first.inner_text() in detail.url
    detail.close()


def test_run_detail_of_the_failed_run_shows_its_reason_and_tasks_not_run(page, dashboard, history, shots):
    open_page(page, f"{dashboard}/run?id={history.failed}")
    assert_no_exception(page)
    body = page.locator("[data-testid='stMain']").inner_text()
    assert "sarcastic-lorikeet" in body and "train_model" in body and "no trip lasts" in body
    screenshot(page, shots, "run_detail_failed")
    open_page(page, f"{dashboard}/run?id={history.completed[-1]}")
    assert_no_exception(page)
    screenshot(page, shots, "run_detail")


def test_run_detail_tabs_show_logs_with_a_level_filter_and_metrics(page, dashboard, history, shots):
    open_page(page, f"{dashboard}/run?id={history.completed[-1]}")
    page.get_by_role("tab", name="Logs").click()
    page.get_by_role("button", name="DEBUG (1)").click()
    page.wait_for_selector(IDLE, timeout=30_000)
    page.wait_for_timeout(800)
    assert page.get_by_role("button", name="DEBUG (1)").get_attribute("aria-pressed") in ("true", None)
    screenshot(page, shots, "run_detail_logs")
    page.get_by_role("tab", name="Results").click()
    page.wait_for_timeout(500)
    body = page.locator("[data-testid='stMain']").inner_text()
    assert "Validation RMSE" in body and "min²" in body and "one-hot zones" in body
    screenshot(page, shots, "run_detail_metrics")


def test_overview_says_loudly_that_the_scheduler_is_down_with_the_exact_command(page, dashboard, history, data_url):
    open_page(page, dashboard + "/")
    body = page.locator("[data-testid='stMain']").inner_text()
    settings = load_settings({"FHV_HOME": str(history.settings.home), "FHV_DATA_URL": data_url})
    assert "Scheduler down" in body and shown_command(page) == labels.scheduler_command(settings)


def test_backfill_ending_before_it_starts_is_refused_and_writes_nothing(page, dashboard, history, shots):
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
    screenshot(page, shots, "trigger_invalid_backfill")


def _read(history, read: Callable[[Store], object]):
    store = Store(history.settings.db_path, readonly=True)
    try:
        return read(store)
    finally:
        store.close()


def _runs_named(history) -> set[str]:
    return _read(history, lambda store: {r["id"] for r in store.runs(limit=10_000)})


# -- fits the screen ----------------------------------------------------------------------------------
def grid_columns(page) -> list[str]:
    """The column headers the runs grid draws in its visible width (no horizontal scroll)."""
    grid = page.locator("[data-testid='stDataFrame']").first
    grid.scroll_into_view_if_needed()
    page.wait_for_timeout(500)
    return page.evaluate("""() => Array.from(document.querySelectorAll(
        "[data-testid='stDataFrame'] [role='columnheader']")).map(e => e.innerText)""")


@pytest.mark.parametrize("width, columns", [
    (1440, ["State", "Run date", "Validation RMSE", "Run", "Train month", "Validation month", "Started (UTC)",
            "Duration", "Reason"]),
    (390, ["State", "Run date", "Validation RMSE"]),
])
def test_the_runs_grid_shows_its_main_columns_without_scrolling(browser, dashboard, shots, width, columns):
    context = browser.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()
    try:
        open_page(page, dashboard + "/runs")
        shown = grid_columns(page)
        assert shown[:len(columns)] == columns
        body = page.locator("[data-testid='stMain']").inner_text()
        assert "None" not in body
        page.screenshot(path=str(shots / f"runs_{width}px.png"))
    finally:
        context.close()


# -- no request leaves the machine: checked by the ``page`` fixture after every test --------------------
def test_the_page_icon_is_served_by_the_dashboard_itself(page, dashboard):
    open_page(page, dashboard + "/")
    icon = page.evaluate("() => (document.querySelector(\"link[rel*='icon']\") || {}).href || ''")
    assert urlsplit(icon).hostname in ("127.0.0.1", None) and "gstatic" not in icon


def expect_text(locator, text: str) -> None:
    from playwright.sync_api import expect

    expect(locator).to_contain_text(text, timeout=20_000)


def test_runs_selected_in_the_grid_are_named_on_the_button_cancelled_together_then_unselected(page, dashboard,
                                                                                              history, shots):
    waiting = _read(history, lambda store: {r["name"]: r["id"] for r in store.run_list(limit=100, states=["SCHEDULED"])})
    assert len(waiting) >= 3  # after the cancel, other waiting runs slide into the ticked rows
    open_page(page, dashboard + "/runs?state=SCHEDULED")
    grid = page.locator("[data-testid='stDataFrame']").first
    grid.scroll_into_view_if_needed()
    box = grid.bounding_box()
    for row in (0, 1):  # the row markers: the boxes left of the first column
        page.mouse.click(box["x"] + 17, box["y"] + 35 + 35 * row + 17)
        page.wait_for_timeout(300)
    page.wait_for_selector(IDLE, timeout=30_000)
    button = page.locator("[data-testid='stButton'] button", has_text="Cancel ").first
    expect_text(button, ", ")  # the second tick's rerun may come after the first idle moment on a busy machine
    named = button.inner_text().split("Cancel ", 1)[1].strip().split(", ")  # after the icon's name
    assert len(named) == 2 and set(named) <= set(waiting), named
    button.click()
    page.wait_for_timeout(500)
    page.wait_for_selector(IDLE, timeout=30_000)
    states = _read(history, lambda store: {name: store.get_run(run_id)["state"] for name, run_id in waiting.items()})
    assert {name for name, state in states.items() if state == "CANCELLED"} == set(named)
    cleared = page.get_by_role("button", name="Cancel selected runs")
    expect_text(cleared, "Cancel selected runs")
    assert cleared.is_disabled()  # the runs that slid into the ticked rows are not offered
    screenshot(page, shots, "runs_cancelled_together")


def test_on_a_phone_the_sidebar_closes_once_a_page_is_chosen_in_it(browser, dashboard):
    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    try:
        open_page(page, dashboard + "/")
        sidebar = page.locator("[data-testid='stSidebar']")
        page.locator("[data-testid='stExpandSidebarButton']").click()
        expect_attribute(sidebar, "data-collapsed", "false")
        page.locator("[data-testid='stSidebarNavLink']").filter(has_text="Upcoming").click()
        page.wait_for_selector("[data-testid='stMain'] h1:has-text('Upcoming')", timeout=30_000)
        expect_attribute(sidebar, "data-collapsed", "true")
    finally:
        context.close()


def test_the_first_page_fetches_neither_an_html_parser_nor_an_emoji_table_nor_a_sanitiser(browser, dashboard):
    """Streamlit's browser code loads these (~480 KB of script) only for a Markdown text with HTML or a ``:word:``,
    or an ``st.html`` element, and shows a skeleton until they came: Overview and the sidebar have none."""
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    page = context.new_page()
    fetched: list[str] = []
    page.on("request", lambda request: fetched.append(request.url))
    try:
        open_page(page, dashboard + "/")
        assert any("/static/js/" in url for url in fetched)
        assert not [url for url in fetched if re.search(r"/(rehype-raw|remark-emoji|Html|purify\\.es)\\.", url)]
    finally:
        context.close()


def test_each_page_s_html_has_the_phone_sidebar_script_and_preloads_the_page_link_chunk(dashboard):
    request = urllib.request.Request(dashboard + "/runs", headers={"Accept": "text/html", "Accept-Encoding": "gzip"})
    with urllib.request.urlopen(request, timeout=10) as response:
        body, headers = response.read(), response.headers
    assert headers.get("Content-Encoding") is None and int(headers["Content-Length"]) == len(body)  # written into
    head = body.decode().split("</head>")[0]
    assert 'closest(\'[data-testid="stSidebarNavLink"]\')' in head and "ETag" not in headers
    (chunk,) = re.findall(r'rel="modulepreload" crossorigin href="\./static/js/(PageLink\.[^"]+\.js)"', head)
    with urllib.request.urlopen(f"{dashboard}/static/js/{chunk}", timeout=10) as response:
        assert response.status == 200


def expect_attribute(locator, name: str, value: str) -> None:
    from playwright.sync_api import expect

    expect(locator).to_have_attribute(name, value, timeout=10_000)


# The parts of Overview's lines that labels.nowrap keeps whole (no-break spaces, a word joiner after each hyphen),
# each with the number of lines it is drawn on.
UNBROKEN_PARTS = """() => {
  const walker = document.createTreeWalker(document.querySelector("[data-testid='stMain']"), NodeFilter.SHOW_TEXT);
  const parts = [];
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    for (const match of node.data.matchAll(/[^ \\n]*[\\u00a0\\u2060][^ \\n]*/g)) {
      const range = document.createRange();
      range.setStart(node, match.index);
      range.setEnd(node, match.index + match[0].length);
      parts.push([match[0], new Set(Array.from(range.getClientRects(), r => Math.round(r.top))).size]);
    }
  }
  return parts;
}"""


@pytest.mark.parametrize("width", [390, 1440])
def test_dates_and_month_ranges_never_wrap_inside_and_an_awaiting_retry_badge_fits(browser, dashboard, width):
    context = browser.new_context(viewport={"width": width, "height": 1000})
    page = context.new_page()
    try:
        open_page(page, dashboard + "/")
        values = page.evaluate(UNBROKEN_PARTS)
        assert any(re.search(r"\d{4}-\u2060\d{2}", text) for text, _ in values), values
        assert all(lines == 1 for _, lines in values), values
    finally:
        context.close()
    column = widgets.run_columns_config()["State"]
    assert column["width"] >= 8 * len("Awaiting Retry") + 12  # the pill's text at 13 px and its padding
    longest = 25  # characters: the longest two-word coolname slug (how runs are named; 200,000 drawn)
    assert widgets.run_columns_config()["Run"]["width"] >= 7 * longest + 16
