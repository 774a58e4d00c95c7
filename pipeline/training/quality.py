"""The data checks of a run: each month's figures, its drift from another month, and the gates.

Everything comes from the ``MonthSummary`` the flow already built while reading (no second pass
over the file, no pandas), in numpy.

**A month's figures** (``month_figures``, in the run's metrics as ``data.train`` / ``data.val``)::

    {"month": "2021-06", "rows_read": 1150000, "rows_kept": 1121000,
     "dropped": {"missing_times": 0, "under_1_min": 12000, "over_60_min": 17000},
     "pu_missing_share": 0.83, "do_missing_share": 0.14,          # of the rows read
     "duration_p5": 3.4, "duration_p50": 13.1, "duration_p95": 41.0,  # minutes, kept trips
     "pu_zones": 261, "do_zones": 262,                            # distinct zones, rows read
     "hist": {"pickup": {"1": 120, ..., "missing": 930000},       # kept trips by zone id
              "dropoff": {...},
              "duration": [n_1, ..., n_60]}}                      # kept trips by minute

A row is dropped by the first rule that applies: a missing timestamp, then under a minute
(negative durations included), then over 60 minutes. The quantiles are those of ``np.quantile``
(linear interpolation) and exact, not binned: the summary counts kept trips by whole second and,
where a file has sub-second times, by millisecond, so for times to the second (TLC's) or to the
millisecond they agree with pandas to 1e-12; finer times count to their millisecond (within
1/60,000 of a minute).
``hist.duration[i]`` counts the kept trips of i+1 to i+2 minutes (the last bin includes 60 minutes).

**Drift** (``drift``, in ``drift.train_vs_champion`` and ``drift.val_vs_train``)::

    {"reference": "2021-05", "current": "2021-06",
     "pickup": {"psi": 0.01, "js": 0.05}, "dropoff": {...}, "duration": {...},
     "zones_appeared": {"pickup": [12], "dropoff": []},   # zone ids with trips now, none before
     "zones_vanished": {"pickup": [], "dropoff": [199]},
     "pu_missing_change": 0.004, "do_missing_change": -0.01}   # current share - reference share

PSI is ``sum((a - e) * ln(a / e))`` over the union of categories (zones with ``missing`` as one,
or the 60 duration bins), shares of a zero count taken as ``EPSILON`` (1e-4) so that a zone that
appears or vanishes counts but does not make PSI infinite. The Jensen-Shannon distance is the
square root of the JS divergence in base 2 (0: same distribution, 1: disjoint), as
``scipy.spatial.distance.jensenshannon(p, q, base=2)``; it needs no smoothing.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from ..errors import DataError
from .features import FIRST_SECOND, MonthSummary
from .gates import Gates

EPSILON = 1e-4
MISSING = "missing"
MINUTE_BINS = 60
QUANTILES = {"duration_p5": 0.05, "duration_p50": 0.5, "duration_p95": 0.95}


class GateBlocked(DataError):
    """A gate in ``block`` mode failed: the run stops before training. ``checks`` holds the months'
    figures and drift (``{"data": ..., "drift": ...}``), which the flow keeps on the FAILED run."""

    def __init__(self, sentence: str, checks: Mapping[str, Any] | None = None):
        super().__init__(sentence)
        self.checks = dict(checks or {})


# --- a month ----------------------------------------------------------------------------------------

def month_figures(summary: MonthSummary, month: str) -> dict[str, Any]:
    """The figures of a month read (see the module's doc), from its summary alone."""
    raw, kept = summary.raw_rows, summary.rows
    pu_raw, do_raw = summary.zone_counts(summary.raw_cells)
    pu_kept, do_kept = summary.zone_counts(summary.cell_trips)
    return {
        "month": month, "rows_read": raw, "rows_kept": kept, "dropped": summary.dropped_by_rule(),
        "pu_missing_share": float(pu_raw[0] / raw) if raw else 0.0,
        "do_missing_share": float(do_raw[0] / raw) if raw else 0.0,
        **{name: summary.quantile(q) if kept else None for name, q in QUANTILES.items()},
        "pu_zones": int(np.count_nonzero(pu_raw[1:])), "do_zones": int(np.count_nonzero(do_raw[1:])),
        "hist": {"pickup": zone_hist(pu_kept), "dropoff": zone_hist(do_kept),
                 "duration": minute_hist(summary.by_second)},
    }


def zone_hist(by_slot: np.ndarray) -> dict[str, int]:
    """``{zone id: trips}`` of the zones with trips, and ``missing``, from counts by slot (id + 1)."""
    slots = np.flatnonzero(by_slot)
    return {(MISSING if slot == 0 else str(slot - 1)): int(by_slot[slot]) for slot in slots}


def minute_hist(by_second: np.ndarray) -> list[int]:
    """Kept trips by minute of duration (1-2, ..., 59-60 min, 60 min exactly in the last bin)."""
    seconds = np.arange(len(by_second) - 1) + FIRST_SECOND  # by_second[1:] counts 60, 61, ... 3600 s
    minute = np.minimum((seconds - FIRST_SECOND) // 60, MINUTE_BINS - 1)
    return np.bincount(minute, weights=by_second[1:], minlength=MINUTE_BINS).astype(np.int64).tolist()


# --- two months ------------------------------------------------------------------------------------

def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index of two aligned count vectors (see the module's doc)."""
    e, a = _shares(expected), _shares(actual)
    return float(np.sum((a - e) * np.log(a / e)))


def _shares(counts: np.ndarray) -> np.ndarray:
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    shares = counts / total if total else np.zeros_like(counts)
    return np.where(shares > 0, shares, EPSILON)


def js_distance(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon distance in base 2 of two aligned count vectors."""
    p, q = np.asarray(p, np.float64), np.asarray(q, np.float64)
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2
    divergence = (_kl(p, m) + _kl(q, m)) / 2
    return float(np.sqrt(max(divergence, 0.0)))


def _kl(p: np.ndarray, m: np.ndarray) -> float:
    inside = p > 0
    return float(np.sum(p[inside] * np.log2(p[inside] / m[inside])))


def aligned(reference: Mapping[str, int], current: Mapping[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """Two ``{category: count}`` maps as count vectors over the union of their categories."""
    keys = sorted(set(reference) | set(current))
    return (np.array([reference.get(k, 0) for k in keys], np.float64),
            np.array([current.get(k, 0) for k in keys], np.float64))


def drift(reference: Mapping[str, Any], current: Mapping[str, Any]) -> dict[str, Any]:
    """How ``current``'s figures moved from ``reference``'s (both ``month_figures``)."""
    ref, cur = reference["hist"], current["hist"]
    out: dict[str, Any] = {"reference": reference["month"], "current": current["month"]}
    for side in ("pickup", "dropoff"):
        out[side] = _distances(*aligned(ref[side], cur[side]))
    out["duration"] = _distances(np.asarray(ref["duration"]), np.asarray(cur["duration"]))
    out["zones_appeared"] = {side: _zones(cur[side], ref[side]) for side in ("pickup", "dropoff")}
    out["zones_vanished"] = {side: _zones(ref[side], cur[side]) for side in ("pickup", "dropoff")}
    for side in ("pu", "do"):
        key = f"{side}_missing_share"
        out[f"{side}_missing_change"] = float(current[key] - reference[key])
    return out


def _distances(expected: np.ndarray, actual: np.ndarray) -> dict[str, float]:
    if not (expected.sum() and actual.sum()):
        return {"psi": None, "js": None}
    return {"psi": psi(expected, actual), "js": js_distance(expected, actual)}


def _zones(present: Mapping[str, int], absent_from: Mapping[str, int]) -> list[int]:
    return sorted(int(z) for z in present if z != MISSING and z not in absent_from)


# --- gates -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Breach:
    """A gate that failed: its name, the worst value, its limit, and the sentence saying so."""

    gate: str
    value: float
    limit: float
    sentence: str


COMPARISONS = {"val_vs_train": "the validation month {current} against the training month {reference}",
               "train_vs_champion": "the training month {current} against the champion's training month {reference}"}
SIDES = {"pickup": "pickup zones", "dropoff": "drop-off zones", "duration": "durations"}


def breaches(gates: Gates, data: Mapping[str, Any], drifts: Mapping[str, Any]) -> list[Breach]:
    """The gates the months fail, one ``Breach`` per gate (its worst case), in a fixed order."""
    found = [_rows_breach(gates, data), _psi_breach(gates, drifts), _missing_breach(gates, drifts)]
    return [b for b in found if b is not None]


def _rows_breach(gates: Gates, data: Mapping[str, Any]) -> Breach | None:
    month = min(data.values(), key=lambda m: m["rows_kept"])
    if month["rows_kept"] >= gates.min_rows_kept:
        return None
    return Breach("min_rows_kept", month["rows_kept"], gates.min_rows_kept,
                  f"The gate min_rows_kept failed: {month['month']} kept {month['rows_kept']:,} trips of 1 to 60 "
                  f"minutes, fewer than the limit of {gates.min_rows_kept:,}.")


def _psi_breach(gates: Gates, drifts: Mapping[str, Any]) -> Breach | None:
    cases = [(d[side]["psi"], name, side) for name, d in drifts.items() if d for side in SIDES
             if d[side]["psi"] is not None]
    if not cases:
        return None
    value, name, side = max(cases)
    if value <= gates.max_psi:
        return None
    where = COMPARISONS[name].format(**drifts[name])
    return Breach("max_psi", value, gates.max_psi,
                  f"The gate max_psi failed: the PSI of {SIDES[side]} of {where} is {value:.3f}, above the limit of "
                  f"{gates.max_psi:g}.")


def _missing_breach(gates: Gates, drifts: Mapping[str, Any]) -> Breach | None:
    cases = [(abs(d[f"{side}_missing_change"]), d[f"{side}_missing_change"], name, side)
             for name, d in drifts.items() if d for side in ("pu", "do")]
    if not cases:
        return None
    size, change, name, side = max(cases)
    if size <= gates.max_missing_change:
        return None
    where = COMPARISONS[name].format(**drifts[name])
    zone = "pickup" if side == "pu" else "drop-off"
    return Breach("max_missing_change", size, gates.max_missing_change,
                  f"The gate max_missing_change failed: the share of trips with a missing {zone} zone moved by "
                  f"{100 * change:+.1f} points in {where}, more than the limit of "
                  f"{100 * gates.max_missing_change:g} points.")


def apply_gates(gates: Gates, data: Mapping[str, Any], drifts: Mapping[str, Any],
                accepted: str | None = None) -> list[str]:
    """The warnings of the gates that failed; in ``block`` mode, GateBlocked with the first one, unless an
    operator ``accepted`` these months (a sentence): then each breach is a warning that says so."""
    found = breaches(gates, data, drifts)
    if found and gates.mode == "block" and accepted:
        return [f"{b.sentence.rstrip('.')}; passed because {accepted}" for b in found]
    if found and gates.mode == "block":
        raise GateBlocked(found[0].sentence, {"data": dict(data), "drift": dict(drifts)})
    return [b.sentence for b in found]
