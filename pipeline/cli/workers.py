"""``worker`` (claim and run due runs on this host) and ``workers`` (who serves the history)."""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
from typing import Any

from ..config import Settings
from ..formatting import utc_text
from ..orchestration.clock import SYSTEM_CLOCK
from ..orchestration.liveness import worker_alive
from ..store import from_db
from . import render
from .render import console
from .scheduling import _above_zero, _at_least_one, open_store

OPTIONS = (
    ("--tick", "tick", "how often ended flows are reaped and due runs claimed"),
    ("--heartbeat", "heartbeat", "how often the worker stamps its heartbeat"),
    ("--stale-after", "stale_after", "a heartbeat older than this means the worker is gone (its runs are judged)"),
    ("--cancel-grace", "cancel_grace", "SIGTERM to SIGKILL delay for a cancelled run"),
    ("--grace", "shutdown_grace", "on stop, how long running flows may finish before they are cancelled"),
    ("--retry-every", "retry_every", "a month not published yet: wait this long between attempts"),
    ("--give-up-after", "give_up_after", "a month not published yet: fail this long after the slot"),
)


def register(commands: argparse._SubParsersAction) -> None:
    from ..orchestration.worker import WorkerOptions

    defaults, seconds = WorkerOptions(), _above_zero("seconds", "5 or 0.5")
    cmd = commands.add_parser("worker", help="claim due runs of some work queues and run them on this host "
                                             "(Ctrl-C or SIGTERM stops it cleanly)")
    cmd.add_argument("--queue", dest="queues", action="append", default=[], metavar="Q",
                     help="a work queue to serve (repeat for several; default: every queue)")
    cmd.add_argument("--concurrency", type=_at_least_one("concurrency"), default=1, metavar="N",
                     help="run at most N flows at once on this worker (default 1)")
    for flag, field, text in OPTIONS:
        cmd.add_argument(flag, dest=field, type=seconds, default=getattr(defaults, field), metavar="SECONDS",
                         help=f"{text} (default {getattr(defaults, field):g} s)")
    cmd.set_defaults(handler=cmd_worker)
    listing = commands.add_parser("workers", help="list the workers of the history and whether they are alive")
    listing.add_argument("--all", action="store_true", help="also the stopped ones")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=cmd_workers)


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from ..orchestration.worker import WorkerOptions, serve

    options = WorkerOptions(**{f.name: getattr(args, f.name) for f in dataclasses.fields(WorkerOptions)})
    queues = ", ".join(args.queues) if args.queues else "every queue"
    render.err_console.print(f"Worker on {settings.history_label} ({queues}, up to {args.concurrency} flow(s) at "
                             f"once), cache {settings.cache_dir}. Ctrl-C or SIGTERM stops it (running flows get "
                             f"{options.shutdown_grace:g} s to finish).")
    serve(settings, options, queues=args.queues, concurrency=args.concurrency)
    render.err_console.print("Worker stopped.")
    return 0


def cmd_workers(args: argparse.Namespace, settings: Settings) -> int:
    store, now = open_store(settings), SYSTEM_CLOCK.now()
    rows = [{**row, "status": _status(row, now)} for row in store.workers(live_only=not args.all)]
    if args.json:
        render.print_json(rows)
        return 0
    grid = render.table("Workers", ["Worker", "Queues", "Concurrency", "Started", "Last heartbeat", "Status"])
    for row in rows:
        grid.add_row(row["id"], ", ".join(row["queues"]) or "every queue", str(row["concurrency"]),
                     utc_text(from_db(row["started_at"])), utc_text(from_db(row["heartbeat_at"])), row["status"])
    console.print(grid if rows else "No worker serves this history" + (" yet." if args.all else " now."))
    return 0


def _status(row: dict[str, Any], now: dt.datetime) -> str:
    if row["stopped_at"]:
        return "stopped"
    return "alive" if worker_alive(row, now=now) else f"gone (silent for more than {row['stale_after']:g} s)"
