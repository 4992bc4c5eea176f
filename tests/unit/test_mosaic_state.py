"""The mosaic_members table: which images went into which mosaic."""

from __future__ import annotations

import pytest

from dsa110_contimg.state import open_db
from dsa110_contimg.state.mosaics import list_mosaic_members, record_mosaic_members


def test_members_are_recorded_per_mosaic_and_updated(state_target):
    conn = open_db(state_target)
    try:
        record_mosaic_members(
            conn,
            block_id="block_a",
            mosaic_path="/m/block_a-mosaic.fits",
            members=[
                ("/i/g1-image.fits", "used", ""),
                ("/i/g2-image.fits", "used", ""),
            ],
        )
        record_mosaic_members(
            conn,
            block_id="block_b",
            mosaic_path="/m/block_b-mosaic.fits",
            members=[
                ("/i/g2-image.fits", "used", ""),
                ("/i/g3-image.fits", "missing", "image file not found"),
            ],
        )
        shared = list_mosaic_members(conn, image_path="/i/g2-image.fits")
        assert {r["block_id"] for r in shared} == {"block_a", "block_b"}
        # a rerun updates the row instead of duplicating it
        record_mosaic_members(
            conn,
            block_id="block_b",
            mosaic_path="/m/block_b-mosaic.fits",
            members=[("/i/g3-image.fits", "used", "")],
        )
        rows = list_mosaic_members(conn, block_id="block_b")
        assert [(r["image_path"], r["status"]) for r in rows] == [
            ("/i/g2-image.fits", "used"),
            ("/i/g3-image.fits", "used"),
        ]
        assert rows[1]["detail"] is None and rows[1]["created_at"].endswith("+00:00")
        with pytest.raises(ValueError, match="status"):
            record_mosaic_members(
                conn, block_id="x", mosaic_path="/m", members=[("/i", "lost", "")]
            )
    finally:
        conn.close()
