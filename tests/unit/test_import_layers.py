"""Import cycles and layer contracts of ``src/dsa110_contimg``, read statically.

Every module is parsed with `ast`; every ``import`` and ``from ... import``
counts, at module level and inside functions alike (a function-level import
is still a dependency: it only runs later). Relative imports are resolved, and
``from pkg import name`` points at the submodule ``pkg.name`` when there is
one, else at ``pkg`` itself (its ``__init__``).

Package ``__init__`` files: importing ``pkg.mod`` also runs ``pkg/__init__``,
but that implied edge is not counted, so a package whose ``__init__``
re-exports its submodules is not a cycle. An explicit ``from pkg import name``
inside ``pkg.mod``, where ``pkg/__init__`` imports ``pkg.mod``, is: ``pkg ->
pkg.mod -> pkg`` (the submodule reads names from a half-initialised package).

The layers, top to bottom; a module imports only its own layer or lower ones:

- ``cli``
- ``services``
- ``pipeline``
- domain: the science packages (`SCIENCE`), ``tools``, ``state`` and the CASA
  and optional-dependency runtime (``_casa``, ``_casa_data``, ``_optional``)
- ``utils``
- foundation: ``exceptions``, ``telescope`` (instrument constants and beam
  models, which import nothing else of the package) and the package root

Within the domain layer ``state`` stands apart: nothing else in that layer
imports it (only the pipeline and the services use the database) and it
imports nothing of that layer. Nothing outside ``cli`` imports ``cli``.
"""

from __future__ import annotations

import ast
import importlib
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = "dsa110_contimg"
SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE_DIR = SRC / PACKAGE

NOT_CODE = ("data",)
"""Folders of package data: ``data/casasiteconfig.py`` is CASA's site file,
executed by CASA, not a module of the package."""

SCIENCE = frozenset(
    {
        "calibration",
        "data_ingestion",
        "lightcurves",
        "mosaic",
        "simulation",
        "testing",
        "variability",
        "visualization",
    }
)
DOMAIN = SCIENCE | {"tools", "state", "_casa", "_casa_data", "_optional"}
LAYERS: tuple[tuple[str, frozenset[str]], ...] = (
    ("cli", frozenset({"cli"})),
    ("web", frozenset({"web"})),
    ("services", frozenset({"services"})),
    ("pipeline", frozenset({"pipeline"})),
    ("domain", DOMAIN),
    ("utils", frozenset({"utils", "tables"})),
    ("foundation", frozenset({"exceptions", "products", "telescope", ""})),
)
"""Top to bottom; ``""`` is the package root (``dsa110_contimg/__init__.py``)."""

SEED_PATHS = frozenset(
    {
        f"{PACKAGE}.utils.monitoring",
        f"{PACKAGE}.utils.config_loader",
        f"{PACKAGE}.pipeline.exceptions",
    }
)
"""The seed architecture's import paths, kept as pure re-exports of modules that
now live elsewhere (possibly higher up): exempt from the layer rule, and held to
containing nothing but imports (``test_seed_paths_only_re_export``)."""


@dataclass(frozen=True)
class Import:
    """One resolved import statement: ``source`` imports ``target``."""

    source: str
    target: str
    path: Path
    line: int
    text: str

    def where(self) -> str:
        return f"{self.path.relative_to(SRC.parent)}:{self.line}: {self.text}"


def _module_files() -> dict[str, tuple[Path, bool]]:
    """Module name -> (file, is a package ``__init__``)."""
    modules = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        rel = path.relative_to(SRC).with_suffix("")
        if "__pycache__" in rel.parts or rel.parts[1] in NOT_CODE:
            continue
        parts = list(rel.parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        modules[".".join(parts)] = (path, is_package)
    return modules


MODULES = _module_files()


def _known(name: str) -> str | None:
    """The longest prefix of a dotted name that is one of `MODULES`."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _targets(module: str, is_package: bool, node: ast.stmt) -> list[str]:
    if isinstance(node, ast.Import):
        found = [_known(alias.name) for alias in node.names]
        return [t for t in found if t]
    assert isinstance(node, ast.ImportFrom)
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        origin = ".".join([*base, *([node.module] if node.module else [])])
    else:
        origin = node.module or ""
    if origin != PACKAGE and not origin.startswith(PACKAGE + "."):
        return []
    found = []
    for alias in node.names:
        sub = f"{origin}.{alias.name}"
        found.append(sub if sub in MODULES else _known(origin))
    return [t for t in dict.fromkeys(found) if t]


def _imports_of(module: str, path: Path, source: str) -> list[Import]:
    """The package-internal imports of one module's source, wherever they sit."""
    is_package = path.name == "__init__.py"
    lines = source.splitlines()
    found = []
    for node in ast.walk(ast.parse(source, filename=str(path))):
        if not isinstance(node, ast.Import | ast.ImportFrom):
            continue
        text = lines[node.lineno - 1].strip()
        if node.end_lineno and node.end_lineno > node.lineno:
            text = " ".join(ast.unparse(node).split())
        for target in _targets(module, is_package, node):
            if target != module:
                found.append(Import(module, target, path, node.lineno, text))
    return found


def _imports() -> list[Import]:
    found = []
    for module, (path, _is_package) in MODULES.items():
        found += _imports_of(module, path, path.read_text(encoding="utf-8"))
    return found


IMPORTS = _imports()


def _graph() -> dict[str, dict[str, Import]]:
    """Importer -> imported -> the first statement that makes the edge."""
    graph: dict[str, dict[str, Import]] = {m: {} for m in MODULES}
    for imp in IMPORTS:
        graph[imp.source].setdefault(imp.target, imp)
    return graph


def _strongly_connected(graph: dict[str, dict[str, Import]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative; components of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))
    return components


def _shortest_cycle(graph: dict[str, dict[str, Import]], members: list[str]):
    """The shortest cycle through the first module of a component (its edges)."""
    inside = set(members)
    start = members[0]
    previous: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for child in sorted(graph[node]):
            if child not in inside:
                continue
            if child == start:
                path = [node]
                while path[-1] != start:
                    path.append(previous[path[-1]])
                path.reverse()
                path.append(start)
                return [graph[a][b] for a, b in zip(path, path[1:], strict=False)]
            if child not in previous:
                previous[child] = node
                queue.append(child)
    msg = f"no cycle through {start}"
    raise AssertionError(msg)  # pragma: no cover


def _top(module: str) -> str:
    """``dsa110_contimg.pipeline.batch`` -> ``pipeline``; the root -> ``""``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _layer(module: str) -> int:
    """0 for the top layer (cli), growing downwards."""
    for rank, (_name, tops) in enumerate(LAYERS):
        if _top(module) in tops:
            return rank
    msg = (
        f"{module} belongs to no layer: add its package {_top(module)!r} to "
        "LAYERS in tests/unit/test_import_layers.py"
    )
    raise AssertionError(msg)


def _report(title: str, imports: list[Import]) -> str:
    lines = [f"{len(imports)} {title}:"]
    lines += [f"  {imp.source} -> {imp.target}\n      {imp.where()}" for imp in imports]
    return "\n".join(lines)


def test_the_scan_sees_the_package() -> None:
    assert f"{PACKAGE}.cli" in MODULES
    assert f"{PACKAGE}.pipeline.orchestrator" in MODULES
    assert f"{PACKAGE}.telescope.dsa110" in MODULES  # a namespace package
    assert not [m for m in MODULES if ".data." in m]
    assert len(MODULES) > 100
    assert len(IMPORTS) > 300


def test_import_forms_are_resolved() -> None:
    """Relative, from-package, submodule and function-level imports."""
    pipe = f"{PACKAGE}.pipeline"
    source = (
        "import numpy\n"
        "from .orchestrator import PipelineOrchestrator\n"
        "from .. import exceptions\n"
        "from . import batch, stages\n"
        f"from {pipe} import create_processing_block\n"
        f"import {pipe}.stages.imaging_stage as imaging\n"
        "def later():\n"
        f"    from {PACKAGE}.utils.config_loader import load_pipeline_config\n"
    )
    found = _imports_of(f"{pipe}.batch", PACKAGE_DIR / "pipeline" / "batch.py", source)
    assert [(i.target, i.line) for i in found] == [
        (f"{pipe}.orchestrator", 2),
        (f"{PACKAGE}.exceptions", 3),
        (f"{pipe}.stages", 4),  # batch itself is left out
        (pipe, 5),  # a name from the package's __init__
        (f"{pipe}.stages.imaging_stage", 6),
        (f"{PACKAGE}.utils.config_loader", 8),  # inside a function
    ]
    init = _imports_of(pipe, PACKAGE_DIR / "pipeline" / "__init__.py", source)
    assert (f"{pipe}.batch", 4) in [(i.target, i.line) for i in init]
    assert found[0].where() == (
        "src/dsa110_contimg/pipeline/batch.py:2: "
        "from .orchestrator import PipelineOrchestrator"
    )


def test_cycle_finder_reports_a_known_cycle() -> None:
    """A made-up graph: the finder returns the cycle with its statements."""

    def edge(a: str, b: str) -> Import:
        return Import(a, b, PACKAGE_DIR / f"{a}.py", 1, f"import {b}")

    graph = {
        "a": {"b": edge("a", "b")},
        "b": {"c": edge("b", "c")},
        "c": {"a": edge("c", "a"), "d": edge("c", "d")},
        "d": {},
    }
    (component,) = _strongly_connected(graph)
    assert component == ["a", "b", "c"]
    cycle = _shortest_cycle(graph, component)
    assert [(i.source, i.target) for i in cycle] == [("a", "b"), ("b", "c"), ("c", "a")]


def test_no_import_cycles() -> None:
    """No two modules import each other, directly or through others."""
    graph = _graph()
    messages = []
    for component in _strongly_connected(graph):
        cycle = _shortest_cycle(graph, component)
        path = " -> ".join([cycle[0].source, *(i.target for i in cycle)])
        lines = [f"cycle: {path}"]
        lines += [f"    {i.where()}" for i in cycle]
        if len(component) > len(cycle):
            lines.append(f"    (in a knot of {len(component)}: {', '.join(component)})")
        messages.append("\n".join(lines))
    if messages:
        pytest.fail(f"{len(messages)} import cycle(s):\n" + "\n".join(messages))


def test_layers_import_only_downwards() -> None:
    """cli -> services -> pipeline -> domain -> utils -> foundation."""
    upward = [
        imp
        for imp in IMPORTS
        if _top(imp.source) != _top(imp.target)
        and _layer(imp.target) < _layer(imp.source)
        and imp.source not in SEED_PATHS
    ]
    names = " -> ".join(name for name, _ in LAYERS)
    if upward:
        pytest.fail(_report(f"upward import(s) (layers: {names})", upward))


def test_seed_paths_only_re_export() -> None:
    """A seed path holds imports, ``__all__`` and its docstring, no logic."""
    for module in sorted(SEED_PATHS):
        path, _ = MODULES[module]
        tree = ast.parse(path.read_text())
        for node in tree.body:
            docstring = isinstance(node, ast.Expr) and isinstance(
                node.value, ast.Constant
            )
            dunder_all = isinstance(node, ast.Assign) and [
                getattr(t, "id", None) for t in node.targets
            ] == ["__all__"]
            assert (
                isinstance(node, ast.Import | ast.ImportFrom) or docstring or dunder_all
            ), (
                f"{path}:{node.lineno}: a seed path may only re-export; move this "
                "code to the module it re-exports"
            )
    nobody = [
        i for i in IMPORTS if i.target in SEED_PATHS and i.source.startswith(PACKAGE)
    ]
    assert not nobody, _report(
        "import(s) of a seed path from inside the package", nobody
    )


def test_nothing_outside_cli_imports_cli() -> None:
    bad = [i for i in IMPORTS if _top(i.target) == "cli" and _top(i.source) != "cli"]
    if bad:
        pytest.fail(_report("import(s) of the command line from outside it", bad))


def test_state_stands_apart_in_the_domain_layer() -> None:
    """Science, tools and the runtime never import state; state imports none of them."""
    bad = [
        imp
        for imp in IMPORTS
        if _top(imp.source) != _top(imp.target)
        and "state" in (_top(imp.source), _top(imp.target))
        and {_top(imp.source), _top(imp.target)} <= DOMAIN
    ]
    if bad:
        pytest.fail(_report("import(s) between state and the rest of its layer", bad))


@pytest.mark.parametrize("module", sorted(MODULES))
def test_every_module_imports(module: str) -> None:
    """Each module imports cleanly, from this source tree."""
    imported = importlib.import_module(module)
    assert Path(imported.__file__).resolve() == MODULES[module][0].resolve(), (
        f"{module} was imported from {imported.__file__}, not from {SRC}: put "
        "this tree's src/ first on the path (PYTHONPATH=src)"
    )
