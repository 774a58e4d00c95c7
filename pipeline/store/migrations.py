"""The schema of the history: ordered, named migrations (never edit one that shipped; add the next)."""
from __future__ import annotations

import re

from .migrations_postgres import POSTGRESQL

MIGRATIONS: list[tuple[str, str | dict[str, str]]] = [
    ("0001_runs_tasks_logs_artifacts", """
CREATE TABLE flow_runs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    flow TEXT NOT NULL,
    state TEXT NOT NULL,
    state_message TEXT,
    parameters TEXT NOT NULL DEFAULT '{}',
    run_date TEXT, train_month TEXT, val_month TEXT,
    data_source TEXT,
    synthetic INTEGER NOT NULL DEFAULT 0,
    trigger TEXT NOT NULL DEFAULT 'manual',
    scheduled_time TEXT,
    created_at TEXT NOT NULL,
    started_at TEXT, ended_at TEXT, heartbeat_at TEXT,
    pid INTEGER, hostname TEXT,
    metrics TEXT, error TEXT, error_task TEXT
);
CREATE INDEX flow_runs_state ON flow_runs(state, scheduled_time);
CREATE INDEX flow_runs_created ON flow_runs(created_at);
CREATE TABLE task_runs (
    id INTEGER PRIMARY KEY,
    flow_run_id TEXT NOT NULL REFERENCES flow_runs(id) ON DELETE CASCADE,
    task TEXT NOT NULL,
    position INTEGER NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 1,
    state TEXT NOT NULL,
    started_at TEXT, ended_at TEXT,
    error TEXT,
    UNIQUE (flow_run_id, task, attempt)
);
CREATE TABLE logs (
    id INTEGER PRIMARY KEY,
    flow_run_id TEXT NOT NULL REFERENCES flow_runs(id) ON DELETE CASCADE,
    task_run_id INTEGER REFERENCES task_runs(id) ON DELETE CASCADE,
    ts TEXT NOT NULL,
    level TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX logs_run ON logs(flow_run_id, id);
CREATE TABLE artifacts (
    id INTEGER PRIMARY KEY,
    flow_run_id TEXT NOT NULL REFERENCES flow_runs(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    kind TEXT,
    path TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    created_at TEXT NOT NULL
);
"""),
    ("0002_deployments_queues_scheduler", """
CREATE TABLE work_queues (
    name TEXT PRIMARY KEY,
    concurrency_limit INTEGER,
    paused INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL
);
INSERT INTO work_queues (name, concurrency_limit, created_at)
    VALUES ('default', 1, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'));
CREATE TABLE deployments (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    flow TEXT NOT NULL,
    schedule TEXT,
    schedule_fingerprint TEXT,
    parameters TEXT NOT NULL DEFAULT '{}',
    tags TEXT NOT NULL DEFAULT '[]',
    work_queue TEXT NOT NULL DEFAULT 'default' REFERENCES work_queues(name),
    catchup TEXT NOT NULL DEFAULT 'latest',
    max_lateness REAL,
    active INTEGER NOT NULL DEFAULT 1,
    description TEXT,
    source_file TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
ALTER TABLE flow_runs ADD COLUMN deployment_id INTEGER REFERENCES deployments(id) ON DELETE SET NULL;
ALTER TABLE flow_runs ADD COLUMN work_queue TEXT;
ALTER TABLE flow_runs ADD COLUMN schedule_fingerprint TEXT;
ALTER TABLE flow_runs ADD COLUMN claimed_by TEXT;
ALTER TABLE flow_runs ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0;
ALTER TABLE flow_runs ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE flow_runs ADD COLUMN next_attempt_at TEXT;
ALTER TABLE flow_runs ADD COLUMN late_reason TEXT;
CREATE UNIQUE INDEX flow_runs_slot ON flow_runs(deployment_id, schedule_fingerprint, scheduled_time)
    WHERE schedule_fingerprint IS NOT NULL;
CREATE INDEX flow_runs_deployment ON flow_runs(deployment_id, scheduled_time);
CREATE TABLE schedulers (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    pid INTEGER,
    hostname TEXT,
    started_at TEXT,
    heartbeat_at TEXT,
    stopped_at TEXT
);
"""),
    ("0003_scheduler_watermarks_and_errors", """
ALTER TABLE deployments ADD COLUMN schedule_since TEXT;
ALTER TABLE schedulers ADD COLUMN stale_after REAL;
ALTER TABLE schedulers ADD COLUMN last_error TEXT;
ALTER TABLE schedulers ADD COLUMN last_error_at TEXT;
CREATE INDEX flow_runs_run_date ON flow_runs(deployment_id, run_date);
CREATE INDEX flow_runs_deployment_state ON flow_runs(deployment_id, state, scheduled_time);
"""),
    ("0004_run_moment_index", """
CREATE INDEX flow_runs_moment ON flow_runs(COALESCE(started_at, scheduled_time, created_at));
"""),
    ("0005_guarded_edges", """
ALTER TABLE deployments ADD COLUMN last_error TEXT;
ALTER TABLE deployments ADD COLUMN last_error_at TEXT;
ALTER TABLE deployments ADD COLUMN retries INTEGER NOT NULL DEFAULT 0;
ALTER TABLE flow_runs ADD COLUMN enqueue_key TEXT;
ALTER TABLE flow_runs ADD COLUMN retry_of TEXT;
ALTER TABLE flow_runs ADD COLUMN retry_number INTEGER NOT NULL DEFAULT 0;
CREATE UNIQUE INDEX flow_runs_enqueue_key ON flow_runs(enqueue_key)
    WHERE enqueue_key IS NOT NULL AND state NOT IN ('FAILED', 'CANCELLED', 'CRASHED');
ALTER TABLE schedulers ADD COLUMN owner TEXT;
CREATE TABLE skipped_slots (
    id INTEGER PRIMARY KEY,
    deployment_id INTEGER NOT NULL REFERENCES deployments(id) ON DELETE CASCADE,
    first_slot TEXT NOT NULL,
    last_slot TEXT NOT NULL,
    count INTEGER NOT NULL,
    count_is_floor INTEGER NOT NULL DEFAULT 0,
    reason TEXT NOT NULL,
    recorded_at TEXT NOT NULL
);
CREATE INDEX skipped_slots_deployment ON skipped_slots(deployment_id, recorded_at);
CREATE TABLE history_identity (id TEXT NOT NULL);
INSERT INTO history_identity (id) VALUES (lower(hex(randomblob(16))));
"""),
    ("0006_dashboard_read_indexes", """
CREATE INDEX flow_runs_started ON flow_runs(started_at);
CREATE INDEX flow_runs_state_month ON flow_runs(state, val_month, ended_at);
"""),
    ("0007_model_versions", """
CREATE TABLE model_events (
    id INTEGER PRIMARY KEY,
    flow TEXT NOT NULL,
    seq INTEGER NOT NULL,
    run_id TEXT NOT NULL REFERENCES flow_runs(id) ON DELETE CASCADE,
    action TEXT NOT NULL CHECK (action IN ('promoted', 'rollback', 'manual')),
    actor TEXT NOT NULL,
    at TEXT NOT NULL,
    reason TEXT NOT NULL,
    undo_to INTEGER REFERENCES model_events(id) ON DELETE SET NULL,
    UNIQUE (flow, seq)
);
CREATE UNIQUE INDEX model_events_promoted_once ON model_events(run_id) WHERE action = 'promoted';
CREATE INDEX model_events_run ON model_events(run_id);
"""),
    ("0008_notifications", """
CREATE TABLE notify_targets (
    id INTEGER PRIMARY KEY,
    deployment_id INTEGER NOT NULL REFERENCES deployments(id) ON DELETE CASCADE,
    url TEXT NOT NULL,
    UNIQUE (deployment_id, url)
);
CREATE TABLE notifications (
    id INTEGER PRIMARY KEY,
    event TEXT NOT NULL,
    subject TEXT NOT NULL,
    run_id TEXT REFERENCES flow_runs(id) ON DELETE CASCADE,
    target_key TEXT NOT NULL,
    target TEXT NOT NULL,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    level TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'PENDING' CHECK (state IN ('PENDING', 'SENT', 'FAILED')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    created_at TEXT NOT NULL,
    sent_at TEXT,
    last_error TEXT,
    UNIQUE (event, subject, target_key)
);
CREATE INDEX notifications_due ON notifications(state, next_attempt_at);
CREATE INDEX notifications_run ON notifications(run_id, id);
CREATE TABLE notification_attempts (
    id INTEGER PRIMARY KEY,
    notification_id INTEGER NOT NULL REFERENCES notifications(id) ON DELETE CASCADE,
    attempt INTEGER NOT NULL,
    started_at TEXT NOT NULL,
    ended_at TEXT NOT NULL,
    outcome TEXT NOT NULL CHECK (outcome IN ('sent', 'failed', 'timeout', 'dropped')),
    detail TEXT,
    UNIQUE (notification_id, attempt)
);
CREATE TABLE notify_marks (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE INDEX flow_runs_ended ON flow_runs(ended_at);
"""),
    ("0009_artifact_blobs", """
CREATE TABLE artifact_blobs (
    sha256 TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    data BLOB NOT NULL,
    created_at TEXT NOT NULL,
    CHECK (length(data) = size)
);
"""),
    ("0010_workers", """
CREATE TABLE workers (
    id TEXT PRIMARY KEY,
    hostname TEXT NOT NULL,
    pid INTEGER NOT NULL,
    queues TEXT NOT NULL DEFAULT '[]',
    concurrency INTEGER NOT NULL,
    stale_after REAL NOT NULL,
    started_at TEXT NOT NULL,
    heartbeat_at TEXT NOT NULL,
    stopped_at TEXT,
    last_error TEXT,
    last_error_at TEXT
);
CREATE INDEX workers_live ON workers(stopped_at, heartbeat_at);
CREATE INDEX flow_runs_claimed_by ON flow_runs(claimed_by) WHERE claimed_by IS NOT NULL;
"""),
    ("0011_data_acceptances_and_target_seen", """
CREATE TABLE data_acceptances (
    id INTEGER PRIMARY KEY,
    flow TEXT NOT NULL,
    blocked_run_id TEXT NOT NULL UNIQUE REFERENCES flow_runs(id) ON DELETE CASCADE,
    rerun_id TEXT REFERENCES flow_runs(id) ON DELETE SET NULL,
    train_month TEXT NOT NULL,
    val_month TEXT NOT NULL,
    actor TEXT NOT NULL,
    at TEXT NOT NULL,
    reason TEXT NOT NULL
);
CREATE INDEX data_acceptances_months ON data_acceptances(flow, train_month, val_month);
CREATE TABLE notify_target_seen (
    target_key TEXT PRIMARY KEY,
    first_seen TEXT NOT NULL
);
"""),
    ("0012_request_date_keys", """
UPDATE flow_runs SET enqueue_key = 'date:' || substr(enqueue_key, 10) WHERE enqueue_key LIKE 'backfill:%';
"""),
    ("0013_completion_triggers", """
ALTER TABLE deployments ADD COLUMN after_deployment TEXT;
ALTER TABLE flow_runs ADD COLUMN triggered_by TEXT;
CREATE UNIQUE INDEX flow_runs_triggered_once ON flow_runs(deployment_id, triggered_by)
    WHERE triggered_by IS NOT NULL;
CREATE INDEX flow_runs_triggered_by ON flow_runs(triggered_by) WHERE triggered_by IS NOT NULL;
"""),
    # A flow's own fields leave the core's columns for the run's ``fields`` (JSON); an acceptance names what it
    # accepted by a ``subject`` its flow composes. The one migration whose SQL differs by backend.
    ("0014_run_fields", {"sqlite": """
DROP INDEX flow_runs_state_month;
ALTER TABLE flow_runs ADD COLUMN fields TEXT NOT NULL DEFAULT '{}';
UPDATE flow_runs SET fields = json_patch('{}', json_object('train_month', train_month, 'val_month', val_month,
    'data_source', data_source, 'synthetic', json(CASE WHEN synthetic <> 0 THEN 'true' ELSE 'false' END)));
ALTER TABLE flow_runs DROP COLUMN train_month;
ALTER TABLE flow_runs DROP COLUMN val_month;
ALTER TABLE flow_runs DROP COLUMN data_source;
ALTER TABLE flow_runs DROP COLUMN synthetic;
CREATE INDEX flow_runs_flow_state ON flow_runs(flow, state, ended_at);
ALTER TABLE data_acceptances ADD COLUMN subject TEXT NOT NULL DEFAULT '';
UPDATE data_acceptances SET subject = train_month || '/' || val_month;
DROP INDEX data_acceptances_months;
ALTER TABLE data_acceptances DROP COLUMN train_month;
ALTER TABLE data_acceptances DROP COLUMN val_month;
CREATE INDEX data_acceptances_subject ON data_acceptances(flow, subject);
""", "postgresql": """
DROP INDEX flow_runs_state_month;
ALTER TABLE flow_runs ADD COLUMN fields TEXT NOT NULL DEFAULT '{}';
UPDATE flow_runs SET fields = jsonb_strip_nulls(jsonb_build_object('train_month', train_month, 'val_month', val_month,
    'data_source', data_source, 'synthetic', synthetic <> 0))::text;
ALTER TABLE flow_runs DROP COLUMN train_month, DROP COLUMN val_month, DROP COLUMN data_source, DROP COLUMN synthetic;
CREATE INDEX flow_runs_flow_state ON flow_runs(flow, state, ended_at);
ALTER TABLE data_acceptances ADD COLUMN subject TEXT NOT NULL DEFAULT '';
UPDATE data_acceptances SET subject = train_month || '/' || val_month;
ALTER TABLE data_acceptances DROP COLUMN train_month, DROP COLUMN val_month;
CREATE INDEX data_acceptances_subject ON data_acceptances(flow, subject);
"""}),
    # On PostgreSQL a run's fields are JSONB, which its reads need not parse (trends group 10,000 runs by one).
    ("0015_run_fields_jsonb", {"sqlite": "", "postgresql": """
ALTER TABLE flow_runs ALTER COLUMN fields DROP DEFAULT;
ALTER TABLE flow_runs ALTER COLUMN fields TYPE JSONB USING fields::jsonb;
ALTER TABLE flow_runs ALTER COLUMN fields SET DEFAULT '{}';
"""}),
    ("0016_flow_read_indexes", """
CREATE INDEX flow_runs_flow_started ON flow_runs(flow, started_at);
CREATE INDEX flow_runs_flow_created ON flow_runs(flow, created_at);
CREATE INDEX flow_runs_flow_moment ON flow_runs(flow, COALESCE(started_at, scheduled_time, created_at));
CREATE INDEX flow_runs_flow_state_moment ON flow_runs(flow, state, COALESCE(started_at, scheduled_time, created_at));
"""),
    # Scoring runs made before 0014 kept no ``month`` (the month scored) in their fields: their metrics' month,
    # else their run date's previous month. Python's json.dumps may write NaN or Infinity, which SQL's JSON refuses.
    ("0017_scoring_runs_month", {"sqlite": """
UPDATE flow_runs SET fields = json_set(fields, '$.month', scored.month)
FROM (SELECT id, COALESCE(CASE WHEN json_valid(plain) THEN json_extract(plain, '$.month') END,
                          strftime('%Y-%m', run_date, 'start of month', '-1 month')) AS month
      FROM (SELECT id, run_date, replace(replace(replace(metrics, '-Infinity', 'null'), 'Infinity', 'null'), 'NaN',
                                         'null') AS plain
            FROM flow_runs WHERE flow = 'fhv-batch-scoring' AND json_extract(fields, '$.month') IS NULL)) AS scored
WHERE flow_runs.id = scored.id AND scored.month IS NOT NULL;
""", "postgresql": """
UPDATE flow_runs SET fields = fields || jsonb_build_object('month', scored.month)
FROM (SELECT id, COALESCE(replace(replace(replace(metrics, '-Infinity', 'null'), 'Infinity', 'null'), 'NaN',
                                  'null')::jsonb ->> 'month',
                          to_char(to_date(run_date, 'YYYY-MM-DD') - interval '1 month', 'YYYY-MM')) AS month
      FROM flow_runs WHERE flow = 'fhv-batch-scoring' AND fields -> 'month' IS NULL) AS scored
WHERE flow_runs.id = scored.id AND scored.month IS NOT NULL;
"""}),
]


def script(name: str, sql: str | dict[str, str], dialect: str) -> str:
    """A migration's SQL for a backend: its own spelling if it has one, else the one both read alike."""
    if isinstance(sql, dict):
        return sql[dialect]
    return POSTGRESQL.get(name, sql) if dialect == "postgresql" else sql


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


def tables(upto: int | None = None) -> set[str]:
    """The tables the migrations make (up to ``upto``): a history that lacks one is damaged."""
    made = set()
    for name, migration in MIGRATIONS[:upto]:
        sql = script(name, migration, "sqlite")
        made |= set(re.findall(r"CREATE TABLE (\w+)", sql)) - set(re.findall(r"DROP TABLE (\w+)", sql))
    return made
