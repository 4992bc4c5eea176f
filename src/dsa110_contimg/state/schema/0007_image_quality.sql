-- Quality gates of each group image (pipeline.stages.image_quality), and the
-- 'rejected' status of a mosaic member kept out because its image failed them.
CREATE TABLE image_quality (
    id INTEGER PRIMARY KEY,
    block_id TEXT NOT NULL,
    image_path TEXT NOT NULL UNIQUE,
    passed INTEGER NOT NULL CHECK (passed IN (0, 1)),
    reason TEXT,
    rms_jy REAL,
    thermal_rms_jy REAL,
    expected_rms_jy REAL,
    rms_ratio REAL,
    peak_jy REAL,
    min_jy REAL,
    dynamic_range REAL,
    negative_ratio REAL,
    peak_growth REAL,
    hit_niter INTEGER,
    n_attempts INTEGER NOT NULL,
    record_json TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX image_quality_block ON image_quality (block_id);

CREATE TABLE mosaic_members_new (
    id INTEGER PRIMARY KEY,
    block_id TEXT NOT NULL,
    mosaic_path TEXT NOT NULL,
    image_path TEXT NOT NULL,
    status TEXT NOT NULL
        CHECK (status IN ('used', 'missing', 'corrupt', 'empty', 'incomplete',
                          'rejected')),
    detail TEXT,
    created_at TEXT NOT NULL,
    UNIQUE (mosaic_path, image_path)
);
INSERT INTO mosaic_members_new SELECT * FROM mosaic_members;
DROP TABLE mosaic_members;
ALTER TABLE mosaic_members_new RENAME TO mosaic_members;
CREATE INDEX mosaic_members_block ON mosaic_members (block_id);
CREATE INDEX mosaic_members_image ON mosaic_members (image_path);
