"""A training run's results, typed: what ``training/flow.py`` records in a completed run's metrics, and the one
presenter of them (``present``) that ``runs show`` and the run's dashboard page both print."""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Mapping

from ..formatting import number


@dataclass(frozen=True)
class TrainingResults:
    """The numbers a completed training run reports (errors in minutes, MSE in minutes²)."""

    val_rmse: float
    train_rmse: float | None = None
    val_mse: float | None = None
    train_mse: float | None = None
    train_month: str | None = None
    val_month: str | None = None
    train_rows: int | None = None
    val_rows: int | None = None
    train_mean_duration: float | None = None
    val_mean_duration: float | None = None
    feature_count: int | None = None

    @classmethod
    def of(cls, metrics: Mapping[str, Any] | None) -> "TrainingResults | None":
        """The results in a run's metrics; None when it has none (it did not complete, or a data gate stopped it)."""
        metrics = metrics or {}
        if metrics.get("val_rmse") is None:
            return None
        return cls(**{f.name: metrics.get(f.name) for f in fields(cls)})

    def lines(self) -> list[tuple[str, str]]:
        return [("Validation RMSE", f"{number(self.val_rmse)} min"),
                ("Training RMSE", f"{number(self.train_rmse)} min"),
                ("Validation MSE", f"{number(self.val_mse)} min²"),
                ("Training MSE", f"{number(self.train_mse)} min²"),
                ("Training trips", _trips(self.train_rows, self.train_month, self.train_mean_duration)),
                ("Validation trips", _trips(self.val_rows, self.val_month, self.val_mean_duration)),
                ("Features", f"{number(self.feature_count)} one-hot zones (pickup and drop-off)")]


def _trips(rows: int | None, month: str | None, mean: float | None) -> str:
    return f"{number(rows)} of {month or '-'}, mean {number(mean, 2)} min"


def present(run: Mapping[str, Any]) -> list[tuple[str, str]]:
    """A training run's results as (label, text) lines; none before it completed."""
    results = TrainingResults.of(run.get("metrics"))
    return results.lines() if results else []
