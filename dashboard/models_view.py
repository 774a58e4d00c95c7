"""The champion model on the dashboard: cached reads, the Models page's sections and the promotion
section of the run page. Promote and roll back are operator actions (``access``), recorded with
the signed-in user's name."""
from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from pipeline.errors import PipelineError
from pipeline.store import Store
from pipeline.training import acceptance, champion, compare, in_use

from . import access, actions, charts, labels, queries, training_charts, training_view, widgets

DECISIONS = {"first": "first version: champion", "promoted": "promoted to champion", "kept": "champion kept",
             "not_eligible": "not eligible (synthetic data)", "older_months": "not eligible (older months)"}
SHOWN = 60  # versions on the page: five years of monthly runs
ACTION_NAMES = {"promoted": "promoted by its run", "manual": "promoted by hand", "rollback": "rolled back"}


# -- reads ------------------------------------------------------------------------------------------
@queries._cached
def versions(history: Store) -> list[dict[str, Any]]:
    """The latest SHOWN versions (each one's metrics are parsed: 60 months in about 30 ms)."""
    return champion.versions(history, limit=SHOWN)


@queries._cached
def on_new_months(history: Store) -> list[dict[str, Any]]:
    return in_use.on_new_months(history)


@queries._cached
def current(history: Store) -> dict[str, Any] | None:
    return champion.current(history, queries.settings())


@queries._cached
def events(history: Store) -> list[dict[str, Any]]:
    return history.promotion_events(flow=champion.FLOW_NAME)


@queries._cached
def side_by_side(history: Store, a: str, b: str) -> dict[str, Any]:
    return compare.compare(history, a, b)


@queries._cached
def scored(history: Store, a: str, b: str, month: str, data_url: str) -> dict[str, float]:
    """Both versions' RMSE on ``month`` of ``data_url`` (the cached file, else fetched once)."""
    return compare.score_on_month(history, queries.settings(), [history.get_run(a), history.get_run(b)], month,
                                  data_url)


def actor() -> str:
    """Who acts: the signed-in user, else this dashboard without sign-in (only on 127.0.0.1)."""
    found = access.user()
    return found.name if found is not None else "dashboard (no sign-in)"


# -- the Models page ------------------------------------------------------------------------------
def champion_section(now: dict[str, Any] | None) -> None:
    st.subheader("Champion", divider="gray")
    if now is None:
        st.info("No champion yet: the first completed training run becomes it.", icon=":material/info:")
        return
    st.markdown(f"**{now['name']}** · `{now['run_id']}` · {training_view.months(now)} · "
                f"{'synthetic demo data' if now.get('synthetic') else 'real data'}")
    metrics = now["metrics"]
    for column, (name, value) in zip(st.columns(4), (
            ("Validation RMSE (min)", labels.number(metrics.get("val_rmse"))),
            ("Training RMSE (min)", labels.number(metrics.get("train_rmse"))),
            ("One-hot features", labels.number(metrics.get("feature_count"))),
            ("Champion since", (labels.as_moment(now["champion_since"]) or queries.now()).strftime("%Y-%m-%d")))):
        with column:
            widgets.figures([(name, value, None)])
    done = f"{ACTION_NAMES.get(now['action'], now['action'])} by {now['by']}"
    said = now["reason"] if now["by"] in now["reason"] else f"{now['reason']} ({done})"
    st.caption(f"{said} · {labels.utc(now['champion_since'])}")
    folder = now["folder"]
    if folder["up_to_date"]:
        st.caption(f"Stable copy for batch jobs: {widgets.inline_code(folder['path'])} (up to date).")
        return
    st.warning(f"The stable copy {folder['path']} does not hold the champion's files (truncated, changed or "
               "missing): a batch job reading it now gets an error.", icon=":material/warning:")
    refused = access.refusal("promote")
    if st.button("Write it again from the history", icon=":material/build:", key="models_repair",
                 disabled=refused is not None, help=refused) and access.allowed("promote"):
        _repair()


def _repair() -> None:
    _act(lambda: actions.repair_current(queries.settings()),
         lambda found: f"{found['path']} holds the champion again." if found["up_to_date"] else found["repair_error"])


def rule_caption() -> None:
    st.caption(f"**The rule.** {champion.RULE}")


def watch_section(points: list[dict[str, Any]]) -> None:
    """Is the model in use getting worse? Its RMSE on each new month beside the retrained version's."""
    st.subheader("The model in use on each new month", divider="gray")
    st.plotly_chart(training_charts.model_in_use(pd.DataFrame(points)), width="stretch", key="models_in_use",
                    config={"displayModeBar": False})
    if points:
        st.caption("Each point is the latest run judged on that month: the model in use then (red) scored on the "
                   "month beside the version trained for it (blue); a star marks a promotion. "
                   "`python -m pipeline models history --json` gives the same series.")


def rollback_button(now: dict[str, Any] | None) -> None:
    if access.button(st, "Roll back to the previous champion", "promote", icon=":material/undo:",
                     key="models_rollback", disabled=now is None):
        _write(lambda: actions.rollback(queries.settings(), actor=actor()))


def versions_section(rows: list[dict[str, Any]]) -> None:
    st.subheader("Versions", divider="gray")
    if not rows:
        st.info("No model version yet: a completed training run is one.")
        return
    st.dataframe(versions_table(rows), hide_index=True, width="stretch", key="models_versions", column_config={
        "": st.column_config.TextColumn("", width=CHAMPION_MARK_WIDTH),  # "★ champion" whole, never clipped
        "val_rmse": st.column_config.NumberColumn("Val RMSE (min)", format="%.4f"),
        "champion_rmse": st.column_config.NumberColumn("Champion's RMSE then", format="%.4f"),
        "train_rmse": st.column_config.NumberColumn("Train RMSE (min)", format="%.4f")})
    if len(rows) == SHOWN:
        st.caption(f"The latest {SHOWN} versions; `python -m pipeline models ls --json` lists up to 200.")
    promote_form(rows)


CHAMPION_MARK_WIDTH = 100  # px


def versions_table(rows: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame([{
        "": "★ champion" if v["champion"] else "", "name": v["name"], "id": v["run_id"][:8],
        "months": training_view.months(v), "val_rmse": v["val_rmse"], "champion_rmse": v["champion_rmse"],
        "train_rmse": v["train_rmse"], "decision": DECISIONS.get(v["decision"], v["decision"] or "-"),
        "data": "synthetic" if v.get("synthetic") else "real", "ended": labels.utc(v["ended_at"], seconds=False),
    } for v in rows])


def promote_form(rows: list[dict[str, Any]]) -> None:
    others = [v for v in rows if not v["champion"]]
    picked_col, button_col = st.columns([4, 1], vertical_alignment="bottom")
    picked = picked_col.selectbox("Promote a version", others, format_func=version_label, key="models_pick",
                                  disabled=not others)
    older = champion.older_than_champion(_as_run(picked), _as_run(next((v for v in rows if v["champion"]), None)))
    confirmed = older is not None and st.checkbox(f"Yes, promote it: {older}.", key="models_confirm_older")
    if access.button(button_col, "Promote", "promote", icon=":material/upgrade:", key="models_promote",
                     disabled=not others):
        if older and not confirmed:
            st.warning(f"{older}: tick the box above to confirm.", icon=":material/warning:")
            return
        _write(lambda: actions.promote(queries.settings(), picked["run_id"], actor=actor(), confirmed=confirmed))


def _as_run(version: dict[str, Any] | None) -> dict[str, Any] | None:
    """A version as ``champion.older_than_champion`` reads a run (``id`` for ``run_id``)."""
    return None if version is None else {**version, "id": version["run_id"]}


def version_label(v: dict[str, Any]) -> str:
    return f"{v['name']} · {training_view.months(v)} · val RMSE {labels.number(v['val_rmse'])}"


def history_section(found: list[dict[str, Any]]) -> None:
    st.subheader("Promotion history", divider="gray")
    if not found:
        st.caption("No promotion yet.")
        return
    st.dataframe(pd.DataFrame([{
        "when (UTC)": labels.utc(e["at"]), "what": ACTION_NAMES.get(e["action"], e["action"]), "run": e["run_name"],
        "months": training_view.months(e), "by": e["actor"], "reason": e["reason"]} for e in reversed(found)]),
        hide_index=True, width="stretch", key="models_history",
        column_config={"reason": st.column_config.TextColumn("reason", width="large")})


def compare_section(rows: list[dict[str, Any]]) -> None:
    st.subheader("Compare two versions", divider="gray")
    if len(rows) < 2:
        st.caption("Two versions are needed to compare.")
        return
    first = next((i for i, v in enumerate(rows) if v["champion"]), 0)
    left, right = st.columns(2)
    a = left.selectbox("Version A", rows, index=first, format_func=version_label, key="models_a")
    b = right.selectbox("Version B", rows, index=1 if first == 0 else 0, format_func=version_label, key="models_b")
    if a["run_id"] == b["run_id"]:
        st.caption("Pick two different versions.")
        return
    both = side_by_side(a["run_id"], b["run_id"])
    figures_table(both)
    same_month(both)
    coefficients(both)


def figures_table(both: dict[str, Any]) -> None:
    names = {"a": f"A: {both['a']['name']}", "b": f"B: {both['b']['name']}"}
    frame = pd.DataFrame([{"figure": row["figure"], names["a"]: _shown(row["a"]), names["b"]: _shown(row["b"])}
                          for row in both["figures"]])
    st.table(frame.set_index("figure"))


def _shown(value: Any) -> str:
    return labels.number(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


def same_month(both: dict[str, Any]) -> None:
    a, b = both["a"], both["b"]
    found = both["same_month"]
    if found:
        st.markdown(f"**On the same month {found['month']}** ({found['how']}): A {labels.number(found['a'])}, "
                    f"B {labels.number(found['b'])} min RMSE.")
        return
    newer = max((a, b), key=lambda run: run["val_month"] or "")
    month = newer["val_month"]
    if st.button(f"Score both on {month}", icon=":material/calculate:", key="models_score",
                 help=f"Reads {month} from {training_view.data_source(newer)} (the cached file if there is one)"):
        try:
            scores = scored(a["id"], b["id"], month, newer.get("data_source"))
        except PipelineError as error:
            st.error(str(error))
            return
        st.markdown(f"**On the same month {month}:** A {labels.number(scores[a['id']])}, "
                    f"B {labels.number(scores[b['id']])} min RMSE.")


def coefficients(both: dict[str, Any]) -> None:
    weights = both["coefficients"]
    if isinstance(weights, str):
        st.warning(f"Features and coefficients cannot be compared: {weights}", icon=":material/warning:")
        return
    st.markdown(f"**Features:** A {weights['a_count']}, B {weights['b_count']}, {weights['common']} in both; "
                f"only in A: {_few(weights['only_a'])}; only in B: {_few(weights['only_b'])}.")
    st.caption("Largest coefficient changes by zone (B − A, minutes):")
    st.dataframe(pd.DataFrame(weights["changes"]), hide_index=True, width="stretch", key="models_changes",
                 column_config={k: st.column_config.NumberColumn(k, format="%.3f") for k in ("a", "b", "change")})


def _few(names: list[str], shown: int = 5) -> str:
    if not names:
        return "none"
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(f"`{n}`" for n in names[:shown]) + more


def _write(request: Any) -> None:
    _act(request, lambda event: f"{event['reason']} The champion is now {event['run_name']}.")


def _act(request: Any, said: Any) -> None:
    """Do an operator's ``request``: its sentence on the page if refused, else what ``said`` makes of its
    result as the notice of the page run again."""
    try:
        done = request()
    except PipelineError as error:
        st.error(str(error))
        return
    queries.refresh()
    widgets.notify(said(done))
    st.rerun()


# -- the run page ---------------------------------------------------------------------------------
def promotion(run: dict[str, Any]) -> None:
    """What the run decided about the champion (a small section of the run page), with the rule; for a run
    a gate blocked, the operator's way past it."""
    if acceptance.blocked(run):
        accept_form(run)
    record = (run.get("metrics") or {}).get("promotion")
    if not record:
        return
    st.markdown(f"**Champion decision:** {DECISIONS.get(record['decision'], record['decision'])}. {record['reason']}")
    held = labels.number(record["champion_rmse"]) if record.get("champion_rmse") is not None else "-"
    st.caption(f"Validation RMSE {labels.number(record['new_rmse'])} min; the champion's on the same month {held}; "
               f"tolerance {record['tolerance']:g}.")
    rule_caption()


def accept_form(run: dict[str, Any]) -> None:
    """Accept a blocked run's months (operators): recorded with who, when and why; a run of its date is
    enqueued past the gate and judged by the promotion rule."""
    found = accepted(run["id"])
    if found is not None:
        st.info(acceptance.said(found), icon=":material/verified:")
        return
    st.markdown(f"**A data gate stopped this run.** After a real and lasting shift, an operator can accept the data "
                f"of {training_view.months(run)}: a run of {run['run_date']} is then enqueued past the gate (each breach "
                "stays a warning), and later runs measure drift against the accepted month.")
    refused = access.refusal("accept")
    with st.form("accept_data", border=True):
        reason = st.text_input("Why is this data right?", key="accept_reason", disabled=refused is not None)
        pressed = st.form_submit_button("Accept the data and retrain", disabled=refused is not None,
                                        help=refused)
    if refused:
        st.caption(refused)
    if pressed and access.allowed("accept"):
        _accept(run, reason)


@queries._cached
def accepted(history: Store, run_id: str) -> dict[str, Any] | None:
    return history.acceptance(flow=champion.FLOW_NAME, blocked_run_id=run_id)


def _accept(run: dict[str, Any], reason: str) -> None:
    _act(lambda: actions.accept(queries.settings(), run["id"], actor=actor(), reason=reason),
         lambda found: f"{acceptance.said(found)} Run {found['rerun']['name']} is enqueued.")
