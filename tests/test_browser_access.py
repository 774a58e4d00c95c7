"""The dashboard in a real browser, shared by a team: the sign-in page, a session that lasts across
reloads, tabs and pasted links until sign-out, failed sign-ins throttled, a viewer's actions
disabled, and no page of another origin able to drive it. A file of its own (its own dashboard
with users; the helpers are ``test_browser``'s), so that it runs beside the other browser tests.
"""
from __future__ import annotations

import base64
import re
import socket
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from dashboard import sessions
from pipeline import users
from tests.dashboard_seed import seed_history
from tests.httpserver import serve
from tests.test_browser import (IDLE, _runs_named, browser, expect_text, free_port, page,  # noqa: F401
                                screenshot, shots, start, stop, wait_healthy)

pytestmark = pytest.mark.timeout(180)
PASSWORD = "correct horse battery"
OVERVIEW = "[data-testid='stMain'] h1:has-text('Overview')"


@pytest.fixture(scope="module")
def shared_dashboard(tmp_path_factory):
    """A dashboard whose history has users: two operators and a viewer."""
    seeded = seed_history(tmp_path_factory.mktemp("shared") / "fhv")
    for name, role in (("olga", "operator"), ("tess", "operator"), ("victor", "viewer")):
        users.add(users.users_path(seeded.settings.home), name, PASSWORD, role)
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
    """Open ``url``: the dashboard sends a visitor without a session to its sign-in page first."""
    page.goto(url)
    page.get_by_label("User name").fill(name)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()


def post_sign_in(url: str, name: str, password: str) -> tuple[int, str]:
    form = urllib.parse.urlencode({"name": name, "password": password, "next": "/"}).encode()
    request = urllib.request.Request(f"{url}/signin", data=form, headers={"Origin": url})
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def test_a_wrong_password_is_refused_and_the_right_one_signs_in(page, shared_dashboard, shots):
    url, _ = shared_dashboard
    sign_in(page, url, "olga", "not the password")
    expect_text(page.locator("[role=alert]"), "Wrong user name or password.")
    assert page.get_by_label("Password", exact=True).get_attribute("autocomplete") == "current-password"
    assert page.get_by_label("User name").get_attribute("autocomplete") == "username"
    page.screenshot(path=str(shots / "login_refused.png"))  # the sign-in page is plain HTML, not Streamlit's
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_selector(OVERVIEW, timeout=30_000)
    expect_text(page.locator("[data-testid='stSidebar']"), "Signed in as olga (operator)")


def test_a_session_lasts_across_a_reload_a_new_tab_and_a_pasted_link_until_sign_out(page, shared_dashboard):
    url, seeded = shared_dashboard
    sign_in(page, url + "/runs", "olga", PASSWORD)  # back to the page asked for
    page.wait_for_selector("[data-testid='stMain'] h1:has-text('Runs')", timeout=30_000)
    cookie, = [c for c in page.context.cookies() if c["name"] == sessions.COOKIE]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    assert time.time() + sessions.LIFETIME_S - 60 < cookie["expires"] <= time.time() + sessions.LIFETIME_S + 5
    carried = base64.urlsafe_b64decode(cookie["value"].split(".")[0] + "==").decode()
    assert PASSWORD not in carried and "operator" not in carried
    page.reload()
    page.wait_for_selector("[data-testid='stMain'] h1:has-text('Runs')", timeout=30_000)
    tab = page.context.new_page()  # a new tab, a pasted link to a run
    tab.goto(f"{url}/run?id={seeded.failed}")
    tab.wait_for_selector("[data-testid='stMain'] h1", timeout=60_000)
    expect_text(tab.locator("[data-testid='stSidebar']"), "Signed in as olga (operator)")
    tab.locator("[data-testid='stSidebar'] a", has_text="Sign out").click()
    expect_text(tab.locator("[role=status]"), "You are signed out.")
    page.goto(url + "/runs")
    assert page.get_by_label("Password", exact=True).is_visible()


def test_failed_sign_ins_are_throttled_per_user_name_and_say_so(shared_dashboard):
    url, _ = shared_dashboard
    statuses = [post_sign_in(url, "tess", "wrong password")[0] for _ in range(sessions.Throttle.LIMITS["name"])]
    status, body = post_sign_in(url, "tess", PASSWORD)  # the right password, too late
    assert statuses == [401] * 5 and status == 429
    assert re.search(r"Too many failed sign-ins from this user name: wait 1[45] min \d+ s before trying again", body)
    assert post_sign_in(url, "olga", PASSWORD)[0] == 303  # another name from the same address still signs in


def test_a_viewer_sees_actions_disabled_with_the_reason(page, shared_dashboard, shots):
    url, seeded = shared_dashboard
    sign_in(page, url + "/trigger", "victor", PASSWORD)
    page.wait_for_selector("[data-testid='stMain'] h1:has-text('Trigger')", timeout=30_000)
    page.wait_for_selector(IDLE, timeout=30_000)
    assert page.get_by_role("button", name="Enqueue run").is_disabled()
    expect_text(page.locator("[data-testid='stMain']"), "victor is a viewer: only an operator may trigger runs")
    screenshot(page, shots, "viewer_refused")


def handshake(url: str, origin: str | None) -> str:
    """The status line a WebSocket upgrade to the dashboard gets with this Origin."""
    host, port = urllib.parse.urlsplit(url).hostname, urllib.parse.urlsplit(url).port
    lines = [f"GET /_stcore/stream HTTP/1.1", f"Host: {host}:{port}", "Upgrade: websocket", "Connection: Upgrade",
             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13"]
    lines += [f"Origin: {origin}"] if origin else []
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        return sock.recv(200).decode("latin-1").split("\r\n")[0]


def test_only_the_dashboards_own_origin_opens_its_websocket(shared_dashboard):
    url, _ = shared_dashboard
    port = urllib.parse.urlsplit(url).port
    assert " 101 " in handshake(url, url)
    for origin in (f"http://127.0.0.1:{port + 1}", f"http://localhost:{port}", f"https://127.0.0.1:{port}", None):
        assert " 403 " in handshake(url, origin), origin


def test_a_page_served_from_another_local_port_cannot_drive_the_dashboard(page, shared_dashboard):
    url, _ = shared_dashboard
    script = (f"<script>const ws = new WebSocket('{url.replace('http', 'ws')}/_stcore/stream');"
              "ws.onopen = () => document.title = 'opened'; ws.onerror = () => document.title = 'refused';"
              f"fetch('{url}/signin', {{method: 'POST', mode: 'no-cors', body: new URLSearchParams("
              "{name: 'olga', password: 'x'})}).then(() => document.body.dataset.posted = 'sent');</script>")
    with serve() as other:
        other.route("/", body=f"<!doctype html><title>waiting</title>{script}".encode(), content_type="text/html")
        page.goto(other.url("/"))
        page.wait_for_function("document.title !== 'waiting'", timeout=20_000)
        assert page.title() == "refused"
