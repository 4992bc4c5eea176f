-- Ownership of a product (an MS being calibrated or imaged) by one worker at a
-- time: a lease with an expiry and a fencing token that grows with every
-- acquisition, so a holder whose lease expired can tell it lost it. Rows are
-- kept after release (owner NULL) so the token never goes back.
CREATE TABLE claims (
    key TEXT PRIMARY KEY,
    owner TEXT,
    token INTEGER NOT NULL,
    expires_at REAL NOT NULL,
    acquired_at TEXT,
    updated_at TEXT NOT NULL
);
