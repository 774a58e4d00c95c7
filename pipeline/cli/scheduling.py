"""``scheduler``, ``schedule preview``, ``deployment``, ``work-queue``, ``trigger`` and ``backfill``."""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import math
from pathlib import Path
from typing import Any, Callable

from ..config import Settings
from ..orchestration import control
from ..orchestration.deployment_files import LOAD_TIMEOUT
from ..orchestration.deployments import ensure_defaults, row_problem, schedule_of
from ..errors import ConfigError
from ..training.months import parse_date
from ..orchestration.runtime import SYSTEM_CLOCK
from ..orchestration.schedules import CronSchedule, IntervalSchedule, Schedule, real_local_time, seconds_words, zone
from ..store import Store, from_db
from . import render
from .render import console

BACKFILL_QUEUE = control.BACKFILL_QUEUE


def register(commands: argparse._SubParsersAction) -> None:
    _scheduler_command(commands)
    _schedule_commands(commands)
    _deployment_commands(commands)
    _work_queue_commands(commands)
    _enqueue_commands(commands)


UNIT_SECONDS = {"seconds": 1, "hours": 3600}
LONGEST_SECONDS = 100 * 365 * 86_400  # a span of a century is a typo, and a longer one overflows dates and sleeps
MOST = 1_000_000_000  # the largest whole number an option takes (an interval of 1e9 s is 31 years)


def _above_zero(unit: str, example: str) -> Callable[[str], float]:
    """An argparse type: a number of ``unit`` above 0 and at most 100 years, or a sentence naming the value."""
    most = LONGEST_SECONDS / UNIT_SECONDS.get(unit, 1)

    def parse(text: str) -> float:
        value = _float(text)
        if not (math.isfinite(value) and 0 < value <= most):
            raise argparse.ArgumentTypeError(f"The number of {unit} {text} is not valid; use a number above 0 and "
                                             f"at most {most:g} (100 years), like {example}.")
        return value
    return parse


def _at_least_one(what: str, unit: str = "", *, none: bool = False) -> Callable[[str], int | None]:
    """An argparse type: a whole number from 1 to MOST (or 'none' if ``none``), or a sentence naming the value."""
    def parse(text: str) -> int | None:
        if none and text.strip().lower() == "none":
            return None
        value = _float(text)
        if not (math.isfinite(value) and value.is_integer() and 1 <= value <= MOST):
            raise argparse.ArgumentTypeError(f"The {what} {text} is not valid; use a whole number{unit} of at least 1"
                                             + (" or 'none'" if none else "") + f" (and at most {MOST}).")
        return int(value)
    return parse


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


def _scheduler_command(commands: argparse._SubParsersAction) -> None:
    from ..orchestration.scheduler import SchedulerOptions

    defaults, seconds = SchedulerOptions(), _above_zero("seconds", "5 or 0.5")
    cmd = commands.add_parser("scheduler", help="run the headless scheduler (Ctrl-C or SIGTERM stops it cleanly)")
    for flag, field, text in (
            ("--tick", "tick", "how often due runs are claimed and processes checked"),
            ("--heartbeat", "heartbeat", "how often the scheduler stamps its heartbeat"),
            ("--stale-after", "stale_after", "a heartbeat older than this means its process is gone"),
            ("--late-after", "late_after", "a run not started this long after its time is LATE"),
            ("--materialise-every", "materialise_every", "how often upcoming runs are made"),
            ("--cancel-grace", "cancel_grace", "SIGTERM to SIGKILL delay for a cancelled run"),
            ("--grace", "shutdown_grace", "on stop, how long running flows may finish before they are cancelled"),
            ("--retry-every", "retry_every", "a month not published yet: wait this long between attempts"),
            ("--give-up-after", "give_up_after", "a month not published yet: fail this long after the slot")):
        cmd.add_argument(flag, dest=field, type=seconds, default=getattr(defaults, field), metavar="SECONDS",
                         help=f"{text} (default {getattr(defaults, field):g} s)")
    cmd.add_argument("--no-execute", dest="execute", action="store_false",
                     help="run no flow here: make, time and judge runs; only workers claim and run them")
    cmd.set_defaults(handler=cmd_scheduler)


def cmd_scheduler(args: argparse.Namespace, settings: Settings) -> int:
    from ..orchestration.scheduler import SchedulerOptions, serve

    names = [f.name for f in dataclasses.fields(SchedulerOptions)]
    options = SchedulerOptions(**{name: getattr(args, name) for name in names})
    label = " (generated demo data)" if settings.is_synthetic else ""
    where = "runs no flow itself (only workers do)" if not args.execute else \
        f"running flows get {options.shutdown_grace:g} s to finish"
    render.err_console.print(f"Scheduler on {settings.history_label}, data {settings.data_url}{label}; tick "
                             f"{options.tick:g} s. Ctrl-C or SIGTERM stops it ({where}).")
    serve(settings, options, execute=args.execute)
    render.err_console.print("Scheduler stopped.")
    return 0


# -- schedule preview ---------------------------------------------------------------------------

def _schedule_commands(commands: argparse._SubParsersAction) -> None:
    group = commands.add_parser("schedule", help="preview cron and interval schedules").add_subparsers(
        dest="schedule_command", required=True, metavar="ACTION")
    preview = group.add_parser("preview", help="print the next fire times, local and UTC")
    kind = preview.add_mutually_exclusive_group(required=True)
    kind.add_argument("--cron", metavar="EXPR", help="five-field cron expression, like '0 9 15 * *'")
    kind.add_argument("--interval", metavar="SECONDS", type=_at_least_one("interval", " of seconds"),
                      help="interval in whole seconds")
    preview.add_argument("--timezone", default="UTC", metavar="TZ", help="IANA time zone (default UTC)")
    preview.add_argument("--anchor", metavar="ISO", help="interval anchor (default 2020-01-01T00:00 in TZ)")
    preview.add_argument("--start", metavar="ISO", help="list fire times after this moment (default now)")
    preview.add_argument("--count", type=_at_least_one("count"), default=10, help="how many (default 10)")
    preview.add_argument("--json", action="store_true")
    preview.set_defaults(handler=cmd_preview)


MAX_PREVIEW = 1000  # fire times a preview lists at most


def cmd_preview(args: argparse.Namespace, settings: Settings) -> int:
    if args.count > MAX_PREVIEW:
        raise ConfigError(f"The count {args.count} is more fire times than a preview lists; use at most {MAX_PREVIEW}.")
    schedule = _schedule_from_args(args)
    start = parse_moment(args.start, args.timezone) if args.start else SYSTEM_CLOCK.now()
    times = _fire_times(schedule, start, args.count)
    if args.json:
        render.print_json({"schedule": schedule.to_json(), "description": schedule.describe(),
                           "dst_policy": schedule.dst_policy(),
                           "fire_times": [{"local": t.isoformat(), "utc": t.astimezone(dt.timezone.utc).isoformat()}
                                          for t in times]})
        return 0
    grid = render.table(schedule.describe(), ["#", "Local", "UTC"])
    for index, moment in enumerate(times, 1):
        grid.add_row(str(index), moment.isoformat(), moment.astimezone(dt.timezone.utc).isoformat())
    console.print(grid)
    if len(times) < args.count:
        console.print(f"Only {len(times)} fire time(s): the calendar ends with the year 9999.")
    console.print(f"Daylight saving: {schedule.dst_policy()}", soft_wrap=True)
    return 0


def _fire_times(schedule: Schedule, start: dt.datetime, count: int) -> list[dt.datetime]:
    """Up to ``count`` fire times after ``start``; fewer when the calendar (years 1 to 9999) ends first."""
    times: list[dt.datetime] = []
    try:
        for moment in schedule.iter_fire_times(start):
            times.append(moment)
            if len(times) >= count:
                break
    except (OverflowError, ValueError):  # a date past 9999-12-31 (or before 0001-01-01)
        pass
    if not times:
        raise ConfigError(f"The schedule '{schedule.describe()}' has no fire time after {start.isoformat()} "
                          "within the calendar (years 1 to 9999).")
    return times


def _schedule_from_args(args: argparse.Namespace) -> Schedule:
    if args.cron is not None:
        return CronSchedule(args.cron, args.timezone)
    if args.anchor is None:
        return IntervalSchedule(args.interval, timezone=args.timezone)
    return IntervalSchedule(args.interval, parse_moment(args.anchor, args.timezone), args.timezone)


def parse_moment(text: str, timezone: str) -> dt.datetime:
    """An ISO date or date-time; a naive one is read in ``timezone`` (in the spring-forward gap: just after it)."""
    try:
        moment = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(f"The time {text!r} is not an ISO date or date-time, like 2026-03-08T01:00.") from None
    tz = zone(timezone)
    try:
        moment = moment if moment.tzinfo else real_local_time(moment.replace(tzinfo=tz), tz)
        real_local_time(moment, tz)  # what a schedule does with it: fails at the ends of the calendar
    except OverflowError:
        raise ConfigError(f"The time {text!r} is too close to the ends of the calendar (years 1 and 9999) "
                          f"to use in {tz.key}.") from None
    return moment


# -- deployments --------------------------------------------------------------------------------

def _deployment_commands(commands: argparse._SubParsersAction) -> None:
    group = commands.add_parser("deployment", help="create, list, pause and resume deployments").add_subparsers(
        dest="deployment_command", required=True, metavar="ACTION")
    create = group.add_parser(
        "create", help="register the DeploymentSpecs a Python file defines (again: update them)",
        description="Register the DeploymentSpecs a Python file defines; running it again updates them without "
                    "duplicating their scheduled runs. A spec's active flag only sets how a new deployment starts: "
                    "once created, a deployment stays paused or active as set with 'deployment pause|resume NAME' "
                    "(or the dashboard), whatever its file says.")
    create.add_argument("file", type=Path)
    create.add_argument("--python", help="the Python interpreter (of a virtualenv or conda environment) that loads "
                                         "the file and runs its Prefect 2 flows, whatever environment their "
                                         "SubprocessFlowRunner names (default: this one, or the environment its "
                                         "SubprocessFlowRunner names)")
    create.add_argument("--timeout", type=_above_zero("seconds", "60"), default=LOAD_TIMEOUT,
                        help=f"seconds the file may take to load (default {LOAD_TIMEOUT:g})")
    create.set_defaults(handler=cmd_create)
    ls = group.add_parser("ls", help="list deployments")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(handler=cmd_deployments)
    for action, text in (("pause", "stop scheduling a deployment (drops its upcoming runs)"),
                         ("resume", "schedule a paused deployment again (from now on)")):
        sub = group.add_parser(action, help=text)
        sub.add_argument("name")
        sub.set_defaults(handler=cmd_set_active, active=action == "resume")


def open_store(settings: Settings) -> Store:
    settings.ensure_dirs()
    return Store(settings.history)


def cmd_create(args: argparse.Namespace, settings: Settings) -> int:
    store, now = open_store(settings), SYSTEM_CLOCK.now()
    for done in control.register_file(store, settings, args.file, now=now, python=args.python, timeout=args.timeout):
        row, spec = done.row, done.spec
        for note in done.notes:
            console.print(note, soft_wrap=True)
        state = "active" if row["active"] else "paused"
        console.print(f"Deployment [bold]{row['name']}[/] ({state}): {_schedule_text(row)}; "
                      f"next run {render.when(row['next_run_time'])}.")
        if row["active"] != spec.active:
            action = "resume" if spec.active else "pause"
            console.print(f"  It stays {state} although its spec says active={spec.active}: the flag only applies "
                          f"when a deployment is created; use: python -m pipeline deployment {action} {row['name']}")
    return 0


def cmd_deployments(args: argparse.Namespace, settings: Settings) -> int:
    store = open_store(settings)
    ensure_defaults(store, SYSTEM_CLOCK.now(), settings=settings)  # the flows' defaults ship with the product
    rows = [row | {"problem": row_problem(row)} for row in store.deployments()]
    if args.json:
        render.print_json(rows)
        return 0
    grid = render.table("Deployments", ["Name", "Flow", "Schedule", "Next run", "Work queue", "Tags", "Catch-up",
                                        "Status"])
    for row in rows:
        grid.add_row(*(render.plain(_cell(text, row)) for text in (
            lambda r: r["name"], lambda r: r["flow"], _schedule_text, lambda r: render.when(r["next_run_time"]),
            lambda r: r["work_queue"], lambda r: ", ".join(r["tags"]) or "-", _catchup_text)), _status_text(row))
    console.print(grid if rows else "No deployments yet. Create one with: python -m pipeline deployment create FILE.py")
    for row in rows:
        if row["last_error"]:
            console.print(f"[bold red]{render.plain(row['name'])}[/] is skipped by the scheduler since "
                          f"{render.when(row['last_error_at'])}: {render.plain(row['last_error'])}", soft_wrap=True,
                          highlight=False)
        elif row["problem"]:
            console.print(f"[bold red]error:[/] {render.plain(row['problem'])}", soft_wrap=True, highlight=False)
    for skipped in store.skipped_slots(limit=5):
        console.print(f"[yellow]Skipped slots[/] ({render.when(skipped['recorded_at'])}): {skipped['reason']}",
                      soft_wrap=True, highlight=False)
    return 0


def _cell(text: Callable[[dict[str, Any]], str], row: dict[str, Any]) -> str:
    """One cell of a deployment's row; a field that cannot be shown says so (the row's problem follows)."""
    try:
        return str(text(row))
    except Exception:  # noqa: BLE001 - a row changed by hand holds anything; its problem is listed below
        return "(unreadable)"


def _status_text(row: dict[str, Any]) -> str:
    status = "[green]active[/]" if row["active"] else "[yellow]paused[/]"
    return status + (" [bold red]error[/]" if row["last_error"] or row.get("problem") else "")


def cmd_set_active(args: argparse.Namespace, settings: Settings) -> int:
    store, now = open_store(settings), SYSTEM_CLOCK.now()
    if args.active:
        row = control.resume(store, settings, args.name, now=now)
        console.print(f"Resumed {row['name']}; next run {render.when(row['next_run_time'])}.")
    else:
        row = control.pause(store, args.name, now=now)
        console.print(f"Paused {row['name']}: it starts nothing until resumed; it holds {row['held_runs']} waiting "
                      "run(s), which keep their ids and names.")
    return 0


def _schedule_text(row: dict[str, Any]) -> str:
    schedule, after = schedule_of(row), row.get("after_deployment")
    trigger = f"after each completed run of {after}" if after else None
    if schedule is None:
        return trigger or "no schedule (manual runs only)"
    return f"{schedule.describe()}; and {trigger}" if trigger else schedule.describe()


def _catchup_text(row: dict[str, Any]) -> str:
    lateness = row.get("max_lateness")
    return row["catchup"] + (f", at most {seconds_words(lateness)} late" if lateness else "")


# -- work queues --------------------------------------------------------------------------------

def _work_queue_commands(commands: argparse._SubParsersAction) -> None:
    group = commands.add_parser("work-queue", help="list, preview and limit work queues").add_subparsers(
        dest="work_queue_command", required=True, metavar="ACTION")
    ls = group.add_parser("ls", help="list work queues with their concurrency and runs")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(handler=cmd_queues)
    preview = group.add_parser("preview", help="runs due in the next hours, late ones first")
    preview.add_argument("name", nargs="?", help="only this queue")
    preview.add_argument("--hours", type=_above_zero("hours", "24 or 0.5"), default=24.0,
                         help="how far ahead to look (default 24)")
    preview.add_argument("--json", action="store_true")
    preview.set_defaults(handler=cmd_queue_preview)
    create = group.add_parser("create", help="create a work queue (or change its limit)")
    create.add_argument("name")
    create.add_argument("--limit", type=_at_least_one("concurrency limit"),
                        help="how many of its runs may run at once (default: no limit)")
    create.set_defaults(handler=cmd_queue_create)
    limit = group.add_parser("set-limit", help="set a queue's concurrency limit ('none' removes it)")
    limit.add_argument("name")
    limit.add_argument("limit", type=_at_least_one("concurrency limit", none=True),
                       help="a whole number of at least 1, or 'none'")
    limit.set_defaults(handler=cmd_queue_limit)
    for action in ("pause", "resume"):
        sub = group.add_parser(action, help=f"{action} claiming runs from a queue")
        sub.add_argument("name")
        sub.set_defaults(handler=cmd_queue_pause, paused=action == "pause")


def cmd_queues(args: argparse.Namespace, settings: Settings) -> int:
    rows = open_store(settings).work_queues()
    if args.json:
        render.print_json(rows)
        return 0
    grid = render.table("Work queues", ["Name", "Concurrency limit", "Running", "Scheduled", "Late",
                                        "Awaiting data", "Status"])
    for q in rows:
        limit = "none" if q["concurrency_limit"] is None else str(q["concurrency_limit"])
        grid.add_row(q["name"], limit, str(q["running"]), str(q["scheduled"]), str(q["late"]), str(q["awaiting"]),
                     "[yellow]paused[/]" if q["paused"] else "[green]active[/]")
    console.print(grid)
    return 0


def cmd_queue_preview(args: argparse.Namespace, settings: Settings) -> int:
    store, now = open_store(settings), SYSTEM_CLOCK.now()
    if args.name:
        store.work_queue(args.name)
    runs = store.upcoming_runs(until=now + dt.timedelta(hours=args.hours), work_queue=args.name)
    if args.json:
        render.print_json(runs)
        return 0
    grid = render.table(f"Runs due in the next {args.hours:g} hours", ["Scheduled start", "Run id", "Name",
                                                                       "Deployment", "Work queue", "State", "Run date"])
    for run in runs:
        due = from_db(run["next_attempt_at"] or run["scheduled_time"])
        grid.add_row(render.when(due), run["id"][:8], run["name"], run["deployment"] or "-", run["work_queue"] or "-",
                     render.state_text(run["state"]) + (" (late)" if due and due < now else ""), run["run_date"] or "-")
    console.print(grid if runs else f"No runs due in the next {args.hours:g} hours.")
    return 0


def cmd_queue_create(args: argparse.Namespace, settings: Settings) -> int:
    row = control.create_work_queue(open_store(settings), args.name, limit=args.limit, now=SYSTEM_CLOCK.now())
    console.print(f"Work queue {row['name']}: concurrency limit {row['concurrency_limit'] or 'none'}.")
    return 0


def cmd_queue_limit(args: argparse.Namespace, settings: Settings) -> int:
    store = open_store(settings)
    store.work_queue(args.name)
    row = store.upsert_work_queue(args.name, concurrency_limit=args.limit, now=SYSTEM_CLOCK.now())
    console.print(f"Work queue {row['name']}: concurrency limit {row['concurrency_limit'] or 'none'}.")
    return 0


def cmd_queue_pause(args: argparse.Namespace, settings: Settings) -> int:
    row = open_store(settings).set_work_queue_paused(args.name, args.paused)
    console.print(f"Work queue {row['name']} is {'paused' if row['paused'] else 'active'}.")
    return 0


# -- trigger and backfill -----------------------------------------------------------------------

def _enqueue_commands(commands: argparse._SubParsersAction) -> None:
    trigger = commands.add_parser("trigger", help="enqueue a manual run for the scheduler")
    trigger.add_argument("--deployment", help="deployment name (default: monthly-training)")
    trigger.add_argument("--date", help="run date YYYY-MM-DD (default: today in the deployment's time zone)")
    trigger.add_argument("--data-url", help="this run's data source: a template with {month}, a folder, 'tlc' or "
                                            "'demo' (default: the deployment's)")
    trigger.add_argument("--json", action="store_true")
    trigger.set_defaults(handler=cmd_trigger)
    backfill = commands.add_parser("backfill", help="enqueue one run per scheduled date in a range")
    backfill.add_argument("--start", required=True, help="first date YYYY-MM-DD")
    backfill.add_argument("--end", required=True, help="last date YYYY-MM-DD")
    backfill.add_argument("--deployment", help="deployment name (default: monthly-training)")
    backfill.add_argument("--dry-run", action="store_true", help="show the plan, enqueue nothing")
    backfill.add_argument("--concurrency", type=_at_least_one("concurrency"),
                          help=f"run at most N at once (in the work queue '{BACKFILL_QUEUE}')")
    backfill.add_argument("--force", action="store_true", help="also enqueue dates that already have a run")
    backfill.add_argument("--json", action="store_true")
    backfill.set_defaults(handler=cmd_backfill)


def cmd_trigger(args: argparse.Namespace, settings: Settings) -> int:
    store, now = open_store(settings), SYSTEM_CLOCK.now()
    date = parse_date(args.date) if args.date else None
    parameters = {"data_url": args.data_url} if args.data_url else None
    run = control.trigger(store, settings, deployment=args.deployment, date=date, now=now, parameters=parameters)
    if args.json:
        render.print_json(run)
    else:
        held = control.held_by(store, run)
        console.print(f"Enqueued {run['name']} ({run['id'][:8]}) for {run['run_date']}{render.covers_note(run)}. "
                      + (f"{held}." if held else "The scheduler starts it."), soft_wrap=True)
    return 0


def cmd_backfill(args: argparse.Namespace, settings: Settings) -> int:
    store, now = _history(settings, dry_run=args.dry_run), SYSTEM_CLOCK.now()
    plan = control.plan_backfill(store, settings, deployment=args.deployment, start=parse_date(args.start),
                                 end=parse_date(args.end), now=now, force=args.force)
    done = None if args.dry_run else control.backfill(store, settings, plan, now=now, concurrency=args.concurrency)
    runs, taken = (done.runs, done.taken) if done else ([], [])
    if args.json:
        render.print_json({"deployment": plan.deployment, "dry_run": args.dry_run, "dates": plan.dates,
                           "skipped": [{"date": d, "reason": r} for d, r in plan.skipped],
                           "taken_meanwhile": taken,
                           "runs": [{"id": r["id"], "name": r["name"], "run_date": r["run_date"]} for r in runs]})
        return 0
    _print_plan(plan, runs, args.dry_run, taken)
    return 0


def _history(settings: Settings, *, dry_run: bool) -> Store:
    """The history; a dry run only reads it (an empty one in memory when there is none yet)."""
    if not dry_run:
        return open_store(settings)
    if settings.database_url or settings.db_path.exists():
        return Store(settings.history, readonly=True)
    return Store(":memory:")


def _print_plan(plan: Any, runs: list[dict[str, Any]], dry_run: bool, taken: list[dt.date]) -> None:
    verb = "Would enqueue" if dry_run else "Enqueued"
    grid = render.table(f"Backfill of {plan.deployment}", ["Run date", "Outcome"])
    names = {r["run_date"]: r["name"] for r in runs}
    for day in plan.dates:
        name = names.get(day.isoformat())
        outcome = "[grey50]skipped: enqueued meanwhile by another request[/]" if day in taken else \
            verb.lower() + (f" as {name}" if name else "")
        grid.add_row(day.isoformat(), outcome)
    for day, reason in plan.skipped:
        grid.add_row(day.isoformat(), f"[grey50]skipped: {reason}[/]")
    console.print(grid)
    skipped = len(plan.skipped) + len(taken)
    console.print(f"{verb} {len(plan.dates) - len(taken)} run(s); skipped {skipped}"
                  + (" (use --force to run them again)." if skipped else "."))
