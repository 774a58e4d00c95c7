"""The dashboard in a real browser, shared by a team: a login with a wrong password, then the right
one; a viewer refused an action with nothing written. A file of its own (its own dashboard with
users; the helpers are ``test_browser``'s), so that it runs beside the other browser tests.
"""
from __future__ import annotations

import pytest

from pipeline import users
from tests.dashboard_seed import seed_history
from tests.test_browser import (IDLE, _runs_named, browser, expect_text, free_port, page,  # noqa: F401
                                screenshot, shots, start, stop, wait_healthy)

pytestmark = pytest.mark.timeout(180)


# -- safe when shared -----------------------------------------------------------------------------------
PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def shared_dashboard(tmp_path_factory):
    """A dashboard whose history has two users: an operator and a viewer."""
    seeded = seed_history(tmp_path_factory.mktemp("shared") / "fhv")
    users.add(users.users_path(seeded.settings.home), "olga", PASSWORD, "operator")
    users.add(users.users_path(seeded.settings.home), "victor", PASSWORD, "viewer")
    port = free_port()
    log = seeded.settings.home / "streamlit.log"
    process = start(["-m", "streamlit", "run", "dashboard/app.py", "--server.port", str(port),
                     "--server.headless", "true"], seeded, log, "demo:3000")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process, log)
        yield url, seeded
    finally:
        stop(process)


def sign_in(page, url: str, name: str, password: str) -> None:
    page.goto(url)
    page.wait_for_selector(IDLE, timeout=60_000)
    page.get_by_label("User name").fill(name)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_timeout(500)
    page.wait_for_selector(IDLE, timeout=30_000)


def test_a_wrong_password_is_refused_and_the_right_one_signs_in(page, shared_dashboard, shots):
    url, _ = shared_dashboard
    sign_in(page, url, "olga", "not the password")
    main = page.locator("[data-testid='stMain']")
    expect_text(main, "Wrong user name or password.")
    assert page.locator("[data-testid='stSidebarNav']").count() == 0  # nothing to navigate before signing in
    screenshot(page, shots, "login_refused")
    sign_in(page, url, "olga", PASSWORD)
    page.wait_for_selector("[data-testid='stMain'] h1:has-text('Overview')", timeout=30_000)
    expect_text(page.locator("[data-testid='stSidebar']"), "Signed in as olga (operator)")


def test_a_viewer_is_refused_an_action_and_nothing_is_written(page, shared_dashboard, shots):
    url, seeded = shared_dashboard
    before = _runs_named(seeded)
    sign_in(page, url, "victor", PASSWORD)
    page.wait_for_selector("[data-testid='stMain'] h1:has-text('Overview')", timeout=30_000)
    page.locator("[data-testid='stSidebarNav'] a").filter(has_text="Trigger").click()
    page.wait_for_selector("[data-testid='stMain'] h1:has-text('Trigger')", timeout=30_000)
    page.wait_for_selector(IDLE, timeout=30_000)
    page.get_by_role("button", name="Enqueue run").click()
    expect_text(page.locator("[data-testid='stMain']"), "victor is a viewer: only an operator may trigger runs")
    assert _runs_named(seeded) == before
    screenshot(page, shots, "viewer_refused")
