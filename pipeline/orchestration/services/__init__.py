"""The housekeeping of the scheduler and the workers, as small services (``base.Service``).

A process that runs flows is a list of them (``scheduler.py``, ``worker.py``): each has a name, an interval and
``run_once(now)``, and runs in its process's guard, so one service's exception is logged and recorded and the
others go on. (Prefect 2's ``LoopService`` subclasses; dagster's daemons.)
"""
