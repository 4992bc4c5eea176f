"""This installation's CASA data: casadata with a corrected observatory table.

casadata's ``geodetic/Observatories`` row for ``OVRO_MMA`` (the name CASA's
site lookup knows for the Owens Valley site, written to the MS as the
telescope name) says ``Type = ITRF`` but holds a longitude, latitude and
*geodetic height* (1188 m). CASA reads an ITRF row as spherical coordinates,
so the site sits 1188 m from the Earth's centre: listobs's antenna offsets
and ``msmetadata.antennaoffset`` come out ~6 370 km in elevation, and
``exportfits`` writes that position as OBSGEO. A row typed ``WGS84`` with the
same numbers is what the data mean.

`ensure_casa_data` builds, once per installation, a data directory that links
every casadata folder and table except ``Observatories``, which is a copy with
that row retyped and a ``DSA_110`` row (the array centre of
`dsa110_contimg.telescope.dsa110`) added, so that an MS named ``DSA_110``
(EveryBeam's name) is known to CASA too. The site configuration
(``data/casasiteconfig.py``) uses it when it exists. Nothing outside the
installation is written.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from pathlib import Path

__all__ = ["CASA_DATA_DIR", "ensure_casa_data", "fix_observatories"]

log = logging.getLogger(__name__)

CASA_DATA_DIR = Path(sys.prefix) / "share" / "dsa110_contimg" / "casa-data"
_MARKER = "DSA110_CASA_DATA"
_VERSION = "1"


def _source_dir() -> Path | None:
    try:
        import casadata
    except ImportError:
        return None
    path = Path(casadata.datapath)
    return path if (path / "geodetic" / "Observatories").is_dir() else None


def fix_observatories(table_dir: Path) -> list[str]:
    """Retype height-valued ITRF rows as WGS84 and add ``DSA_110``; return changes.

    Parameters
    ----------
    table_dir : Path
        A writable copy of a casacore ``Observatories`` table.
    """
    from casacore.tables import table

    from dsa110_contimg.telescope import dsa110

    changes = []
    with table(str(table_dir), readonly=False, ack=False) as obs:
        names = list(obs.getcol("Name"))
        types = list(obs.getcol("Type"))
        heights = obs.getcol("Height")
        for row, (name, kind) in enumerate(zip(names, types, strict=True)):
            # an ITRF row whose "height" is a geodetic height, not a radius
            if kind == "ITRF" and abs(float(heights[row])) < 1.0e5:
                obs.putcell("Type", row, "WGS84")
                changes.append(f"{name}: ITRF -> WGS84")
        if "DSA_110" not in names:
            from astropy import units as u
            from astropy.coordinates import EarthLocation

            loc = EarthLocation.from_geodetic(
                dsa110.ARRAY_LON_DEG * u.deg,
                dsa110.ARRAY_LAT_DEG * u.deg,
                dsa110.ARRAY_HEIGHT_M * u.m,
            )
            row = obs.nrows()
            obs.addrows(1)
            mjd = (
                float(obs.getcell("MJD", names.index("OVRO_MMA")))
                if ("OVRO_MMA" in names)
                else 50000.0
            )
            cells = {
                "MJD": mjd,
                "Name": "DSA_110",
                "Type": "WGS84",
                "Long": float(dsa110.ARRAY_LON_DEG),
                "Lat": float(dsa110.ARRAY_LAT_DEG),
                "Height": float(dsa110.ARRAY_HEIGHT_M),
                "X": float(loc.x.to_value(u.m)),
                "Y": float(loc.y.to_value(u.m)),
                "Z": float(loc.z.to_value(u.m)),
                "Source": "dsa110_contimg",
                "Comment": "DSA-110 array centre (telescope/dsa110.py)",
                "AntennaResponses": "",
            }
            for column in obs.colnames():
                if column in cells:
                    obs.putcell(column, row, cells[column])
            changes.append("DSA_110 added")
    return changes


def ensure_casa_data(dest: Path = CASA_DATA_DIR) -> Path | None:
    """Build (once) and return this installation's CASA data directory.

    Returns None, leaving CASA on casadata as it is, when casadata or
    python-casacore is missing or ``dest`` cannot be written (logged).
    """
    source = _source_dir()
    if source is None:
        return None
    marker = dest / _MARKER
    expected = f"{_VERSION} {source}"
    if marker.is_file() and marker.read_text().strip() == expected:
        return dest
    try:
        import casacore.tables  # noqa: F401
    except ImportError:
        return None
    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        (tmp / "geodetic").mkdir(parents=True)
        for entry in source.iterdir():
            if entry.name != "geodetic":
                (tmp / entry.name).symlink_to(entry)
        for entry in (source / "geodetic").iterdir():
            if entry.name == "Observatories":
                shutil.copytree(entry, tmp / "geodetic" / entry.name, symlinks=True)
            else:
                (tmp / "geodetic" / entry.name).symlink_to(entry)
        changes = fix_observatories(tmp / "geodetic" / "Observatories")
        (tmp / _MARKER).write_text(expected + "\n")
        old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
        if dest.exists():
            os.replace(dest, old)
        os.replace(tmp, dest)
        shutil.rmtree(old, ignore_errors=True)
    except (OSError, RuntimeError) as err:
        shutil.rmtree(tmp, ignore_errors=True)
        log.warning(
            "CASA data overlay not built; CASA uses casadata as shipped "
            "(listobs antenna offsets will be wrong)",
            extra={"path": str(dest), "error": str(err)},
        )
        return None
    log.info("CASA data overlay built", extra={"path": str(dest), "changes": changes})
    return dest


if __name__ == "__main__":  # scripts/setup.sh
    built = ensure_casa_data()
    print(f"CASA data: {built or 'casadata as shipped'}")
