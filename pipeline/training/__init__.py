"""The monthly training job: months, schema, data, demo, features, model, flow.

``job.py`` declares the flow (its ``ENTRY``, listed in ``pipeline/flows.py``).
"""
