"""Quantities with units in config values: flux densities and angles as strings.

Config files write ``threshold: 1mJy`` and ``cell_size: 3arcsec``; these
parsers turn such strings into floats in the unit the name promises and
reject anything else with a message that shows the accepted forms.
"""

from __future__ import annotations

import re

__all__ = [
    "parse_flux_jy",
    "parse_angle_arcsec",
]


_FLUX_UNITS_JY = {"jy": 1.0, "mjy": 1e-3, "ujy": 1e-6, "µjy": 1e-6, "μjy": 1e-6}
_QUANTITY_RE = re.compile(
    r"^\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*([a-zA-Zµμ]+)\s*$"
)
_ANGLE_UNITS_ARCSEC = {
    "arcsec": 1.0,
    "asec": 1.0,
    "arcmin": 60.0,
    "amin": 60.0,
    "deg": 3600.0,
}


def parse_flux_jy(text: str) -> float:
    """Convert a flux density string such as ``"1mJy"`` to Jy.

    Parameters
    ----------
    text : str
        A number followed by ``Jy``, ``mJy`` or ``uJy`` (case-insensitive,
        optional space).

    Returns
    -------
    float
        Flux density (Jy).
    """
    match = _QUANTITY_RE.match(text)
    scale = _FLUX_UNITS_JY.get(match.group(2).lower()) if match else None
    if match is None or scale is None:
        msg = f"cannot parse flux density {text!r}; use e.g. '1mJy', '0.5Jy' or '50uJy'"
        raise ValueError(msg)
    return float(match.group(1)) * scale


def parse_angle_arcsec(text: str) -> float:
    """Convert an angle string such as ``"3arcsec"`` or ``"0.1deg"`` to arcsec.

    Parameters
    ----------
    text : str
        A number followed by ``arcsec``, ``arcmin`` or ``deg`` (``asec`` and
        ``amin`` also accepted).

    Returns
    -------
    float
        Angle (arcsec).
    """
    match = _QUANTITY_RE.match(text)
    scale = _ANGLE_UNITS_ARCSEC.get(match.group(2).lower()) if match else None
    if match is None or scale is None:
        msg = (
            f"cannot parse angle {text!r}; use e.g. '3arcsec', '1.5arcmin' or '0.1deg'"
        )
        raise ValueError(msg)
    return float(match.group(1)) * scale
