"""``run`` and ``runs ls|show|cancel``: run the flow now and read the history."""
from __future__ import annotations

import argparse
from typing import Any

from ..config import Settings
from ..errors import ConfigError
from ..formatting import field_text, field_value
from ..orchestration.registry import flow_entry
from ..orchestration.runtime import SYSTEM_CLOCK, new_run_name
from ..orchestration.states import State
from ..store import Store
from ..store.interfaces import DashboardHistory
from . import listing, render
from .render import console


def register(commands: argparse._SubParsersAction) -> None:
    run = commands.add_parser("run", help="run the training flow now, in this process, and record it")
    run.add_argument("--date", help="run date YYYY-MM-DD (default: today); trains on D-2 months, validates on D-1")
    run.add_argument("--data-url", help="URL template with {month}, a folder, 'tlc' or 'demo' (default: $FHV_DATA_URL)")
    run.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    run.set_defaults(handler=cmd_run)

    group = commands.add_parser("runs", help="list, show and cancel flow runs").add_subparsers(
        dest="runs_command", required=True, metavar="ACTION")
    ls = group.add_parser("ls", help="list flow runs, newest first")
    ls.add_argument("--flow", help="only the runs of this flow (default: every flow's)")
    ls.add_argument("--state", action="append", type=_state, help="only runs in this state (repeatable)")
    ls.add_argument("--limit", type=_positive, default=20, help="at most N runs (default 20)")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(handler=cmd_ls)
    show = group.add_parser("show", help="one run with its task runs, artifacts and logs")
    show.add_argument("run_id", help="run id, a unique prefix of it, or the run's name")
    show.add_argument("--json", action="store_true")
    show.set_defaults(handler=cmd_show)
    cancel = group.add_parser("cancel", help="cancel a scheduled or running run")
    cancel.add_argument("run_id")
    cancel.set_defaults(handler=cmd_cancel)


def _state(text: str) -> str:
    try:
        return State(text.upper()).value
    except ValueError:
        names = ", ".join(s.value for s in State)
        raise argparse.ArgumentTypeError(f"{text!r} is not a state; use one of {names}") from None


MOST_RUNS = 1_000_000  # the largest --limit: more than any history holds, and within SQLite's integers


def _positive(text: str) -> int:
    """An argparse type: a whole number from 1 to MOST_RUNS, or a sentence naming the value."""
    digits = text.strip()
    if not (digits.isascii() and digits.isdigit() and 1 <= int(digits) <= MOST_RUNS):
        raise argparse.ArgumentTypeError(f"The limit {text!r} is not valid; use a whole number from 1 to "
                                         f"{MOST_RUNS:,}.")
    return int(digits)


def open_store(settings: Settings) -> Store:
    settings.ensure_dirs()
    return Store(settings.history)


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from ..training.flow import run_now  # imports pyarrow and the model: only for the commands that train

    from ..orchestration import notify

    notify.settings_targets(settings)  # a bad FHV_NOTIFY is refused before the run, not after it
    store = open_store(settings)
    notify.note_targets(store, settings, SYSTEM_CLOCK.now())  # a target new now gets this run's events
    result = run_now(store, settings, date=args.date, data_url=args.data_url, name=new_run_name())
    notify.after_run(store, settings)  # the run's final state is recorded: telling of it never changes it
    run = store.get_run(result.run_id)
    if args.json:
        render.print_json(run_summary(store, run))
    else:
        _print_run(store, run)
    return 0 if result.state is State.COMPLETED else 1


# Results a flow may report besides its numbers (training's data checks and champion decision): top-level keys of
# ``run --json`` and ``runs show --json`` when the run has them, as before the flows were generic.
RESULT_KEYS = ("data", "drift", "warnings", "promotion")


def run_summary(store: DashboardHistory, run: dict[str, Any]) -> dict[str, Any]:
    """A run as ``run --json`` and ``runs show --json`` give it: its own columns, its flow's fields and numbers,
    and the results it reported beside them."""
    metrics, fields = run.get("metrics") or {}, flow_fields(run)
    return {
        **_identity(run), **fields, "fields": fields, **numbers(run),
        "started_at": run["started_at"], "ended_at": run["ended_at"], "error": run["error"],
        "artifacts": [{k: a[k] for k in ("name", "path", "sha256", "size")} for a in store.artifacts(run["id"])],
        **{key: metrics[key] for key in RESULT_KEYS if key in metrics},
        **links(store, run),
    }


def _identity(run: dict[str, Any]) -> dict[str, Any]:
    """The keys every run has in the JSON of ``run``, ``runs ls`` and ``runs show``: its id, name, flow, state, date
    and deployment (None for a manual run)."""
    return {"run_id": run["id"], "id": run["id"], "name": run["name"], "flow": run["flow"], "state": run["state"],
            "run_date": run["run_date"], "deployment": run.get("deployment")}


def flow_fields(run: dict[str, Any]) -> dict[str, Any]:
    """The fields the run's flow declares (a flag as true or false, a missing one as None); an unknown
    flow's run: the fields it has."""
    entry = render.entry_of(run)
    if entry is None:
        return dict(run.get("fields") or {})
    return {f.name: bool(run.get(f.name)) if f.kind == "flag" else run.get(f.name) for f in entry.fields}


def numbers(run: dict[str, Any]) -> dict[str, Any]:
    """The run's metrics its flow declares (None when it has none), then every other number it reported."""
    metrics, entry = run.get("metrics") or {}, render.entry_of(run)
    declared = {m.key: metrics.get(m.key) for m in entry.metrics} if entry else {}
    return declared | {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def source(run: dict[str, Any]) -> str:
    """Where the run's data came from, shortened: its flow's field of kind ``url``, if it has one; else ''."""
    entry = render.entry_of(run)
    field = next((f for f in entry.fields if f.kind == "url"), None) if entry else None
    return field_text(field, field_value(run, field.name)) if field else ""


def links(store: DashboardHistory, run: dict[str, Any]) -> dict[str, Any]:
    """What triggered the run (another deployment's completed run) and the runs its completion triggered."""
    upstream = None
    if run.get("triggered_by"):
        found = store.run_with_deployment(run["triggered_by"])
        upstream = {k: found[k] for k in ("id", "name", "deployment", "state", "run_date")}
    return {"trigger": run.get("trigger"), "triggered_by": upstream, "triggered": store.followups(run["id"])}


def cmd_ls(args: argparse.Namespace, settings: Settings) -> int:
    if args.flow:
        flow_entry(args.flow)  # an unknown flow: ConfigError's sentence lists the flows there are
    store = open_store(settings)
    rows = store.runs(states=args.state, limit=args.limit, flow=args.flow)
    if args.json:
        render.print_json([_list_item(r) for r in rows])
    elif rows:
        title = f"Runs of {render.plain(args.flow)} in" if args.flow else "Flow runs in"
        console.print(listing.runs_table(f"{title} {render.plain(settings.history_label)}", rows))
    else:
        console.print(f"No runs of {render.plain(args.flow)} yet." if args.flow else
                      "No runs yet. Start one with: python -m pipeline run --date 2021-08-15")
    return 0


def _list_item(run: dict[str, Any]) -> dict[str, Any]:
    keys = ("trigger", "scheduled_time", "started_at", "ended_at", "error")
    fields = flow_fields(run)
    return {**_identity(run), **{k: run.get(k) for k in keys}, **fields, "fields": fields, **numbers(run)}


def cmd_show(args: argparse.Namespace, settings: Settings) -> int:
    store = open_store(settings)
    run = store.run_with_deployment(args.run_id)
    if args.json:
        payload = run_summary(store, run) | {"parameters": run["parameters"], "metrics": run["metrics"],
                                             "task_runs": store.task_runs(run["id"]), "logs": store.logs(run["id"])}
        render.print_json(payload)
    else:
        _print_run(store, run, with_logs=True)
    return 0


def cmd_cancel(args: argparse.Namespace, settings: Settings) -> int:
    from ..orchestration import control  # (its deployments and schedules: only for this command)

    store = open_store(settings)
    run = control.cancel(store, args.run_id, now=SYSTEM_CLOCK.now())
    if run["state"] == State.CANCELLED:
        console.print(f"Cancelled {render.plain(run['name'])} ({run['id'][:8]}).")
    else:
        console.print(f"Cancel requested for {render.plain(run['name'])} ({run['id'][:8]}); the scheduler stops it "
                      "shortly.")
    return 0


def _print_run(store: DashboardHistory, run: dict[str, Any], *, with_logs: bool = False) -> None:
    metrics = run.get("metrics") or {}
    console.print(f"[bold]{render.plain(run['name'])}[/]  {run['id']}  {render.state_text(run['state'])}")
    console.print(f"Run date {run['run_date'] or '-'}{render.covers_note(run)}"
                  + (f" ({render.plain(source(run))})" if source(run) else ""))
    if run["error"]:
        where = f" in {run['error_task']}" if run["error_task"] else ""
        console.print(f"[bold red]Failed{render.plain(where)}:[/] {render.plain(run['error'])}", soft_wrap=True)
    results = _results_table(run)
    if results is not None:  # a run a data gate blocked has its data checks only
        console.print(results)
    for warning in metrics.get("warnings") or []:  # the data checks that failed in warn mode
        console.print(f"[bold yellow]Warning:[/] {render.plain(warning)}", soft_wrap=True)
    if metrics.get("promotion"):  # what the run decided about the champion (pipeline/training/champion.py)
        promotion = metrics["promotion"]
        console.print(f"[bold]Champion:[/] {promotion['decision']}. {render.plain(promotion['reason'])}", soft_wrap=True)
    for line in link_lines(links(store, run)):
        console.print(line, soft_wrap=True, markup=False)
    console.print(_tasks_table(store.task_runs(run["id"])))
    artifacts = store.artifacts(run["id"])
    if artifacts:
        grid = render.table("Artifacts", ["Name", "Size", "SHA-256", "Path"])
        for a in artifacts:
            grid.add_row(render.plain(a["name"]), f"{a['size']:,} B", a["sha256"], render.plain(a["path"]))
        console.print(grid)
    if with_logs:
        for line in store.logs(run["id"]):
            console.print(f"{render.when(line['ts'])} {line['level']:<7} {line['task'] or '-':<16} {line['message']}",
                          markup=False, soft_wrap=True)


def _results_table(run: dict[str, Any]) -> Any:
    """The run's results as its flow presents them (the run page shows the same lines), or None without any."""
    try:
        lines = flow_entry(run["flow"]).present(run)
    except ConfigError:  # a flow this process does not load (a user's flow file)
        return None
    if not lines:
        return None
    grid = render.table("Results", ["", ""])
    for label, text in lines:
        grid.add_row(render.plain(label), render.plain(text))
    return grid


def _tasks_table(task_runs: list[dict[str, Any]]) -> Any:
    grid = render.table("Task runs", ["Task", "Attempt", "State", "Started", "Duration", "Error"])
    for t in task_runs:
        grid.add_row(t["task"], str(t["attempt"]), render.state_text(t["state"]), render.when(t["started_at"]),
                     render.duration(t["started_at"], t["ended_at"]), render.plain(t["error"] or ""))
    return grid


def link_lines(found: dict[str, Any]) -> list[str]:
    """'Triggered by the completion of ...' and 'Its completion triggered ...', as runs show prints them."""
    lines = []
    upstream = found["triggered_by"]
    if upstream:
        lines.append(f"Triggered by the completion of {upstream['name']} ({upstream['id'][:8]}) of "
                     f"{upstream['deployment'] or 'no deployment'}.")
    for run in found["triggered"]:
        lines.append(f"Its completion triggered {run['name']} ({run['id'][:8]}) of {run['deployment']}: {run['state']}.")
    return lines
