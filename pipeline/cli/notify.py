"""``notify test`` and ``notifications ls``: try every notification target, read what was sent."""
from __future__ import annotations

import argparse
from typing import Any

from ..config import Settings
from ..errors import ConfigError
from ..orchestration.runtime import SYSTEM_CLOCK
from . import render
from .render import console
from .runs import _positive, open_store

PROMISE = ("Each target receives the events that happen from when it was first configured (the first since "
           "{since}): failed, crashed, late, data-check warnings and blocks, gave up, promoted, rolled back; the "
           "history before that is never replayed. Delivery is at least once: a message repeated after a crash "
           "carries the same event id, for a receiver to deduplicate.")
OUTCOME_STYLES = {"sent": "bold green", "failed": "bold red", "timeout": "bold magenta", "dropped": "grey50"}
STATE_STYLES = {"SENT": "bold green", "PENDING": "yellow", "FAILED": "bold red"}


def register(commands: argparse._SubParsersAction) -> None:
    group = commands.add_parser("notify", help="notification targets (FHV_NOTIFY, a deployment's notify)") \
        .add_subparsers(dest="notify_command", required=True, metavar="ACTION")
    test = group.add_parser("test", help="send a test message to every configured target and say what happened")
    test.add_argument("--json", action="store_true")
    test.set_defaults(handler=cmd_test)

    listing = commands.add_parser("notifications", help="the notifications sent or being sent") \
        .add_subparsers(dest="notifications_command", required=True, metavar="ACTION")
    ls = listing.add_parser("ls", help="notifications, newest first, with every delivery attempt")
    ls.add_argument("--run", help="only this run's (its id, a unique prefix of it, or its name)")
    ls.add_argument("--limit", type=_positive, default=20, help="at most N notifications (default 20)")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(handler=cmd_ls)


def cmd_test(args: argparse.Namespace, settings: Settings) -> int:
    from ..orchestration import notify

    store = open_store(settings)
    targets = notify.Targets.load(store, settings)
    if not targets:
        raise ConfigError("No notification target is configured: set FHV_NOTIFY to one or more Apprise URLs "
                          "(like json://host/path or slack://...), or give a deployment notify=[...].")
    since = notify.note_targets(store, settings, SYSTEM_CLOCK.now())
    show = None if args.json else _print_result
    results = notify.send_test(store, settings, on_result=show)
    if args.json:
        render.print_json([{"target": item.label, "outcome": result.outcome, "detail": result.detail,
                            "receives_events_from": since.get(item.key)} for item, result in results])
    else:
        sent = sum(result.outcome == "sent" for _, result in results)
        console.print(f"{sent} of {len(results)} target(s) took the test message.")
        console.print(PROMISE.format(since=render.when(min(since.values(), default=None))), soft_wrap=True,
                      markup=False, highlight=False)
    return 0 if all(result.outcome == "sent" for _, result in results) else 1


def _print_result(item: Any, result: Any) -> None:
    style = OUTCOME_STYLES.get(result.outcome, "")
    detail = f": {render.plain(result.detail)}" if result.detail else ""
    console.print(f"[{style}]{result.outcome:<7}[/] {render.plain(item.label)}{detail}", soft_wrap=True)


def cmd_ls(args: argparse.Namespace, settings: Settings) -> int:
    store = open_store(settings)
    run_id = store.get_run(args.run)["id"] if args.run else None
    rows = store.notifications(run_id=run_id, limit=args.limit)
    if args.json:
        render.print_json(rows)
        return 0
    if not rows:
        console.print("No notifications yet." if not run_id else "No notifications for this run.")
        return 0
    grid = render.table("Notifications", ["Event", "Run", "Target", "State", "Attempts", "Last attempt"])
    for row in rows:
        grid.add_row(row["event"], render.plain(row["run_name"] or "-"), render.plain(row["target"]),
                     f"[{STATE_STYLES.get(row['state'], '')}]{row['state'].title()}[/]", str(row["attempts"]),
                     _last_attempt(row))
    console.print(grid)
    return 0


def _last_attempt(row: dict[str, Any]) -> str:
    if not row["attempts_made"]:
        return f"due {render.when(row['next_attempt_at'])}"
    last = row["attempts_made"][-1]
    detail = f": {last['detail']}" if last["detail"] else ""
    then = f"; next {render.when(row['next_attempt_at'])}" if row["state"] == "PENDING" else ""
    return render.plain(f"{last['outcome']} {render.when(last['ended_at'])}{detail}{then}")
