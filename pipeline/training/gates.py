"""The data gates of a deployment, and its promotion tolerance: settings only, checked when a
deployment is built (light on purpose: no numpy; ``quality`` applies the gates to a run).

A deployment sets them as ``DeploymentSpec(gates={...}, promotion_tolerance=...)``; both reach the
training flow as the run parameters ``gates`` and ``promotion_tolerance``. Defaults:

- ``min_rows_kept`` 1,000: each month must keep at least this many trips of 1 to 60 minutes
  (the real TLC months keep a million or more; fewer means a truncated or wrong file);
- ``max_psi`` 0.25: no population stability index of pickup zones, drop-off zones or durations
  may exceed it (0.1-0.25 is the usual "moderate shift", above 0.25 "significant");
- ``max_missing_change`` 0.10: the share of trips with a missing pickup or drop-off zone may move
  by at most 10 percentage points from one month to the other;
- ``mode`` ``warn``: a gate that fails marks the run with a warning and the run completes;
  ``block`` fails the run in its task ``check_data`` with a sentence naming the gate, its value
  and its limit.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping

from ..errors import ConfigError

MODES = ("warn", "block")
MAX_PSI_LIMIT = 100.0  # a PSI limit above this is a typo (PSI of disjoint months with our smoothing is about 20)


@dataclass(frozen=True)
class Gates:
    min_rows_kept: int = 1_000
    max_psi: float = 0.25
    max_missing_change: float = 0.10
    mode: str = "warn"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def check_gates(value: Any) -> Gates:
    """Gates from a dict (missing keys take their defaults) or a ``Gates``; ConfigError names the bad value."""
    if value is None:
        return Gates()
    if isinstance(value, Gates):
        value = value.to_json()
    if not isinstance(value, Mapping):
        raise ConfigError(f"The gates must be a dict like {{'max_psi': 0.25, 'mode': 'block'}}, not {value!r}.")
    unknown = sorted(set(value) - set(Gates.__dataclass_fields__))
    if unknown:
        raise ConfigError(f"The gate setting {unknown[0]!r} is unknown; the settings are "
                          f"{', '.join(Gates.__dataclass_fields__)}.")
    gates = Gates(**value)
    _whole(gates.min_rows_kept, "min_rows_kept")
    _share(gates.max_psi, "max_psi", MAX_PSI_LIMIT)
    _share(gates.max_missing_change, "max_missing_change", 1.0)
    if gates.mode not in MODES:
        raise ConfigError(f"The gate mode {gates.mode!r} is unknown; use 'warn' or 'block'.")
    return Gates(int(gates.min_rows_kept), float(gates.max_psi), float(gates.max_missing_change), gates.mode)


def check_tolerance(value: Any) -> float:
    """The promotion tolerance: a finite number of at least 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ConfigError(f"The promotion tolerance {value!r} must be a number of at least 0, like 0.01.")
    return float(value)


def _whole(value: Any, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"The gate {name} {value!r} must be a whole number of at least 0, like 1000.")


def _share(value: Any, name: str, top: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= top:
        raise ConfigError(f"The gate {name} {value!r} must be a number from 0 to {top:g}.")
