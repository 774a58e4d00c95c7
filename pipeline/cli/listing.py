"""The columns of ``runs ls``, by the flows it shows, as their ``FlowEntry`` declares them.

One flow: its listed fields, one column each, and its headline metric titled by its label. Several flows: a
Flow column, what each run covers (``Train month 2021-06 · Validation month 2021-07``) and a Result column
with each run's headline, labelled (``Validation RMSE 4.1234``).
"""
from __future__ import annotations

from typing import Any, Callable

from rich.table import Table

from ..formatting import covers, field_text, field_value, headline, listed_fields, metric_text
from ..orchestration.registry import Field, FlowEntry, Metric
from . import render

Column = tuple[str, Callable[[dict[str, Any]], str]]


def runs_table(title: str, rows: list[dict[str, Any]]) -> Table:
    """The runs ``rows`` as a table whose flow columns fit the flows among them."""
    entries = {row["flow"]: render.entry_of(row) for row in rows}
    columns = _several_flows(entries) if len(entries) > 1 else _one_flow(next(iter(entries.values()), None))
    grid = render.table(title, [name for name, _ in columns])
    for row in rows:
        grid.add_row(*(cell(row) for _, cell in columns))
    return grid


def _one_flow(entry: FlowEntry | None) -> list[Column]:
    fields = [(f.label, _field_cell(f)) for f in listed_fields(entry)]
    metric = entry.metrics[0] if entry and entry.metrics else None
    result = [(metric.label, _metric_cell(metric))] if metric else []
    return [*_run_columns(), *fields, *_timing_columns(), *result]


def _several_flows(entries: dict[str, FlowEntry | None]) -> list[Column]:
    flow: Column = ("Flow", lambda row: render.plain(row["flow"]))
    covered: Column = ("Covers", lambda row: render.plain(covers(entries[row["flow"]], row)) or "-")
    result: Column = ("Result", lambda row: render.plain(headline(entries[row["flow"]], row)) or "-")
    name, run_id, *rest = _run_columns()
    return [name, run_id, flow, *rest, covered, *_timing_columns(), result]


def _run_columns() -> list[Column]:
    return [("Name", lambda row: render.plain(row["name"])), ("Id", lambda row: row["id"][:8]),
            ("State", lambda row: render.state_text(row["state"])), ("Run date", lambda row: row["run_date"] or "-")]


def _timing_columns() -> list[Column]:
    return [("Started / due", lambda row: render.when(row["started_at"] or row["scheduled_time"])),
            ("Duration", lambda row: render.duration(row["started_at"], row["ended_at"]))]


def _field_cell(field: Field) -> Callable[[dict[str, Any]], str]:
    return lambda row: render.plain(field_text(field, field_value(row, field.name))) or "-"


def _metric_cell(metric: Metric) -> Callable[[dict[str, Any]], str]:
    return lambda row: metric_text(metric, (row.get("metrics") or {}).get(metric.key)) or "-"
