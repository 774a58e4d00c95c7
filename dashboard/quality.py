"""The data checks on the dashboard: a run's data report (its months' figures, drift, gate warnings)
on its page, and their trends across months on the Trends page. The figures are those the flow
recorded in the run's metrics (``data``, ``drift``, ``warnings``: ``pipeline/training/quality.py``)."""
from __future__ import annotations

from typing import Any, Iterable

import pandas as pd
import streamlit as st

from dashboard import charts, labels, queries, training_charts, training_view
from pipeline.store import Store
from pipeline.training.gates import Gates
from pipeline.training.job import FLOW_NAME

PARTS = (("train", "training"), ("val", "validation"))
COMPARISONS = (("val_vs_train", "validation vs training"), ("train_vs_champion", "training vs champion's"))
SIDES = (("pickup", "Pickup zones"), ("dropoff", "Drop-off zones"), ("duration", "Durations (1-min bins)"))
DROPS = (("missing_times", "Dropped: missing time"), ("under_1_min", "Dropped: under 1 min"),
         ("over_60_min", "Dropped: over 60 min"))


# -- frames (pure) ---------------------------------------------------------------------------------------
def month_table(data: dict[str, Any]) -> pd.DataFrame:
    """One row per month read: rows, drops by rule, missing zones, duration quantiles, distinct zones."""
    rows = []
    for part, name in PARTS:
        m = data.get(part) or {}
        dropped = m.get("dropped") or {}
        rows.append({"Month": f"{name} {m.get('month', '')}".strip(), "Rows read": labels.number(m.get("rows_read")),
                     "Rows kept": labels.number(m.get("rows_kept")),
                     **{title: labels.number(dropped.get(key)) for key, title in DROPS},
                     "Pickup zone missing": labels.share(m.get("pu_missing_share")),
                     "Drop-off zone missing": labels.share(m.get("do_missing_share")),
                     "Duration p5 / p50 / p95 (min)": " / ".join(labels.number(m.get(f"duration_p{q}"), 2)
                                                                 for q in (5, 50, 95)),
                     "Zones (pickup / drop-off)": f"{labels.number(m.get('pu_zones'))} / "
                                                  f"{labels.number(m.get('do_zones'))}"})
    return pd.DataFrame(rows)


def drift_table(drift: dict[str, Any]) -> pd.DataFrame:
    """One row per comparison and distribution: PSI and Jensen-Shannon distance."""
    rows = []
    for key, name in COMPARISONS:
        found = drift.get(key)
        if not found:
            continue
        for side, title in SIDES:
            rows.append({"Comparison": f"{name} ({found['current']} vs {found['reference']})", "Distribution": title,
                         "PSI": labels.number(found[side]["psi"]), "JS distance": labels.number(found[side]["js"])})
    return pd.DataFrame(rows, columns=["Comparison", "Distribution", "PSI", "JS distance"])


def zone_changes(drift: dict[str, Any]) -> list[str]:
    """Sentences on the zones that appeared or vanished, and how the missing-zone shares moved."""
    lines = []
    for key, name in COMPARISONS:
        found = drift.get(key)
        if not found:
            continue
        came, went = found["zones_appeared"], found["zones_vanished"]
        lines.append(f"**{name}**: pickup zones appeared {_zones(came['pickup'])}, vanished {_zones(went['pickup'])};"
                     f" drop-off zones appeared {_zones(came['dropoff'])}, vanished {_zones(went['dropoff'])}; "
                     f"missing pickup zone {100 * found['pu_missing_change']:+.2f} points, missing drop-off zone "
                     f"{100 * found['do_missing_change']:+.2f} points.")
    return lines


def _zones(zones: list[int], shown: int = 12) -> str:
    if not zones:
        return "none"
    more = f" and {len(zones) - shown} more" if len(zones) > shown else ""
    return f"{len(zones)} ({', '.join(map(str, zones[:shown]))}{more})"


def duration_shares(data: dict[str, Any]) -> pd.DataFrame:
    """Each month's kept trips by minute of duration, as shares (for ``charts.duration_shares``)."""
    frames = []
    for part, name in PARTS:
        m = data.get(part) or {}
        counts = pd.Series((m.get("hist") or {}).get("duration") or [], dtype=float)
        if counts.sum():
            frames.append(pd.DataFrame({"minute": range(1, len(counts) + 1), "month": f"{name} {m['month']}",
                                        "share": counts / counts.sum()}))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["minute", "month", "share"])


def trend_frame(rows: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """Completed runs that recorded data checks, oldest run date first: rows kept, missing shares of
    the validation month, PSI of validation against training, and how many gates warned."""
    records = []
    for run in rows:
        metrics = run.get("metrics") or {}
        data, drift = metrics.get("data") or {}, (metrics.get("drift") or {}).get("val_vs_train")
        if not (data and drift):
            continue
        records.append({"id": run["id"], "name": run["name"], "run_date": pd.Timestamp(run["run_date"]),
                        "months": training_view.months(run), "synthetic": training_view.is_synthetic(run),
                        "train_kept": data["train"]["rows_kept"], "val_kept": data["val"]["rows_kept"],
                        "pu_missing": data["val"]["pu_missing_share"], "do_missing": data["val"]["do_missing_share"],
                        **{f"psi_{side}": drift[side]["psi"] for side, _ in SIDES},
                        "warnings": len(metrics.get("warnings") or [])})
    columns = ["id", "name", "run_date", "months", "synthetic", "train_kept", "val_kept", "pu_missing", "do_missing",
               "psi_pickup", "psi_dropoff", "psi_duration", "warnings"]
    frame = pd.DataFrame.from_records(records, columns=columns)
    return frame.sort_values("run_date", kind="stable").reset_index(drop=True)


@queries._cached
def quality_history(history: Store, limit: int = 240) -> pd.DataFrame:
    """The latest ``limit`` completed runs' data checks (20 years of monthly runs; each run's metrics
    hold its months' histograms, some 16 kB, so not every run of a large history is read)."""
    return trend_frame(history.metric_history(FLOW_NAME, limit=limit))


# -- sections --------------------------------------------------------------------------------------------
def data_report(run: dict[str, Any]) -> None:
    """A run's data report (on its page, tab "Metrics and data")."""
    values = run.get("metrics") or {}
    st.subheader("Data checks", divider="gray")
    if not values.get("data"):
        st.caption("No data report: the run did not get past its data checks, or predates them."
                   if run["state"] != "COMPLETED" else "No data report: this run predates the data checks.")
        return
    for warning in values.get("warnings") or []:
        st.warning(warning, icon=":material/report:")
    if blocked(run):
        st.error(run["error"], icon=":material/block:")
    elif not values.get("warnings"):
        st.success("Every data gate passed.", icon=":material/task_alt:")
    st.table(month_table(values["data"]).set_index("Month"))
    drift = values.get("drift") or {}
    st.table(drift_table(drift).set_index(["Comparison", "Distribution"]))
    for line in zone_changes(drift):
        st.caption(line)
    if not drift.get("train_vs_champion"):
        st.caption("No champion with recorded figures when this run checked its data: no training-month drift.")
    st.plotly_chart(charts.duration_shares(duration_shares(values["data"])), config={"displayModeBar": False},
                    key="quality_durations")


def blocked(run: dict[str, Any]) -> bool:
    """Whether a data gate in ``block`` mode failed the run (its error is the gate's sentence)."""
    return run["state"] == "FAILED" and run.get("error_task") == "check_data"


def trends(real_only: bool = False) -> None:
    """Data checks across run months (on the Trends page)."""
    history = quality_history()
    if real_only:
        history = history[~history["synthetic"]]
    st.subheader("Data checks", divider="gray")
    st.plotly_chart(training_charts.drift_trends(history, limit=Gates().max_psi), key="quality_trends_chart",
                    config={"displaylogo": False, "displayModeBar": False})
    if history.empty:
        return
    table = history[["run_date", "months", "name", "train_kept", "val_kept", "pu_missing", "do_missing",
                     "psi_pickup", "psi_dropoff", "psi_duration", "warnings"]].iloc[::-1].copy()
    table["run_date"] = table["run_date"].dt.strftime("%Y-%m-%d")
    number = st.column_config.NumberColumn
    st.dataframe(table, hide_index=True, width="stretch", key="quality_trends_table", column_config={
        "run_date": "Run date", "months": "Months", "name": "Run",
        "train_kept": number("Train rows kept", format="localized"),
        "val_kept": number("Val rows kept", format="localized"),
        "pu_missing": number("Val pickup missing", format="percent"),
        "do_missing": number("Val drop-off missing", format="percent"),
        "psi_pickup": number("PSI pickup", format="%.4f"), "psi_dropoff": number("PSI drop-off", format="%.4f"),
        "psi_duration": number("PSI duration", format="%.4f"), "warnings": number("Gate warnings", format="%d")})
    st.caption(f"PSI of the validation month against the training month; the dashed line is the default gate "
               f"max_psi {Gates().max_psi:g} (a deployment may set its own).")
