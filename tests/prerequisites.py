"""What a test needs from the machine (PostgreSQL, root for network namespaces): where it is missing,
the test is skipped with the reason and how to get it, except under ``FHV_TESTS_STRICT=1``, which
``.ci/run`` sets: there a missing prerequisite fails the run, so that CI never passes by skipping."""
from __future__ import annotations

import os

import pytest

STRICT = "FHV_TESTS_STRICT"


def unavailable(reason: str) -> None:
    """Skip the test with ``reason``; fail it instead under FHV_TESTS_STRICT=1 (CI runs every test)."""
    if os.environ.get(STRICT) == "1":
        pytest.fail(f"{reason} ({STRICT}=1: CI must run every test, so a missing prerequisite is a failure)",
                    pytrace=False)
    pytest.skip(reason)
