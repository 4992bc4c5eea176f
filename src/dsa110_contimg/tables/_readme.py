"""The README's tables of columns, generated from the declarations.

Each table sits between two markers::

    <!-- columns: photometry (generated: python -m dsa110_contimg.tables ...) -->
    | column | type | unit | meaning |
    ...
    <!-- end columns: photometry -->

`render_readme` replaces what lies between them with `TableSpec.markdown`;
a test fails when the README and the declarations differ.
"""

from __future__ import annotations

import re

from dsa110_contimg.tables._columns import TABLES

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
        if name not in TABLES:
            msg = f"README marker names table {name!r}; declared: {sorted(TABLES)}"
            raise KeyError(msg)
        opening = f"<!-- columns: {name} (generated: {_GENERATOR}) -->\n"
        return opening + TABLES[name].markdown() + match.group("close")

    return _BLOCK.sub(replace, text)
