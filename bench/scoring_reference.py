"""The course's week-4 scoring steps as a standalone script: the baseline bench/scoring_vs_reference.py times.

    python bench/scoring_reference.py MONTH.parquet DV MODEL OUT.parquet YEAR MONTH RUN_ID

The steps are the oracle's (tests/reference_scoring.py, independent of pipeline/): pd.read_parquet,
total_seconds() / 60, the 1..60 filter, ride ids, to_dict(orient="records"), dv.transform, lr.predict,
then to_parquet. Prints one JSON line: rows, RMSE and the wall time in seconds.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.reference_scoring import score  # noqa: E402  (the oracle's own steps)


def main(argv: list[str]) -> None:
    month_path, dv_path, model_path, out, year, month, run_id = argv
    start = time.perf_counter()
    result = score(month_path, dv_path, model_path, int(year), int(month), run_id)
    result.to_parquet(out, index=False)
    rmse = float((result["diff"] ** 2).mean() ** 0.5)
    print(json.dumps({"rows": len(result), "rmse": rmse, "seconds": round(time.perf_counter() - start, 4)}))


if __name__ == "__main__":
    main(sys.argv[1:])
