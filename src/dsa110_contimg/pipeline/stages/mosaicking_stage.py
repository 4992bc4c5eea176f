"""Mosaicking stage: a block's group images coadded into one mosaic.

Every image planned for the block is a member. Members that are missing,
unreadable (``corrupt``), all-NaN (``empty``), lack their primary-beam or
rms map (``incomplete``) or failed their quality gates after a retry
(``rejected``, with the reason from the image's ``-qa.json``) are left out
with a `DataQualityWarning`; the mosaic
grid still covers where they would have been (placed by their group time at
the sidereal rate), so they show as a gap in the coverage map. Products, in
``mosaics_dir``: ``<block>-mosaic.fits`` (PB-corrected, inverse-variance
weighted), ``-weight.fits``, ``-noise.fits`` (predicted rms), ``-coverage.fits``
(images per pixel from their interior; 0 on finite pixels filled only from
the members' outer guard bands of ``mosaic.guard_beams`` beams),
``-members.json`` and ``-mosaic.png``, each written under a temporary name and
renamed, the mosaic last. A re-run with the same members
(paths, sizes, modification times) and settings skips the work.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TypeVar

import numpy as np
from astropy.io import fits
from astropy.utils.exceptions import AstropyUserWarning
from astropy.wcs import WCS

from dsa110_contimg import __version__
from dsa110_contimg.exceptions import DataQualityWarning, InputDataError
from dsa110_contimg.mosaic import (
    DriftTrack,
    MosaicInput,
    MosaicResult,
    coadd_images,
    image_frequency_hz,
    image_outline,
    mosaic_grid,
)
from dsa110_contimg.pipeline.stages._product_checks import fits_problem
from dsa110_contimg.pipeline.stages.image_quality import read_quality
from dsa110_contimg.products import ImageNames, mosaic_paths
from dsa110_contimg.tools.fits_header import (
    apply_header_cards,
    celestial_wcs,
    mosaic_observation_cards,
)
from dsa110_contimg.utils.config import MosaicConfig
from dsa110_contimg.utils.storage import (
    publish,
    temporary_path,
    write_errors_as_resource,
    writes_product,
)

__all__ = [
    "MosaicMember",
    "MemberStatus",
    "MosaicProduct",
    "mosaic_paths",
    "make_mosaic",
]

log = logging.getLogger(__name__)

_SIDEREAL_DEG_PER_S = 360.98564736629 / 86400.0
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class MosaicMember:
    """An image planned for a mosaic.

    Parameters
    ----------
    image_path : Path
        The restored image (``<prefix>-image.fits``).
    group_time : datetime, optional
        Start of the group; places the footprint of a missing image.
    pb_path, rms_path : Path, optional
        The primary-beam and rms maps the imaging stage made for it
        (`ImageProduct.pb_path`, ``rms_path``); default the names beside the
        image (`ImageNames`).
    """

    image_path: Path
    group_time: datetime | None = None
    pb_path: Path | None = None
    rms_path: Path | None = None

    def map_path(self, kind: str) -> Path:
        """Return the member's ``pb``, ``rms`` or ``quality`` file."""
        given = {"pb": self.pb_path, "rms": self.rms_path}.get(kind)
        return given if given is not None else ImageNames.of(self.image_path).path(kind)


@dataclass(frozen=True, slots=True)
class MemberStatus:
    """What became of one member: ``used`` or the reason it was left out."""

    image_path: Path
    status: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class MosaicProduct:
    """Files of one block's mosaic and the fate of each member."""

    block_id: str
    mosaic_path: Path
    weight_path: Path
    noise_path: Path
    coverage_path: Path
    members_path: Path
    preview_path: Path | None
    members: tuple[MemberStatus, ...]
    skipped: bool = False

    @property
    def n_used(self) -> int:
        """Return the number of images in the mosaic."""
        return sum(m.status == "used" for m in self.members)


def _fingerprint(members: Sequence[MosaicMember], cfg: MosaicConfig) -> str:
    parts: list[object] = [cfg.model_dump(mode="json"), __version__]
    for member in members:
        for path in (
            member.image_path,
            *(member.map_path(k) for k in ("pb", "rms", "quality")),
        ):
            try:
                stat = path.stat()
                parts.append([str(path), stat.st_size, stat.st_mtime_ns])
            except OSError:
                parts.append([str(path), None])
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _inspect(member: MosaicMember) -> tuple[MemberStatus | None, fits.Header | None]:
    """Return (a failure status or None, the image header if readable)."""
    path = member.image_path
    if not path.exists():
        return MemberStatus(path, "missing", "image file not found"), None
    try:
        header = _strict(fits.getheader, path)
        DriftTrack.from_header(header)
        celestial_wcs(header)
    except (OSError, ValueError, KeyError, InputDataError) as err:
        return MemberStatus(path, "corrupt", f"unreadable image: {err}"[:200]), None
    try:
        quality = read_quality(path)
    except InputDataError as err:
        return MemberStatus(path, "corrupt", str(err)[:200]), header
    if quality is not None and not quality.get("passed", True):
        reasons = "; ".join(str(r) for r in quality.get("reasons") or [])
        detail = f"failed its quality gates: {reasons}"
        return MemberStatus(path, "rejected", detail[:500]), header
    for kind in ("pb", "rms"):
        if not member.map_path(kind).exists():
            detail = f"no {kind} map; re-run the imaging stage"
            return MemberStatus(path, "incomplete", detail), header
    return None, header


def _shape(header: fits.Header) -> tuple[int, int]:
    return int(header["NAXIS2"]), int(header["NAXIS1"])


def _outlines(
    members: Sequence[MosaicMember], headers: dict[Path, fits.Header]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Return image outlines, placing headerless members by their group time."""
    outlines = {}
    for member in members:
        header = headers.get(member.image_path)
        if header is not None:
            outlines[member.image_path] = image_outline(
                celestial_wcs(header), _shape(header)
            )
    timed = [
        (m.group_time, outlines[m.image_path])
        for m in members
        if m.image_path in outlines and m.group_time is not None
    ]
    if timed:
        ref_time, (ref_ra, ref_dec) = timed[0]
        for member in members:
            if member.image_path in outlines or member.group_time is None:
                continue
            dt_s = (member.group_time - ref_time).total_seconds()
            outlines[member.image_path] = (
                (ref_ra + dt_s * _SIDEREAL_DEG_PER_S) % 360.0,
                ref_dec,
            )
    return list(outlines.values())


def _strict(reader: Callable[[Path], T], path: Path) -> T:
    """Return ``reader(path)``; raise ValueError when astropy says it is truncated."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", AstropyUserWarning)
        value = reader(path)
    for warning in caught:
        if "truncated" in str(warning.message):
            raise ValueError(str(warning.message))
    return value


def _load(path: Path) -> np.ndarray:
    with fits.open(path, memmap=False) as hdul:
        return np.asarray(hdul[0].data, dtype=np.float32)


def _read_plane(path: Path) -> np.ndarray:
    data = _strict(_load, path)
    return data.reshape(data.shape[-2:])


def _inputs(
    members: Sequence[MosaicMember],
    headers: dict[Path, fits.Header],
    failed: dict[Path, MemberStatus],
    guard_beams: float,
) -> Iterator[MosaicInput]:
    """Load each usable member lazily; record members whose data cannot be read."""
    for member in members:
        path = member.image_path
        if path in failed:
            continue
        try:
            image = _read_plane(path)
            pb = _read_plane(member.map_path("pb"))
            rms = _read_plane(member.map_path("rms"))
        except (OSError, TypeError, ValueError) as err:
            failed[path] = MemberStatus(
                path, "corrupt", f"unreadable data: {err}"[:200]
            )
            continue
        wcs = celestial_wcs(headers[path])
        guard = guard_beams * _beam_pix(headers[path], wcs)
        yield MosaicInput(str(path), image, pb, rms, wcs, guard_pix=guard)


def _beam_pix(header: fits.Header, wcs: WCS) -> float:
    """Return the restoring beam's major axis in pixels (1 without BMAJ)."""
    bmaj = float(header.get("BMAJ", 0.0) or 0.0)
    return max(bmaj / abs(float(wcs.wcs.cdelt[1])), 1.0)


def make_mosaic(
    block_id: str,
    members: Sequence[MosaicMember],
    mosaics_dir: Path,
    cfg: MosaicConfig,
    *,
    config_hash: str = "",
) -> MosaicProduct:
    """Coadd a block's images into a mosaic with weight, noise and coverage maps.

    Parameters
    ----------
    block_id : str
        The block; names the products.
    members : sequence of MosaicMember
        Every image planned for the block, in time order.
    mosaics_dir : Path
        Output directory (``paths.mosaics_dir``).
    cfg : MosaicConfig
        The ``mosaic`` section.
    config_hash : str
        Hash of the pipeline configuration, written to the header.

    Returns
    -------
    MosaicProduct

    Raises
    ------
    InputDataError
        No member can be used at all (nothing to mosaic).

    Warns
    -----
    DataQualityWarning
        For each member left out (missing, corrupt, empty, incomplete).
    """
    paths = mosaic_paths(block_id, mosaics_dir)
    png = paths["png"] if cfg.write_png else None
    fingerprint = _fingerprint(members, cfg)
    previous = _previous_members(paths, fingerprint)
    if previous is not None:
        log.info("mosaic exists, skipped", extra={"mosaic": str(paths["mosaic"])})
        return _product(block_id, paths, png, previous, skipped=True)
    t0 = time.perf_counter()
    # The previous mosaic stays until its replacement is complete: each map is
    # swapped in whole, and the members record (with the fingerprint that
    # makes a mosaic current) is written last.
    failed: dict[Path, MemberStatus] = {}
    headers: dict[Path, fits.Header] = {}
    for member in members:
        status, header = _inspect(member)
        if header is not None:
            headers[member.image_path] = header
        if status is not None:
            failed[member.image_path] = status
    usable = [m for m in members if m.image_path not in failed]
    if not usable:
        msg = (
            f"block {block_id}: none of its {len(members)} image(s) can be "
            "mosaicked (all missing or broken); re-run imaging for the block"
        )
        raise InputDataError(msg)
    cell_deg = (cfg.cell_size_arcsec() or 0.0) / 3600.0 or abs(
        float(celestial_wcs(headers[usable[0].image_path]).wcs.cdelt[1])
    )
    wcs, shape = mosaic_grid(
        _outlines(members, headers), cell_deg=cell_deg, projection=cfg.projection
    )
    result = coadd_images(
        _inputs(usable, headers, failed, cfg.guard_beams),
        wcs,
        shape,
        pb_cut=cfg.pb_cut,
        method=cfg.method,
        tile_pix=cfg.tile_pix,
    )
    statuses = _statuses(members, failed, result)
    _warn_left_out(block_id, statuses)
    used_headers = [headers[m.image_path] for m in statuses if m.status == "used"]
    if not used_headers:
        msg = f"block {block_id}: every image of the block is empty (all NaN)"
        raise InputDataError(msg)
    header = _mosaic_header(result, used_headers, statuses, cfg, config_hash)
    header["DSABLOCK"] = block_id
    header["DSAMHASH"] = (fingerprint, "members and settings fingerprint")
    _write_products(paths, result, header, statuses, fingerprint, png, block_id)
    log.info(
        "mosaic written",
        extra={
            "mosaic": str(paths["mosaic"]),
            "n_used": len(used_headers),
            "n_members": len(members),
            "shape": list(shape),
            "duration_s": round(time.perf_counter() - t0, 2),
        },
    )
    return _product(block_id, paths, png, statuses, skipped=False)


def _statuses(
    members: Sequence[MosaicMember],
    failed: dict[Path, MemberStatus],
    result: MosaicResult,
) -> tuple[MemberStatus, ...]:
    used = set(result.used)
    out = []
    for member in members:
        path = member.image_path
        if path in failed:
            out.append(failed[path])
        elif str(path) in used:
            out.append(MemberStatus(path, "used"))
        else:
            out.append(MemberStatus(path, "empty", "no finite pixel above the PB cut"))
    return tuple(out)


def _warn_left_out(block_id: str, statuses: Sequence[MemberStatus]) -> None:
    for member in statuses:
        if member.status == "used":
            continue
        message = (
            f"mosaic {block_id}: image {member.image_path} left out "
            f"({member.status}: {member.detail}); its area is a gap in the coverage"
        )
        log.warning(
            "mosaic member left out",
            extra={
                "block_id": block_id,
                "image": str(member.image_path),
                "status": member.status,
                "detail": member.detail,
            },
        )
        warnings.warn(message, DataQualityWarning, stacklevel=3)


def _mosaic_header(
    result: MosaicResult,
    used: Sequence[fits.Header],
    statuses: Sequence[MemberStatus],
    cfg: MosaicConfig,
    config_hash: str,
) -> fits.Header:
    header = result.wcs.to_header()
    for key in ("BMAJ", "BMIN", "BPA"):
        values = [float(h[key]) for h in used if key in h]
        if values:
            header[key] = (float(np.median(values)), "[deg] median of the images")
    tracks = [DriftTrack.from_header(h) for h in used]
    freqs = [image_frequency_hz(h) for h in used]
    header["BUNIT"] = "JY/BEAM"
    header["DSAMJD"] = (float(np.mean([t.mean_mjd for t in tracks])), "mean image MJD")
    header["DSAFREQ"] = (float(np.mean(freqs)), "[Hz] mean image frequency")
    header["DSAFMIN"] = min(t.freq_min_hz for t in tracks)
    header["DSAFMAX"] = max(t.freq_max_hz for t in tracks)
    header["DSAPTDEC"] = float(np.mean([t.pointing_dec_deg for t in tracks]))
    header["DSANMEM"] = (len(statuses), "images planned")
    header["DSANUSED"] = (len(used), "images used")
    header["DSANBAD"] = (len(statuses) - len(used), "images left out (gaps)")
    header["DSAPBCUT"] = (cfg.pb_cut, "primary-beam cut")
    header["DSAMETH"] = (cfg.method, "reprojection method")
    header["DSAIMGR"] = ",".join(sorted({str(h.get("DSAIMGR", "")) for h in used}))
    header["DSACAL"] = ",".join(sorted({str(h.get("DSACAL", "none")) for h in used}))
    apply_header_cards(header, mosaic_observation_cards(used, freq_hz=np.mean(freqs)))
    header["DSACFGH"] = config_hash
    header["DSAVERS"] = __version__
    header.add_history(
        f"dsa110_contimg {__version__}: inverse-variance mosaic, w = pb^2/rms^2"
    )
    for member in statuses:
        header.add_history(f"{member.status}: {member.image_path.name}")
    return header


@writes_product("FITS mosaic map")
def _write_fits(path: Path, data: np.ndarray, header: fits.Header, kind: str) -> None:
    out = header.copy()
    out["DSAPROD"] = (kind, "dsa110_contimg product kind")
    if kind == "coverage":
        out["BUNIT"] = ""
    elif kind == "weight":
        out["BUNIT"] = "(JY/BEAM)**-2"
    tmp = temporary_path(path)
    try:
        fits.PrimaryHDU(data, out).writeto(tmp)
        publish(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _write_products(
    paths: dict[str, Path],
    result: MosaicResult,
    header: fits.Header,
    statuses: Sequence[MemberStatus],
    fingerprint: str,
    png: Path | None,
    block_id: str,
) -> None:
    paths["mosaic"].parent.mkdir(parents=True, exist_ok=True)
    _write_fits(paths["weight"], result.weight, header, "weight")
    _write_fits(paths["noise"], result.noise, header, "noise")
    _write_fits(paths["coverage"], result.coverage, header, "coverage")
    record = {
        "block_id": block_id,
        "fingerprint": fingerprint,
        "members": [
            {"image_path": str(m.image_path), "status": m.status, "detail": m.detail}
            for m in statuses
        ],
    }
    if png is not None:
        from dsa110_contimg.visualization import write_preview

        n_used = sum(m.status == "used" for m in statuses)
        title = f"{block_id}: {n_used}/{len(statuses)} images"
        with np.errstate(all="ignore"):
            rms = (
                float(np.nanmedian(result.noise))
                if np.isfinite(result.noise).any()
                else None
            )
        write_preview(
            result.image, WCS(header), png, title=title, header=header, rms_jy=rms
        )
    _write_fits(paths["mosaic"], result.image, header, "mosaic")
    tmp = temporary_path(paths["members"])
    try:
        with write_errors_as_resource(paths["members"], "mosaic members record"):
            tmp.write_text(json.dumps(record, indent=1))
            publish(tmp, paths["members"])
    finally:
        tmp.unlink(missing_ok=True)


def _previous_members(
    paths: dict[str, Path], fingerprint: str
) -> tuple[MemberStatus, ...] | None:
    """Return the recorded member statuses if the mosaic is complete and current."""
    if not (paths["mosaic"].exists() and paths["members"].exists()):
        return None
    try:
        record = json.loads(paths["members"].read_text())
    except (OSError, ValueError):
        return None
    if record.get("fingerprint") != fingerprint:
        return None
    # whole maps, of one shape (a power loss can leave a truncated file)
    mosaic_problem = fits_problem(paths["mosaic"])
    if mosaic_problem is not None:
        log.warning(
            "mosaic not reused; making it again",
            extra={"mosaic": str(paths["mosaic"]), "reason": mosaic_problem},
        )
        return None
    with fits.open(paths["mosaic"], memmap=False) as hdul:
        shape = tuple(hdul[0].data.shape)
    for kind in ("weight", "noise", "coverage"):
        problem = fits_problem(paths[kind], shape=shape)
        if problem is not None:
            log.warning(
                "mosaic not reused; making it again",
                extra={"mosaic": str(paths[kind]), "reason": problem},
            )
            return None
    return tuple(
        MemberStatus(Path(m["image_path"]), m["status"], m.get("detail", ""))
        for m in record["members"]
    )


def _product(
    block_id: str,
    paths: dict[str, Path],
    png: Path | None,
    statuses: Sequence[MemberStatus],
    *,
    skipped: bool,
) -> MosaicProduct:
    return MosaicProduct(
        block_id,
        paths["mosaic"],
        paths["weight"],
        paths["noise"],
        paths["coverage"],
        paths["members"],
        png,
        tuple(statuses),
        skipped=skipped,
    )
