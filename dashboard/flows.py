"""Which flow a page shows: the flow picker of Overview, Runs, Trends and Trigger, and each flow's entry.

The choice is kept in the address (``?flow=<name>``, so a link names it) and in the session (so it holds
from page to page); without one, a page shows the first flow with runs. Runs may show every flow at once.
"""
from __future__ import annotations

import streamlit as st

from pipeline.orchestration.registry import FlowEntry, flow_entries, flow_entry

from . import labels, queries

ALL = "all"  # the choice of every flow (Runs), as the address spells it
KEY = "flow"  # the session's choice, shared by the pages


def entries() -> list[FlowEntry]:
    """The flows a user can pick: those registered in this process, in their order (none named by a file)."""
    return [entry for entry in flow_entries() if ":" not in entry.name]


def default() -> str | None:
    """The first flow with runs, else the first flow."""
    names = [entry.name for entry in entries()]
    with_runs = queries.flows_with_runs(tuple(names))
    return next((name for name in names if name in with_runs), names[0] if names else None)


def pick(page: str, *, allow_all: bool = False) -> FlowEntry | None:
    """The flow picker of ``app_pages/<page>.py``: the chosen flow's entry, or None for every flow (only with
    ``allow_all``). The choices are links that open the page again with ``?flow=`` (page links, drawn at once:
    no widget to load), the chosen one a badge."""
    options = ([ALL] if allow_all else []) + [entry.name for entry in entries()]
    if not options:
        return None
    asked = st.query_params.get("flow") or st.session_state.get(KEY)
    name = asked if asked in options else default() or options[0]
    _remember(name)
    with st.container(horizontal=True, vertical_alignment="center", gap="medium", key=f"flow_pick_{page}"):
        st.markdown(f"Flow: &nbsp; :blue-badge[{label(name)}]")
        for other in (option for option in options if option != name):
            st.page_link(f"app_pages/{page}.py", label=label(other), query_params={"flow": other},
                         icon=":material/swap_horiz:", help=f"Show {label(other).lower()} on this page")
    return None if name == ALL else flow_entry(name)


def _remember(name: str) -> None:
    """Keep the choice for the other pages (the session) and in the address (a link to this page names it)."""
    st.session_state[KEY] = name
    if st.query_params.get("flow") != name:
        st.query_params["flow"] = name


def label(name: str) -> str:
    return "All flows" if name == ALL else labels.entry_of(name).display_name


def chosen() -> FlowEntry | None:
    """The flow the session chose last (for parts outside the pages, such as the sidebar); else the default."""
    name = st.session_state.get(KEY)
    name = name if name in {entry.name for entry in entries()} else default()
    return flow_entry(name) if name else None
