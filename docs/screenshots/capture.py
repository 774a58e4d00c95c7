"""Fresh screenshots of every dashboard page on a 70-month history, into this folder.

    .venv/bin/python docs/screenshots/capture.py

Seeds a temporary history (the dashboard test history, a run a month for five more years with
two months missing, a scheduler alive), starts the dashboard on 127.0.0.1 and saves each page
from Debian's Chromium at 1440 px, the runs list on a 390 px phone, and the sign-in page once a user exists.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

from bench.dashboard_browser import CHROMIUM, CHROMIUM_ARGS, USABLE, streamlit  # noqa: E402
from pipeline import users  # noqa: E402
from pipeline.store import Store  # noqa: E402
from tests.dashboard_seed import monthly_history, seed_history  # noqa: E402

PAGES = [("overview", "/"), ("runs", "/runs"), ("upcoming", "/upcoming"), ("trends", "/trends"),
         ("trigger", "/trigger")]


def seed(home: Path) -> str:
    seeded = seed_history(home, scheduler_alive=True)
    store = Store(seeded.settings.db_path)
    try:
        monthly_history(store)
    finally:
        store.close()
    return seeded.failed


def shoot(page, url: str, name: str, width: int = 1440, before=None) -> None:
    page.set_viewport_size({"width": width, "height": 900})
    page.goto(url)
    page.wait_for_function(USABLE, arg="", polling="raf", timeout=60_000)
    if before:
        before(page)
    page.wait_for_timeout(2500)  # charts and grids draw after the script
    height = page.evaluate("document.querySelector('[data-testid=\"stMainBlockContainer\"]').scrollHeight")
    page.set_viewport_size({"width": width, "height": min(max(int(height) + 120, 900), 3200)})
    page.wait_for_timeout(800)
    page.screenshot(path=str(HERE / f"{name}.png"), full_page=True)
    print(f"saved {name}.png")


def chart_on(page) -> None:
    page.get_by_text("Chart of this page's runs over time").click()
    page.wait_for_timeout(500)
    page.wait_for_function(USABLE, arg="", polling="raf", timeout=60_000)


def sign_in_page(page, url: str, home: Path) -> None:
    """With a user, a page load goes to the sign-in page first: shot after a wrong password."""
    users.add(users.users_path(home), "olga", "correct horse battery", "operator")
    page.set_viewport_size({"width": 1440, "height": 700})
    page.goto(url + "/runs")
    page.get_by_label("User name").fill("olga")
    page.get_by_label("Password", exact=True).fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_selector("[role=alert]")
    page.screenshot(path=str(HERE / "signin.png"))
    print("saved signin.png")


def main() -> int:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as folder:
        home = Path(folder) / "fhv"
        failed = seed(home)
        with streamlit(ROOT / "dashboard" / "app.py", home, Path(folder) / "app.log") as url, \
                sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page()
            for name, path in PAGES:
                shoot(page, url + path, name, before=chart_on if name == "runs" else None)
            shoot(page, f"{url}/run?id={failed}", "run_detail_failed")
            shoot(page, url + "/runs", "runs_phone", width=390)
            sign_in_page(page, url, home)
            browser.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
