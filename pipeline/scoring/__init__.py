"""The monthly batch-scoring job (the course's week 4): score the month before the run date with the champion."""
from . import job as _job  # noqa: F401  (registers the scoring flow)
