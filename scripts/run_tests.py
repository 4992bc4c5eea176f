#!/usr/bin/env python3
"""Run the test suite (the seed's test runner).

Examples
--------
python scripts/run_tests.py                      # everything CI runs
python scripts/run_tests.py --test-path tests/unit/test_telescope.py
python scripts/run_tests.py --coverage --verbose
python scripts/run_tests.py --run-slow           # include slow tests
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    """Run pytest and return its exit status (5, no tests collected, is a failure)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--test-path", default="tests", help="file or directory to test"
    )
    parser.add_argument("--coverage", action="store_true", help="measure coverage")
    parser.add_argument("--verbose", action="store_true", help="verbose output")
    parser.add_argument("--run-slow", action="store_true", help="include slow tests")
    args, extra = parser.parse_known_args(argv)
    cmd = [sys.executable, "-m", "pytest", args.test_path]
    if args.coverage:
        cmd += ["--cov=dsa110_contimg", "--cov-report=term-missing"]
    if args.verbose:
        cmd.append("-v")
    if args.run_slow:
        cmd.append("--run-slow")
    cmd += extra
    rc = subprocess.call(cmd, cwd=ROOT)
    if rc == 5:
        print("run_tests: pytest collected no tests", file=sys.stderr)
        return 1
    return rc


if __name__ == "__main__":
    sys.exit(main())
