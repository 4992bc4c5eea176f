#!/usr/bin/env python3
"""The seed's unified driver: ``--mode single|batch|health`` over the same functions
as the ``dsa110-contimg`` command."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    """Parse the seed's options and run the chosen mode; return the exit code."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", help="YAML config file")
    parser.add_argument(
        "--env", help="environment overlay (development/production/testing)"
    )
    parser.add_argument("--mode", choices=("single", "batch", "health"), required=True)
    parser.add_argument("--block-end-time", help="single: ISO UTC end of the block")
    parser.add_argument(
        "--ms-files", nargs="+", help="single: Measurement Sets of the block"
    )
    parser.add_argument("--start-time", help="batch: ISO UTC start")
    parser.add_argument("--end-time", help="batch: ISO UTC end")
    args = parser.parse_args(argv)

    cli_args: list[str] = [args.mode]
    if args.config:
        cli_args += ["--config", args.config]
    if args.env:
        cli_args += ["--env", args.env]
    if args.mode == "single":
        if not (args.block_end_time and args.ms_files):
            parser.error("--mode single needs --block-end-time and --ms-files")
        cli_args += ["--block-end-time", args.block_end_time]
        for ms in args.ms_files:
            cli_args += ["--ms-files", ms]
    elif args.mode == "batch":
        if not (args.start_time and args.end_time):
            parser.error("--mode batch needs --start-time and --end-time")
        cli_args += ["--start-time", args.start_time, "--end-time", args.end_time]

    from dsa110_contimg.cli import main as cli_main

    try:
        cli_main(cli_args)
    except SystemExit as exc:
        return int(exc.code or 0) if not isinstance(exc.code, str) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
