"""A student's homework folder for the Prefect 2 tests: write a file, run a deployment once, read its logs."""
from __future__ import annotations

import datetime as dt
import textwrap
from pathlib import Path

from pipeline.config import load_settings
from pipeline.orchestration import control
from pipeline.orchestration.scheduler import Scheduler, SchedulerOptions
from pipeline.store import Store
from tests.conftest import FakeClock
from pipeline.training import demo
from tests.fakes import InlineExecutor

UTC = dt.timezone.utc


def write(folder: Path, name: str, source: str) -> Path:
    (folder / name).write_text(textwrap.dedent(source))
    return folder / name


def student_folder(tmp_path: Path, monkeypatch, months: tuple[str, ...], rows: int = 2000) -> Path:
    """A student's folder ``tmp_path/homework`` with ``./data`` holding these months; FHV_HOME beside it."""
    folder = tmp_path / "homework"
    for month in months:
        demo.write_month(folder / "data" / f"fhv_tripdata_{month}.parquet", month, rows=rows)
    monkeypatch.setenv("FHV_HOME", str(tmp_path / "fhv"))
    return folder


def history(folder: Path) -> Store:
    """The history of FHV_HOME, which the tests put beside the homework folder."""
    return Store(folder.parent / "fhv" / "history.db")


def run_once(store: Store, deployment: str, date: dt.date | None = None) -> dict:
    """Trigger ``deployment`` and let a scheduler on a fake clock run it in this process."""
    clock = FakeClock(dt.datetime.now(UTC))
    run = control.trigger(store, load_settings(), deployment=deployment, date=date, now=clock.now())
    _tick(store, clock)
    return store.get_run(run["id"])


def run_slot(store: Store, deployment: str) -> dict:
    """Let a scheduler on a fake clock, set to the time of ``deployment``'s next slot, run that slot."""
    slot = store.runs(deployment=deployment, states=["SCHEDULED"], limit=1, order="upcoming")[0]
    _tick(store, FakeClock(dt.datetime.fromisoformat(slot["scheduled_time"].replace("Z", "+00:00"))))
    return store.get_run(slot["id"])


def _tick(store: Store, clock: FakeClock) -> None:
    """One tick of a scheduler on ``clock`` that runs the flows it starts in this process."""
    settings = load_settings()
    Scheduler(store, settings, options=SchedulerOptions(heartbeat=60, stale_after=3600), clock=clock,
              executor=InlineExecutor(store, settings, clock=clock)).tick()


def messages(store: Store, run_id: str) -> list[str]:
    return [line["message"] for line in store.logs(run_id)]
