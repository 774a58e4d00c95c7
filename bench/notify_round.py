"""Notifications: the cost of a scan and of a delivery round on a large history.

    .venv/bin/python bench/notify_round.py [--history 20000] [--failed 100] [--timeout 2]

On a history of ``--history`` finished runs (a day old), with receivers on 127.0.0.1 (Apprise's
json://): a scan with nothing new; ``--failed`` runs failing now, queued for one receiver that
answers 200 and sent; then the same again with a second receiver that never answers, to show
that a hanging target costs a round one ``--timeout``, not one per message.
"""
from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # works from any working directory
sys.path.insert(0, str(ROOT))

from pipeline.config import Settings  # noqa: E402
from pipeline.flows import load_flows  # noqa: E402  (the entry point registers the flows)
from pipeline.orchestration import notify  # noqa: E402
from pipeline.orchestration.states import State  # noqa: E402
from pipeline.store import Store  # noqa: E402
from tests.dashboard_seed import bulk_history  # noqa: E402
from tests.conftest import FakeClock  # noqa: E402  (a clock that stands still)
from tests.httpserver import serve  # noqa: E402


def fail_runs(store: Store, count: int, now: dt.datetime, tag: str) -> None:
    for i in range(count):
        run_id = store.create_run(flow="fhv-duration-training", name=f"{tag}-{i}", state=State.PENDING, now=now)
        store.start_run(run_id, now=now, pid=1)
        store.transition(run_id, State.FAILED, now=now, error="a bench failure.")


def timed(label: str, work) -> object:
    began = time.perf_counter()
    result = work()
    print(f"{label}: {result} in {(time.perf_counter() - began) * 1000:,.1f} ms")
    return result


def main() -> None:
    load_flows()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--history", type=int, default=20_000)
    parser.add_argument("--failed", type=int, default=100)
    parser.add_argument("--timeout", type=float, default=2.0)
    args = parser.parse_args()
    logging.getLogger("pipeline").setLevel(logging.ERROR)
    now = dt.datetime.now(dt.timezone.utc)
    with tempfile.TemporaryDirectory() as folder, serve() as server:
        store = Store(Path(folder) / "history.db")
        bulk_history(store, runs=args.history, now=now - dt.timedelta(days=1))
        print(f"history: {args.history:,} runs; {args.failed} failing now; attempt timeout {args.timeout:g} s")
        server.route("/ok", methods=("POST",), json={})
        server.route("/hang", methods=("POST",), delay=3600)
        url = {path: server.url(path).replace("http://", "json://") for path in ("/ok", "/hang")}
        policy = notify.RetryPolicy(timeout=args.timeout)
        for round_, paths in enumerate((["/ok"], ["/ok", "/hang"])):
            settings = Settings(home=Path(folder), notify=tuple(url[p] for p in paths), notify_timeout=args.timeout)
            targets = notify.Targets.load(store, settings)
            moment = now + dt.timedelta(seconds=round_)
            names = " and ".join(paths)
            timed(f"{names}: scan with nothing new (messages queued)",
                  lambda: notify.scan(store, settings, targets, moment))
            fail_runs(store, args.failed, moment, f"round{round_}")
            timed(f"{names}: scan of {args.failed} failed runs (messages queued)",
                  lambda: notify.scan(store, settings, targets, moment))
            timed(f"{names}: one delivery round (messages sent)",
                  lambda: notify.deliver_due(store, targets, policy, FakeClock(moment)))
        store.close()


if __name__ == "__main__":
    main()
