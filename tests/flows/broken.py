"""The echo flow under other names, whose ``execute`` does not load (a missing module, a missing function):
a run of either ends FAILED with one sentence naming the flow, its ``execute`` and the import error."""
from __future__ import annotations

from dataclasses import replace

from tests.flows.echo import ENTRY

MISSING_MODULE = replace(ENTRY, name="echo-missing-module", execute="tests.flows.nowhere:execute")
MISSING_FUNCTION = replace(ENTRY, name="echo-missing-function", execute="tests.flows.echo:nowhere")
ENTRIES = (MISSING_MODULE, MISSING_FUNCTION)
