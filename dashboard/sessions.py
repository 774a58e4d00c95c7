"""Dashboard sessions: a signed cookie that names a user until it expires, and a throttle on failed sign-ins.

The cookie holds the user name, an expiry, a random id and a fingerprint of the user's password
hash, signed with HMAC-SHA256 by a secret kept in ``$FHV_HOME/dashboard.key`` (mode 0600), so a
session survives a restart of the dashboard. It never holds the password or the role: each check
reads the users file again, so a user removed (``users rm``) is signed out at once, a user
demoted to viewer acts as a viewer at once, and a new password ends the sessions of the old one.
No Streamlit here: the web server (``dashboard/web.py``) and the pages (``access``) both use it.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from collections import defaultdict, deque
from pathlib import Path

from pipeline import users

COOKIE = "fhv_session"
LIFETIME_S = 12 * 3600
KEY_FILE = "dashboard.key"


def secret(home: Path) -> bytes:
    """The signing key of this history's dashboards, made on first use (only its owner can read it)."""
    path = Path(home) / KEY_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return path.read_bytes().strip()  # another process made it first
        with os.fdopen(handle, "w") as out:
            out.write(secrets.token_hex(32))
    return path.read_bytes().strip()


def issue(home: Path, name: str, now: float) -> str:
    """A session token for ``name`` (who has just given the right password), valid LIFETIME_S from ``now``."""
    body = {"n": name, "e": int(now + LIFETIME_S), "f": _fingerprint(home, name), "s": secrets.token_hex(8)}
    payload = base64.urlsafe_b64encode(json.dumps(body, separators=(",", ":")).encode()).decode().rstrip("=")
    return f"{payload}.{_sign(home, payload)}"


def user_of(home: Path, token: str | None, now: float) -> users.User | None:
    """The user a token names, with the role the users file gives now; None when the token is
    missing, forged, expired, or its user was removed or given a new password since."""
    body = _body(home, token)
    if body is None or not isinstance(body.get("e"), int) or body["e"] <= now:
        return None
    entry = users.load(users.users_path(home)).get(str(body.get("n")))
    if not entry or not hmac.compare_digest(str(body.get("f")), _digest(entry.get("hash", ""))):
        return None
    return users.User(body["n"], entry.get("role") if entry.get("role") in users.ROLES else "viewer")


def _body(home: Path, token: str | None) -> dict | None:
    payload, _, signature = (token if isinstance(token, str) else "").partition(".")
    if not payload or not hmac.compare_digest(signature, _sign(home, payload)):
        return None
    try:
        body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _sign(home: Path, payload: str) -> str:
    return hmac.new(secret(home), payload.encode(), hashlib.sha256).hexdigest()


def _fingerprint(home: Path, name: str) -> str:
    return _digest(users.load(users.users_path(home)).get(name, {}).get("hash", ""))


def _digest(stored_hash: str) -> str:
    return hashlib.sha256(stored_hash.encode()).hexdigest()[:32]


class Throttle:
    """Failed sign-ins per user name and per client: past a limit within a window, wait.

    A name gets NAME_LIMIT failures in WINDOW_S, a client (an address, which several people may
    share) CLIENT_LIMIT; then attempts are refused, without checking the password, until the
    oldest of those failures is WINDOW_S old. A successful sign-in clears its name and client.
    """
    WINDOW_S = 900.0
    LIMITS = {"name": 5, "client": 20}

    def __init__(self) -> None:
        self._failures: dict[tuple[str, str], deque[float]] = defaultdict(deque)

    def wait(self, name: str, client: str, now: float) -> tuple[str, float] | None:
        """``(what, seconds)`` to wait before the next attempt ('user name' or 'client'), or None."""
        for kind, key in (("name", name.lower()), ("client", client)):
            failures = self._recent((kind, key), now)
            if len(failures) >= self.LIMITS[kind]:
                return ("user name" if kind == "name" else "address"), failures[-self.LIMITS[kind]] + self.WINDOW_S - now
        return None

    def failed(self, name: str, client: str, now: float) -> None:
        for key in (("name", name.lower()), ("client", client)):
            self._recent(key, now).append(now)

    def succeeded(self, name: str, client: str) -> None:
        self._failures.pop(("name", name.lower()), None)
        self._failures.pop(("client", client), None)

    def _recent(self, key: tuple[str, str], now: float) -> deque[float]:
        failures = self._failures[key]
        while failures and failures[0] <= now - self.WINDOW_S:
            failures.popleft()
        return failures
