-- 0009_alerts: the in-process alert engine (services/alerts): the alerts it
-- tracks (pending until their rule's `for:` passes, then firing; a row is
-- deleted when its condition clears, after the resolved message), and the
-- operators' silences (by alert name and label values, until they expire).
CREATE TABLE alert_state (
    fingerprint TEXT PRIMARY KEY,
    alertname TEXT NOT NULL,
    labels_json TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'firing')),
    value REAL,
    active_since TEXT NOT NULL,
    fired_at TEXT,
    notified_at TEXT,
    updated_at TEXT NOT NULL
);
CREATE INDEX alert_state_name ON alert_state (alertname);

CREATE TABLE alert_silences (
    id INTEGER PRIMARY KEY,
    alertname TEXT NOT NULL,
    matchers_json TEXT NOT NULL DEFAULT '{}',
    comment TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    removed_at TEXT
);
CREATE INDEX alert_silences_expiry ON alert_silences (expires_at);
