"""Point-source sky catalogues (NVSS-like): an in-memory table and its CSV form.

The CSV format has one header line naming the columns, then one source per line::

    # comment lines and blank lines are skipped
    name,ra_deg,dec_deg,flux_jy,spectral_index,ref_freq_hz
    J000001+100000,0.004,10.0,0.0123,-0.7,1400000000.0

``name, ra_deg, dec_deg, flux_jy`` are required; ``spectral_index`` (default
-0.7) and ``ref_freq_hz`` (default 1.4e9) are optional, per column or, when the
column exists, per empty cell. Other columns are ignored.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.table import Table
from numpy.typing import ArrayLike, NDArray

from dsa110_contimg.exceptions import InputDataError
from dsa110_contimg.telescope.beam_models import angular_separation_rad

__all__ = [
    "CATALOG_COLUMNS",
    "DEFAULT_REF_FREQ_HZ",
    "DEFAULT_SPECTRAL_INDEX",
    "SkyCatalog",
    "load_catalog",
    "write_catalog",
]

DEFAULT_SPECTRAL_INDEX = -0.7
DEFAULT_REF_FREQ_HZ = 1.4e9
_REQUIRED = ("name", "ra_deg", "dec_deg", "flux_jy")
_OPTIONAL = {
    "spectral_index": DEFAULT_SPECTRAL_INDEX,
    "ref_freq_hz": DEFAULT_REF_FREQ_HZ,
}
CATALOG_COLUMNS: tuple[str, ...] = _REQUIRED + tuple(_OPTIONAL)
_FLOAT_FIELDS = ("ra_deg", "dec_deg", "flux_jy", "spectral_index", "ref_freq_hz")
_UNITS = {"ra_deg": "deg", "dec_deg": "deg", "flux_jy": "Jy", "ref_freq_hz": "Hz"}


@dataclass(frozen=True, slots=True, eq=False)
class SkyCatalog:
    """A catalogue of point sources with power-law spectra.

    All fields are read-only 1-D arrays of length ``n``. Scalars given for the
    numeric fields are broadcast to ``n``. Equality is identity (arrays have no
    single truth value).

    Parameters
    ----------
    name : ndarray of str, shape (n,)
        Source names.
    ra_deg, dec_deg : ndarray, shape (n,)
        ICRS position, degrees. RA is wrapped into [0, 360).
    flux_jy : ndarray, shape (n,)
        Flux density at ``ref_freq_hz``, Jy.
    spectral_index : ndarray, shape (n,)
        Power-law index ``alpha`` of ``S ~ f**alpha``.
    ref_freq_hz : ndarray, shape (n,)
        Reference frequency of ``flux_jy``, Hz.

    Raises
    ------
    ValueError
        Arrays of different lengths, non-finite positions, ``|dec| > 90`` or
        a non-positive reference frequency.
    """

    name: NDArray[np.str_]
    ra_deg: NDArray[np.float64]
    dec_deg: NDArray[np.float64]
    flux_jy: NDArray[np.float64]
    spectral_index: NDArray[np.float64]
    ref_freq_hz: NDArray[np.float64]

    def __post_init__(self) -> None:
        """Coerce the fields to read-only arrays and check them."""
        name = np.array(self.name, dtype=str, ndmin=1)
        if name.ndim != 1:
            msg = f"SkyCatalog name must be 1-D, got shape {name.shape}"
            raise ValueError(msg)
        name.setflags(write=False)
        object.__setattr__(self, "name", name)
        for field in _FLOAT_FIELDS:
            values = np.asarray(getattr(self, field), dtype=np.float64)
            try:
                values = np.broadcast_to(values, name.shape).copy()
            except ValueError as err:
                msg = (
                    f"SkyCatalog {field} has shape {values.shape}, "
                    f"expected ({name.size},) like name"
                )
                raise ValueError(msg) from err
            if field == "ra_deg":
                values = np.mod(values, 360.0)
            values.setflags(write=False)
            object.__setattr__(self, field, values)
        _check_values(self.ra_deg, self.dec_deg, self.ref_freq_hz)

    def __len__(self) -> int:
        """Return the number of sources."""
        return int(self.name.size)

    def flux_at(self, freq_hz: float) -> NDArray[np.float64]:
        """Return each source's flux density at ``freq_hz``.

        Parameters
        ----------
        freq_hz : float
            Frequency, Hz.

        Returns
        -------
        ndarray, shape (n,)
            ``flux_jy * (freq_hz / ref_freq_hz) ** spectral_index``, Jy.
        """
        if not freq_hz > 0:
            msg = f"freq_hz must be positive, got {freq_hz}"
            raise ValueError(msg)
        ratio = float(freq_hz) / self.ref_freq_hz
        return np.asarray(self.flux_jy * ratio**self.spectral_index, dtype=np.float64)

    def select_within(
        self, ra_deg: float, dec_deg: float, radius_deg: float
    ) -> SkyCatalog:
        """Return the sources within ``radius_deg`` of a sky position.

        Parameters
        ----------
        ra_deg, dec_deg : float
            Centre of the selection, degrees.
        radius_deg : float
            Great-circle radius, degrees (inclusive).

        Returns
        -------
        SkyCatalog
            The selected sources, in catalogue order.
        """
        sep_rad = angular_separation_rad(
            np.deg2rad(self.ra_deg),
            np.deg2rad(self.dec_deg),
            np.deg2rad(ra_deg),
            np.deg2rad(dec_deg),
        )
        return self.subset(sep_rad <= np.deg2rad(radius_deg))

    def to_table(self) -> Table:
        """Return the catalogue as an astropy Table with the CSV column names."""
        table = Table()
        for column in CATALOG_COLUMNS:
            table[column] = np.array(getattr(self, column))
            if column in _UNITS:
                table[column].unit = _UNITS[column]
        return table

    def subset(self, index: ArrayLike) -> SkyCatalog:
        """Return the sources at ``index`` (a boolean mask or integer indices)."""
        return SkyCatalog(*(getattr(self, column)[index] for column in CATALOG_COLUMNS))


def _check_values(
    ra_deg: NDArray[np.float64],
    dec_deg: NDArray[np.float64],
    ref_freq_hz: NDArray[np.float64],
) -> None:
    if not (np.all(np.isfinite(ra_deg)) and np.all(np.isfinite(dec_deg))):
        msg = "SkyCatalog positions must be finite"
        raise ValueError(msg)
    if np.any(np.abs(dec_deg) > 90.0):
        msg = "SkyCatalog dec_deg must lie within [-90, 90]"
        raise ValueError(msg)
    if not np.all(ref_freq_hz > 0):
        msg = "SkyCatalog ref_freq_hz must be positive"
        raise ValueError(msg)


def load_catalog(path: str | os.PathLike[str]) -> SkyCatalog:
    """Read a sky catalogue CSV file.

    Parameters
    ----------
    path : str or path-like
        CSV file in the format described in the module docstring.

    Returns
    -------
    SkyCatalog
        The sources in file order.

    Raises
    ------
    InputDataError
        The file is missing or unreadable, or malformed: a required column is
        missing, a row has the wrong number of fields, a value is not a finite
        number, ``ra_deg`` lies outside [0, 360), ``dec_deg`` outside
        [-90, 90], ``flux_jy`` is negative, ``ref_freq_hz`` is not positive
        or a source name repeats. The message names the file and the line.
    """
    path = Path(path)
    lines = _read_lines(path)
    if not lines:
        msg = f"{path}: no header line; expected columns {', '.join(CATALOG_COLUMNS)}"
        raise InputDataError(msg)
    line_numbers = [number for number, _ in lines]
    rows = list(csv.reader(text for _, text in lines))
    header = [cell.strip() for cell in rows[0]]
    _check_header(path, line_numbers[0], header)
    body, body_numbers = rows[1:], line_numbers[1:]
    for k, row in enumerate(body):
        if len(row) != len(header):
            msg = (
                f"{path}, line {body_numbers[k]}: expected {len(header)} fields "
                f"({', '.join(header)}), found {len(row)}"
            )
            raise InputDataError(msg)
    columns = list(zip(*body, strict=True)) if body else [()] * len(header)
    by_name = dict(zip(header, columns, strict=True))
    names = [cell.strip() for cell in by_name["name"]]
    for k, value in enumerate(names):
        if not value:
            msg = f"{path}, line {body_numbers[k]}: empty source name"
            raise InputDataError(msg)
    _check_unique_names(path, names, body_numbers)
    fields = {
        field: _parse_column(path, field, by_name.get(field), body_numbers)
        for field in _FLOAT_FIELDS
    }
    _check_ranges(path, fields, body_numbers)
    return SkyCatalog(np.array(names, dtype=str), **fields)


def _check_unique_names(path: Path, names: list[str], line_numbers: list[int]) -> None:
    """Raise when two rows share a name: photometry and light curves key on it."""
    first: dict[str, int] = {}
    for k, name in enumerate(names):
        if name in first:
            msg = (
                f"{path}, line {line_numbers[k]}: source name {name!r} repeats line "
                f"{line_numbers[first[name]]}; names identify sources in the "
                "photometry table and the light curves, so make them unique "
                "(e.g. append a suffix) or drop the duplicate row"
            )
            raise InputDataError(msg)
        first[name] = k


def _read_lines(path: Path) -> list[tuple[int, str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        msg = f"sky catalogue {path} does not exist; check the catalogue path"
        raise InputDataError(msg) from err
    except (OSError, UnicodeDecodeError) as err:
        msg = f"sky catalogue {path} cannot be read as UTF-8 text: {err}"
        raise InputDataError(msg) from err
    return [
        (number, line)
        for number, line in enumerate(text.splitlines(), start=1)
        if line.strip() and not line.lstrip().startswith("#")
    ]


def _check_header(path: Path, line_number: int, header: list[str]) -> None:
    missing = [column for column in _REQUIRED if column not in header]
    if missing:
        msg = (
            f"{path}, line {line_number}: header lacks required column(s) "
            f"{', '.join(missing)}; found {', '.join(header)}"
        )
        raise InputDataError(msg)
    repeated = sorted({column for column in header if header.count(column) > 1})
    if repeated:
        msg = f"{path}, line {line_number}: repeated column(s) {', '.join(repeated)}"
        raise InputDataError(msg)


def _parse_column(
    path: Path, field: str, cells: tuple[str, ...] | None, line_numbers: list[int]
) -> NDArray[np.float64]:
    default = _OPTIONAL.get(field)
    if cells is None:
        return np.full(len(line_numbers), default, dtype=np.float64)
    try:
        values = np.array(cells, dtype=np.float64)
    except ValueError:
        # Slow path, only for files that are malformed or have blank optional cells.
        values = np.empty(len(cells), dtype=np.float64)
        for k, cell in enumerate(cells):
            if default is not None and not cell.strip():
                values[k] = default
                continue
            try:
                values[k] = float(cell)
            except ValueError as err:
                msg = (
                    f"{path}, line {line_numbers[k]}: {field} value {cell!r} "
                    "is not a number"
                )
                raise InputDataError(msg) from err
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        k = int(bad[0])
        msg = (
            f"{path}, line {line_numbers[k]}: {field} value {cells[k]!r} is not finite"
        )
        raise InputDataError(msg)
    return values


def _check_ranges(
    path: Path, fields: dict[str, NDArray[np.float64]], line_numbers: list[int]
) -> None:
    ra = fields["ra_deg"]
    checks = (
        ("ra_deg", (ra < 0.0) | (ra >= 360.0), "is outside [0, 360)"),
        ("dec_deg", np.abs(fields["dec_deg"]) > 90.0, "is outside [-90, 90]"),
        ("flux_jy", fields["flux_jy"] < 0.0, "is negative"),
        ("ref_freq_hz", fields["ref_freq_hz"] <= 0.0, "is not positive"),
    )
    for field, is_bad, problem in checks:
        bad = np.flatnonzero(is_bad)
        if bad.size:
            k = int(bad[0])
            msg = (
                f"{path}, line {line_numbers[k]}: {field} value "
                f"{float(fields[field][k])!r} {problem}"
            )
            raise InputDataError(msg)


def write_catalog(catalog: SkyCatalog, path: str | os.PathLike[str]) -> None:
    """Write a sky catalogue as CSV, atomically.

    The file is written to ``path.with_suffix(".tmp")`` and renamed over
    ``path``, so readers never see a partial catalogue. Floats are written with
    ``repr`` and so round-trip exactly through :func:`load_catalog`.

    Parameters
    ----------
    catalog : SkyCatalog
        Sources to write.
    path : str or path-like
        Destination CSV file.
    """
    path = Path(path)
    tmp_path = path.with_suffix(".tmp")
    columns = [getattr(catalog, column).tolist() for column in CATALOG_COLUMNS]
    try:
        with tmp_path.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(CATALOG_COLUMNS)
            writer.writerows(zip(*columns, strict=True))
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
