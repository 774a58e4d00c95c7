"""``models ls|current|promote|rollback``: the model versions and the champion (the model in use)."""
from __future__ import annotations

import argparse
import functools
import getpass
import sys
from typing import Any

from ..config import Settings
from ..errors import NeedsConfirmation
from ..orchestration.runtime import SYSTEM_CLOCK
from ..training import acceptance, champion, in_use
from . import render
from .render import console
from .runs import open_store


def register(commands: argparse._SubParsersAction) -> None:
    group = commands.add_parser("models", help="model versions and the champion: list, show, promote, roll back"
                                ).add_subparsers(dest="models_command", required=True, metavar="ACTION")
    ls = group.add_parser("ls", help="the model versions (completed runs), newest first, the champion marked")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(handler=cmd_ls)
    current = group.add_parser("current", help="the champion: its run, months, metrics, artifacts and checksums")
    current.add_argument("--json", action="store_true")
    current.set_defaults(handler=cmd_current)
    promote = group.add_parser("promote", help="make a model version the champion")
    promote.add_argument("run_id", help="run id, a unique prefix of it, or the run's name")
    promote.add_argument("--reason", help="why (recorded with the event)")
    promote.add_argument("--yes", action="store_true",
                         help="confirm promoting a version trained on older months than the champion's")
    promote.add_argument("--json", action="store_true")
    promote.set_defaults(handler=cmd_promote)
    history = group.add_parser("history", help="the model in use on each new month: its RMSE beside the "
                                                "retrained version's, and the promotions")
    history.add_argument("--json", action="store_true")
    history.set_defaults(handler=cmd_history)
    accept = group.add_parser("accept", help="accept the data of a run a gate in block mode stopped (after a "
                                             "lasting shift): recorded, and a run of its date enqueued past the gate")
    accept.add_argument("run_id", help="the blocked run: its id, a unique prefix of it, or its name")
    accept.add_argument("--reason", required=True, help="why the data is accepted (recorded with who and when)")
    accept.add_argument("--json", action="store_true")
    accept.set_defaults(handler=cmd_accept)
    rollback = group.add_parser("rollback", help="make the previous champion the champion again")
    rollback.add_argument("--json", action="store_true")
    rollback.set_defaults(handler=cmd_rollback)


def actor() -> str:
    """Who does it from the command line: the OS user."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a uid without a name (a container)
        return "unknown"


def cmd_ls(args: argparse.Namespace, settings: Settings) -> int:
    versions = champion.versions(open_store(settings))
    if args.json:
        render.print_json(versions)
        return 0
    grid = render.table("Model versions", ["", "Name", "Id", "Run date", "Months", "Val RMSE", "Train RMSE",
                                           "Decision", "Data", "Ended"])
    for v in versions:
        grid.add_row("[bold green]★[/]" if v["champion"] else "", render.plain(v["name"]), v["run_id"][:8],
                     v["run_date"] or "-", _months(v), render.number(v["val_rmse"]),
                     render.number(v["train_rmse"]), v["decision"] or "-", _data_kind(v),
                     render.when(v["ended_at"]))
    console.print(grid if versions else "No model version yet: a completed training run is one.")
    return 0


def cmd_history(args: argparse.Namespace, settings: Settings) -> int:
    points = in_use.on_new_months(open_store(settings))
    if args.json:
        render.print_json(points)
        return 0
    grid = render.table("The model in use on each new month", ["Val month", "In use (RMSE)", "Retrained (RMSE)",
                                                                "Decision", "Run", "Data"])
    for p in points:
        grid.add_row(p["val_month"], render.number(p["in_use_rmse"]), render.number(p["retrained_rmse"]),
                     f"[bold green]{p['decision']}[/]" if p["promoted"] else p["decision"], render.plain(p["name"]),
                     _data_kind(p))
    console.print(grid if points else "No run has been judged on a new month yet.")
    if points:
        console.print(champion.RULE, soft_wrap=True, markup=False, highlight=False)
    return 0


def cmd_accept(args: argparse.Namespace, settings: Settings) -> int:
    found = acceptance.accept(open_store(settings), settings, args.run_id, actor=actor(), reason=args.reason,
                              now=SYSTEM_CLOCK.now())
    if args.json:
        render.print_json(found)
        return 0
    rerun = found["rerun"]
    console.print(f"{acceptance.said(found)} Run {rerun['name']} ({rerun['id'][:8]}) for {rerun['run_date']} is "
                  "enqueued: it passes the gates that fail on these months (each breach stays a warning), then the "
                  "promotion rule judges it.", soft_wrap=True, markup=False, highlight=False)
    return 0


def cmd_current(args: argparse.Namespace, settings: Settings) -> int:
    payload = champion.current(open_store(settings), settings, repair=True)
    if args.json:
        render.print_json(payload)
        return 0
    if payload is None:
        console.print("No champion yet: the first completed training run becomes it.")
        return 0
    _print_current(payload)
    return 0


def _print_current(payload: dict[str, Any]) -> None:
    console.print(f"[bold]Champion {render.plain(payload['name'])}[/]  {payload['run_id']}")
    console.print(f"Run date {payload['run_date']}{_months_note(payload)}")
    console.print(f"{payload['action'].capitalize()} by {render.plain(payload['by'])} at "
                  f"{render.when(payload['champion_since'])}: {render.plain(payload['reason'])}", soft_wrap=True)
    metrics = payload["metrics"]
    console.print(f"Validation RMSE {render.number(metrics.get('val_rmse'))}, training RMSE "
                  f"{render.number(metrics.get('train_rmse'))}, {metrics.get('feature_count')} one-hot features")
    grid = render.table("Artifacts", ["Name", "Size", "SHA-256", "Path"])
    for a in payload["artifacts"]:
        grid.add_row(a["name"], f"{a['size']:,} B", a["sha256"], render.plain(a["path"]))
    console.print(grid)
    folder = payload["folder"]
    note = "up to date" if folder["up_to_date"] else \
        f"[bold yellow]not up to date[/]: {render.plain(folder['repair_error'] or '')}"
    if folder["repaired"]:
        note = "[bold yellow]it did not hold the champion's files (truncated or changed)[/]: written again now"
    console.print(f"Stable copy: {render.plain(folder['path'])} ({note})")


def cmd_promote(args: argparse.Namespace, settings: Settings) -> int:
    store = open_store(settings)
    promote = functools.partial(champion.promote, store, settings, args.run_id, actor=actor(), reason=args.reason)
    try:
        event = promote(now=SYSTEM_CLOCK.now(), confirmed=args.yes)
    except NeedsConfirmation as question:
        if not _confirmed(str(question)):
            return 2
        event = promote(now=SYSTEM_CLOCK.now(), confirmed=True)
    return _print_event(args, event)


def _confirmed(question: str) -> bool:
    """Ask on a terminal; without one, say to add --yes (nothing changes)."""
    if not sys.stdin.isatty():
        print(f"{question.removesuffix('.')} with --yes.", file=sys.stderr)
        return False
    answer = input(f"{question.removesuffix(': confirm to promote it anyway.')}. Promote it anyway? [y/N] ")
    if answer.strip().lower() in ("y", "yes"):
        return True
    print("Nothing changed.", file=sys.stderr)
    return False


def cmd_rollback(args: argparse.Namespace, settings: Settings) -> int:
    event = champion.rollback(open_store(settings), settings, actor=actor(), now=SYSTEM_CLOCK.now())
    return _print_event(args, event)


def _print_event(args: argparse.Namespace, event: dict[str, Any]) -> int:
    if args.json:
        render.print_json(event)
    else:
        console.print(f"{render.plain(event['reason'])} The champion is now {render.plain(event['run_name'])} "
                      f"({event['run_id'][:8]}).", soft_wrap=True)
    return 0


# -- a training run's months and data, as the model commands show them --------------------------------------
def _months(run: dict[str, Any]) -> str:
    """'2021-06 → 2021-07': the months a model version was trained and validated on."""
    return f"{run['train_month']} → {run['val_month']}" if run.get("train_month") else "-"


def _data_kind(run: dict[str, Any]) -> str:
    if run.get("synthetic"):
        return "synthetic"
    return "real" if run.get("data_source") else "-"


def _months_note(run: dict[str, Any]) -> str:
    """': train 2021-06, validate 2021-07, real TLC data'."""
    if not run.get("train_month"):
        return ""
    data = "[bold yellow]synthetic demo data[/]" if run.get("synthetic") else "real TLC data"
    return f": train {run['train_month']}, validate {run['val_month']}, {data}"
