"""The dashboard in Chromium on a big history: first load and click-to-usable per page.

    .venv/bin/python bench/dashboard_browser.py [--runs 10000] [--tasks 50000] [--repeat 5]

Seeds a history in a temporary folder (the dashboard test history plus ``--runs`` runs and
``--tasks`` task runs), starts ``streamlit run dashboard/app.py`` and, as the floor, a hello-world
Streamlit page, both on 127.0.0.1, and drives Debian's Chromium headless:

- first load: a new browser context opens the page until it is usable, for the dashboard and for
  the hello-world page in turn (same run, same machine, same browser), median of ``--repeat``;
- navigation: a click on a page in the sidebar until that page is usable, median of ``--repeat``
  (each from another page), beside the same click between two hello-world pages (the floor).

"Usable" means the page's title changed to the new page's, the script is idle
(``data-test-script-state="notRunning"``) and no spinner or skeleton shows. Targets: first load
<= 1.3 x the hello-world page's; navigation <= 400 ms where a hello-world first load takes 1.2 s
(the issue's machine), scaled by this run's hello-world first load on a slower or busier machine.
Prints a Markdown table; exit code 1 if a target is missed.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.store import Store  # noqa: E402
from pipeline.flows import load_flows  # noqa: E402  (the entry point registers the flows)
from tests.dashboard_seed import bulk_history, seed_history  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
NAV_TARGET_MS = 400
FIRST_LOAD_RATIO = 1.3
PAGES = ["Overview", "Runs", "Run detail", "Upcoming", "Trends", "Models", "Trigger"]
HELLO = 'import streamlit as st\n\nst.title("Hello")\nst.write("A hello-world Streamlit page.")\n'
# The navigation floor: two hello-world pages in st.navigation, clicked in the sidebar like the dashboard's.
HELLO_NAV = """import streamlit as st


def first():
    st.title("First")
    st.write("A hello-world page.")


def second():
    st.title("Second")
    st.write("Another hello-world page.")


st.navigation([st.Page(first, title="First"), st.Page(second, title="Second")]).run()
"""
ISSUE_FLOOR_MS = 1200  # the hello-world first load on the machine where the issue set 400 ms
USABLE = """(old) => {
  const app = document.querySelector("[data-testid='stApp']");
  const title = document.querySelector("[data-testid='stMain'] h1");
  return app && app.getAttribute("data-test-script-state") === "notRunning" && title
    && title.innerText !== old && !document.querySelector("[data-testid='stSpinner']")
    && !document.querySelector("[data-testid='stSkeleton']");
}"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def streamlit(script: Path, home: Path, log: Path):
    port = free_port()
    env = {**os.environ, "FHV_HOME": str(home), "FHV_DATA_URL": "demo:3000"}
    with log.open("w") as out:
        process = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(script), "--server.port", str(port),
                                    "--server.headless", "true", "--server.address", "127.0.0.1",
                                    "--browser.gatherUsageStats", "false"],
                                   cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def wait_healthy(url: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not become healthy")


def seed(home: Path, runs: int, tasks: int) -> None:
    seed_history(home)
    store = Store(home / "history.db")
    try:
        bulk_history(store, runs=runs, tasks_per_run=max(tasks // max(runs, 1), 1))
        print(f"history: {store.count_runs():,} flow runs, {store.count_task_runs():,} task runs", flush=True)
    finally:
        store.close()


def first_load(browser, url: str) -> float:
    """Milliseconds from navigation start to a usable page, in a fresh context (nothing cached)."""
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    page = context.new_page()
    try:
        start = time.perf_counter()
        page.goto(url, wait_until="commit")
        page.wait_for_function(USABLE, arg="", polling="raf", timeout=60_000)
        return (time.perf_counter() - start) * 1000
    finally:
        context.close()


def click_to_usable(page, name: str) -> float:
    old = page.locator("[data-testid='stMain'] h1").first.inner_text()
    link = page.locator("[data-testid='stSidebarNav'] a").filter(has_text=name).first
    start = time.perf_counter()
    link.click()
    page.wait_for_function(USABLE, arg=old, polling="raf", timeout=60_000)
    return (time.perf_counter() - start) * 1000


def navigation_floor(browser, url: str, repeat: int) -> float:
    """Median click-to-usable between two hello-world pages."""
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    page = context.new_page()
    page.goto(url)
    page.wait_for_function(USABLE, arg="", polling="raf", timeout=60_000)
    times = []
    for i in range(2 * repeat + 2):
        elapsed = click_to_usable(page, ("Second", "First")[i % 2])
        if i >= 2:
            times.append(elapsed)
        page.wait_for_timeout(300)
    context.close()
    return statistics.median(times)


def navigation(browser, url: str, repeat: int) -> dict[str, float]:
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    page = context.new_page()
    page.goto(url)
    page.wait_for_function(USABLE, arg="", polling="raf", timeout=60_000)
    times: dict[str, list[float]] = {name: [] for name in PAGES}
    current = PAGES[0]
    for round_ in range(repeat + 1):  # the first round warms the server's caches and the browser's
        for i, name in enumerate(PAGES):
            # from a page that varies by round, never the target nor the page already shown
            before = next(PAGES[(i + k + round_) % len(PAGES)] for k in range(1, len(PAGES))
                          if PAGES[(i + k + round_) % len(PAGES)] not in (name, current))
            click_to_usable(page, before)
            page.wait_for_timeout(300)
            elapsed = click_to_usable(page, name)
            if round_:
                times[name].append(elapsed)
            current = name
            page.wait_for_timeout(300)
    context.close()
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> int:
    load_flows()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--tasks", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as folder:
        home, hello, hello_nav = Path(folder) / "fhv", Path(folder) / "hello.py", Path(folder) / "hello_nav.py"
        hello.write_text(HELLO)
        hello_nav.write_text(HELLO_NAV)
        seed(home, args.runs, args.tasks)
        with streamlit(ROOT / "dashboard" / "app.py", home, Path(folder) / "app.log") as app_url, \
                streamlit(hello, home, Path(folder) / "hello.log") as hello_url, \
                streamlit(hello_nav, home, Path(folder) / "hello_nav.log") as hello_nav_url, sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            first_load(browser, app_url), first_load(browser, hello_url)  # warm-up: imports, caches
            loads = {"app": [], "hello": []}
            for _ in range(args.repeat):  # interleaved, so that both see the same machine load
                loads["app"].append(first_load(browser, app_url))
                loads["hello"].append(first_load(browser, hello_url))
            nav = navigation(browser, app_url, args.repeat)
            floor = navigation_floor(browser, hello_nav_url, args.repeat)
            browser.close()
    return report(args, {k: statistics.median(v) for k, v in loads.items()}, nav, floor)


def report(args: argparse.Namespace, loads: dict[str, float], nav: dict[str, float], floor: float) -> int:
    """The table. A navigation meets its target at <= 400 ms on the issue's machine; on a slower (or
    busier) one the target scales with the hello-world first load measured in this run."""
    ratio = loads["app"] / loads["hello"]
    scale = max(loads["hello"] / ISSUE_FLOOR_MS, 1.0)
    target = NAV_TARGET_MS * scale
    print(f"\n{args.runs:,} runs, {args.tasks:,} task runs; median of {args.repeat}; Chromium 1440x1000; "
          f"this machine runs {scale:.2f} x slower than the issue's (hello-world first load "
          f"{loads['hello']:.0f} ms against {ISSUE_FLOOR_MS} ms)\n")
    print("| measure | ms | against the floor | target | |\n|---|---:|---:|---|---|")
    print(f"| first load, hello-world Streamlit page (floor) | {loads['hello']:.0f} | 1.00 x | | |")
    print(f"| first load, dashboard (Overview) | {loads['app']:.0f} | {ratio:.2f} x | <= {FIRST_LOAD_RATIO} x "
          f"| {'ok' if ratio <= FIRST_LOAD_RATIO else 'SLOW'} |")
    print(f"| click to usable, hello-world page (floor) | {floor:.0f} | 1.00 x | | |")
    for name, ms in nav.items():
        print(f"| click to usable: {name} | {ms:.0f} | {ms / floor:.2f} x | <= {NAV_TARGET_MS} ms x {scale:.2f} = "
              f"{target:.0f} | {'ok' if ms <= target else 'SLOW'} |")
    ok = ratio <= FIRST_LOAD_RATIO and all(ms <= target for ms in nav.values())
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
