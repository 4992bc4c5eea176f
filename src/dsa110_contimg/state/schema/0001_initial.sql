-- 0001_initial: block metrics, subband groups and products.
-- Timestamps are UTC ISO-8601 text in *_at columns (see state.db.to_iso_utc).

CREATE TABLE block_metrics (
    id INTEGER PRIMARY KEY,
    block_id TEXT NOT NULL,
    success INTEGER NOT NULL CHECK (success IN (0, 1)),
    processing_time_s REAL NOT NULL,
    ms_count INTEGER NOT NULL,
    image_count INTEGER NOT NULL,
    error_message TEXT,
    recorded_at TEXT NOT NULL
);

CREATE INDEX idx_block_metrics_recorded_at ON block_metrics (recorded_at);

CREATE TABLE groups (
    group_id TEXT PRIMARY KEY,
    start_time_iso TEXT NOT NULL,
    n_subbands INTEGER NOT NULL,
    ms_path TEXT,
    status TEXT NOT NULL,
    error_class TEXT,
    error_message TEXT,
    updated_at TEXT NOT NULL
);

CREATE INDEX idx_groups_status ON groups (status);

CREATE TABLE products (
    id INTEGER PRIMARY KEY,
    block_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    path TEXT NOT NULL UNIQUE,
    group_id TEXT,
    created_at TEXT NOT NULL
);

CREATE INDEX idx_products_block_id ON products (block_id);
