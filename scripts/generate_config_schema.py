"""Regenerate ``config/schemas/pipeline_config.schema.json`` from the config models.

Usage: ``python scripts/generate_config_schema.py [--check]``. With ``--check``
nothing is written and the exit status is 1 when the stored schema is stale
(``tests/unit/test_config_loader.py`` makes the same comparison).
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "src"))

from dsa110_contimg.utils.config_loader import render_config_schema  # noqa: E402

__all__ = ["SCHEMA_PATH", "main"]

SCHEMA_PATH = REPO_ROOT / "config" / "schemas" / "pipeline_config.schema.json"


def main(argv: list[str] | None = None) -> int:
    """Write the schema, or with ``--check`` report whether it is stale."""
    argv = sys.argv[1:] if argv is None else argv
    text = render_config_schema()
    if "--check" in argv:
        current = (
            SCHEMA_PATH.read_text(encoding="utf-8") if SCHEMA_PATH.exists() else ""
        )
        if current != text:
            sys.stderr.write(f"{SCHEMA_PATH} is stale; run {Path(__file__).name}\n")
            return 1
        return 0
    SCHEMA_PATH.parent.mkdir(parents=True, exist_ok=True)
    SCHEMA_PATH.write_text(text, encoding="utf-8")
    sys.stdout.write(f"wrote {SCHEMA_PATH}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
