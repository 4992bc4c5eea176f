"""The database driver is named only in ``state/`` (issue 16: state only in state/).

Every other layer types connections as ``state.db.Connection`` and catches
``state.db.DatabaseError``, so another backend plugs in in one package.
"""

from __future__ import annotations

import ast
from pathlib import Path

import dsa110_contimg

SRC = Path(dsa110_contimg.__file__).parent
STATE = SRC / "state"


def _driver_uses(path: Path) -> list[str]:
    """Lines of ``path`` that import sqlite3 or use an attribute of it."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            names = [node.value.id]
        else:
            continue
        if any(name.split(".")[0] == "sqlite3" for name in names):
            found.append(f"{path.relative_to(SRC)}:{node.lineno}")
    return found


def test_no_sqlite3_outside_state() -> None:
    offenders = [
        use
        for path in sorted(SRC.rglob("*.py"))
        if STATE not in path.parents
        for use in _driver_uses(path)
    ]
    assert offenders == [], (
        "sqlite3 used outside state/ (name state.db.Connection / DatabaseError, "
        f"or move the SQL into a state/ function): {offenders}"
    )


def test_the_scan_sees_the_driver_in_state() -> None:
    assert _driver_uses(STATE / "db.py")  # the check can fail: it finds real uses
