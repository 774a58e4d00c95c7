"""``score``: score the month before a run date with the champion, now, in this process, and record it."""
from __future__ import annotations

import argparse
from typing import Any

from ..config import Settings
from ..formatting import field_value
from ..orchestration.runtime import new_run_name
from ..orchestration.states import State
from ..scoring.results import saw_sentence
from . import render
from .render import console
from .runs import open_store

SUMMARY_KEYS = ("month", "output", "rows_read", "rows_scored", "rows_left_out", "rmse", "mse", "mean_predicted",
                "mean_actual", "model_version", "champion_saw_month", "drift_vs_champion")


def register(commands: argparse._SubParsersAction) -> None:
    score = commands.add_parser("score", help="score the month before the run date with the champion, now, in "
                                              "this process, and record it")
    score.add_argument("--date", help="run date YYYY-MM-DD (default: today); scores the month before it")
    score.add_argument("--data-url", help="URL template with {month}, a folder, 'tlc' or 'demo' "
                                          "(default: $FHV_DATA_URL)")
    score.add_argument("--output", help="a folder, a file path ending in .parquet, or a path template with {month} "
                                        "(default: $FHV_HOME/predictions)")
    score.add_argument("--json", action="store_true", help="print one JSON object instead of a summary")
    score.set_defaults(handler=cmd_score)


def cmd_score(args: argparse.Namespace, settings: Settings) -> int:
    from ..scoring.flow import score_now  # imports pyarrow: only for the command that scores

    store = open_store(settings)
    result = score_now(store, settings, date=args.date, data_url=args.data_url, output=args.output,
                       name=new_run_name())
    run = store.get_run(result.run_id)
    if args.json:
        render.print_json(score_summary(run))
    else:
        _print(run)
    return 0 if result.state is State.COMPLETED else 1


def score_summary(run: dict[str, Any]) -> dict[str, Any]:
    """What ``score --json`` prints: the run, its output, the rows, the model version, its RMSE and the drift."""
    metrics = run.get("metrics") or {}
    return {"run_id": run["id"], "name": run["name"], "state": run["state"], "run_date": run["run_date"],
            **{key: metrics.get(key) for key in SUMMARY_KEYS}, "month": field_value(run, "month"),  # a failed run's too
            "synthetic": bool(run.get("synthetic")), "data_source": run.get("data_source"),
            "started_at": run["started_at"], "ended_at": run["ended_at"], "error": run["error"]}


def _print(run: dict[str, Any]) -> None:
    metrics = run.get("metrics") or {}
    console.print(f"[bold]{render.plain(run['name'])}[/]  {run['id']}  {render.state_text(run['state'])}")
    if run["error"]:
        where = f" in {run['error_task']}" if run["error_task"] else ""
        console.print(f"[bold red]Failed{render.plain(where)}:[/] {render.plain(run['error'])}", soft_wrap=True)
        return
    version, left = metrics["model_version"], metrics["rows_left_out"]
    console.print(f"Scored {metrics['month']} with {render.plain(version['name'])} ({version['run_id'][:8]}, trained "
                  f"on {version['train_month']}): {metrics['rows_scored']:,} predictions in "
                  f"{render.plain(metrics['output'])}", soft_wrap=True)
    console.print(f"Left out (the course keeps trips of 1 to 60 minutes): {left['missing_times']:,} without a "
                  f"timestamp, {left['under_1_min']:,} under 1 minute, {left['over_60_min']:,} over 60 minutes.")
    console.print(f"RMSE of the champion on {metrics['month']}: {metrics['rmse']:.4f} min (MSE {metrics['mse']:.4f}).")
    if caveat := saw_sentence(version, metrics["month"], metrics.get("champion_saw_month")):
        console.print(f"[yellow]{render.plain(caveat)}[/]", soft_wrap=True)
