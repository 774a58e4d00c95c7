"""Is a run's process alive? What to do with a run whose process is gone.

Pure functions of a run row, the scheduler's identity, the rows of the workers that claimed runs
and ``now`` (plus the process table of this host). Used by the scheduler's sweep:

* a run claimed by a scheduler or worker that died before its process began goes back to the queue
  (nothing of it ran);
* a run whose process is gone ends CRASHED (or CANCELLED, if its cancel had been asked for);
* a run claimed by another scheduler or worker that is still alive is left alone.

On this host a process id answers at once (the fast path); elsewhere a worker is gone once its
heartbeat is older than its own ``stale_after`` (or it stopped), and a running run once its own
heartbeat is older than the scheduler's stale time. "This host" is this host name *and* this pid
namespace (the last field of an identity): containers of one host name sharing a volume cannot see
each other's processes, so a process of another namespace is judged by its heartbeat too.
"""
from __future__ import annotations

import datetime as dt
import os
import socket
from dataclasses import dataclass
from typing import Any, Mapping

from ..formatting import seconds_words, utc_text
from ..store import from_db
from .states import State


def process_alive(pid: int, started_at: dt.datetime | None) -> bool:
    """True if ``pid`` runs and is not a zombie nor a newer process that reused the number."""
    import psutil  # here: a foreground run (``run``, ``score``) only needs its identity, and starts 10 ms sooner

    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        born = dt.datetime.fromtimestamp(process.create_time(), dt.timezone.utc)
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError, OverflowError):
        return False
    return started_at is None or born <= started_at + dt.timedelta(seconds=2)


def pid_namespace() -> str:
    """This process's pid namespace ('4026531836'; '' where unknown): a process id means something only in it."""
    try:
        return os.readlink("/proc/self/ns/pid").partition("[")[2].rstrip("]")
    except OSError:
        return ""


def new_identity(tag: str) -> str:
    """Who claims runs and holds leases: ``host:pid:tag:pid-namespace``."""
    return f"{socket.gethostname()}:{os.getpid()}:{tag}:{pid_namespace()}"


def this_process() -> str:
    """The claimer of a run executed in this very process (``python -m pipeline run``, a script):
    a scheduler's sweep sees it alive and never hands the run to the queue."""
    return new_identity("foreground")


def visible_pid(identity: str | None) -> int | None:
    """The process id of ``identity`` if this process can see it (same host name, same pid namespace)."""
    host, pid, _, namespace = ((identity or "").split(":") + ["", "", "", ""])[:4]
    if host != socket.gethostname() or not pid.isdigit() or namespace not in ("", pid_namespace()):
        return None  # an identity made before namespaces were recorded has none: taken as this namespace
    return int(pid)


def identity_alive(identity: str | None, *, since: dt.datetime | None = None) -> bool | None:
    """Whether the process ``host:pid:tag:namespace`` still runs: True/False where its pid can be seen (this
    host and pid namespace), None elsewhere (judge it by its heartbeat)."""
    pid = visible_pid(identity)
    return None if pid is None else process_alive(pid, since)


@dataclass(frozen=True)
class Verdict:
    """What the sweep does with a run: ``requeue`` it or ``end`` it (CRASHED/CANCELLED), and why."""

    action: str
    reason: str


def judge(run: dict[str, Any], *, now: dt.datetime, identity: str, stale_after: float,
          workers: Mapping[str, dict[str, Any]] | None = None) -> Verdict | None:
    """What to do with an active run this scheduler did not start; None while it may still run.

    ``workers``: the rows of the workers among the runs' claimers, by identity.
    """
    if run["state"] == State.PENDING and not run["started_at"]:
        worker = (workers or {}).get(run["claimed_by"])
        if worker is not None:
            return _unstarted_by_worker(run, worker, now=now)
        return _unstarted(run, now=now, identity=identity, stale_after=stale_after)
    if run["pid"] and run["hostname"] == socket.gethostname() and _same_namespace(run["claimed_by"]):
        if process_alive(run["pid"], from_db(run["started_at"])):
            return None
        return Verdict("end", f"Its flow process (pid {run['pid']}) is gone: the scheduler or command that ran it "
                              "stopped or was killed before the run ended.")
    last = from_db(run["heartbeat_at"] or run["started_at"] or run["created_at"])
    if (now - last).total_seconds() > stale_after:
        host = f" on {run['hostname']}" if run["hostname"] else ""
        return Verdict("end", f"No heartbeat since {utc_text(last)}: its process{host} is presumed gone.")
    return None


def _same_namespace(claimer: str | None) -> bool:
    """Whether a run's process ids can be seen from here: its claimer (whose child runs it) shares our pid
    namespace (a claimer without one recorded is taken as sharing it)."""
    namespace = ((claimer or "").split(":") + ["", "", "", ""])[3]
    return namespace in ("", pid_namespace())


def _unstarted(run: dict[str, Any], *, now: dt.datetime, identity: str, stale_after: float) -> Verdict | None:
    """A PENDING run whose process never began: back to the queue once its claimer is gone."""
    claimer = run["claimed_by"]
    if claimer == identity:
        return None
    alive = identity_alive(claimer)
    if alive is None:  # claimed on another host (or by a foreground command): judge by its age
        since = from_db(run["heartbeat_at"] or run["created_at"])
        alive = (now - since).total_seconds() <= stale_after and claimer is not None
    if alive:
        return None
    who = f"the scheduler {claimer}" if claimer else "a process"
    return Verdict("requeue", f"claimed by {who}, which stopped before starting it; back in the queue")


def worker_alive(worker: dict[str, Any], *, now: dt.datetime) -> bool:
    """Whether a worker still runs: its process on this host, else a heartbeat within its stale time."""
    if worker["stopped_at"]:
        return False
    alive = identity_alive(worker["id"], since=from_db(worker["started_at"]))
    if alive is not None:
        return alive
    return (now - from_db(worker["heartbeat_at"])).total_seconds() <= worker["stale_after"]


def scheduler_alive(row: dict[str, Any] | None, *, now: dt.datetime) -> bool:
    """Whether the history's scheduler (its ``schedulers`` row) runs: its process here, else a fresh heartbeat."""
    if not row or not row.get("owner") or row.get("stopped_at") or not row.get("heartbeat_at"):
        return False
    alive = identity_alive(row["owner"], since=from_db(row.get("started_at")))
    if alive is not None:
        return alive
    return (now - from_db(row["heartbeat_at"])).total_seconds() <= (row.get("stale_after") or 60.0)


def _unstarted_by_worker(run: dict[str, Any], worker: dict[str, Any], *, now: dt.datetime) -> Verdict | None:
    if worker_alive(worker, now=now):
        return None
    if worker["stopped_at"]:
        why = f"claimed by the worker {worker['id']}, which stopped before starting it; back in the queue"
    else:
        why = (f"claimed by the worker {worker['id']}, silent since {utc_text(from_db(worker['heartbeat_at']))} "
               "before starting it; back in the queue")
    return Verdict("requeue", why)


def ending_message(why: str, pid: int | None, how: str, *, cancel_grace: float, stale_after: float,
                   role: str = "scheduler") -> str:
    """What to record for a run whose process ended without a final state; ``why`` we signalled it."""
    process = f"The flow process (pid {pid}) {how}"
    if why.startswith("cancel"):
        late = f" after not stopping within {seconds_words(cancel_grace)} of SIGTERM" if "killed" in why else ""
        return f"Cancelled on request{late}. {process}."
    if why.startswith("stop"):
        return f"Cancelled because the {role} stopped before the run finished. {process}."
    if why == "ended elsewhere":
        return f"The scheduler had ended this run while its {role} could not reach the history. {process}."
    if why == "hung":
        return f"No heartbeat for more than {seconds_words(stale_after)}, so the flow process was killed."
    return f"{process} before recording a final state."
