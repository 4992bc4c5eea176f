#!/usr/bin/env python3
"""Basic pipeline example (the seed's usage, runnable as written).

Simulates a tiny observation, converts it to Measurement Sets, finds the
processing blocks and processes them with the orchestrator. Everything is
written under ``example_output/``.

    .venv/bin/python examples/basic_pipeline_example.py
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from astropy.utils import iers

from dsa110_contimg.pipeline import PipelineOrchestrator
from dsa110_contimg.pipeline.batch import convert_incoming, simulate
from dsa110_contimg.utils.config_loader import load_pipeline_config

iers.conf.auto_download = False  # run offline

OUT = Path("example_output").resolve()


async def main() -> None:
    """Simulate, convert, then process every block through the orchestrator."""
    paths = {
        "incoming_dir": "incoming",
        "ms_stage1_dir": "ms",
        "images_dir": "images",
        "products_dir": "products",
        "log_dir": "logs",
        "state_db": "pipeline.sqlite3",
    }
    config = load_pipeline_config(
        environment="testing",
        overrides={f"paths.{k}": str(OUT / v) for k, v in paths.items()},
    )
    sim = simulate(config, progress=print)
    config = load_pipeline_config(
        environment="testing",
        overrides={
            **{f"paths.{k}": str(OUT / v) for k, v in paths.items()},
            "paths.catalog_path": str(sim.sky_path),
        },
    )
    convert_incoming(config, progress=print)

    orchestrator = PipelineOrchestrator(config)
    try:
        blocks_dict = orchestrator.find_ms_blocks_for_batch(
            start_time_iso="2023-06-01T00:00:00", end_time_iso="2023-06-01T02:00:00"
        )
        for block_end_time, ms_files in blocks_dict.items():
            block = orchestrator.create_processing_block(block_end_time, ms_files)
            result = await orchestrator.process_block(block)
            if result.success:
                print(f"Processing completed in {result.processing_time:.1f} seconds")
                print(f"Output files: {list(result.output_files.keys())}")
            else:
                print(f"Processing failed: {result.errors}")
    finally:
        orchestrator.close()


if __name__ == "__main__":
    asyncio.run(main())
