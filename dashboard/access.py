"""Who may do what: an optional login, two roles, and no anonymous writes beyond this machine.

- No user configured (``$FHV_HOME/users.json`` absent or empty): no login. Actions are allowed
  while the dashboard listens on loopback only (the default, 127.0.0.1); when it listens beyond
  it, every action is refused with the sentence that says how to add a user.
- Users configured: the sign-in page first (``web``: passwords checked against their argon2id
  hashes by ``pipeline.users``; a signed session cookie, ``sessions``). Who is signed in is read
  from that cookie and the users file at every run and every action, never from the browser's
  state: a removed user is signed out, a demoted one is a viewer, at once. A ``viewer`` reads;
  an ``operator`` also triggers, backfills, cancels, pauses and resumes.
"""
from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote, urlsplit

import streamlit as st

from pipeline import users

from . import queries, sessions
from .web import LOOPBACK_NAMES, address, beyond_loopback  # noqa: F401  (where it listens)

ACTIONS = {"trigger": "trigger runs", "backfill": "enqueue backfills", "cancel": "cancel runs",
           "pause": "pause or resume deployments", "promote": "promote or roll back models",
           "accept": "accept a blocked run's data"}


def users_file():
    return users.users_path(queries.settings().home)


def configured() -> bool:
    """Whether any dashboard user exists (then everyone signs in)."""
    return bool(users.load(users_file()))


def token() -> str | None:
    """The session cookie this page was opened with (HttpOnly: the page's scripts cannot read or change it)."""
    value = st.context.cookies.get(sessions.COOKIE)
    return value if isinstance(value, str) else None


def user() -> users.User | None:
    """Who is signed in, checked now against the users file (None without users or without a valid session)."""
    if not configured():
        return None
    return sessions.user_of(queries.settings().home, token(), time.time())


def gate() -> bool:
    """Without users, or signed in: True (the page runs). Else a link to the sign-in page.

    The web server sends a page load without a session to ``/signin`` first; this is for a page
    already open whose session expired, or whose user was removed or given a new password."""
    if not configured() or user() is not None:
        return True
    st.title("Sign in")
    ended = "Your session ended (it expired, you signed out, or your user was changed)" if token() else \
        "This dashboard has users"
    st.markdown(f'{ended}: <a href="/signin?next={_here()}" target="_self">sign in</a> with the name and password '
                "an administrator gave you.", unsafe_allow_html=True)
    return False


def _here() -> str:
    url = urlsplit(st.context.url or "/")
    return quote(url.path + (f"?{url.query}" if url.query else ""), safe="")


def sidebar() -> None:
    """Who is signed in, with a Sign out link (nothing without users)."""
    found = user()
    if found is None:
        return
    st.markdown(f":gray[Signed in as **{found.name}** ({found.role})] · "
                '<a href="/signout" target="_self">Sign out</a>', unsafe_allow_html=True)


def refusal(action: str, what: str | None = None) -> str | None:
    """Why ``action`` is refused to this session, as a sentence (``what`` words it); None when it is allowed."""
    what = what or ACTIONS.get(action, action)
    found = user()
    if found is not None:
        return None if found.operator else (f"{found.name} is a viewer: only an operator may {what}. "
                                            "Ask an administrator for the operator role.")
    if configured():
        return f"Sign in as an operator to {what}."
    if beyond_loopback():
        return (f"This dashboard listens on {address() or 'every network interface'}, beyond this machine, and "
                f"has no user, so nobody may {what} from it. Add an operator with `FHV_HOME="
                f"{queries.settings().home.absolute()} python -m pipeline users add NAME --role operator` "
                "and sign in, or listen on 127.0.0.1 only.")
    return None


def button(where: Any, label: str, action: str, *, disabled: bool = False, help: str | None = None,
           **options: Any) -> bool:
    """An action's button: disabled with the reason as its help when this session may not do ``action``;
    True when clicked and still allowed (the user is checked again at the click)."""
    sentence = refusal(action)
    clicked = where.button(label, disabled=disabled or bool(sentence), help=sentence or help, **options)
    return clicked and allowed(action)


def explain(*actions: str) -> None:
    """Under a page's disabled actions, one line that says why (nothing when they are allowed)."""
    what = [ACTIONS.get(action, action) for action in actions]
    sentence = refusal(actions[0], ", ".join(what[:-1]) + " or " + what[-1] if len(what) > 1 else what[0])
    if sentence:
        st.caption(f":material/lock: {sentence}")


def allowed(action: str) -> bool:
    """True when this session may do ``action``; else say why (an error on the page) and return False."""
    sentence = refusal(action)
    if sentence:
        st.error(sentence, icon=":material/lock:")
    return sentence is None
