"""A fresh screenshot of a run's notifications on its page (``notifications.png``), into this folder.

    .venv/bin/python docs/screenshots/capture_notify.py

Runs the real training flow for a run date whose training month is not published (it FAILS in
``read_data``), tells of it through Apprise's json:// to three receivers on 127.0.0.1 (one that
answers 200, one that answers 500 once then 200, one that never answers), with the retry 30 s
later, then starts the dashboard on 127.0.0.1 and saves, from Debian's Chromium at 1440 px, the
run's header with its "Notifications" section open.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

from bench.dashboard_browser import CHROMIUM, CHROMIUM_ARGS, USABLE, streamlit  # noqa: E402
from pipeline.config import Settings  # noqa: E402
from pipeline.orchestration import notify  # noqa: E402
from pipeline.store import Store  # noqa: E402
from pipeline.training.flow import run_now  # noqa: E402
from tests.conftest import FakeClock  # noqa: E402  (a clock that stands still)
from tests.httpserver import serve  # noqa: E402


def seed(home: Path) -> str:
    """A failed run told to three receivers, with one retry; its id."""
    settings = Settings(home=home, data_url="demo:1000", notify_timeout=1.0).ensure_dirs()
    store = Store(settings.db_path)
    try:
        run_id = run_now(store, settings, date="2015-01-20", name="monthly-2015-01").run_id
        with serve() as server:
            for path, options in (("/ops", {}), ("/hooks/fhv", {"fail_times": 1}), ("/pager", {"delay": 60})):
                server.route(path, methods=("POST",), **options)
            urls = (server.url("/ops").replace("http://", "json://"),
                    server.url("/hooks/fhv").replace("http://", "json://bot:s3cret@"),
                    server.url("/pager").replace("http://", "json://"))
            settings = dataclasses.replace(settings, notify=urls)
            clock = FakeClock(dt.datetime.now(dt.timezone.utc))
            targets = notify.Targets.load(store, settings)
            notify.scan(store, settings, targets, clock.now())
            notify.deliver_due(store, targets, notify.RetryPolicy.for_settings(settings), clock)
            clock.moment += dt.timedelta(seconds=30)
            notify.deliver_due(store, targets, notify.RetryPolicy.for_settings(settings), clock)
        return run_id
    finally:
        store.close()


def main() -> int:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as folder:
        home = Path(folder) / "fhv"
        run_id = seed(home)
        with streamlit(ROOT / "dashboard" / "app.py", home, Path(folder) / "app.log") as url, \
                sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            page.goto(f"{url}/run?id={run_id}")
            page.wait_for_function(USABLE, arg="", polling="raf", timeout=60_000)
            page.get_by_text("Notifications ·").click()
            page.wait_for_timeout(1500)
            main_block = page.locator("[data-testid='stMainBlockContainer']").bounding_box()
            expander = page.locator("[data-testid='stExpander']").first.bounding_box()
            clip = {"x": main_block["x"], "y": main_block["y"], "width": main_block["width"],
                    "height": expander["y"] + expander["height"] - main_block["y"] + 16}
            page.screenshot(path=str(HERE / "notifications.png"), clip=clip, full_page=True)
            print("saved notifications.png")
            browser.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
