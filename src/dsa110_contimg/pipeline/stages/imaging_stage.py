"""Imaging stage: one MS to a restored image and its derived maps, with provenance.

Per group (MS) the stage writes, under ``<images_dir>/<ms stem>``:
``-image.fits`` (restored), ``-residual.fits``, ``-psf.fits``, ``-model.fits``
from the imager (`imaging.backend`), then ``-pb.fits`` (the drift-averaged
primary beam on the image grid), ``-rms.fits`` (sliding-window robust rms of
the residual), ``-pbcor.fits`` (image / pb, NaN where pb < ``pb_limit``) and
``-image.png`` and ``-residual.png`` (block-averaged previews of at most
``imaging.preview_max_pix`` with the beam, rms, frequency and time) and
``-pb.png`` (the primary beam), made by
`dsa110_contimg.pipeline.stages.derived_maps`. All carry the image's WCS and
provenance cards; each is written under a temporary name and renamed. A re-run
skips the imager when the restored image exists and only makes missing derived
maps.

With ``imaging.qa_enabled`` each new image is measured against the quality
gates (`dsa110_contimg.pipeline.stages.image_quality`); a failed image is made
again once with safer clean parameters (`safer_params`: a shallower
auto-threshold, an auto-mask, a lower major-cycle gain) and the verdict of the
last attempt, with the earlier attempts, is written to ``-qa.json``.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
from astropy.wcs import WCS

from dsa110_contimg import __version__
from dsa110_contimg.data_ingestion.ms_info import read_ms_info, read_weight_profile
from dsa110_contimg.data_ingestion.skymodel import SkyCatalog
from dsa110_contimg.mosaic import DriftTrack, drift_track_cards, primary_beam_at
from dsa110_contimg.pipeline.stages import bright_sources
from dsa110_contimg.pipeline.stages import image_quality as qa
from dsa110_contimg.pipeline.stages._product_checks import (
    IMAGING_KEY_CARD,
    fits_problem,
    imaging_key,
)
from dsa110_contimg.pipeline.stages.calibration_stage import ms_calibration
from dsa110_contimg.pipeline.stages.derived_maps import (
    MIN_FINITE_FRACTION,
    make_derived_products,
)
from dsa110_contimg.products import ImageNames
from dsa110_contimg.tools.fits_header import celestial_wcs, ms_observation_cards
from dsa110_contimg.tools.imagers import ImageProduct, ImagingParams, get_imager
from dsa110_contimg.utils.config import ImagingConfig, section_values

__all__ = [
    "celestial_wcs",
    "field_edge_pb",
    "imaging_params",
    "image_ms",
    "image_prefix",
    "make_derived_products",
    "safer_params",
]

log = logging.getLogger(__name__)


def imaging_params(cfg: ImagingConfig) -> ImagingParams:
    """Return the backend-neutral parameters of the ``imaging`` config section.

    Every `ImagingParams` field named like a section key takes its value
    (`section_values`); the clean threshold and the cell size are parsed from
    their unit strings.
    """
    values = section_values(cfg, ImagingParams)
    values["multiscale_scales_pix"] = values["multiscale_scales_pix"] or None
    return ImagingParams(
        **values,
        cell_arcsec=cfg.cell_size_arcsec(),
        threshold_jy=cfg.threshold_jy(),
    )


def safer_params(params: ImagingParams, cfg: ImagingConfig) -> ImagingParams:
    """Return the parameters of a retry after a failed quality gate.

    The clean stops at ``qa_retry_auto_threshold_sigma`` at least (a
    shallower threshold), inside an auto-mask built at
    ``qa_retry_auto_mask_sigma`` at least, with a major-cycle gain of at most
    ``qa_retry_mgain`` (more major cycles, each model closer to the data)
    and a minor-loop gain of at most ``qa_retry_gain`` (a loop gain that
    overshoots the peak makes the minor loop diverge).
    """
    return replace(
        params,
        auto_threshold_sigma=max(
            params.auto_threshold_sigma or 0.0, cfg.qa_retry_auto_threshold_sigma
        ),
        auto_mask_sigma=max(
            params.auto_mask_sigma or 0.0, cfg.qa_retry_auto_mask_sigma
        ),
        mgain=min(params.mgain, cfg.qa_retry_mgain),
        gain=min(params.gain, cfg.qa_retry_gain),
    )


def _param_record(params: ImagingParams) -> dict[str, object]:
    keys = (
        "niter",
        "auto_threshold_sigma",
        "auto_mask_sigma",
        "mgain",
        "gain",
        "threshold_jy",
    )
    return {k: getattr(params, k) for k in keys}


def _gated_image(
    imager: object,
    ms_path: Path,
    prefix: Path,
    params: ImagingParams,
    header: dict[str, object],
    cfg: ImagingConfig,
    bright: SkyCatalog | None = None,
    track: DriftTrack | None = None,
    thermal: float | None = None,
) -> ImageProduct:
    """Image, measure the gates, retry once with safer parameters if failed.

    Subtracted ``bright`` sources are restored (`bright_sources`) into each
    attempt's image before it is measured. ``thermal`` is the MS's
    radiometer rms (`image_quality.thermal_rms_jy`), computed when not given.
    """
    if thermal is None:
        thermal = _thermal_rms(Path(ms_path), cfg, params)
    attempts: list[dict[str, object]] = []
    for attempt in (params, safer_params(params, cfg)):
        product = imager.make_image(Path(ms_path), prefix, attempt, header=header)
        if bright is not None and track is not None:
            bright_sources.restore_sources(product.image_path, bright, track)
        quality = _measure(
            product, thermal, cfg, params=_param_record(attempt), attempts=attempts
        )
        if quality.passed:
            break
        log.warning(
            "image failed its quality gates",
            extra={
                "image": str(product.image_path),
                "attempt": len(attempts) + 1,
                "reason": quality.reason,
            },
        )
        record = quality.to_dict()
        record.pop("attempts", None)
        attempts.append(record)
        log_path = product.log_path
        if log_path.exists():  # keep the failed attempt's log for the record
            os.replace(log_path, log_path.with_suffix(f".attempt{len(attempts)}.log"))
    path = qa.write_quality(quality)
    return replace(product, quality_path=path)


def _skipped_quality(product: ImageProduct, ms_path: Path, cfg: ImagingConfig) -> Path:
    """Return the quality record of an existing image, measuring it if missing."""
    path = qa.quality_path(product.image_path)
    if path.exists():
        return path
    thermal = qa.thermal_rms_jy(
        Path(ms_path), sefd_jy=cfg.qa_sefd_jy, min_uv_lambda=cfg.min_uv_lambda
    )
    return qa.write_quality(_measure(product, thermal, cfg))


def _measure(
    product: ImageProduct, thermal: float, cfg: ImagingConfig, **record: object
) -> qa.ImageQuality:
    """Measure an imager's products against the quality gates."""
    return qa.measure_quality(
        product.image_path,
        product.residual_path,
        qa.clean_history(product.log_path, product.backend),
        thermal,
        cfg,
        **record,
    )


def field_edge_pb(
    image_size: tuple[int, int], cell_arcsec: float, track: DriftTrack
) -> float:
    """Return the largest drift-averaged primary beam on the border of a field.

    Parameters
    ----------
    image_size : (int, int)
        Image size ``(n_x, n_y)``, pixels (as ``imaging.image_size``).
    cell_arcsec : float
        Pixel size, arcsec.
    track : DriftTrack
        The group's pointing track and band; the field is centred on the beam
        centre at the middle of the track, as the imager's phase centre is.

    Returns
    -------
    float
        The beam's power response at the field's border; the field holds
        every position where the beam exceeds it, so a field "covers the beam
        down to ``min_pb``" when this is <= ``min_pb``.
    """
    nx, ny = (int(n) for n in image_size)
    ra_c, dec_c = track.beam_centres_deg()
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---SIN", "DEC--SIN"]
    wcs.wcs.crval = [float(np.median(ra_c)), float(np.median(dec_c))]
    wcs.wcs.crpix = [nx / 2 + 1, ny / 2 + 1]
    wcs.wcs.cdelt = [-cell_arcsec / 3600.0, cell_arcsec / 3600.0]
    sx = np.linspace(-0.5, nx - 0.5, 129)
    sy = np.linspace(-0.5, ny - 0.5, 129)
    px = np.concatenate([sx, sx, np.full(129, -0.5), np.full(129, nx - 0.5)])
    py = np.concatenate([np.full(129, -0.5), np.full(129, ny - 0.5), sy, sy])
    ra, dec = wcs.pixel_to_world_values(px, py)
    return float(np.max(primary_beam_at(track, ra, dec)))


def image_prefix(ms_path: Path, images_dir: Path) -> Path:
    """Return the product prefix of an MS's image (``images_dir/<ms stem>``)."""
    return ImageNames.for_ms(ms_path, images_dir).prefix


def image_ms(
    ms_path: Path,
    images_dir: Path,
    cfg: ImagingConfig,
    *,
    config_hash: str = "",
    derived: bool = True,
    catalog: SkyCatalog | None = None,
) -> ImageProduct:
    """Image one MS unless its restored image already exists.

    The restored image carries provenance (input MS, backend and version,
    config hash, software version) and the drift-scan pointing track
    (``DSAPTDEC``, ``DSAT0MJD``, ``DSADTSEC``, ``DSANTIME``, ``DSAFMIN``,
    ``DSAFMAX``, and the unflagged weight of each integration and beam
    frequency, ``DSATWnnn``/``DSAFWnnn``) from which the effective primary
    beam is computed. The derived maps (primary beam, rms, PB-corrected
    image, PNG preview) are then made by `make_derived_products` (also for a
    skipped image whose maps are missing) unless ``derived`` is false (the
    benchmarks time them apart).

    With WSClean, bright sources are subtracted in the visibilities before
    the clean and restored into the restored image after it
    (`bright_sources`): the flux standards above
    ``cfg.subtract_standards_min_jy`` at their catalogue fluxes, and the
    ``catalog``'s sources above ``cfg.subtract_catalogue_min_snr`` times the
    expected image rms at fluxes fitted in the visibilities (off by default).

    Raises
    ------
    ImagingError
        The imager is missing or failed; no restored image is left behind.
    InputDataError
        An existing restored image is unreadable (delete it to re-image).
    """
    names = ImageNames.for_ms(ms_path, images_dir)
    prefix, image_path = names.prefix, names.image
    calibration = ms_calibration(Path(ms_path))
    key = imaging_key(_image_settings(cfg), calibration)
    problem = (
        fits_problem(
            image_path,
            shape=tuple(reversed(cfg.image_size)),
            min_finite_fraction=MIN_FINITE_FRACTION,
            key=key,
        )
        if image_path.exists()
        else "missing"
    )
    if problem != "missing" and problem is not None:
        # a truncated file, another configuration or calibration: made again
        # (the imager replaces the old products only once it has succeeded)
        log.warning(
            "existing image not reused; imaging again",
            extra={"image": str(image_path), "reason": problem},
        )
    if problem is None:
        log.info("image exists, skipped", extra={"image": str(image_path)})
        skipped = ImageProduct(
            Path(ms_path),
            image_path,
            names.path("residual"),
            names.path("psf"),
            names.path("model"),
            names.log(cfg.backend),
            cfg.backend,
            "",
            (),
            skipped=True,
        )
        if cfg.qa_enabled:
            skipped = replace(
                skipped, quality_path=_skipped_quality(skipped, Path(ms_path), cfg)
            )
        return make_derived_products(skipped, cfg) if derived else skipped
    Path(images_dir).mkdir(parents=True, exist_ok=True)
    info = read_ms_info(Path(ms_path))
    binary = {
        "wsclean": cfg.wsclean_path,
        "tclean": cfg.casa_python,
        "fake": cfg.fake_sky_path and str(cfg.fake_sky_path),
    }[cfg.backend]
    imager = get_imager(cfg.backend, binary=binary)
    weights = read_weight_profile(Path(ms_path))
    header = {
        "DSAMS": Path(ms_path).name,
        "DSAGROUP": info.group_id,
        "DSAPTDEC": info.pointing_dec_deg,
        # the track on the integrations' cadence, with the unflagged weight
        # of each integration and beam frequency
        **drift_track_cards(
            weights.times_mjd,
            weights.time_weight,
            weights.freqs_hz,
            weights.chan_weight,
        ),
        "DSAIMGR": cfg.backend,
        "DSACFGH": config_hash,
        IMAGING_KEY_CARD: key,
        "DSAVERS": __version__,
        "DSACAL": "none",
        **ms_observation_cards(Path(ms_path)),
        "HISTORY": [
            f"dsa110_contimg {__version__} imaged {Path(ms_path).name} with "
            f"{cfg.backend}; config hash {config_hash}"
        ],
    }
    edge_pb = field_edge_pb(
        cfg.image_size, cfg.cell_size_arcsec(), DriftTrack.from_header(header)
    )
    if edge_pb > cfg.pb_limit:
        log.warning(
            "field smaller than the primary beam: sources beyond it are not "
            "deconvolved; enlarge imaging.image_size",
            extra={"ms": str(ms_path), "edge_pb": round(edge_pb, 3)},
        )
    params = imaging_params(cfg)
    if calibration is not None:
        header["DSACAL"] = calibration
        params = replace(params, data_column="CORRECTED_DATA")
    track = DriftTrack.from_header(header)
    thermal = (
        _thermal_rms(Path(ms_path), cfg, params)
        if cfg.qa_enabled or _fits_catalogue(cfg, catalog)
        else math.nan
    )
    params, bright = _subtract_bright(
        Path(ms_path), cfg, params, track, catalog, thermal
    )
    if bright is not None:
        header["HISTORY"].append(
            "subtracted before imaging and restored after it: "
            + ", ".join(map(str, bright.name))
        )
    if cfg.qa_enabled:
        product = _gated_image(
            imager, Path(ms_path), prefix, params, header, cfg, bright, track, thermal
        )
        record = qa.read_quality(product.image_path) or {}
        if not record.get("passed", True) and record.get("peak_jy") is None:
            # a clean that ran away to NaN: nothing to derive, and the image is
            # kept out of the mosaic by its quality record
            log.warning(
                "image has no finite pixel; no derived maps made",
                extra={"image": str(product.image_path)},
            )
            return product
    else:
        product = imager.make_image(Path(ms_path), prefix, params, header=header)
        if bright is not None:
            bright_sources.restore_sources(product.image_path, bright, track)
    return make_derived_products(product, cfg) if derived else product


def _thermal_rms(ms_path: Path, cfg: ImagingConfig, params: ImagingParams) -> float:
    """The MS's radiometer rms with the imager's uv cut, Jy/beam."""
    return qa.thermal_rms_jy(
        ms_path, sefd_jy=cfg.qa_sefd_jy, min_uv_lambda=params.min_uv_lambda
    )


def _fits_catalogue(cfg: ImagingConfig, catalog: SkyCatalog | None) -> bool:
    """Whether the catalogue's bright sources are fitted and subtracted."""
    return (
        cfg.backend == "wsclean"
        and cfg.subtract_catalogue_min_snr is not None
        and catalog is not None
    )


def _subtract_bright(
    ms_path: Path,
    cfg: ImagingConfig,
    params: ImagingParams,
    track: DriftTrack,
    catalog: SkyCatalog | None,
    thermal: float,
) -> tuple[ImagingParams, SkyCatalog | None]:
    """Subtract the bright sources; return the parameters and what to restore.

    ``thermal`` is the MS's radiometer rms, Jy/beam (NaN: no catalogue source
    is fitted). tclean reads only DATA or CORRECTED_DATA, so only WSClean
    images the subtracted column.
    """
    if cfg.backend != "wsclean":
        return params, None
    freq_hz = 0.5 * (track.freq_min_hz + track.freq_max_hz)
    standards = candidates = bright_sources.concatenate()
    if cfg.subtract_standards_min_jy is not None:
        standards = bright_sources.bright_calibrators(
            track, freq_hz, cfg.subtract_standards_min_jy
        )[0]
    if _fits_catalogue(cfg, catalog) and math.isfinite(thermal):
        candidates = bright_sources.bright_catalogue_sources(
            catalog,
            track,
            freq_hz,
            min_snr=cfg.subtract_catalogue_min_snr,
            thermal_rms_jy=thermal,
            dynamic_range=cfg.qa_dynamic_range,
            max_sources=cfg.subtract_catalogue_max_sources,
            exclude=standards,
        )
    if not len(standards) and not len(candidates):
        return params, None
    column, fitted = bright_sources.fit_and_subtract(
        ms_path,
        standards,
        candidates,
        params.data_column,
        min_uv_lambda=params.min_uv_lambda,
    )
    bright = bright_sources.concatenate(standards, fitted)
    return replace(params, data_column=column), (bright if len(bright) else None)


# settings that do not change the restored image (resources, outputs, gates)
_NOT_IMAGE_SETTINGS = frozenset(
    {
        "threads",
        "mem_percent",
        "timeout_s",
        "write_png",
        "preview_max_pix",
        "noise_box_beams",
    }
)


def _image_settings(cfg: ImagingConfig) -> dict[str, object]:
    return {
        k: v
        for k, v in cfg.model_dump(mode="json").items()
        if k not in _NOT_IMAGE_SETTINGS and not k.startswith("qa_")
    }
