"""Safe when shared: the dashboard listens on 127.0.0.1 however it is started, an optional login
with argon2id hashes and two roles, and no anonymous action beyond this machine."""
from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
from pathlib import Path

import pytest
import streamlit as st
from streamlit import config as st_config
from streamlit.testing.v1 import AppTest

from dashboard import access, sessions
from pipeline import users
from pipeline.errors import ConfigError
from pipeline.store import Store
from tests.test_dashboard import APP, ROOT, history  # noqa: F401  (history: the seeded fixture)

PASSWORD = "correct horse battery"


@contextlib.contextmanager
def listening_on(address: str):
    before = st_config.get_option("server.address")
    st_config.set_option("server.address", address)
    try:
        yield
    finally:
        st_config.set_option("server.address", before)


def run_count(history) -> int:
    store = Store(history.settings.db_path, readonly=True)
    try:
        return store.count_runs()
    finally:
        store.close()


def app() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=30)
    at.run()
    return at


@pytest.fixture
def signed_in(monkeypatch, history):
    """Sign a user in as ``/signin`` does: the page then reads that session's cookie (AppTest has no browser)."""
    def sign_in(name: str) -> AppTest:
        token = sessions.issue(history.settings.home, name, time.time())
        monkeypatch.setattr(access, "token", lambda: token)
        return app()
    return sign_in


def enqueue(at: AppTest) -> AppTest:
    at.switch_page("app_pages/trigger.py").run()
    at.button(key="trigger_run").click().run()
    return at


# -- users ---------------------------------------------------------------------------------------
def test_a_password_is_stored_only_as_a_salted_argon2id_hash(tmp_path):
    path = tmp_path / "users.json"
    users.add(path, "alice", PASSWORD, "operator")
    users.add(path, "bob", PASSWORD, "viewer")
    text = path.read_text()
    stored = json.loads(text)["users"]
    assert PASSWORD not in text and stored["alice"]["hash"].startswith("$argon2id$")
    assert stored["alice"]["hash"] != stored["bob"]["hash"]  # the same password, two salts
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert users.verify(path, "alice", PASSWORD) == users.User("alice", "operator")
    assert users.verify(path, "alice", "wrong password") is None and users.verify(path, "carol", PASSWORD) is None


@pytest.mark.parametrize("name, password, role, says", [
    ("alice", "short", "operator", "too short"), ("al ice", PASSWORD, "viewer", "not valid"),
    ("alice", PASSWORD, "admin", "viewer or operator"),
])
def test_bad_users_are_refused_with_a_sentence(tmp_path, name, password, role, says):
    with pytest.raises(ConfigError, match=says):
        users.add(tmp_path / "users.json", name, password, role)


def test_the_cli_adds_a_user_from_stdin_and_lists_it(tmp_path):
    env = {**os.environ, "FHV_HOME": str(tmp_path)}
    added = subprocess.run([sys.executable, "-m", "pipeline", "users", "add", "ops", "--role", "operator",
                            "--password-stdin"], input=PASSWORD + "\n", capture_output=True, text=True, env=env, cwd=ROOT)
    assert added.returncode == 0, added.stderr
    listed = subprocess.run([sys.executable, "-m", "pipeline", "users", "ls"], capture_output=True, text=True,
                            env=env, cwd=ROOT)
    assert "ops" in listed.stdout and "operator" in listed.stdout and PASSWORD not in (tmp_path / "users.json").read_text()


# -- roles and the login ---------------------------------------------------------------------------
def test_without_users_on_loopback_actions_are_allowed(history):
    before = run_count(history)
    enqueue(app())
    assert run_count(history) == before + 1


@pytest.mark.parametrize("address", ["0.0.0.0", "", "192.168.1.20"])
def test_beyond_loopback_without_users_actions_are_disabled_with_how_to_add_one(history, address):
    with listening_on(address):
        at = app()
        at.switch_page("app_pages/trigger.py").run()
    button = at.button(key="trigger_run")
    assert button.disabled and "beyond this machine" in button.help
    refusal = [c.value for c in at.caption if "beyond this machine" in c.value]
    assert refusal and "python -m pipeline users add NAME --role operator" in refusal[0]


@pytest.mark.parametrize("address, beyond", [("127.0.0.1", False), ("localhost", False), ("::1", False),
                                             ("127.0.0.2", False), ("0.0.0.0", True), ("", True), ("10.0.0.5", True)])
def test_only_loopback_addresses_count_as_this_machine(address, beyond):
    assert access.beyond_loopback(address) is beyond


def test_with_users_a_page_without_a_session_shows_only_the_way_to_sign_in(history):
    users.add(users.users_path(history.settings.home), "alice", PASSWORD, "operator")
    at = app()
    assert [t.value for t in at.title] == ["Sign in"] and not at.metric and not at.button
    assert any('href="/signin?next=' in m.value for m in at.markdown)


def test_a_signed_in_operator_is_named_in_the_sidebar_with_a_way_to_sign_out(history, signed_in):
    users.add(users.users_path(history.settings.home), "alice", PASSWORD, "operator")
    at = signed_in("alice")
    assert [t.value for t in at.title] == ["Overview"]
    assert any("Signed in as **alice** (operator)" in m.value and 'href="/signout"' in m.value
               for m in at.sidebar.markdown)


def test_a_viewer_sees_the_action_disabled_with_the_reason_and_nothing_is_written(history, signed_in):
    users.add(users.users_path(history.settings.home), "victor", PASSWORD, "viewer")
    before = run_count(history)
    at = signed_in("victor")
    at.switch_page("app_pages/trigger.py").run()
    button = at.button(key="trigger_run")
    assert button.disabled and "victor is a viewer: only an operator may trigger runs" in button.help
    assert any("only an operator may trigger runs" in c.value for c in at.caption)
    assert run_count(history) == before


def test_an_operator_may_act_beyond_loopback(history, signed_in):
    users.add(users.users_path(history.settings.home), "olga", PASSWORD, "operator")
    before = run_count(history)
    with listening_on("0.0.0.0"):
        enqueue(signed_in("olga"))
    assert run_count(history) == before + 1


@pytest.mark.parametrize("change", ["removed", "demoted"])
def test_an_operator_removed_or_demoted_cannot_act_from_a_page_already_open(history, signed_in, change):
    path = users.users_path(history.settings.home)
    users.add(path, "olga", PASSWORD, "operator")
    users.add(path, "victor", PASSWORD, "viewer")  # with no user left, the dashboard would have no login at all
    at = signed_in("olga")
    at.switch_page("app_pages/trigger.py").run()
    before = run_count(history)
    if change == "removed":
        users.remove(path, "olga")
    else:
        entry = users.load(path)
        entry["olga"]["role"] = "viewer"
        users._write(path, entry)  # the role changed in the file, the password kept
    at.button(key="trigger_run").click().run()
    assert run_count(history) == before
    shown = [t.value for t in at.title] + [e.value for e in at.error] + [c.value for c in at.caption]
    assert ("Sign in" in shown) if change == "removed" else any("olga is a viewer" in text for text in shown)


# -- where it listens --------------------------------------------------------------------------------
def test_the_configuration_next_to_the_app_listens_on_loopback_like_the_projects():
    beside = tomllib.loads((ROOT / "dashboard" / ".streamlit" / "config.toml").read_text())
    project = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert beside == project and beside["server"]["address"] == "127.0.0.1"
    assert beside["browser"]["gatherUsageStats"] is False


def _other_address() -> str | None:
    """An address of this machine that is not loopback, if it has one."""
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the outgoing interface
        address = probe.getsockname()[0]
        return None if address.startswith("127.") else address
    return None


@pytest.mark.timeout(90)
@pytest.mark.parametrize("command", [["dashboard/serve.py"], ["-m", "streamlit", "run", "dashboard/app.py"]])
def test_started_from_another_folder_by_its_absolute_path_it_listens_on_loopback_only(tmp_path, command):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "FHV_HOME": str(tmp_path / "fhv"), "HOME": str(tmp_path)}
    log = (tmp_path / "streamlit.log").open("w")
    absolute = [str(ROOT / part) if part.startswith("dashboard/") else part for part in command]
    process = subprocess.Popen([sys.executable, *absolute, "--server.port", str(port), "--server.headless", "true"],
                               cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health",
                                                                      timeout=2):
                break
            time.sleep(0.25)
        else:
            pytest.fail((tmp_path / "streamlit.log").read_text())
        listening = [line for line in Path("/proc/net/tcp").read_text().splitlines()[1:]
                     if line.split()[1].endswith(f":{port:04X}") and line.split()[3] == "0A"]
        assert [line.split()[1] for line in listening] == [f"0100007F:{port:04X}"]  # 127.0.0.1 only
        other = _other_address()
        if other:
            with pytest.raises(OSError), socket.create_connection((other, port), timeout=2):
                pass
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()
