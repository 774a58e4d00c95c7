"""The dashboard's web server around Streamlit: its sign-in page, its session cookie, and its origin check.

``app.py`` declares ``app = st.App(...)`` with these routes and this middleware, so however the
dashboard starts (``serve.py``, ``streamlit run dashboard/app.py``) it serves:

- ``/signin``: a plain HTML form (a password manager fills it) that checks the password, throttles
  failed attempts per user name and per client, and sets the session cookie: signed, HttpOnly,
  SameSite=Lax, with an expiry (``sessions``). ``/signout`` clears it.
- a guard on every request: a WebSocket or a POST must come from the dashboard's own origin,
  exactly (scheme, host and port), so a page served from another port of this machine cannot
  drive it; while the dashboard listens on loopback only, the Host must be a loopback name (no DNS
  rebinding); with users, a page load without a valid session goes to ``/signin`` first.
"""
from __future__ import annotations

import html
import ipaddress
import time
from typing import Any, Callable
from urllib.parse import quote, urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

import streamlit as st

from pipeline import users
from pipeline.config import load_settings
from pipeline.errors import PipelineError

from . import sessions

LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}
THROTTLE = sessions.Throttle()
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
OPEN_PATHS = ("/signin", "/signout", "/_stcore/", "/static/", "/media/", "/component/", "/favicon")


def address() -> str:
    """The address the server listens on ('' when Streamlit listens on every interface)."""
    return str(st.get_option("server.address") or "")


def beyond_loopback(listening: str | None = None) -> bool:
    """Whether the server is reachable from other machines: any address but a loopback one."""
    listening = address() if listening is None else listening
    if listening in LOOPBACK_NAMES:
        return False
    try:
        return not ipaddress.ip_address(listening).is_loopback
    except ValueError:
        return True  # '' (every interface), 0.0.0.0 or a host name


def home():
    return load_settings().home


def clock() -> float:
    return time.time()


# -- the sign-in page ------------------------------------------------------------------------------
PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>Sign in · FHV retraining</title>
<style>body{{font-family:sans-serif;color:#1f2937;background:#f4f6f9;margin:0}}
main{{max-width:22rem;margin:12vh auto;padding:2rem;background:#fff;border-radius:.5rem;border:1px solid #d5dae1}}
h1{{font-size:1.6rem;margin:0 0 .5rem}} p{{color:#4b5563}} label{{display:block;margin:1rem 0 .3rem}}
input{{width:100%;box-sizing:border-box;padding:.55rem;font-size:1rem;border:1px solid #c3c9d2;border-radius:.4rem}}
button{{margin-top:1.4rem;width:100%;padding:.6rem;font-size:1rem;color:#fff;background:#2563eb;border:0;
border-radius:.4rem}} .alert{{color:#b91c1c;background:#fef2f2;padding:.6rem;border-radius:.4rem}}
.note{{color:#166534;background:#f0fdf4;padding:.6rem;border-radius:.4rem}}</style></head><body><main>
<h1>Sign in</h1><p>This dashboard has users: sign in with the name and password an administrator gave you.</p>
{message}<form method="post" action="/signin"><input type="hidden" name="next" value="{next}">
<label for="name">User name</label><input id="name" name="name" autocomplete="username" value="{name}" required {focus_name}>
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required {focus_password}>
<button type="submit">Sign in</button></form></main></body></html>"""


def page(next_path: str, *, name: str = "", alert: str = "", note: str = "", status: int = 200) -> HTMLResponse:
    message = (f'<p class="alert" role="alert">{html.escape(alert)}</p>' if alert else
               f'<p class="note" role="status">{html.escape(note)}</p>' if note else "")
    focus = ("", "autofocus") if name else ("autofocus", "")  # after a failed attempt: the password again
    body = PAGE.format(message=message, next=html.escape(next_path), name=html.escape(name), focus_name=focus[0],
                       focus_password=focus[1])
    return HTMLResponse(body, status_code=status, headers={"Cache-Control": "no-store"})


def local_path(candidate: str | None) -> str:
    """Where to go after signing in: a path of this dashboard, never another site."""
    if not candidate or not candidate.startswith("/") or candidate.startswith(("//", "/\\")):
        return "/"
    return candidate


async def signin_form(request: Request) -> Response:
    note = "You are signed out." if "signed_out" in request.query_params else ""
    return page(local_path(request.query_params.get("next")), note=note)


async def signin(request: Request) -> Response:
    form = await request.form()
    name, password = str(form.get("name") or "").strip(), str(form.get("password") or "")
    next_path, client = local_path(str(form.get("next") or "")), request.client.host if request.client else "?"
    waiting = THROTTLE.wait(name, client, clock())
    if waiting:
        return page(next_path, name=name, status=429, alert=throttled(*waiting))
    found = await run_in_threadpool(users.verify, users.users_path(home()), name, password)
    if found is None:
        THROTTLE.failed(name, client, clock())
        return page(next_path, name=name, status=401, alert="Wrong user name or password.")
    THROTTLE.succeeded(name, client)
    response = RedirectResponse(next_path, status_code=303)
    response.set_cookie(sessions.COOKIE, sessions.issue(home(), found.name, clock()), max_age=sessions.LIFETIME_S,
                        path="/", httponly=True, samesite="lax", secure=request.url.scheme == "https")
    return response


def throttled(what: str, seconds: float) -> str:
    minutes, rest = divmod(max(int(seconds + 0.999), 1), 60)
    wait = f"{minutes} min {rest} s" if minutes else f"{rest} s"
    return (f"Too many failed sign-ins from this {what}: wait {wait} before trying again "
            "(failed sign-ins are limited per user name and per address).")


async def signout(request: Request) -> Response:
    response = RedirectResponse("/signin?signed_out=1", status_code=303)
    response.delete_cookie(sessions.COOKIE, path="/", httponly=True, samesite="lax")
    return response


ROUTES = [Route("/signin", signin_form, methods=["GET"]), Route("/signin", signin, methods=["POST"]),
          Route("/signout", signout, methods=["GET", "POST"])]


# -- the guard -------------------------------------------------------------------------------------
class Guard:
    """ASGI middleware: the exact origin for WebSockets and writes, loopback Host names while
    listening on loopback, and the sign-in page before any page when users exist."""

    def __init__(self, app: Callable) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers") or []}
        refusal = refused(scope, headers)
        if refusal:
            return await refuse(scope, send, refusal)
        if scope["type"] == "http" and needs_signin(scope, headers):
            target = scope.get("path", "/") + (f"?{scope['query_string'].decode()}" if scope.get("query_string") else "")
            return await RedirectResponse(f"/signin?next={quote(target, safe='')}", 303)(scope, receive, send)
        return await self.app(scope, receive, send)


def refused(scope: dict[str, Any], headers: dict[str, str]) -> str | None:
    """Why a request is refused (a sentence), or None."""
    host = headers.get("host", "")
    if not beyond_loopback() and (urlsplit(f"//{host}").hostname or "") not in LOOPBACK_NAMES:
        return f"This dashboard listens on this machine only; the host {host!r} is not one of its names."
    if scope["type"] == "http" and scope.get("method") in SAFE_METHODS:
        return None
    secure = scope.get("scheme") in ("https", "wss")
    own = f"{'https' if secure else 'http'}://{host}"
    origin = headers.get("origin")
    if origin != own:
        return f"Only pages of this dashboard ({own}) may drive it; this request came from {origin or 'no origin'}."
    return None


async def refuse(scope: dict[str, Any], send: Callable, sentence: str) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008, "reason": sentence[:120]})  # before accept: HTTP 403
        return
    await PlainTextResponse(sentence, status_code=403)(scope, None, send)


def needs_signin(scope: dict[str, Any], headers: dict[str, str]) -> bool:
    """A page load (a GET for HTML) without a valid session while users exist."""
    path = scope.get("path", "/")
    if scope.get("method") != "GET" or path.startswith(OPEN_PATHS) or "text/html" not in headers.get("accept", ""):
        return False
    try:
        where = home()
        if not users.load(users.users_path(where)):
            return False
    except PipelineError:
        return False  # a bad FHV_* setting or users file: the page itself says so in one sentence
    return sessions.user_of(where, cookie(headers.get("cookie", "")), clock()) is None


def cookie(header: str) -> str | None:
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == sessions.COOKIE:
            return value.strip('"')
    return None
