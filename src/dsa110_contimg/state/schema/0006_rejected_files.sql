-- Raw files set aside by intake (bad name, stray subband, unreadable duplicate,
-- not a regular file, late subband), one row per path with the newest reason.
-- The files themselves are never moved or deleted.
CREATE TABLE rejected_files (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL
        CHECK (kind IN ('bad_name', 'unknown_subband', 'not_regular',
                        'duplicate', 'late', 'unreadable')),
    reason TEXT NOT NULL,
    group_id TEXT,
    size_bytes INTEGER,
    first_seen_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    resolved_at TEXT
);
CREATE INDEX rejected_files_updated ON rejected_files (updated_at);
CREATE INDEX rejected_files_group ON rejected_files (group_id);
