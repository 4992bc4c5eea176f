"""Collect what the block's HTML summary shows from a processing result."""

from __future__ import annotations

import json
import math
from pathlib import Path

from astropy.table import Table, vstack

from dsa110_contimg.pipeline._block import ProcessingBlock, ProcessingResult
from dsa110_contimg.products import ImageNames
from dsa110_contimg.utils.config import PipelineConfig

__all__ = ["block_summary"]

_MAX_SOURCE_ROWS = 500
_PLOT_SUFFIXES = (".bandpass.png", ".gains.png", ".flags.png")


def _flag_reports(ms_files, cal_dir: Path) -> list[dict[str, object]]:
    out = []
    for ms in ms_files:
        report = cal_dir / "flags" / f"{Path(ms).stem}.json"
        if report.is_file():
            data = json.loads(report.read_text())
            out.append({"ms": str(ms), **data})
    return out


def _calibration_plots(result: ProcessingResult) -> list[str]:
    tables = {
        str(t)
        for info in result.calibration.values()
        for t in info.get("tables", [])  # type: ignore[union-attr]
    } | set(result.output_files.get("caltables", []))
    plots = []
    for table in sorted(t for t in tables if t.endswith(".B")):
        stem = table.removesuffix(".B")
        plots += [stem + s for s in _PLOT_SUFFIXES if Path(stem + s).is_file()]
    return plots


def _plain(value: object) -> object:
    return value.item() if hasattr(value, "item") else value


def _sources(tables: list[Table]) -> list[dict[str, object]]:
    if not tables:
        return []
    # each image's table carries its own per-image meta (sys_fraction,
    # thermal_fraction): only the rows are wanted here, so the differing
    # meta values are not a conflict to warn about
    rows = vstack(tables, metadata_conflicts="silent")
    if "image_kind" in rows.colnames and (rows["image_kind"] == "mosaic").any():
        rows = rows[rows["image_kind"] == "mosaic"]  # one row per source
    return [
        {name: _plain(row[name]) for name in rows.colnames}
        for row in rows[:_MAX_SOURCE_ROWS]
    ]


def _quality_figures(record: dict[str, object]) -> dict[str, float]:
    """Return the figures the page shows from an image's quality record."""
    keys = ("rms_jy", "thermal_rms_jy", "peak_jy", "dynamic_range")
    out = {k: float(record[k]) for k in keys if isinstance(record.get(k), int | float)}
    if out.get("thermal_rms_jy") and "rms_jy" in out:
        out["rms_over_thermal"] = out["rms_jy"] / out["thermal_rms_jy"]
    return out


def _images(result: ProcessingResult) -> list[dict[str, object]]:
    images = result.output_files.get("image", [])
    kinds = ("preview", "residual_preview", "pb_preview")
    made = {
        kind: {
            ImageNames.of(p, kind).stem: p for p in result.output_files.get(kind, [])
        }
        for kind in kinds
    }
    by_image = {str(q.get("image_path")): q for q in result.image_quality}
    out = []
    for image in images:
        stem = ImageNames.of(image).stem
        quality = _quality_figures(by_image.get(str(image), {}))
        out.append(
            {
                "image": image,
                **{kind: made[kind].get(stem) for kind in kinds},
                **{k: v for k, v in quality.items() if math.isfinite(v)},
            }
        )
    return out


def block_summary(
    block: ProcessingBlock,
    result: ProcessingResult,
    tables: list[Table],
    config: PipelineConfig,
) -> dict[str, object]:
    """Return the mapping `write_block_summary` renders for one block."""
    files = result.output_files
    calibration = [
        {"ms": ms, **{k: v for k, v in info.items() if k != "tables"}}
        for ms, info in sorted(result.calibration.items())
    ]
    mosaic = {
        "preview": (files.get("mosaic_preview") or [None])[0],
        "sources_preview": (files.get("mosaic_sources_preview") or [None])[0],
    }
    return {
        "block_id": block.block_id,
        "success": result.success,
        "processing_time_s": result.processing_time,
        "start_iso": block.start_time.isot[:19],
        "end_iso": block.end_time.isot[:19],
        "errors": list(result.errors),
        "calibration": calibration,
        "calibration_plots": _calibration_plots(result),
        "flags": _flag_reports(block.ms_files, Path(config.paths.cal_tables_dir)),
        "images": _images(result),
        "mosaic": mosaic if any(mosaic.values()) else {},
        "sources": _sources(tables),
    }
