"""The identity module is a leaf, and three former import circles stay broken.

Reads the import statements of the source (also those inside functions and
under ``TYPE_CHECKING``), so a lazy import cannot hide a circle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import dsa110_contimg

SRC = Path(dsa110_contimg.__file__).parent


def _imports(relative: str) -> set[str]:
    tree = ast.parse((SRC / relative).read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def test_products_imports_nothing_from_the_package() -> None:
    assert not {m for m in _imports("products.py") if m.startswith("dsa110_contimg")}


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [
        ("pipeline/stages/bright_sources.py", "dsa110_contimg.pipeline.stages.imaging"),
        ("pipeline/_block_summary.py", "dsa110_contimg.pipeline.orchestrator"),
        ("pipeline/_block.py", "dsa110_contimg.pipeline.orchestrator"),
        ("pipeline/orchestrator.py", "dsa110_contimg.services"),
        ("pipeline/batch.py", "dsa110_contimg.services"),
        ("pipeline/_pool.py", "dsa110_contimg.services"),
    ],
)
def test_former_circles_stay_broken(module: str, forbidden: str) -> None:
    assert not {m for m in _imports(module) if m.startswith(forbidden)}


def test_no_pipeline_module_imports_services() -> None:
    for path in sorted((SRC / "pipeline").rglob("*.py")):
        relative = str(path.relative_to(SRC))
        bad = {m for m in _imports(relative) if m.startswith("dsa110_contimg.services")}
        assert not bad, f"{relative} imports {sorted(bad)}"
