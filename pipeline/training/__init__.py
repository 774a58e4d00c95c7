"""The monthly training job: months, schema, data, demo, features, model, flow.

Importing the package registers the flow with the orchestrator (``job.py``).
"""
from . import job  # noqa: F401  (registers the training flow)
