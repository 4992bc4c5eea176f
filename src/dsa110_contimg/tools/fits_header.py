"""Write provenance cards into FITS headers."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from astropy.io import fits

__all__ = ["set_header_cards"]


def set_header_cards(path: Path, cards: Mapping[str, object]) -> None:
    """Set header cards of the primary HDU in place.

    Keys longer than 8 characters become HIERARCH cards; values that are not
    numbers or booleans are stored as strings; a ``HISTORY`` key may hold a
    list of lines.
    """
    with fits.open(path, mode="update") as hdul:
        header = hdul[0].header
        for key, value in cards.items():
            if key == "HISTORY":
                for line in value if isinstance(value, list | tuple) else [value]:
                    header.add_history(str(line))
                continue
            if not isinstance(value, bool | int | float):
                value = str(value)
            card_key = key if len(key) <= 8 else f"HIERARCH {key}"
            header[card_key] = value
