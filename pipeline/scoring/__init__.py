"""The monthly batch-scoring job (the course's week 4): score the month before the run date with the champion.

``job.py`` declares the flow (its ``ENTRY``, listed in ``pipeline/flows.py``).
"""
