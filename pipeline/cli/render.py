"""Formatting shared by the CLI commands: rich console, states in colour, times with zones."""
from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.errors import MarkupError
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from ..errors import ConfigError
from ..formatting import covers, duration_text, number  # noqa: F401  (number: used by the commands)
from ..orchestration.registry import FlowEntry, flow_entry
from ..orchestration.states import State
from ..store import from_db

STATE_STYLES = {
    State.COMPLETED: "bold green", State.FAILED: "bold red", State.CRASHED: "bold magenta",
    State.CANCELLED: "grey50", State.SCHEDULED: "dark_orange", State.LATE: "bold yellow",
    State.AWAITING_RETRY: "yellow", State.PENDING: "cyan", State.RUNNING: "bold blue",
    State.NOT_RUN: "grey50",
}

class SafeConsole(Console):
    """A console that prints text whose markup is broken as it is, rather than raise.

    Commands escape what they did not write (``plain``); this is the net for a path or a name with
    '[/]' in it that one of them forgot: it shows without colours instead of a traceback.
    """

    def render_str(self, text: str, **options: Any) -> Text:
        try:
            return super().render_str(text, **options)
        except MarkupError:
            return super().render_str(text, **{**options, "markup": False})


def _console(stderr: bool = False) -> Console:
    """A terminal gets its own width; a pipe or a file gets wide tables rather than cut ones."""
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream is not None and stream.isatty() else 160  # None: closed (`>&-`)
    return SafeConsole(stderr=stderr, highlight=False, width=width)


def plain(value: Any) -> str:
    """A value shown as it is (a path, a URL, an error): its '[' never starts a colour."""
    return escape(str(value))


console = _console()
err_console = _console(stderr=True)


def state_text(state: str) -> str:
    style = STATE_STYLES.get(State(state), "")
    return f"[{style}]{State(state).label}[/]"


def when(text: str | None) -> str:
    moment = from_db(text) if isinstance(text, str) else text
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "-"


def duration(start: str | None, end: str | None) -> str:
    begin, finish = from_db(start), from_db(end)
    if not begin or not finish:
        return "-"
    return duration_text((finish - begin).total_seconds())


def table(title: str | None, columns: list[str]) -> Table:
    grid = Table(title=title, title_justify="left", header_style="bold")
    for column in columns:
        grid.add_column(column)
    return grid


def print_json(payload: Any) -> None:
    sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")


def entry_of(run: dict[str, Any]) -> FlowEntry | None:
    """The entry of a run's flow; None for a flow this process does not load (a user's flow file)."""
    try:
        return flow_entry(run["flow"])
    except ConfigError:
        return None


def covers_note(run: dict[str, Any]) -> str:
    """': Train month 2021-06 · Validation month 2021-07': what a run covers, by its flow's listed fields;
    '' for a flow without any."""
    shown = covers(entry_of(run), run)
    return f": {plain(shown)}" if shown else ""
