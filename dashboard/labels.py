"""How values are written in the dashboard: times with their zone, durations, states, months.

Pure functions (no ``st.*``), so the pages, the charts and the tests share one wording.
Every time shown carries its zone: ``UTC`` or the schedule's zone, named.
"""
from __future__ import annotations

import datetime as dt
import os
import re
import shlex
import sys
from pathlib import Path
from typing import Any, Mapping
from zoneinfo import ZoneInfo

from pipeline.formatting import duration_text as seconds_text
from pipeline.formatting import number  # noqa: F401  (number: shared with the CLI)
from pipeline.formatting import covers, field_text, field_value, headline, metric_text, source_label  # noqa: F401
from pipeline.config import Settings
from pipeline.orchestration.registry import Field, FlowEntry, flow_entries
from pipeline.orchestration.states import WAITING_STATES, State
from pipeline.store import from_db

UTC = dt.timezone.utc
REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_STALE_AFTER_S = 60.0  # SchedulerOptions.stale_after's default: for a row that did not record one
WAITING = frozenset(s.value for s in WAITING_STATES)

# One colour per state, used by the charts and the badges (Scheduled is orange as in Prefect).
STATE_COLORS = {
    "COMPLETED": "#16a34a", "FAILED": "#dc2626", "CRASHED": "#c026d3", "CANCELLED": "#6b7280",
    "SCHEDULED": "#f59e0b", "LATE": "#b45309", "AWAITING_RETRY": "#eab308", "PENDING": "#0891b2",
    "RUNNING": "#2563eb", "NOT_RUN": "#cbd5e1",
}
# A Scheduled run that is due but not started has a status of its own: it waits for a free slot in
# its work queue, or a paused queue or deployment holds it. Neither is Late (the scheduler could not start it).
STATUS_COLORS = {**STATE_COLORS, "WAITING": "#0ea5e9", "HELD": "#94a3b8"}
STATUS_LABELS = {"WAITING": "Waiting", "HELD": "Held"}
NO_BREAK = str.maketrans({" ": "\u00a0", "-": "-\u2060"})  # no-break space; a hyphen, then a word joiner
TIME_COLON = re.compile(r"(?<=\d):(?=\d)")
# The named colours of st.badge / Markdown badges closest to STATE_COLORS.
BADGE_COLORS = {
    "COMPLETED": "green", "FAILED": "red", "CRASHED": "violet", "CANCELLED": "gray",
    "SCHEDULED": "orange", "LATE": "orange", "AWAITING_RETRY": "yellow", "PENDING": "blue",
    "RUNNING": "blue", "NOT_RUN": "gray",
}
STATE_ICONS = {
    "COMPLETED": ":material/check_circle:", "FAILED": ":material/error:", "CRASHED": ":material/dangerous:",
    "CANCELLED": ":material/cancel:", "SCHEDULED": ":material/schedule:", "LATE": ":material/running_with_errors:",
    "AWAITING_RETRY": ":material/hourglass_top:", "PENDING": ":material/pending:",
    "RUNNING": ":material/sync:", "NOT_RUN": ":material/block:",
}
RUN_STATES = [s.value for s in State if s is not State.NOT_RUN]


def state_label(state: str) -> str:
    return STATUS_LABELS.get(state) or State(state).label


def status(run: dict[str, Any]) -> str:
    """The state to show: WAITING or HELD for a Scheduled run that waits for its queue or is held
    (its ``late_reason`` says which), else the run's state."""
    state = run.get("state") or "SCHEDULED"
    note = (run.get("late_reason") or "").lower()
    if state in ("SCHEDULED", "LATE") and note.startswith("held"):
        return "HELD"
    if state == "SCHEDULED" and note.startswith("waiting"):
        return "WAITING"
    return state


def hold(run: dict[str, Any], paused_deployments: set[str], paused_queues: set[str]) -> dict[str, Any]:
    """A waiting run held now by a paused deployment or work queue, with that as its reason (the
    scheduler writes it only once the run is due); a "held" reason that no longer holds is dropped."""
    if run.get("state") not in WAITING:
        return run
    if run.get("deployment") in paused_deployments:
        return {**run, "late_reason": f"Held: deployment {run['deployment']} is paused"}
    if run.get("work_queue") in paused_queues:
        return {**run, "late_reason": f"Held: work queue {run['work_queue']} is paused"}
    if (run.get("late_reason") or "").lower().startswith("held"):
        return {**run, "late_reason": None}
    return run


def is_held(run: dict[str, Any]) -> bool:
    """A waiting run that a paused deployment or work queue holds now (see ``hold``)."""
    return run.get("state") in WAITING and (run.get("late_reason") or "").startswith("Held:")


def badge(state: str) -> str:
    """A coloured Markdown badge: ``:green-badge[:material/check_circle: Completed]``."""
    return f":{BADGE_COLORS[state]}-badge[{STATE_ICONS[state]} {state_label(state)}]"


def run_badge(run: dict[str, Any]) -> str:
    """The badge of a run's shown status: a Scheduled run waiting for its queue reads Waiting, a held one Held."""
    shown = status(run)
    if shown in STATUS_LABELS:
        icon = ":material/hourglass_empty:" if shown == "WAITING" else ":material/pause_circle:"
        return f":{'blue' if shown == 'WAITING' else 'gray'}-badge[{icon} {state_label(shown)}]"
    return badge(shown)


def due_time(run: dict[str, Any]) -> str | dt.datetime | None:
    """When a waiting run may start: an Awaiting Retry run's next attempt, else its scheduled time."""
    if run.get("state") == "AWAITING_RETRY" and run.get("next_attempt_at"):
        return run["next_attempt_at"]
    return run.get("scheduled_time")


def as_moment(value: str | dt.datetime | None) -> dt.datetime | None:
    return from_db(value) if isinstance(value, str) else value


def utc(value: str | dt.datetime | None, *, seconds: bool = True) -> str:
    """``2026-11-25 13:11:24 UTC``; ``-`` when there is no time."""
    moment = as_moment(value)
    if moment is None:
        return "-"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC" if seconds else "%Y-%m-%d %H:%M UTC")


def utc_ms(value: str | dt.datetime | None) -> str:
    """``2026-11-25 13:11:24.042`` (UTC, milliseconds), for log lines; blank without a time."""
    moment = as_moment(value)
    return "" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def in_zone(value: str | dt.datetime | None, zone: str | None) -> str:
    """``2026-12-15 09:00 EST (America/New_York)``; falls back to UTC without a zone."""
    moment = as_moment(value)
    if moment is None:
        return "-"
    if not zone or zone == "UTC":
        return utc(moment, seconds=False)
    local = moment.astimezone(ZoneInfo(zone))
    return f"{local.strftime('%Y-%m-%d %H:%M %Z')} ({zone})"


def today_in(now: dt.datetime, zone: str) -> dt.date:
    """The calendar date at ``now`` in ``zone``."""
    return now.astimezone(ZoneInfo(zone)).date()


def duration(start: str | dt.datetime | None, end: str | dt.datetime | None) -> str:
    seconds = duration_seconds(start, end)
    return "-" if seconds is None else seconds_text(seconds)


def duration_seconds(start: str | dt.datetime | None, end: str | dt.datetime | None) -> float | None:
    begin, finish = as_moment(start), as_moment(end)
    if begin is None or finish is None:
        return None
    return max((finish - begin).total_seconds(), 0.0)


def countdown(target: str | dt.datetime | None, now: dt.datetime) -> str:
    """``in 3 d 04 h 12 min``, ``in 42 s``, or ``overdue by 5 min``."""
    moment = as_moment(target)
    if moment is None:
        return "-"
    seconds = (moment - now).total_seconds()
    text = span(abs(seconds))
    return f"in {text}" if seconds >= 0 else f"overdue by {text}"


def span(seconds: float) -> str:
    """A long span in words: ``3 d 04 h 12 min``, ``12 min 05 s``, ``42 s``."""
    whole = int(seconds)
    days, rest = divmod(whole, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours:02d} h {minutes:02d} min"
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def nowrap(*parts: str) -> str:
    """Parts of a Markdown line joined by `` · ``, each never broken inside (a date, a month range or a field
    wraps whole; the line wraps after a `` · ``, a part's own included): no-break spaces and a word joiner after
    each hyphen, no HTML (a Markdown text with HTML makes the browser load an HTML parser, ~190 KB of script,
    before the text shows)."""
    return "\u00a0· ".join(piece.translate(NO_BREAK) for part in parts for piece in part.split(" · "))


def markdown_times(text: str) -> str:
    """``text`` for Markdown with the colons of its times escaped (``13\\:11\\:24`` shows as ``13:11:24``).
    Streamlit's browser code takes any ``:11:`` for an emoji code and loads its emoji table (~260 KB of
    script) before the text shows; an escaped colon reads the same and loads nothing."""
    return TIME_COLON.sub(r"\\:", text)


def reason(run: dict[str, Any], *, now: dt.datetime | None = None, overdue_note: str | None = None) -> str:
    """Why a run is where it is, for its state: a waiting run's late reason (why it waits), a
    finished run's error or message. A late reason never outlives the wait: a run that started
    shows none, whatever an older scheduler left in its row.

    ``overdue_note`` is the sentence for a waiting run past due while no scheduler is alive
    (``overdue_reason``); it wins over what was recorded, since nothing will start the run.
    """
    if is_held(run):
        return run["late_reason"]  # not overdue: nothing may start it until it is resumed
    if overdue_note and now is not None and is_overdue(run, now):
        return overdue_note
    if run.get("state") in WAITING:
        return run.get("late_reason") or run.get("error") or run.get("state_message") or ""
    if run.get("state") == "COMPLETED":
        return ""
    text = run.get("error") or run.get("state_message") or ""
    where = run.get("error_task")
    if run.get("error") and where and where not in text:
        text = f"{where}: {text}"
    return text


def is_overdue(run: dict[str, Any], now: dt.datetime) -> bool:
    """A waiting run (Scheduled, Late, Awaiting retry) whose time or next attempt has passed."""
    due = as_moment(run.get("next_attempt_at") or run.get("scheduled_time"))
    return run.get("state") in WAITING and due is not None and due <= now


def overdue_reason(command: str, *, markdown: bool = False) -> str:
    """Why a past-due run waits while no scheduler is alive (only a scheduler marks runs Late).

    Plain text for table cells; ``markdown=True`` puts the command in a code span.
    """
    shown = f"`{command}`" if markdown else command
    return f"overdue: no scheduler alive (start it with {shown})"


def scheduler_command(settings: Settings, *, root: Path = REPO_ROOT, executable: str = sys.executable,
                      environ: Mapping[str, str] | None = None) -> str:
    """The exact shell command that starts a scheduler on this history with this data.

    ``cd <repo> && FHV_HOME=<abs home> FHV_DATA_URL=<url> .venv/bin/python -m pipeline scheduler``:
    the repository's virtualenv python when this process runs in it, else ``python``; the
    solver and download timeout are named only when they differ from the defaults, and this process's
    FHV_FLOWS and PYTHONPATH (``environ``) when set, so that the scheduler registers and imports its flows.
    """
    defaults = Settings(home=settings.home)
    env = {"FHV_HOME": str(settings.home.absolute()), "FHV_DATA_URL": settings.data_url}
    if settings.database_url:  # the history on PostgreSQL; its password stays in ~/.pgpass or PGPASSWORD
        env["FHV_DATABASE_URL"] = re.sub(r"^(\w+://[^:/@]*):[^@/]*@", r"\1@", settings.database_url)
    if settings.solver != defaults.solver:
        env["FHV_SOLVER"] = settings.solver
    if settings.download_timeout != defaults.download_timeout:
        env["FHV_DOWNLOAD_TIMEOUT"] = f"{settings.download_timeout:g}"
    env.update(_flow_environment(os.environ if environ is None else environ))
    assignments = " ".join(f"{name}={shlex.quote(value)}" for name, value in env.items())
    return f"cd {shlex.quote(str(root))} && {assignments} {_python(root, executable)} -m pipeline scheduler"


def _flow_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """FHV_FLOWS and PYTHONPATH as set here, its folders made absolute (the command changes folder first)."""
    found = {"FHV_FLOWS": environ.get("FHV_FLOWS", "").strip()}
    folders = [str(Path(folder).absolute()) for folder in environ.get("PYTHONPATH", "").split(os.pathsep) if folder]
    found["PYTHONPATH"] = os.pathsep.join(folders)
    return {name: value for name, value in found.items() if value}


def _python(root: Path, executable: str) -> str:
    """``.venv/bin/python`` when ``executable`` is the repository's virtualenv python, else ``python``."""
    path = Path(executable).absolute()
    venv_bin = root / ".venv" / "bin"
    if executable and venv_bin.is_dir() and path.parent.resolve() == venv_bin.resolve():
        return shlex.quote(str(Path(".venv", "bin", path.name)))
    return "python"


def share(value: float | None) -> str:
    """A share as a percent, the one format of every page (``83.53%``, as tables' ``percent`` columns and charts)."""
    return "-" if value is None else f"{value:.2%}"


# -- a flow's fields and metrics, as its FlowEntry declares them ------------------------------------------
def entry_of(name: str | None) -> FlowEntry | None:
    """The entry of a run's flow; a bare one (its name only) for a flow this process has not registered (a
    user's flow file is never loaded to show its runs)."""
    if not name:
        return None
    known = next((entry for entry in flow_entries() if entry.name == name), None)
    return known or FlowEntry(name=name, execute="", run_fields=lambda parameters, settings: {})


def flagged(entry: FlowEntry | None, run: dict[str, Any]) -> list[Field]:
    """The flag fields set on a run: what its metrics say it ran on, else what it was made with."""
    metrics = run.get("metrics") or {}
    return [f for f in (entry.fields if entry else ()) if f.kind == "flag"
            and (metrics[f.name] if f.name in metrics else field_value(run, f.name))]


def scheduler_state(status: dict[str, Any] | None, now: dt.datetime) -> tuple[bool, str]:
    """Whether a scheduler is alive, and a sentence.

    Alive: not stopped, and a heartbeat within the ``stale_after`` the scheduler recorded in its
    row (the same limit it applies to flow processes), or 60 s when the row has none.
    """
    if not status or not status.get("heartbeat_at"):
        return False, "No scheduler has ever run on this history."
    beat = as_moment(status["heartbeat_at"])
    age = (now - beat).total_seconds()
    if status.get("stopped_at"):
        return False, f"The scheduler stopped at {utc(status['stopped_at'])}."
    if age > stale_after(status):
        return False, f"The scheduler's last heartbeat was {span(age)} ago ({utc(beat)}): it is not running."
    where = f"pid {status.get('pid')} on {status.get('hostname')}"
    return True, f"Scheduler alive ({where}), last heartbeat {span(max(age, 0))} ago."


def stale_after(status: dict[str, Any]) -> float:
    """How old the scheduler's heartbeat may be before it counts as gone (its own setting)."""
    recorded = status.get("stale_after")
    return float(recorded) if recorded else DEFAULT_STALE_AFTER_S


def deployment(dep: dict[str, Any]) -> dict[str, Any]:
    """A deployment row plus its schedule in words (zone included), its zone and DST policy."""
    from pipeline.orchestration.deployments import schedule_of

    try:
        schedule = schedule_of(dep)
    except Exception as error:  # noqa: BLE001 - a stored spec that no longer loads is shown, not raised
        return {**dep, "schedule_text": f"The stored schedule does not load: {error}", "timezone": None,
                "dst_policy": "-", "schedule_expr": str(dep.get("schedule") or "-")}
    if schedule is None:
        return {**dep, "schedule_text": "No schedule: runs only when triggered", "timezone": None,
                "dst_policy": "-", "schedule_expr": "-"}
    expr = getattr(schedule, "expr", None) or f"every {schedule.to_json().get('interval')} s"
    return {**dep, "schedule_text": schedule.describe(), "timezone": schedule.timezone,
            "dst_policy": schedule.dst_policy(), "schedule_expr": expr}


# -- deployments the scheduler skips, slots it never made ------------------------------------
def deployment_error(dep: dict[str, Any]) -> str | None:
    """Why the scheduler skips a deployment, and since when (UTC); None while it serves it.

    ``**monthly-fhv** is skipped by the scheduler since 2026-01-02 03:04:05 UTC: materialise: …``
    """
    if not dep.get("last_error"):
        return None
    return (f"**{dep['name']}** is skipped by the scheduler since {utc(dep.get('last_error_at'))}: "
            f"{dep['last_error']}")


def skipped_deployments(names: list[str]) -> str:
    """``1 deployment is skipped by the scheduler: monthly-fhv`` (``2 deployments are …: a, b``)."""
    verb = "deployment is" if len(names) == 1 else "deployments are"
    return f"{len(names)} {verb} skipped by the scheduler: {', '.join(names)}"


def plural(count: int, noun: str) -> str:
    """``1 run``, ``7 runs``, ``1,200 runs``."""
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def how_many(count: int, at_least: bool = False) -> str:
    """``12``, ``at least 100,000`` (a count that stopped at its limit)."""
    return f"at least {count:,}" if at_least else f"{count:,}"


def slot_count(count: int, at_least: bool = False) -> str:
    """``1 slot``, ``12 slots``, ``at least 100,000 slots``."""
    return f"{how_many(count, at_least)} slot{'' if count == 1 else 's'}"


def skipped_slots_note(count: int, at_least: bool = False) -> str:
    """What a deployment's skipped-slot total means, for its card."""
    return (f"{slot_count(count, at_least)} of this deployment passed during a downtime and "
            f"{'was' if count == 1 and not at_least else 'were'} never made into runs (catch-up makes only the "
            "latest missed slots): see *Slots skipped after a downtime* below.")
