"""Who may do what: an optional login, two roles, and no anonymous writes beyond this machine.

- No user configured (``$FHV_HOME/users.json`` absent or empty): no login. Actions are allowed
  while the dashboard listens on loopback only (the default, 127.0.0.1); when it listens beyond
  it, every action is refused with the sentence that says how to add a user.
- Users configured: a login form first (passwords checked against their argon2id hashes by
  ``pipeline.users``). A ``viewer`` reads; an ``operator`` also triggers, backfills, cancels,
  pauses and resumes.
"""
from __future__ import annotations

import ipaddress

import streamlit as st

from pipeline import users

from . import queries

LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}
ACTIONS = {"trigger": "trigger runs", "backfill": "enqueue backfills", "cancel": "cancel runs",
           "pause": "pause or resume deployments", "promote": "promote or roll back models",
           "accept": "accept a blocked run's data"}


def users_file():
    return users.users_path(queries.settings().home)


def configured() -> bool:
    """Whether any dashboard user exists (then everyone signs in)."""
    return bool(users.load(users_file()))


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


def user() -> users.User | None:
    return st.session_state.get("user")


def gate() -> bool:
    """Show the login form when users are configured and nobody signed in; True when the page may run."""
    if not configured() or user() is not None:
        return True
    st.title("Sign in")
    st.caption("This dashboard has users: sign in with the name and password an administrator gave you.")
    with st.form("login", border=True):
        name = st.text_input("User name", key="login_name")
        password = st.text_input("Password", type="password", key="login_password")
        submitted = st.form_submit_button("Sign in", type="primary")
    if submitted:
        found = users.verify(users_file(), name.strip(), password)
        if found is None:
            st.error("Wrong user name or password.", icon=":material/lock:")
            return False
        st.session_state["user"] = found
        st.rerun()
    return False


def sidebar() -> None:
    """Who is signed in, with a Sign out button (nothing without users)."""
    found = user()
    if found is None:
        return
    st.caption(f"Signed in as **{found.name}** ({found.role})")
    if st.button("Sign out", icon=":material/logout:", key="logout"):
        st.session_state.pop("user", None)
        st.rerun()


def refusal(action: str) -> str | None:
    """Why ``action`` is refused to this session, as a sentence; None when it is allowed."""
    what = ACTIONS.get(action, action)
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


def allowed(action: str) -> bool:
    """True when this session may do ``action``; else say why (an error on the page) and return False."""
    sentence = refusal(action)
    if sentence:
        st.error(sentence, icon=":material/lock:")
    return sentence is None
