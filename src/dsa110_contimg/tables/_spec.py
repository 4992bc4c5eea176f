"""What a table declares: its columns, each with a name, dtype, unit and meaning."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

__all__ = ["Column", "TableSpec", "DTYPES"]

DTYPES = ("str", "bool", "int32", "int64", "float64")
"""The dtypes a column may have (numpy names; ``str`` is text)."""


@dataclass(frozen=True, slots=True)
class Column:
    """One column of a table.

    Parameters
    ----------
    name : str
        The column's name, the same in Python, CSV, Parquet, SQL and JSON
        (plain floats carry their unit as a suffix: ``flux_jy``, ``mjd``).
    dtype : {'str', 'bool', 'int32', 'int64', 'float64'}
        Type of its values.
    unit : str
        Astropy unit string (``'Jy'``, ``'deg'``); empty for a dimensionless
        number, a count, a flag or text.
    description : str
        What the values mean (Markdown).

    Raises
    ------
    ValueError
        An empty name or an unknown dtype.
    """

    name: str
    dtype: str
    unit: str = ""
    description: str = ""

    def __post_init__(self) -> None:
        """Check the name and dtype."""
        if not self.name or not self.name.isidentifier():
            msg = f"column name {self.name!r} must be a non-empty identifier"
            raise ValueError(msg)
        if self.dtype not in DTYPES:
            msg = f"column {self.name}: dtype {self.dtype!r} is not one of {DTYPES}"
            raise ValueError(msg)

    @property
    def numpy_dtype(self) -> np.dtype:
        """Return the numpy dtype of the values (``str`` columns: unicode)."""
        return np.dtype(self.dtype)


@dataclass(frozen=True, slots=True)
class TableSpec:
    """The columns of one table, in file order.

    Parameters
    ----------
    name : str
        Key of the table (``'photometry'``).
    title : str
        One line saying what a row is.
    columns : tuple of Column
        The columns, in the order files hold them.

    Raises
    ------
    ValueError
        Two columns share a name.
    """

    name: str
    title: str
    columns: tuple[Column, ...]

    def __post_init__(self) -> None:
        """Check that the names are unique."""
        names = [c.name for c in self.columns]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            msg = f"table {self.name}: column(s) {repeated} declared twice"
            raise ValueError(msg)

    @property
    def names(self) -> tuple[str, ...]:
        """Return the column names in file order."""
        return tuple(c.name for c in self.columns)

    def __contains__(self, name: object) -> bool:
        """Return True when the table has a column of that name."""
        return name in self.names

    def __getitem__(self, name: str) -> Column:
        """Return the column of that name.

        Raises
        ------
        KeyError
            The table has no such column.
        """
        for column in self.columns:
            if column.name == name:
                return column
        msg = f"table {self.name} has no column {name!r}; it has {self.names}"
        raise KeyError(msg)

    def names_of(self, *dtypes: str) -> tuple[str, ...]:
        """Return the names of the columns of the given dtypes, in file order."""
        return tuple(c.name for c in self.columns if c.dtype in dtypes)

    @property
    def units(self) -> dict[str, str]:
        """Return column name to unit, for the columns that have one."""
        return {c.name: c.unit for c in self.columns if c.unit}

    def subset(self, names: Iterable[str]) -> tuple[str, ...]:
        """Return ``names`` as a tuple after checking each is a column.

        Raises
        ------
        KeyError
            A name is not a column of this table.
        """
        chosen = tuple(names)
        unknown = [n for n in chosen if n not in self.names]
        if unknown:
            msg = f"table {self.name} has no column(s) {unknown}"
            raise KeyError(msg)
        return chosen

    def markdown(self) -> str:
        """Return the table of columns as Markdown (column, type, unit, meaning)."""
        lines = ["| column | type | unit | meaning |", "|---|---|---|---|"]
        for c in self.columns:
            meaning = " ".join(c.description.split()).replace("|", "\\|")
            lines.append(f"| `{c.name}` | {c.dtype} | {c.unit or '-'} | {meaning} |")
        return "\n".join(lines) + "\n"
