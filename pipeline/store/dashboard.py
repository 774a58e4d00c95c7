"""Reads the dashboard needs beyond the run and scheduling reads."""
from __future__ import annotations

import datetime as dt
import re
from typing import Any, Callable, Iterable

from . import sql
from .base import to_db
from .parts import StoreParts
from .runs import _run_filters
from .sql import epoch_days, fragment, json_array_values, json_get, json_text, json_true
from .transitions import LIVE, WAITING


class DashboardStore(StoreParts):
    """Dashboard reads (mixed into ``Store``)."""

    get_run: Callable[[str], dict[str, Any]]  # from RunStore

    # -- dashboard reads -------------------------------------------------------------
    def run_timeline(self, *, limit: int = 2000, **filters: Any) -> list[dict[str, Any]]:
        """Started runs (of ``flow=``, or all), newest first, with only the columns the runs-over-time chart needs."""
        where, params = _run_filters(**filters)
        started = "r.started_at IS NOT NULL"
        where = f"{where} AND {started}" if where else f"WHERE {started}"
        return self._all(
            "SELECT r.id, r.name, r.flow, r.state, r.run_date, r.fields, r.started_at, "
            "r.ended_at FROM flow_runs r LEFT JOIN deployments d ON d.id = r.deployment_id "
            f"{where} ORDER BY r.started_at DESC NULLS LAST LIMIT :limit", {**params, "limit": limit})

    def task_counts(self, run_ids: Iterable[str]) -> dict[str, int]:
        """How many task runs each of these flow runs has (attempts and not-run tasks included)."""
        ids, params = sql.in_list("run", run_ids)
        if not params:
            return {}
        rows = self.conn.execute(
            f"SELECT flow_run_id, COUNT(*) FROM task_runs WHERE flow_run_id IN ({ids}) GROUP BY flow_run_id",
            params).fetchall()
        return {run_id: count for run_id, count in rows}

    def run_with_deployment(self, run_id: str) -> dict[str, Any]:
        """One run with the name of its deployment (None for a manual run)."""
        run = self.get_run(run_id)
        row = self.conn.execute("SELECT name FROM deployments WHERE id = :id",
                                {"id": run.get("deployment_id")}).fetchone()
        return {**run, "deployment": row[0] if row else None}

    def flag_counts(self, flow: str, field: str) -> tuple[int, int]:
        """(runs whose flag field ``field`` is set, all runs) among the completed runs of ``flow``."""
        row = self.conn.execute(
            f"SELECT COUNT(CASE WHEN {_flag('r', field, self.dialect)} THEN 1 END), COUNT(*) FROM flow_runs r "
            "WHERE r.flow = :flow AND r.state = 'COMPLETED'", {"flow": flow}).fetchone()
        return row[0], row[1]

    def latest_run(self, *, now: dt.datetime, flow: str | None = None) -> dict[str, Any] | None:
        """The run (of ``flow``, or of any) created last among those due by ``now`` (upcoming schedule slots
        left out), with its deployment's name: the run a user just triggered, whatever its state now."""
        where, params = ("AND r.flow = :flow ", {"flow": flow}) if flow else ("", {})
        return self._one(
            "SELECT r.*, d.name AS deployment FROM flow_runs r LEFT JOIN deployments d ON d.id = r.deployment_id "
            f"WHERE COALESCE(r.scheduled_time, r.created_at) <= :now {where}ORDER BY r.created_at DESC LIMIT 1",
            {"now": to_db(now), **params})

    _OVERDUE = ("FROM flow_runs r LEFT JOIN deployments d ON d.id = r.deployment_id "
                f"WHERE r.state IN {WAITING} "
                "AND COALESCE(r.next_attempt_at, r.scheduled_time) <= :now")

    def overdue_runs(self, *, now: dt.datetime, limit: int = 20) -> list[dict[str, Any]]:
        """Waiting runs whose time (or next attempt) has passed, oldest first, with their deployment's name."""
        return self._all(f"SELECT r.*, d.name AS deployment {self._OVERDUE} "
                         "ORDER BY COALESCE(r.next_attempt_at, r.scheduled_time) NULLS FIRST LIMIT :limit",
                         {"now": to_db(now), "limit": limit})

    def count_overdue_runs(self, *, now: dt.datetime) -> int:
        return self.conn.execute(f"SELECT COUNT(*) {self._OVERDUE}", {"now": to_db(now)}).fetchone()[0]

    def count_task_runs(self) -> int:
        """Every task run in the history (attempts and not-run tasks included)."""
        return self.conn.execute("SELECT COUNT(*) FROM task_runs", {}).fetchone()[0]

    def log_level_counts(self, run_id: str) -> dict[str, int]:
        rows = self.conn.execute("SELECT level, COUNT(*) FROM logs WHERE flow_run_id = :run_id GROUP BY level",
                                 {"run_id": run_id}).fetchall()
        return {level: count for level, count in rows}

    # -- the runs list: one page of rows, filtered and sorted in SQL --------------------
    def run_list(self, *, limit: int = 50, offset: int = 0, sort: str = "newest", metric: str | None = None,
                 metrics: Iterable[str] = (), **filters: Any) -> list[dict[str, Any]]:
        """One page of the runs list with only the columns it draws: of the metrics blob, only the keys
        ``metrics`` (and ``metric``, the one ``sort`` 'metric_desc'/'metric_asc' orders by) are read, in SQL;
        ``filters``: see ``_list_filters`` (``flow=`` one flow's runs).

        The page's ids are chosen first; only its rows' metrics are read (on PostgreSQL each read
        parses the JSON, so reading them for every run before the LIMIT would cost a parse a run)."""
        where, params = _list_filters(self.dialect, **filters)
        order = f"{_sort(sort, metric, self.dialect)}, r.id"
        keys = tuple(dict.fromkeys([*metrics, *([metric] if metric else [])]))
        columns = _metric_columns("r", keys, self.dialect)
        rows = self._all(
            f"SELECT r.id, r.name, r.flow, r.state, r.run_date, r.fields, r.trigger, r.scheduled_time, "
            f"r.next_attempt_at, r.started_at, r.ended_at, r.error, r.error_task, r.state_message, r.late_reason, "
            f"r.deployment_id, r.work_queue, r.created_at, d.name AS deployment{columns} "
            f"FROM (SELECT r.id AS page_id {_LIST_FROM} {where} ORDER BY {order} LIMIT :limit OFFSET :offset) page "
            f"JOIN flow_runs r ON r.id = page.page_id LEFT JOIN deployments d ON d.id = r.deployment_id "
            f"ORDER BY {order}", {**params, "limit": limit, "offset": offset})
        return [_with_metrics(row, keys) for row in rows]

    def count_run_list(self, **filters: Any) -> int:
        where, params = _list_filters(self.dialect, **filters)
        return self.conn.execute(f"SELECT COUNT(*) {_LIST_FROM} {where}", params).fetchone()[0]

    def run_list_points(self, *, limit: int = 1000, **filters: Any) -> list[dict[str, Any]]:
        """Started runs matching the list's filters, newest first, with only what the chart draws."""
        where, params = _list_filters(self.dialect, **filters)
        started = "r.started_at IS NOT NULL"
        where = f"{where} AND {started}" if where else f"WHERE {started}"
        return self._all(
            "SELECT r.id, r.name, r.flow, r.state, r.run_date, r.fields, r.started_at, r.ended_at "
            f"{_LIST_FROM} {where} ORDER BY r.started_at DESC NULLS LAST LIMIT :limit", {**params, "limit": limit})

    def cancellable_ids(self, **filters: Any) -> list[str]:
        """The ids of the waiting or running runs matching the list's filters (to cancel them together)."""
        where, params = _list_filters(self.dialect, **filters)
        alive = f"r.state IN {LIVE}"
        where = f"{where} AND {alive}" if where else f"WHERE {alive}"
        return [row[0] for row in self.conn.execute(f"SELECT r.id {_LIST_FROM} {where}", params).fetchall()]

    def backfill_batch(self, run_id: str) -> list[dict[str, Any]]:
        """The runs one backfill request enqueued together with ``run_id`` (same deployment, same
        request time), oldest run date first; empty for a run that no backfill made."""
        return self._all(
            "SELECT b.id, b.name, b.state, b.run_date FROM flow_runs r JOIN flow_runs b "
            "ON b.trigger = 'backfill' AND b.created_at = r.created_at "
            "AND b.deployment_id IS NOT DISTINCT FROM r.deployment_id "
            "WHERE r.id = :run_id AND r.trigger = 'backfill' ORDER BY b.run_date NULLS FIRST", {"run_id": run_id})

    def tags_in_use(self) -> list[str]:
        """Every tag some deployment carries, sorted."""
        tags = fragment(json_array_values("d.tags"), self.dialect)
        rows = self.conn.execute(f"SELECT DISTINCT json_each.value FROM deployments d, {tags} "
                                 "ORDER BY json_each.value NULLS FIRST", {}).fetchall()
        return [row[0] for row in rows]

    def index_fields(self, entries: Iterable[Any]) -> list[str]:
        """An index on each field the flows ``entries`` declare ``indexed`` (their runs are looked up by it), made
        once, on (flow, the field): the names made. No DDL when they exist (a user may lack CREATE)."""
        wanted = {f"flow_runs_field_{_key(f.name)}": f.name for entry in entries for f in entry.fields if f.indexed}
        if not wanted or set(wanted) <= self.conn.index_names():
            return []
        with self.atomic() as conn:
            conn.serialize("field indexes")  # processes opening the history at once: one creates them
            missing = sorted(set(wanted) - conn.index_names())
            for index in missing:
                conn.execute(f"CREATE INDEX IF NOT EXISTS {index} ON flow_runs(flow, "
                             f"({_value('', wanted[index], conn.dialect)}))", {})
        return missing

    # -- trends: one row per value of a field (its latest completed run), aggregated in SQL ---------
    def trend_points(self, flow: str, metric: str, *, by: str | None = None, keys: Iterable[str] = (),
                     without: str | None = None, limit: int = 240) -> list[dict[str, Any]]:
        """The completed runs of ``flow`` that have ``metric``, oldest run date first: per value of the field
        ``by`` its latest run (``runs``: how many completed runs that value had), or every run when ``by`` is
        None; with their fields and the metric keys ``metric`` and ``keys`` (top-level and under ``metrics``).
        ``without``: leave out the runs whose flag field of that name is set."""
        # Each run's value of ``by`` is read once (a run without one is its own group, left out below); only the
        # chosen rows' metrics are read.
        group = _value("c", by, self.dialect) if by else "c.id"
        unflagged = f"AND NOT ({_flag('c', without, self.dialect)}) " if without else ""
        keys = tuple(dict.fromkeys([metric, *keys]))
        columns = _metric_columns("r", keys, self.dialect)
        rows = self._all(
            f"WITH ranked AS (SELECT c.id, ROW_NUMBER() OVER (PARTITION BY {group} ORDER BY c.ended_at DESC NULLS LAST) "
            f"AS position, COUNT(*) OVER (PARTITION BY {group}) AS runs FROM flow_runs c "
            f"WHERE c.flow = :flow AND c.state = 'COMPLETED' {unflagged}) "
            f"SELECT r.id, r.name, r.run_date, r.ended_at, r.fields, k.runs{columns} "
            "FROM ranked k JOIN flow_runs r ON r.id = k.id WHERE k.position = 1 "
            "ORDER BY r.run_date DESC NULLS LAST, r.ended_at DESC NULLS LAST LIMIT :limit",
            {"flow": flow, "limit": limit})
        points = [_with_metrics(row, keys) for row in rows[::-1]]
        return [{**{k: v for k, v in p["metrics"].items() if k not in p}, **p} for p in points
                if p["metrics"].get(metric) is not None and (by is None or p.get(by) is not None)]
    # (end of dashboard reads)


_LIST_FROM = "FROM flow_runs r LEFT JOIN deployments d ON d.id = r.deployment_id"
_MOMENT = "COALESCE(r.started_at, r.scheduled_time, r.created_at)"
SORTS = {
    "newest": f"{_MOMENT} DESC", "oldest": f"{_MOMENT} ASC",
    "run_date_desc": f"r.run_date DESC NULLS LAST, {_MOMENT} DESC",
    "run_date_asc": f"r.run_date ASC NULLS FIRST, {_MOMENT} ASC",
    "metric_desc": "{metric} DESC NULLS LAST, " + f"{_MOMENT} DESC",
    "metric_asc": "{metric} ASC NULLS LAST, " + f"{_MOMENT} DESC",
    "duration_desc": "{ended} - {started} DESC NULLS LAST, " + f"{_MOMENT} DESC",
    "name": "r.name ASC",
}
_KEY = re.compile(r"\w+")


def _key(name: str) -> str:
    """A field or metric name, checked before it goes into SQL (a JSON path): letters, digits, underscores."""
    if not isinstance(name, str) or not _KEY.fullmatch(name):
        raise ValueError(f"{name!r} is not a field or metric name (letters, digits and underscores).")
    return name


def _flag(alias: str, name: str, dialect: str) -> str:
    """Whether a run's flag field is set, in SQL (``alias`` the flow_runs table's)."""
    return fragment(json_true(f"{alias}.fields", _key(name)), dialect)


def _value(alias: str, name: str, dialect: str) -> str:
    """A run's field as text (what runs are grouped and looked up by): exactly the expression of the field's
    index (``index_fields``; ``alias`` empty there), or the index is not used."""
    return fragment(json_text(f"{alias}.fields" if alias else "fields", _key(name)), dialect)


def _metric(alias: str, key: str, dialect: str) -> str:
    return fragment(json_get(f"{alias}.metrics", _key(key)), dialect)


def _sort(sort: str, metric: str | None, dialect: str) -> str:
    """The ORDER BY of a sort; the metric sorts need the ``metric`` they order by."""
    if sort.startswith("metric_") and not metric:
        raise ValueError(f"The sort {sort!r} needs the metric it orders by (metric=...).")
    return SORTS[sort].format(metric=_metric("r", metric, dialect) if metric else "",
                              ended=fragment(epoch_days("r.ended_at"), dialect),
                              started=fragment(epoch_days("r.started_at"), dialect))


def _metric_columns(alias: str, keys: Iterable[str], dialect: str) -> str:
    return "".join(f", {_metric(alias, key, dialect)} AS m_{index}" for index, key in enumerate(keys))


def _with_metrics(row: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """A row with the metrics it read put back under ``metrics`` (as a run row has them)."""
    metrics = {key: row.pop(f"m_{index}") for index, key in enumerate(keys)}
    row["metrics"] = {k: v for k, v in metrics.items() if v is not None}
    return row


def _list_filters(dialect: str, *, flow: str | None = None, states: Iterable[str] | None = None,
                  deployment: str | None = None, triggers: Iterable[str] | None = None, tag: str | None = None,
                  run_date_from: dt.date | None = None, run_date_to: dt.date | None = None,
                  since: dt.datetime | None = None, until: dt.datetime | None = None,
                  search: str | None = None) -> tuple[str, dict[str, Any]]:
    """The WHERE clause of the runs list and its params: a flow, states, deployment, triggers, a deployment
    tag, a range of run dates, a range of start (or due) times, and a name, id or run date search."""
    clauses, params = [], {}

    def add(clause: str, **values: Any) -> None:
        clauses.append(clause)
        params.update(values)

    if flow:
        add("r.flow = :flow", flow=flow)
    for column, name, values in (("r.state", "state", states), ("r.trigger", "trigger", triggers)):
        binds, chosen = sql.in_list(name, values or ())
        if chosen:
            add(f"{column} IN ({binds})", **chosen)
    if deployment:
        add("d.name = :deployment", deployment=deployment)
    if tag:
        add(f"EXISTS (SELECT 1 FROM {fragment(json_array_values('d.tags'), dialect)} WHERE value = :tag)", tag=tag)
    if run_date_from:
        add("r.run_date >= :run_date_from", run_date_from=run_date_from.isoformat())
    if run_date_to:
        add("r.run_date <= :run_date_to", run_date_to=run_date_to.isoformat())
    if since:
        add(f"{_MOMENT} >= :since", since=to_db(since))
    if until:
        add(f"{_MOMENT} < :until", until=to_db(until))
    if search:
        add("(r.name LIKE :search OR r.id LIKE :search_start OR r.run_date LIKE :search)",
            search=f"%{search}%", search_start=f"{search}%")
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", params

