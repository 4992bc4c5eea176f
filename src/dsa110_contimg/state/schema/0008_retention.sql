-- 0008_retention: indexes that keep the block planner's and retention's
-- queries independent of history size, and the record of every file or
-- directory retention deleted (state/retention.py). A deletion row also marks
-- a group's raw files / MS as cleaned, so they are not examined again.
CREATE INDEX idx_jobs_kind_updated ON jobs (kind, updated_at);
CREATE INDEX idx_jobs_state_finished ON jobs (state, finished_at);

CREATE TABLE deletions (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL
        CHECK (kind IN ('raw', 'ms', 'corrupt', 'superseded')),
    path TEXT NOT NULL,
    group_id TEXT,
    reason TEXT NOT NULL,
    size_bytes INTEGER,
    deleted_at TEXT NOT NULL
);
CREATE INDEX deletions_group ON deletions (group_id, kind);
CREATE INDEX deletions_path ON deletions (path);
CREATE INDEX deletions_at ON deletions (deleted_at);
