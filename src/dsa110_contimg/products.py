"""The identity of every product: names, their parsing, and the block windows.

One module owns how a product is named and how a name is read back, so a
converted group keeps one identity from the MS to the light curve:

* an **MS** is one converted group, ``drift_<group start %Y%m%dT%H%M%S>_00.ms``
  (`ms_name`, `parse_ms_time`);
* an **image** is one MS imaged; its products share the MS's stem as prefix,
  ``<images_dir>/<stem>-<kind>.<ext>`` (`ImageNames`, `IMAGE_FILES`): the
  imager's ``image``, ``residual``, ``psf``, ``model`` (and WSClean's ``dirty``)
  maps and ``-<backend>.log``,
  then the derived ``pb``, ``rms``, ``pbcor`` maps, the ``preview``,
  ``residual_preview`` and ``pb_preview`` PNGs and the ``quality`` record;
* a **block** is a time window ``[start, end)`` of groups, named by its end,
  ``block_<end %Y%m%dT%H%M%S>`` (`BlockWindow`, `block_id`); its **mosaic**
  products are ``<mosaics_dir>/<block_id>-<kind>.<ext>`` (`mosaic_paths`) and
  its photometry table and summary page ``<products_dir>/photometry_<block_id>.csv``
  and ``summary_<block_id>.html`` (`block_paths`);
* an **epoch** of the light curves is one image or mosaic in one declination
  strip, ``<image_id>_dec<+dd.dd>`` (`image_id`, `epoch_id`).

Block windows are cut on one grid for batch and streaming alike
(`block_windows`): windows of ``services.mosaic_duration_min`` starting at
``queue.block_anchor_time`` plus multiples of ``mosaic_duration_min -
mosaic_overlap_min`` (`BlockGrid.from_config`). A group belongs to every window
whose ``[start, end)`` holds its start time. Because the grid is anchored at a
fixed epoch, not at the first group seen, the same night gives the same blocks
however it is split into runs and whichever way it is processed.

This module imports nothing from the package (it sits below every layer that
names products: tools, stages, services, state and the web API).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType

__all__ = [
    "STAMP_FORMAT",
    "MS_GLOB",
    "IMAGE_FILES",
    "MOSAIC_FILES",
    "BlockGrid",
    "BlockWindow",
    "ImageNames",
    "block_id",
    "block_paths",
    "block_windows",
    "block_windows_containing",
    "epoch_id",
    "group_stamp",
    "image_id",
    "ms_name",
    "mosaic_paths",
    "parse_block_id",
    "parse_ms_time",
]

STAMP_FORMAT = "%Y%m%dT%H%M%S"
"""The compact UTC time stamp in MS, image and block names."""

_MS_PREFIX = "drift_"
_MS_SUFFIX = "_00.ms"
MS_GLOB = "drift_*.ms"
"""The glob pattern of MS names (`ms_name`) in a directory."""
_BLOCK_PREFIX = "block_"

IMAGE_FILES: Mapping[str, str] = MappingProxyType(
    {
        "image": "-image.fits",
        "residual": "-residual.fits",
        "psf": "-psf.fits",
        "model": "-model.fits",
        "dirty": "-dirty.fits",
        "pb": "-pb.fits",
        "rms": "-rms.fits",
        "pbcor": "-pbcor.fits",
        "preview": "-image.png",
        "residual_preview": "-residual.png",
        "pb_preview": "-pb.png",
        "quality": "-qa.json",
    }
)
"""Suffix of each product of one image, by kind (after the MS stem)."""

MOSAIC_FILES: Mapping[str, str] = MappingProxyType(
    {
        "mosaic": "-mosaic.fits",
        "weight": "-weight.fits",
        "noise": "-noise.fits",
        "coverage": "-coverage.fits",
        "members": "-members.json",
        "png": "-mosaic.png",
    }
)
"""Suffix of each product of one block's mosaic, by kind (after the block id)."""


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def group_stamp(time: datetime) -> str:
    """Return the name stamp of a UTC time, e.g. ``20230601T000000``."""
    return _utc(time).strftime(STAMP_FORMAT)


def _parse_stamp(text: str) -> datetime | None:
    try:
        return datetime.strptime(text, STAMP_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None


# -- Measurement Sets ------------------------------------------------------------
def ms_name(group_time: datetime) -> str:
    """Return the MS name of the group starting at ``group_time`` (UTC).

    E.g. ``drift_20230601T000000_00.ms``; naive times are taken as UTC.
    """
    return f"{_MS_PREFIX}{group_stamp(group_time)}{_MS_SUFFIX}"


def parse_ms_time(path: str | os.PathLike[str]) -> datetime | None:
    """Return the group start time in an MS (or image-prefix) name, else None.

    ``drift_20230601T000000_00.ms`` (and the image prefix
    ``drift_20230601T000000_00``) give 2023-06-01 00:00:00 UTC.
    """
    name = Path(path).name.removesuffix(".ms")
    if not name.startswith(_MS_PREFIX):
        return None
    return _parse_stamp(name[len(_MS_PREFIX) : len(_MS_PREFIX) + 15])


# -- images ----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ImageNames:
    """The names of one image's products: ``<prefix>-<kind>.<ext>``.

    Parameters
    ----------
    prefix : Path
        ``<images_dir>/<MS stem>``, e.g. ``images/drift_20230601T000000_00``.
    """

    prefix: Path

    @classmethod
    def for_ms(
        cls, ms_path: str | os.PathLike[str], images_dir: str | os.PathLike[str]
    ) -> ImageNames:
        """Return the names of the image of ``ms_path`` under ``images_dir``."""
        return cls(Path(images_dir) / Path(ms_path).name.removesuffix(".ms"))

    @classmethod
    def of(cls, path: str | os.PathLike[str], kind: str = "image") -> ImageNames:
        """Return the names of the image a product file belongs to.

        Raises
        ------
        ValueError
            ``path`` is not named as a product of ``kind`` (`IMAGE_FILES`).
        """
        path = Path(path)
        suffix = IMAGE_FILES[kind]
        if not path.name.endswith(suffix) or path.name == suffix:
            msg = f"{path}: not an image product named <prefix>{suffix}"
            raise ValueError(msg)
        return cls(path.with_name(path.name.removesuffix(suffix)))

    @property
    def stem(self) -> str:
        """Return the image's stem (the MS stem), e.g. ``drift_..._00``."""
        return self.prefix.name

    @property
    def image(self) -> Path:
        """Return the restored image, ``<prefix>-image.fits``."""
        return self.path("image")

    @property
    def group_time(self) -> datetime | None:
        """Return the group start time in the stem (None when not an MS stem)."""
        return parse_ms_time(self.stem)

    def path(self, kind: str) -> Path:
        """Return the product of ``kind`` (a key of `IMAGE_FILES`)."""
        try:
            suffix = IMAGE_FILES[kind]
        except KeyError as err:
            msg = f"unknown image product kind {kind!r}; one of {sorted(IMAGE_FILES)}"
            raise ValueError(msg) from err
        return self.prefix.with_name(self.prefix.name + suffix)

    def log(self, backend: str) -> Path:
        """Return the imager's log, ``<prefix>-<backend>.log``."""
        return self.prefix.with_name(f"{self.prefix.name}-{backend}.log")

    def paths(self) -> dict[str, Path]:
        """Return every product path, keyed by kind."""
        return {kind: self.path(kind) for kind in IMAGE_FILES}

    def existing(self) -> list[Path]:
        """Return every file of this image on disk (maps, previews, logs), sorted."""
        return sorted(self.prefix.parent.glob(f"{self.prefix.name}-*"))


def image_id(path: str | os.PathLike[str]) -> str:
    """Return the identity of an image or mosaic: its file name without suffixes.

    ``drift_20230601T000000_00-image.fits`` gives ``drift_20230601T000000_00``
    (the MS's stem: its group's time) and ``block_20230601T010000-mosaic.fits``
    gives ``block_20230601T010000`` (the block's end time).
    """
    name = Path(str(path)).name.removesuffix(".fits")
    for suffix in ("-image", "-mosaic"):
        name = name.removesuffix(suffix)
    return name


def epoch_id(image_id: str, pointing_dec_deg: float) -> str:
    """Return the light-curve epoch of one image or mosaic, keyed by time and strip.

    Parameters
    ----------
    image_id : str
        The image's identity (see `image_id`); it holds the image's time.
    pointing_dec_deg : float
        Declination of the strip the image belongs to (``DSAPTDEC``), degrees;
        NaN when unknown (the epoch is then named by the image alone).

    Returns
    -------
    str
        ``<image_id>_dec<+dd.dd>``, e.g. ``block_20230601T010000_dec+16.30``:
        two strips observed at the same time are two epochs.
    """
    dec = float(pointing_dec_deg)
    if not math.isfinite(dec):
        return str(image_id)
    return f"{image_id}_dec{dec:+06.2f}"


# -- blocks and mosaics ----------------------------------------------------------
def block_id(end: datetime) -> str:
    """Return the id of the block ending at ``end`` (UTC), ``block_<end stamp>``."""
    return _BLOCK_PREFIX + group_stamp(end)


def parse_block_id(text: str) -> datetime | None:
    """Return the end time a block id names, or None when it is not a block id."""
    if not text.startswith(_BLOCK_PREFIX):
        return None
    return _parse_stamp(text[len(_BLOCK_PREFIX) :])


def mosaic_paths(block_id: str, mosaics_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Return the product paths of a block's mosaic, keyed by kind (`MOSAIC_FILES`)."""
    base = Path(mosaics_dir)
    return {kind: base / f"{block_id}{suffix}" for kind, suffix in MOSAIC_FILES.items()}


def block_paths(block_id: str, products_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Return a block's ``photometry`` table and ``summary`` page (in a directory)."""
    base = Path(products_dir)
    return {
        "photometry": base / f"photometry_{block_id}.csv",
        "summary": base / f"summary_{block_id}.html",
    }


@dataclass(frozen=True, slots=True, order=True)
class BlockWindow:
    """One block's time window ``[start, end)`` (UTC)."""

    start: datetime
    end: datetime

    @property
    def block_id(self) -> str:
        """Return the block id, ``block_<end as %Y%m%dT%H%M%S>``."""
        return block_id(self.end)

    def contains(self, time: datetime) -> bool:
        """Return whether ``time`` lies in ``[start, end)``."""
        return self.start <= time < self.end


@dataclass(frozen=True, slots=True)
class BlockGrid:
    """Where block windows start and how long they are.

    Parameters
    ----------
    anchor : datetime
        Start of window 0 (``queue.block_anchor_time``), UTC.
    duration : timedelta
        Window length (``services.mosaic_duration_min``).
    step : timedelta
        Distance between window starts (duration minus
        ``services.mosaic_overlap_min``).
    """

    anchor: datetime
    duration: timedelta
    step: timedelta

    @classmethod
    def from_config(cls, config: object) -> BlockGrid:
        """Return the grid of a `PipelineConfig` (its ``services`` and ``queue``)."""
        svc = config.services  # type: ignore[attr-defined]
        anchor = datetime.fromisoformat(config.queue.block_anchor_time)  # type: ignore[attr-defined]
        return cls(
            _utc(anchor),
            timedelta(minutes=svc.mosaic_duration_min),
            timedelta(minutes=svc.mosaic_duration_min - svc.mosaic_overlap_min),
        )

    def windows(self, times: Iterable[datetime]) -> dict[BlockWindow, list[datetime]]:
        """Return `block_windows` of ``times`` on this grid."""
        return block_windows(
            times, anchor=self.anchor, duration=self.duration, step=self.step
        )

    def window_ending(self, end: datetime) -> BlockWindow:
        """Return the window that ends at ``end``."""
        return BlockWindow(_utc(end) - self.duration, _utc(end))


def block_windows_containing(
    time: datetime,
    *,
    anchor: datetime,
    duration: timedelta,
    step: timedelta,
) -> list[BlockWindow]:
    """Return the windows whose ``[start, end)`` holds ``time``, earliest first.

    ``time`` is a timezone-aware group start time; ``anchor``, ``duration``
    and ``step`` are those of `block_windows` (which raises the same
    ValueError when ``duration`` or ``step`` is not positive).
    """
    if step <= timedelta(0) or duration <= timedelta(0):
        msg = f"duration and step must be positive, got {duration} and {step}"
        raise ValueError(msg)
    k = (time - anchor) // step
    windows = []
    while anchor + k * step + duration > time:
        start = anchor + k * step
        windows.append(BlockWindow(start, start + duration))
        k -= 1
    return windows[::-1]


def block_windows(
    times: Iterable[datetime],
    *,
    anchor: datetime,
    duration: timedelta,
    step: timedelta,
) -> dict[BlockWindow, list[datetime]]:
    """Return the block windows holding ``times``, each with the times it holds.

    The one rule of batch and streaming: windows of ``duration`` start at
    ``anchor + k * step`` (k any integer); a time belongs to every window
    whose ``[start, end)`` holds it (two when it falls in an overlap).

    Parameters
    ----------
    times : iterable of datetime
        Group start times (timezone-aware; naive ones are taken as UTC).
    anchor : datetime
        Start of window 0 (``queue.block_anchor_time``).
    duration : timedelta
        Window length (``mosaic_duration_min``).
    step : timedelta
        Distance between window starts (duration minus overlap).

    Returns
    -------
    dict
        Window -> its times (sorted, duplicates kept once), windows in time
        order; only windows that hold a time.

    Raises
    ------
    ValueError
        ``duration`` or ``step`` is not positive.
    """
    anchor = _utc(anchor)
    out: dict[BlockWindow, set[datetime]] = {}
    for time in times:
        time = _utc(time)
        for window in block_windows_containing(
            time, anchor=anchor, duration=duration, step=step
        ):
            out.setdefault(window, set()).add(time)
    return {window: sorted(out[window]) for window in sorted(out)}
