"""A fresh screenshot of a run's data report (``data_report.png``) and of the data checks on Trends
(``data_trends.png``), into this folder.

    .venv/bin/python docs/screenshots/capture_quality.py

Runs the real training flow on four demo months of 300,000 trips (run dates 2021-08-15 to
2021-11-15: each run after the first drifts against the champion's training month), starts the
dashboard on 127.0.0.1 and saves, from Debian's Chromium at 1440 px, the last run's tab
"Metrics and data" from its "Data checks" heading down, and the Trends page's data checks.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

from bench.dashboard_browser import CHROMIUM, CHROMIUM_ARGS, USABLE, streamlit  # noqa: E402
from pipeline.config import Settings  # noqa: E402
from pipeline.store import Store  # noqa: E402
from pipeline.training.flow import run_now  # noqa: E402

DATES = ("2021-08-15", "2021-09-15", "2021-10-15", "2021-11-15")
ROWS = 300_000


def seed(home: Path) -> str:
    """Real runs on demo months; the id of the last one."""
    settings = Settings(home=home, data_url=f"demo:{ROWS}").ensure_dirs()
    store = Store(settings.db_path)
    try:
        return [run_now(store, settings, date=day, name=f"monthly-{day[:7]}").run_id for day in DATES][-1]
    finally:
        store.close()


def shoot_from(page, heading: str, name: str) -> None:
    """The main block from the subheader ``heading`` to the end of its tab or page."""
    page.wait_for_timeout(2500)  # charts draw after the script
    height = page.evaluate("document.querySelector('[data-testid=\"stMainBlockContainer\"]').scrollHeight")
    page.set_viewport_size({"width": 1440, "height": min(max(int(height) + 120, 900), 4000)})
    page.wait_for_timeout(800)
    top = page.get_by_role("heading", name=heading).last.bounding_box()
    main = page.locator("[data-testid='stMainBlockContainer']").bounding_box()
    clip = {"x": main["x"], "y": top["y"] - 16, "width": main["width"],
            "height": main["y"] + main["height"] - top["y"] + 16}
    page.screenshot(path=str(HERE / f"{name}.png"), clip=clip, full_page=True)
    print(f"saved {name}.png")


def main() -> int:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as folder:
        home = Path(folder) / "fhv"
        last = seed(home)
        with streamlit(ROOT / "dashboard" / "app.py", home, Path(folder) / "app.log") as url, \
                sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            page.goto(f"{url}/run?id={last}")
            page.wait_for_function(USABLE, arg="", polling="raf", timeout=60_000)
            page.get_by_role("tab", name="Metrics and data").click()
            shoot_from(page, "Data checks", "data_report")
            page.set_viewport_size({"width": 1440, "height": 900})
            page.goto(f"{url}/trends")
            page.wait_for_function(USABLE, arg="", polling="raf", timeout=60_000)
            shoot_from(page, "Data checks", "data_trends")
            browser.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
