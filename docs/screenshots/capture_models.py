"""A fresh screenshot of the Models page (``models.png``), into this folder.

    .venv/bin/python docs/screenshots/capture_models.py

Writes six demo months of 100,000 trips into a folder (a local folder is a real source to the
product), runs the real training flow for run dates 2021-03-15 to 2021-07-15 (the first becomes
champion, each next one challenges it on the newest month), then a backfill of 2021-04-15 (older
months: not eligible), then promotes the oldest version by hand (confirmed) and rolls back once,
as an operator would; starts the dashboard on 127.0.0.1 and saves the whole Models page
from Debian's Chromium at 1440 px.
"""
from __future__ import annotations

import datetime as dt
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

import pyarrow.parquet as pq  # noqa: E402

from bench.dashboard_browser import CHROMIUM, CHROMIUM_ARGS, USABLE, streamlit  # noqa: E402
from pipeline.config import Settings  # noqa: E402
from pipeline.store import Store  # noqa: E402
from pipeline.training import champion  # noqa: E402
from pipeline.training.demo import generate_month  # noqa: E402
from pipeline.training.flow import run_now  # noqa: E402

DATES = ("2021-03-15", "2021-04-15", "2021-05-15", "2021-06-15", "2021-07-15")
MONTHS = ("2021-01", "2021-02", "2021-03", "2021-04", "2021-05", "2021-06")
ROWS = 100_000


def seed(home: Path, months: Path) -> None:
    """Real runs on a folder of demo months, then a promotion by hand and a rollback."""
    months.mkdir(parents=True)
    for month in MONTHS:
        pq.write_table(generate_month(month, ROWS), months / f"fhv_tripdata_{month}.parquet")
    settings = Settings(home=home, data_url=str(months)).ensure_dirs()
    store = Store(settings.db_path)
    try:
        ids = [run_now(store, settings, date=day, name=f"monthly-{day[:7]}").run_id for day in DATES]
        run_now(store, settings, date="2021-04-15", name="backfill-2021-04")
        now = dt.datetime.now(dt.timezone.utc)
        champion.promote(store, settings, ids[0], actor="olga", now=now, confirmed=True,
                         reason="Back to the first model while the new zones are checked.")
        champion.rollback(store, settings, actor="olga", now=now + dt.timedelta(minutes=5))
    finally:
        store.close()


def main() -> int:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as folder:
        home = Path(folder) / "fhv"
        seed(home, Path(folder) / "months")
        with streamlit(ROOT / "dashboard" / "app.py", home, Path(folder) / "app.log") as url, \
                sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            page.goto(f"{url}/models")
            page.wait_for_function(USABLE, arg="", polling="raf", timeout=60_000)
            page.wait_for_timeout(2500)
            height = page.evaluate("document.querySelector('[data-testid=\"stMainBlockContainer\"]').scrollHeight")
            page.set_viewport_size({"width": 1440, "height": min(int(height) + 120, 4000)})  # the page scrolls inside
            page.wait_for_timeout(1500)
            page.screenshot(path=str(HERE / "models.png"), full_page=True)
            print("saved models.png")
            browser.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
