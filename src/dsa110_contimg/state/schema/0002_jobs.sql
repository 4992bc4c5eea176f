-- 0002_jobs: durable job queue of the streaming services (state/jobs.py).
-- A job is one unit of work (convert a group, process a block, update the
-- variability store) identified by (kind, key); its state moves
-- pending -> running -> done | failed | quarantined, and every transition is
-- one row of job_events. Timestamps are UTC ISO-8601 text in *_at columns.

CREATE TABLE jobs (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    state TEXT NOT NULL
        CHECK (state IN ('pending', 'running', 'done', 'failed', 'quarantined')),
    priority INTEGER NOT NULL DEFAULT 10,
    data_time_iso TEXT NOT NULL,
    payload_json TEXT NOT NULL DEFAULT '{}',
    result_json TEXT,
    attempts INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts INTEGER NOT NULL CHECK (max_attempts >= 1),
    not_before_at TEXT NOT NULL,
    lease_owner TEXT,
    lease_expires_at TEXT,
    heartbeat_at TEXT,
    error_class TEXT,
    error_message TEXT,
    quarantine_reason TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT,
    UNIQUE (kind, key)
);

CREATE INDEX idx_jobs_claim ON jobs (state, kind, priority, data_time_iso);
CREATE INDEX idx_jobs_lease ON jobs (state, lease_expires_at);
CREATE INDEX idx_jobs_kind_time ON jobs (kind, data_time_iso);

CREATE TABLE job_events (
    id INTEGER PRIMARY KEY,
    job_id INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    from_state TEXT,
    to_state TEXT NOT NULL,
    reason TEXT NOT NULL,
    worker TEXT,
    error_class TEXT,
    created_at TEXT NOT NULL
);

CREATE INDEX idx_job_events_job_id ON job_events (job_id);

-- Service-wide flags the status command shows (e.g. intake paused by the disk guard).
CREATE TABLE service_state (
    name TEXT PRIMARY KEY,
    value_json TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
