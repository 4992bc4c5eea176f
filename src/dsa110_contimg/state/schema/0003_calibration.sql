-- Calibration registry: which tables were solved on what, valid where and when.
CREATE TABLE cal_solutions (
    id INTEGER PRIMARY KEY,
    calibrator TEXT NOT NULL,
    group_id TEXT NOT NULL,
    ms_path TEXT NOT NULL,
    bandpass_table TEXT NOT NULL,
    gain_table TEXT NOT NULL,
    refant TEXT NOT NULL,
    dec_strip_deg REAL NOT NULL,
    transit_mjd REAL NOT NULL,
    valid_from_mjd REAL NOT NULL,
    valid_to_mjd REAL NOT NULL,
    quality_json TEXT NOT NULL,
    solved_at TEXT NOT NULL,
    UNIQUE (calibrator, group_id)
);
CREATE INDEX cal_solutions_strip_time ON cal_solutions (dec_strip_deg, transit_mjd);

-- Which solution was applied to which MS (provenance).
CREATE TABLE cal_applications (
    ms_path TEXT PRIMARY KEY,
    solution_id INTEGER NOT NULL REFERENCES cal_solutions (id),
    applied_at TEXT NOT NULL
);
