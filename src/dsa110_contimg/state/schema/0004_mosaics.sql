-- Which images went into which mosaic, with the status of each planned member.
CREATE TABLE mosaic_members (
    id INTEGER PRIMARY KEY,
    block_id TEXT NOT NULL,
    mosaic_path TEXT NOT NULL,
    image_path TEXT NOT NULL,
    status TEXT NOT NULL
        CHECK (status IN ('used', 'missing', 'corrupt', 'empty', 'incomplete')),
    detail TEXT,
    created_at TEXT NOT NULL,
    UNIQUE (mosaic_path, image_path)
);
CREATE INDEX mosaic_members_block ON mosaic_members (block_id);
CREATE INDEX mosaic_members_image ON mosaic_members (image_path);
