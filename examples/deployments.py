"""Example deployment file: ``python -m pipeline deployment create examples/deployments.py``.

Every ``DeploymentSpec`` bound to a module-level name (or in a module-level list) is registered;
running the command again updates them without duplicating their scheduled runs. ``active`` only
says how a deployment starts when it is first created: after that, ``python -m pipeline deployment
pause NAME`` / ``resume NAME`` (or the dashboard) decide, and running this file again keeps them.
"""
import datetime as dt

from pipeline import CronSchedule, DeploymentSpec, IntervalSchedule
from pipeline.orchestration.deployments import default_deployment

# The product's default: the 15th of each month at 09:00 New York time, tags ["ml"].
monthly = default_deployment()

# A nightly retrain on a small synthetic month, in London; after a downtime only the latest
# missed night runs, and never more than 6 hours late. Created paused: once someone resumes it,
# it stays active when this file is registered again.
nightly_demo = DeploymentSpec(
    name="nightly-demo",
    schedule=CronSchedule("30 2 * * *", "Europe/London"),
    parameters={"data_url": "demo:20000"},
    tags=["demo"],
    work_queue="demo",
    catchup="latest",
    max_lateness=dt.timedelta(hours=6),
    active=False,
    description="Nightly demo retrain on 20,000 synthetic trips a month.",
)

# Every 15 minutes from a fixed anchor (absolute time: it shifts by an hour locally across DST).
quarter_hourly_demo = DeploymentSpec(
    name="quarter-hourly-demo",
    schedule=IntervalSchedule(15 * 60, dt.datetime(2026, 1, 1), "America/New_York"),
    parameters={"data_url": "demo:3000"},
    work_queue="demo",
    catchup="none",
    active=False,
)
