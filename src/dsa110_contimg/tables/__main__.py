"""``python -m dsa110_contimg.tables``: print or regenerate the tables of columns.

``--markdown [NAME ...]`` prints the Markdown table of each named table (all
by default); ``--readme README.md`` rewrites the generated tables in that file
(``--check``: exit 1, changing nothing, when it is out of date).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dsa110_contimg.tables._columns import TABLES
from dsa110_contimg.tables._readme import render_readme


def main(argv: list[str] | None = None) -> int:
    """Run the command; return the exit status."""
    parser = argparse.ArgumentParser(prog="python -m dsa110_contimg.tables")
    parser.add_argument("--markdown", nargs="*", metavar="NAME", default=None)
    parser.add_argument("--readme", type=Path, default=None)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    if args.readme is not None:
        text = args.readme.read_text(encoding="utf-8")
        new = render_readme(text)
        if args.check:
            if new != text:
                print(f"{args.readme}: tables of columns out of date", file=sys.stderr)
                return 1
            return 0
        if new != text:
            args.readme.write_text(new, encoding="utf-8")
        return 0
    names = args.markdown or list(TABLES)
    unknown = [n for n in names if n not in TABLES]
    if unknown:
        parser.error(f"unknown table(s) {unknown}; declared: {sorted(TABLES)}")
    for name in names:
        print(f"### {name}: {TABLES[name].title}\n")
        print(TABLES[name].markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
