"""A scoring run's results, typed: what ``scoring/flow.py`` records in a completed run's metrics, and the one
presenter of them (``present``) that ``runs show`` and the run's dashboard page both print."""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Mapping

from ..formatting import number

# Why the course's scoring steps leave a trip out (``MonthSummary.dropped_by_rule``), in words.
LEFT_OUT = {"missing_times": "missing a timestamp", "under_1_min": "under 1 minute", "over_60_min": "over 60 minutes"}
SAW = {"train": "trained", "validation": "validated"}  # how the champion saw the month it scores


def saw_month(version: Mapping[str, Any], month: str) -> str | None:
    """Whether the champion (its ``model_version``) was trained ("train") or validated ("validation") on
    ``month``, or neither (None): an RMSE on a month it saw is no out-of-sample error."""
    if version.get("train_month") == month:
        return "train"
    return "validation" if version.get("val_month") == month else None


def saw_sentence(version: Mapping[str, Any], month: str, saw: str | None) -> str | None:
    """The one sentence that says so, or None when the champion did not see the month."""
    if saw not in SAW:
        return None
    name = f"{version.get('name', '?')} ({str(version.get('run_id', ''))[:8]})"
    return (f"The champion {name} was {SAW[saw]} on {month}, the month scored: its RMSE on the month is not an "
            "out-of-sample error.")


@dataclass(frozen=True)
class ScoringResults:
    """The numbers a completed scoring run reports: the month scored, its rows, the champion's error on it."""

    rows_scored: int
    month: str | None = None
    rows_read: int | None = None
    rows_left_out: dict[str, int] = field(default_factory=dict)
    rmse: float | None = None
    mse: float | None = None
    mean_predicted: float | None = None
    mean_actual: float | None = None
    output: str | None = None
    model_version: dict[str, Any] = field(default_factory=dict)
    distribution: dict[str, list[int]] = field(default_factory=dict)  # trips by minute: predicted and actual
    champion_saw_month: str | None = None  # "train" | "validation": the champion was fitted or chosen on the month

    @classmethod
    def of(cls, metrics: Mapping[str, Any] | None) -> "ScoringResults | None":
        """The results in a run's metrics; None when it has none (it did not complete)."""
        metrics = metrics or {}
        if metrics.get("rows_scored") is None:
            return None
        found = {f.name: metrics[f.name] for f in fields(cls) if metrics.get(f.name) is not None}
        return cls(**found)

    def left_out(self) -> str:
        """``12 missing a timestamp · 20 under 1 minute · 8 over 60 minutes`` (``none`` when nothing was)."""
        parts = [f"{number(self.rows_left_out[key])} {words}" for key, words in LEFT_OUT.items()
                 if self.rows_left_out.get(key)]
        return " · ".join(parts) or "none"

    def model(self) -> str:
        version = self.model_version
        if not version:
            return "-"
        trained = f", trained on {version['train_month']}" if version.get("train_month") else ""
        return f"{version.get('name', '?')} ({str(version.get('run_id', ''))[:8]}){trained}"

    def caveat(self) -> str | None:
        """The sentence saying the champion saw the month scored (``saw_sentence``), or None."""
        return saw_sentence(self.model_version, self.month or "?", self.champion_saw_month)

    def _seen(self) -> str:
        saw = SAW.get(self.champion_saw_month or "")
        return f" (not out-of-sample: the champion was {saw} on this month)" if saw else ""

    def lines(self) -> list[tuple[str, str]]:
        read = f" of {number(self.rows_read)} read" if self.rows_read is not None else ""
        return [("Scored month", self.month or "-"), ("Trips scored", f"{number(self.rows_scored)}{read}"),
                ("Left out", self.left_out()), ("Champion's RMSE on the month", f"{number(self.rmse)} min{self._seen()}"),
                ("Mean duration", f"predicted {number(self.mean_predicted, 2)} min, actual "
                                  f"{number(self.mean_actual, 2)} min"),
                ("Model", self.model()), ("Predictions", self.output or "-")]


def present(run: Mapping[str, Any]) -> list[tuple[str, str]]:
    """A scoring run's results as (label, text) lines; none before it completed."""
    results = ScoringResults.of(run.get("metrics"))
    return results.lines() if results else []
