"""Photometry stage: forced photometry of catalogue sources on images and mosaics.

On a group image the primary-beam correction uses the beam averaged over the
group's drift (the beam is fixed on the meridian while the sky moves through
it), computed from the pointing track recorded in the image header by the
imaging stage. A mosaic is already primary-beam corrected: its rows have
``pb = 1`` and ``image_kind = 'mosaic'``, and their rms comes from the
mosaic's noise map (the rms predicted from the weights).

Every catalogue source near an image gets a row: one off the image (or whose
fitting box crosses its edge) is flagged ``EDGE`` with a NaN flux rather than
left out, and a measurement below ``photometry.detection_sigma`` is flagged
``UPPER_LIMIT`` and carries its limit. Each row names its image
(``image_id``) and the strip it belongs to (``pointing_dec_deg``); together
with the image's time they identify one light-curve epoch (`epoch_id`).

``flux_err_jy`` is the noise error and a measured systematic ``flux_sys_jy``
in quadrature: the in-image shape error of `measure_forced`, the flux left in
a group image's residual (`residual_excess`) and, per block, the scatter
between overlapping images (`add_overlap_systematic`). With
``photometry.estimator: dirty_equivalent`` a group image's fluxes and noise
errors come from `measure_dirty_equivalent` (the residual plus each source's
own clean components read through the dirty beam; its systematic is the
bright sources' sidelobes at the source) and the overlap term is added to
it, and a mosaic's are its members' inverse-variance mean
(`mosaic_rows_from_members`; the restored mosaic keeps its flags, peak and
rms).
"""

from __future__ import annotations

import logging
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS, FITSFixedWarning
from scipy.ndimage import map_coordinates

from dsa110_contimg.data_ingestion._photometry_dirty import measure_dirty_equivalent
from dsa110_contimg.data_ingestion.photometry import (
    Beam,
    ForcedPhotometryResult,
    PhotometryFlag,
    measure_forced,
    residual_excess,
)
from dsa110_contimg.data_ingestion.skymodel import SkyCatalog
from dsa110_contimg.exceptions import InputDataError
from dsa110_contimg.mosaic import DriftTrack, image_frequency_hz, primary_beam_at
from dsa110_contimg.pipeline.stages import bright_sources
from dsa110_contimg.pipeline.stages import image_quality as qa
from dsa110_contimg.pipeline.stages._photometry_members import mosaic_from_members
from dsa110_contimg.pipeline.stages._photometry_systematics import (
    add_overlap_systematic,
    mark_shared_systematic,
    set_systematic,
    table_fraction,
)
from dsa110_contimg.products import ImageNames
from dsa110_contimg.tables import (
    PHOTOMETRY_COLUMNS,
    conform_table,
    epoch_id,
    image_id,
    image_ids,
    photometry_table,
    read_photometry_table,
    split_epochs,
    write_photometry_table,
)
from dsa110_contimg.utils.config import PhotometryConfig

__all__ = [
    "PHOTOMETRY_COLUMNS",
    "conform_table",
    "epoch_id",
    "image_id",
    "image_ids",
    "add_overlap_systematic",
    "image_primary_beam",
    "measure_image",
    "measure_mosaic",
    "mosaic_rows_from_members",
    "split_epochs",
    "write_photometry_table",
    "read_photometry_table",
]

log = logging.getLogger(__name__)

_EDGE_FRACTION = 0.05


def _upper_limits(
    flux: np.ndarray, flux_err: np.ndarray, flags: np.ndarray, detection_sigma: float
) -> tuple[np.ndarray, np.ndarray]:
    """Flag forced measurements below ``detection_sigma`` and give their limits."""
    with np.errstate(invalid="ignore", divide="ignore"):
        below = np.isfinite(flux) & (flux_err > 0) & (flux < detection_sigma * flux_err)
    limit = np.where(below, detection_sigma * flux_err, np.nan)
    flags = np.where(below, flags | PhotometryFlag.UPPER_LIMIT, flags)
    return flags.astype(np.int32), limit


def _header_dec(header: fits.Header) -> float:
    try:
        return float(header.get("DSAPTDEC", np.nan))
    except (TypeError, ValueError):
        return float("nan")


def image_primary_beam(
    header: fits.Header, ra_deg: np.ndarray, dec_deg: np.ndarray
) -> np.ndarray:
    """Return the drift-averaged primary beam at positions in an image.

    Raises
    ------
    InputDataError
        The header lacks the pointing track written by the imaging stage.
    """
    return primary_beam_at(DriftTrack.from_header(header), ra_deg, dec_deg)


def _beam_at_sources(
    pb_path: Path | None,
    wcs: WCS,
    shape: tuple[int, int],
    sources: SkyCatalog,
    track: DriftTrack,
) -> np.ndarray:
    """Return the primary beam at the sources: from the map, else from the model."""
    pb = np.full(len(sources), np.nan)
    if pb_path is not None and Path(pb_path).exists() and len(sources):
        beam_map, _ = _read_2d(Path(pb_path))
        if beam_map.shape == tuple(shape):
            x, y = wcs.world_to_pixel_values(sources.ra_deg, sources.dec_deg)
            inside = (x >= 0) & (x <= shape[1] - 1) & (y >= 0) & (y <= shape[0] - 1)
            pb[inside] = map_coordinates(
                beam_map, [y[inside], x[inside]], order=1, mode="nearest"
            )
    missing = ~np.isfinite(pb)
    if missing.any():
        pb[missing] = primary_beam_at(
            track, sources.ra_deg[missing], sources.dec_deg[missing]
        )
    return pb


MIN_BEAM_PIXELS = 1.0
"""Fewest pixels across the restoring beam's minor axis (FWHM) photometry takes."""


def _check_beam_sampling(image_path: Path, beam: Beam, wcs: WCS) -> None:
    """Refuse an image whose restoring beam is narrower than a pixel.

    Below a pixel the beam fitted to the PSF is not a beam (WSClean fits a
    PSF sampled by one pixel as a sliver, e.g. 27" x 2" on 48" pixels) and
    the forced fit's fluxes are meaningless (they reach 1e50 Jy unflagged).
    """
    pixel_arcsec = float(np.min(np.abs(wcs.wcs.cdelt[:2]))) * 3600.0
    across = beam.minor_arcsec / pixel_arcsec
    if across < MIN_BEAM_PIXELS:
        msg = (
            f'{image_path}: restoring beam {beam.major_arcsec:.1f}" x '
            f'{beam.minor_arcsec:.1f}" is {across:.2f} pixels of '
            f'{pixel_arcsec:.3g}" across its minor axis; photometry needs at '
            f"least {MIN_BEAM_PIXELS:g}: the PSF is undersampled, re-image with a "
            "smaller imaging.cell_size (3-5 pixels across the beam)"
        )
        raise InputDataError(msg)


def measure_image(
    image_path: Path,
    catalog: SkyCatalog,
    cfg: PhotometryConfig,
    *,
    image_kind: str = "image",
    pb_path: Path | None = None,
) -> Table:
    """Measure every catalogue source near an image.

    Parameters
    ----------
    image_path : Path
        The restored image (with the imaging stage's pointing-track cards).
    catalog : SkyCatalog
        Sources to measure.
    cfg : PhotometryConfig
        The ``photometry`` section.
    image_kind : str
        ``image_kind`` of the rows.
    pb_path : Path, optional
        The image's primary-beam map (``-pb.fits``, `ImageProduct.pb_path`):
        the beam is read from it at the sources (bilinear), so the photometry
        uses the beam the PB-corrected image and the mosaic weights use. The
        beam model (`image_primary_beam`) stands in without a map, and off it.

    Returns
    -------
    astropy.table.Table
        One row per catalogue source within 0.75 image widths of the image
        centre, columns `PHOTOMETRY_COLUMNS`; ``flux_jy`` is the
        primary-beam-corrected flux density at the image's central frequency.
        Sources off the image, or whose fitting box crosses its edge or lies
        in its outer 5%, are flagged ``EDGE`` (off the image: NaN flux);
        those below ``cfg.detection_sigma`` are flagged ``UPPER_LIMIT``.
    """
    try:
        with fits.open(image_path, memmap=False) as hdul:  # one read, no faults
            header = hdul[0].header
            data = _native_float(hdul[0].data)
    except (OSError, TypeError, ValueError) as err:
        msg = f"{image_path}: cannot read FITS image ({err}); re-image the MS"
        raise InputDataError(msg) from err
    image = data.reshape(data.shape[-2:])
    with warnings.catch_warnings():  # WSClean's DATE-OBS gets a harmless 'datfix'
        warnings.simplefilter("ignore", FITSFixedWarning)
        wcs = WCS(header).celestial
    beam = Beam.from_header(header)
    _check_beam_sampling(image_path, beam, wcs)
    ny, nx = image.shape
    center = wcs.pixel_to_world(nx / 2, ny / 2)
    radius = 0.75 * max(nx, ny) * abs(wcs.wcs.cdelt[1])
    sub = catalog.select_within(center.ra.deg, center.dec.deg, radius)
    track = DriftTrack.from_header(header)  # the group's one pointing track
    if cfg.estimator == "dirty_equivalent":
        pb = _beam_at_sources(pb_path, wcs, image.shape, sub, track)
        result = _forced(image, wcs, beam, sub, cfg, pb)
        result, thermal = _dirty_equivalent(
            image_path, header, result, wcs, beam, sub, cfg
        )
        table = _image_table(result, image_path, header, track, image_kind, cfg, None)
        table.meta["thermal_fraction"] = thermal
        return table
    result, tau = _restored(image_path, image, wcs, beam, sub, cfg, pb_path, track)
    return _image_table(result, image_path, header, track, image_kind, cfg, tau)


def _forced(
    image: np.ndarray,
    wcs: WCS,
    beam: Beam,
    sub: SkyCatalog,
    cfg: PhotometryConfig,
    pb: np.ndarray,
) -> ForcedPhotometryResult:
    return measure_forced(
        image,
        wcs,
        sub.ra_deg,
        sub.dec_deg,
        beam=beam,
        names=sub.name,
        pb=pb,
        min_pb=cfg.min_pb,
        box_beams=cfg.box_beams,
        rms_box_beams=cfg.rms_annulus_beams,
    )


def _restored(
    image_path: Path,
    image: np.ndarray,
    wcs: WCS,
    beam: Beam,
    sub: SkyCatalog,
    cfg: PhotometryConfig,
    pb_path: Path | None,
    track: DriftTrack,
) -> tuple[ForcedPhotometryResult, float]:
    """Return the restored-image measurement and the residual's excess ``tau``."""
    with ThreadPoolExecutor(1, thread_name_prefix="residual-excess") as pool:
        # The residual's excess runs beside the measurement (the compiled
        # loops release the GIL; its own copy of the WCS, which is not
        # thread-safe): on two cores the stage takes the measurement's time.
        tau = pool.submit(
            _image_residual_excess, image_path, wcs.deepcopy(), beam, sub, cfg
        )
        pb = _beam_at_sources(pb_path, wcs, image.shape, sub, track)
        result = _forced(image, wcs, beam, sub, cfg, pb)
        tau = tau.result()
    return result, tau


def _dirty_equivalent(
    image_path: Path,
    header: fits.Header,
    result: ForcedPhotometryResult,
    wcs: WCS,
    beam: Beam,
    sub: SkyCatalog,
    cfg: PhotometryConfig,
) -> tuple[ForcedPhotometryResult, float]:
    """Replace the fluxes and errors by `measure_dirty_equivalent`'s.

    The flags, peak and rms stay those of the restored image; the systematic
    is the bright sources' sidelobes at the source (``sidelobe_jy``: the same
    sky's in overlapping images), to which the pair fit of
    `add_overlap_systematic` adds its part later. Also returns the thermal
    fraction of the noise error, `thermal_fraction`.
    """
    try:
        names = ImageNames.of(image_path)
    except ValueError as err:
        msg = (
            f"{image_path}: photometry.estimator dirty_equivalent needs a group "
            "image with the imager's residual, model and psf; measure this image "
            "with photometry.estimator: restored"
        )
        raise InputDataError(msg) from err
    parts = {}
    for kind in ("residual", "model", "psf"):
        path = names.path(kind)
        if not path.exists():
            msg = (
                f"{path}: missing; photometry.estimator dirty_equivalent reads the "
                "imager's residual, model and psf beside the image: re-image the MS "
                "or set photometry.estimator: restored"
            )
            raise InputDataError(msg)
        parts[kind] = _read_2d(path, keep_float32=True)[0]
    # sources subtracted in the visibilities are in neither the residual nor
    # the model: their restored apparent flux is added to what is left there
    subtracted = bright_sources.restored_apparent_jy(header)
    dirty = measure_dirty_equivalent(
        parts["residual"],
        parts["model"],
        parts["psf"],
        wcs,
        sub.ra_deg,
        sub.dec_deg,
        beam=beam,
        box_beams=cfg.box_beams,
        own_radius_beams=cfg.own_radius_beams,
        rms_box_beams=cfg.rms_annulus_beams,
        subtracted_jy=[subtracted.get(str(n), 0.0) for n in sub.name],
    )
    total = np.hypot(dirty.noise_jy, dirty.sidelobe_jy)
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = np.where(result.pb > 0, 1.0 / result.pb, np.nan)
        snr = dirty.flux_jy / total
    measured = replace(
        result,
        flux_jy=dirty.flux_jy * scale,
        flux_err_jy=total * scale,
        snr=snr,
        flux_sys_jy=dirty.sidelobe_jy * scale,
    )
    return measured, thermal_fraction(image_path, dirty.background_rms)


def thermal_fraction(image_path: Path, background_rms: float) -> float:
    """Return the share of a group image's residual rms that is thermal noise.

    The radiometer prediction of the image's quality record
    (``thermal_rms_jy``, `image_quality.thermal_rms_jy`) over the residual's
    background rms, at most 1. The rest of the residual is the clean's error
    on this sky (with 24 antennas at testing size ~90% of it: 1.6 mJy thermal
    in a 12-17 mJy residual); an overlapping image of the same sky makes much
    the same error at a source (the members' pulls correlate +0.41), so
    `mosaic_from_members` does not average that part down. 1 (all thermal,
    averaging down) where the image has no quality record or no finite rms.
    """
    record = qa.read_quality(image_path) or {}
    thermal = record.get("thermal_rms_jy")
    if thermal is None or not (np.isfinite(background_rms) and background_rms > 0):
        return 1.0
    return float(min(1.0, max(0.0, float(thermal) / background_rms)))


def _image_table(
    result: ForcedPhotometryResult,
    image_path: Path,
    header: fits.Header,
    track: DriftTrack,
    image_kind: str,
    cfg: PhotometryConfig,
    tau: float | None,
) -> Table:
    """Return the rows of one group image's measurement (flags, epoch, systematic).

    ``tau`` is the residual excess of the restored estimator; None for the
    dirty-equivalent one, whose ``flux_sys_jy`` (the sidelobes) is kept."""
    ny, nx = int(header["NAXIS2"]), int(header["NAXIS1"])
    # Imagers clean poorly near the border: measurements there are flagged EDGE.
    border = _EDGE_FRACTION * np.array([nx, ny])
    near_edge = (
        (result.x_pix < border[0])
        | (result.x_pix > nx - 1 - border[0])
        | (result.y_pix < border[1])
        | (result.y_pix > ny - 1 - border[1])
    )
    flags = np.where(near_edge, result.flags | PhotometryFlag.EDGE, result.flags)
    flags, limit = _upper_limits(
        result.flux_jy, result.flux_err_jy, flags, cfg.detection_sigma
    )
    mjd = track.mean_mjd  # the weighted mean time of the image's data
    freq_hz = image_frequency_hz(header)
    n = len(result)
    table = _rows(
        result,
        image_path,
        header,
        image_kind=image_kind,
        flags=flags,
        upper_limit_jy=limit,
        mjd=mjd,
        freq_hz=freq_hz,
    )
    if tau is None:  # dirty_equivalent: the measured sidelobe systematic stays
        mark_shared_systematic(table)
    else:
        set_systematic(table, table_fraction(table), tau)
    log.info(
        "photometry measured",
        extra={
            "image": str(image_path),
            "n_sources": n,
            "n_on_image": int(np.sum((flags & PhotometryFlag.EDGE) == 0)),
            "residual_excess": tau or 0.0,
        },
    )
    return table


def _image_residual_excess(
    image_path: Path, wcs: WCS, beam: Beam, sub: SkyCatalog, cfg: PhotometryConfig
) -> float:
    """Return `residual_excess` on the image's residual (0 when there is none)."""
    try:
        names = ImageNames.of(image_path)
    except ValueError:  # not a group image (a mosaic, a test's file)
        return 0.0
    residual_path, psf_path = names.path("residual"), names.path("psf")
    if not (residual_path.exists() and psf_path.exists()):
        return 0.0
    residual, _ = _read_2d(residual_path, keep_float32=True)
    psf, _ = _read_2d(psf_path, keep_float32=True)
    return residual_excess(
        residual, psf, wcs, sub.ra_deg, sub.dec_deg, beam=beam, box_beams=cfg.box_beams
    )


def measure_mosaic(
    mosaic_path: Path,
    catalog: SkyCatalog,
    cfg: PhotometryConfig,
    *,
    noise_path: Path,
    coverage_path: Path | None = None,
) -> Table:
    """Measure every catalogue source covered by a mosaic.

    Parameters
    ----------
    mosaic_path : Path
        Mosaic written by the mosaicking stage (primary-beam corrected).
    catalog : SkyCatalog
        Sources to measure.
    cfg : PhotometryConfig
        The ``photometry`` section (``box_beams``).
    noise_path : Path
        The mosaic's noise map (predicted rms), used as the local rms.
    coverage_path : Path, optional
        The mosaic's coverage map: a source whose fitting box holds a finite
        pixel of coverage 0 (filled only from the members' outer guard bands)
        is flagged ``EDGE``.

    Returns
    -------
    astropy.table.Table
        One row per source inside the mosaic's grid, columns
        `PHOTOMETRY_COLUMNS`; ``pb`` is 1 (the correction is already in the
        mosaic), ``image_kind`` is ``'mosaic'``, ``mjd`` the mean mid-time of
        the images used and ``freq_hz`` their mean frequency. A source on an
        uncovered (NaN) pixel is flagged ``EDGE | NAN`` with a NaN flux, one
        whose fitting box crosses the edge or reaches a pixel filled only from
        the members' guard bands ``EDGE``; one below ``cfg.detection_sigma``
        ``UPPER_LIMIT``.

    Raises
    ------
    InputDataError
        The mosaic or its noise map is unreadable or their shapes differ.
    """
    image, header = _read_2d(mosaic_path)
    noise, _ = _read_2d(noise_path)
    if noise.shape != image.shape:
        msg = f"{noise_path}: noise map shape {noise.shape} differs from mosaic"
        raise InputDataError(msg)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        wcs = WCS(header).celestial
    ny, nx = image.shape
    with np.errstate(invalid="ignore"):
        x, y = wcs.world_to_pixel_values(catalog.ra_deg, catalog.dec_deg)
    ix, iy = np.rint(np.nan_to_num(x, nan=-1)), np.rint(np.nan_to_num(y, nan=-1))
    inside = (ix >= 0) & (ix < nx) & (iy >= 0) & (iy < ny)
    covered = np.zeros(inside.shape, dtype=bool)
    covered[inside] = np.isfinite(image[iy[inside].astype(int), ix[inside].astype(int)])
    result = measure_forced(
        image,
        wcs,
        catalog.ra_deg[inside],
        catalog.dec_deg[inside],
        beam=Beam.from_header(header),
        names=catalog.name[inside],
        rms_map=noise,
        min_pb=0.0,
        box_beams=cfg.box_beams,
    )
    # A source on a blank (uncovered) pixel is off the mosaic: a flagged row.
    off = ~covered[inside]
    flux, flux_err = result.flux_jy.copy(), result.flux_err_jy.copy()
    peak, snr = result.peak_jy.copy(), result.snr.copy()
    flux_sys = np.asarray(result.flux_sys_jy, dtype=np.float64).copy()
    for values in (flux, flux_err, peak, snr, flux_sys):
        values[off] = np.nan
    flags = np.where(
        off, result.flags | PhotometryFlag.EDGE | PhotometryFlag.NAN, result.flags
    )
    if coverage_path is not None:
        coverage, _ = _read_2d(coverage_path)
        guard_only = np.isfinite(image) & (coverage == 0)
        half = int(np.ceil(cfg.box_beams * _beam_pix(header, wcs)))
        near_guard = _touches(guard_only, x[inside], y[inside], half)
        flags = np.where(near_guard, flags | PhotometryFlag.EDGE, flags)
    flags, limit = _upper_limits(flux, flux_err, flags, cfg.detection_sigma)
    n = len(result)
    table = _rows(
        result,
        mosaic_path,
        header,
        image_kind="mosaic",
        flags=flags,
        upper_limit_jy=limit,
        mjd=float(header.get("DSAMJD", np.nan)),
        freq_hz=float(header.get("DSAFREQ", np.nan)),
        flux_jy=flux,
        flux_err_jy=flux_err,
        peak_jy=peak,
        snr=snr,
        flux_sys_jy=flux_sys,
    )
    set_systematic(table, table_fraction(table), 0.0)
    log.info("mosaic measured", extra={"mosaic": str(mosaic_path), "n_sources": n})
    return table


def mosaic_rows_from_members(
    mosaic: Table,
    images: list[Table],
    used: list[str],
    cfg: PhotometryConfig,
) -> Table:
    """Return a mosaic's rows with fluxes from its members' group-image rows.

    The mosaic counterpart of ``photometry.estimator: dirty_equivalent``
    (`mosaic_from_members`: the members' inverse-variance mean, the mosaic's
    own weights at the source); ``UPPER_LIMIT`` is set from the combined flux.
    """
    out = mosaic_from_members(mosaic, images, used)
    flags = np.asarray(out["flags"]).astype(np.int64) & ~int(PhotometryFlag.UPPER_LIMIT)
    flags, limit = _upper_limits(
        np.asarray(out["flux_jy"], dtype=np.float64),
        np.asarray(out["flux_err_jy"], dtype=np.float64),
        flags,
        cfg.detection_sigma,
    )
    out["flags"] = flags
    out["upper_limit_jy"] = limit
    return out


def _rows(
    result: ForcedPhotometryResult,
    path: Path,
    header: fits.Header,
    *,
    image_kind: str,
    mjd: float,
    freq_hz: float,
    **columns: np.ndarray,
) -> Table:
    """Return the photometry rows of one image or mosaic (`photometry_table`).

    The measured columns come from ``result`` unless given in ``columns``
    (with ``flags`` and ``upper_limit_jy``); the image's time, frequency,
    kind, path, identity and strip are the same on every row.
    """
    measured = {
        name: getattr(result, "name" if name == "source_name" else name)
        for name in (
            "source_name",
            "ra_deg",
            "dec_deg",
            "flux_jy",
            "flux_err_jy",
            "peak_jy",
            "rms_jy",
            "snr",
            "pb",
            "flux_sys_jy",
        )
    }
    return photometry_table(
        {
            **measured,
            **columns,
            "mjd": mjd,
            "freq_hz": freq_hz,
            "image_kind": image_kind,
            "image_path": str(path),
            "image_id": image_id(path),
            "pointing_dec_deg": _header_dec(header),
        }
    )


def _beam_pix(header: fits.Header, wcs: WCS) -> float:
    bmaj = float(header.get("BMAJ", 0.0) or 0.0)
    return max(bmaj / abs(float(wcs.wcs.cdelt[1])), 1.0)


def _touches(mask: np.ndarray, x: np.ndarray, y: np.ndarray, half: int) -> np.ndarray:
    """Return which positions have a true ``mask`` pixel within +-half pixels."""
    ny, nx = mask.shape
    out = np.zeros(len(x), dtype=bool)
    if not mask.any():
        return out
    for k, (xk, yk) in enumerate(zip(np.rint(x), np.rint(y), strict=True)):
        x0, x1 = max(0, int(xk) - half), min(nx, int(xk) + half + 1)
        y0, y1 = max(0, int(yk) - half), min(ny, int(yk) + half + 1)
        out[k] = bool(mask[y0:y1, x0:x1].any())
    return out


def _native_float(data: np.ndarray) -> np.ndarray:
    """Return FITS data as native-endian float32 (as stored) or float64.

    The photometry computes in float64 from float32 pixels (exactly), so a
    float32 image is neither converted nor doubled in memory.
    """
    array = np.asarray(data)
    if array.dtype.kind == "f" and not array.dtype.isnative and array.flags.writeable:
        # FITS is big-endian: swap in the buffer just read (memmap=False), as
        # a new 100 MB array costs more in page faults than the swap
        array = array.byteswap(inplace=True).view(array.dtype.newbyteorder("="))
    if array.dtype.kind == "f" and array.dtype.itemsize == 4:
        return np.asarray(array, dtype=np.float32)
    return np.asarray(array, dtype=np.float64)


def _read_2d(
    path: Path, *, keep_float32: bool = False
) -> tuple[np.ndarray, fits.Header]:
    try:
        with fits.open(path, memmap=False) as hdul:
            header = hdul[0].header.copy()
            data = (
                _native_float(hdul[0].data)
                if keep_float32
                else np.asarray(hdul[0].data, dtype=np.float64)
            )
    except (OSError, TypeError, ValueError) as err:
        msg = f"{path}: cannot read FITS image ({err}); remake the product"
        raise InputDataError(msg) from err
    return data.reshape(data.shape[-2:]), header
