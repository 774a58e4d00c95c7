"""Dashboard sessions without a server: a signed token that names a user until it expires, checked
against the users file at every use, and failed sign-ins throttled per user name and per client."""
from __future__ import annotations

import pytest

from dashboard import sessions
from pipeline import users

PASSWORD = "correct horse battery"
NOW = 1_800_000_000.0


@pytest.fixture
def home(tmp_path):
    users.add(users.users_path(tmp_path), "olga", PASSWORD, "operator")
    return tmp_path


def test_a_token_names_its_user_with_the_role_the_users_file_gives_and_holds_no_secret(home):
    token = sessions.issue(home, "olga", NOW)
    assert sessions.user_of(home, token, NOW + 60) == users.User("olga", "operator")
    assert PASSWORD not in token and "operator" not in token and "=" not in token  # no quoting in a cookie
    assert oct((home / sessions.KEY_FILE).stat().st_mode & 0o777) == "0o600"


def test_a_token_ends_when_it_expires(home):
    token = sessions.issue(home, "olga", NOW)
    assert sessions.user_of(home, token, NOW + sessions.LIFETIME_S - 1) is not None
    assert sessions.user_of(home, token, NOW + sessions.LIFETIME_S) is None


def test_a_changed_token_or_a_token_of_another_key_names_nobody(home, tmp_path_factory):
    token = sessions.issue(home, "olga", NOW)
    payload, signature = token.split(".")
    forged = payload.replace(payload[5], "A" if payload[5] != "A" else "B") + "." + signature
    other = tmp_path_factory.mktemp("other")
    users.add(users.users_path(other), "olga", PASSWORD, "operator")
    assert [sessions.user_of(home, t, NOW) for t in (forged, "", None, "x.y", payload)] == [None] * 5
    assert sessions.user_of(other, token, NOW) is None


def test_a_removed_user_a_demoted_user_and_a_new_password_take_effect_at_once(home):
    token = sessions.issue(home, "olga", NOW)
    path = users.users_path(home)
    data = users.load(path)
    data["olga"]["role"] = "viewer"
    users._write(path, data)  # a role changed in place, the password kept
    assert sessions.user_of(home, token, NOW) == users.User("olga", "viewer")
    users.add(path, "olga", "another password", "operator")
    assert sessions.user_of(home, token, NOW) is None
    fresh = sessions.issue(home, "olga", NOW)
    users.remove(path, "olga")
    assert sessions.user_of(home, fresh, NOW) is None


def test_failed_sign_ins_are_limited_per_user_name_then_allowed_again_after_the_window():
    throttle = sessions.Throttle()
    for second in range(5):
        assert throttle.wait("olga", "10.0.0.1", NOW + second) is None
        throttle.failed("olga", "10.0.0.1", NOW + second)
    assert throttle.wait("OLGA", "10.0.0.2", NOW + 10) == ("user name", pytest.approx(890))
    assert throttle.wait("victor", "10.0.0.1", NOW + 10) is None  # another name from the same client
    assert throttle.wait("olga", "10.0.0.2", NOW + throttle.WINDOW_S) is None


def test_failed_sign_ins_are_limited_per_client_whatever_the_names_and_a_success_clears_them():
    throttle = sessions.Throttle()
    for attempt in range(20):
        throttle.failed(f"name{attempt}", "10.0.0.9", NOW)
    assert throttle.wait("someone", "10.0.0.9", NOW + 1) == ("address", pytest.approx(899))
    assert throttle.wait("someone", "10.0.0.8", NOW + 1) is None
    throttle.succeeded("name3", "10.0.0.9")
    assert throttle.wait("someone", "10.0.0.9", NOW + 1) is None


@pytest.mark.parametrize("scope, headers, refused", [
    ({"type": "websocket"}, {"host": "127.0.0.1:8501", "origin": "http://127.0.0.1:8501"}, False),
    ({"type": "websocket"}, {"host": "127.0.0.1:8501", "origin": "http://127.0.0.1:8502"}, True),
    ({"type": "websocket"}, {"host": "127.0.0.1:8501"}, True),  # a browser always sends one
    ({"type": "http", "method": "POST"}, {"host": "localhost:8501", "origin": "http://localhost:8501"}, False),
    ({"type": "http", "method": "POST"}, {"host": "localhost:8501", "origin": "null"}, True),
    ({"type": "http", "method": "GET"}, {"host": "127.0.0.1:8501"}, False),
    ({"type": "http", "method": "GET"}, {"host": "evil.example:8501"}, True),  # DNS rebinding onto loopback
])
def test_the_guard_takes_only_the_dashboards_own_origin_and_loopback_names(scope, headers, refused):
    from dashboard import web

    assert (web.refused(scope, headers) is not None) is refused


@pytest.mark.parametrize("asked, goes", [("/runs?state=LATE", "/runs?state=LATE"), ("//evil.example/x", "/"),
                                         ("https://evil.example", "/"), ("/\\evil.example", "/"), ("", "/")])
def test_after_signing_in_the_page_goes_back_only_to_a_page_of_the_dashboard(asked, goes):
    from dashboard import web

    assert web.local_path(asked) == goes


def test_a_bad_setting_lets_the_page_load_to_say_so_instead_of_failing_in_the_guard(monkeypatch, tmp_path):
    from dashboard import web

    monkeypatch.setenv("FHV_DATABASE_URL", "mysql://somewhere/db")
    scope = {"type": "http", "method": "GET", "path": "/runs"}
    assert web.needs_signin(scope, {"accept": "text/html"}) is False
