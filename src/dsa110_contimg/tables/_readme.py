"""The README's tables of columns, generated from the declarations.

Each table sits between two markers::

    <!-- columns: photometry (generated: python -m dsa110_contimg.tables ...) -->
    | column | type | unit | meaning |
    ...
    <!-- end columns: photometry -->

`render_readme` replaces what lies between them with `TableSpec.markdown`
(the block named ``metrics``: `metrics_markdown`, the Prometheus metrics of
``tables.METRICS``); a test fails when the README and the declarations differ.
"""

from __future__ import annotations

import re

from dsa110_contimg.tables._columns import TABLES
from dsa110_contimg.tables._metrics import metrics_markdown

__all__ = ["render_readme", "readme_tables"]

_GENERATOR = "python -m dsa110_contimg.tables --readme README.md"
_BLOCK = re.compile(
    r"(?P<open><!-- columns: (?P<name>\w+) \(generated: [^)]*\) -->\n)"
    r"(?P<body>.*?)"
    r"(?P<close><!-- end columns: (?P=name) -->)",
    re.DOTALL,
)


def readme_tables(text: str) -> list[str]:
    """Return the names of the generated tables a README holds, in order."""
    return [m.group("name") for m in _BLOCK.finditer(text)]


def render_readme(text: str) -> str:
    """Return ``text`` with every generated table rewritten from its declaration.

    Raises
    ------
    KeyError
        A marker names a table that is not declared.
    """

    def replace(match: re.Match[str]) -> str:
        name = match.group("name")
        if name == "metrics":
            body = metrics_markdown()
        elif name in TABLES:
            body = TABLES[name].markdown()
        else:
            known = sorted([*TABLES, "metrics"])
            msg = f"README marker names table {name!r}; declared: {known}"
            raise KeyError(msg)
        opening = f"<!-- columns: {name} (generated: {_GENERATOR}) -->\n"
        return opening + body + match.group("close")

    return _BLOCK.sub(replace, text)
