"""Imaging stage: one MS to one restored image, with provenance."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from dsa110_contimg import __version__
from dsa110_contimg.data_ingestion.ms_creation import read_ms_info
from dsa110_contimg.tools.imagers import ImageProduct, ImagingParams, get_imager
from dsa110_contimg.utils.config_loader import ImagingConfig

__all__ = ["imaging_params", "image_ms", "image_prefix"]

log = logging.getLogger(__name__)


def imaging_params(cfg: ImagingConfig) -> ImagingParams:
    """Translate the ``imaging`` config section into backend-neutral parameters."""
    return ImagingParams(
        image_size=tuple(cfg.image_size),
        cell_arcsec=cfg.cell_size_arcsec(),
        niter=cfg.niter,
        threshold_jy=cfg.threshold_jy(),
        deconvolver=cfg.deconvolver,
        gridder=cfg.gridder,
        weighting=cfg.weighting,
        robust=cfg.robust,
        min_uv_lambda=cfg.min_uv_lambda,
        auto_threshold_sigma=cfg.auto_threshold_sigma,
        auto_mask_sigma=cfg.auto_mask_sigma,
        mgain=cfg.mgain,
        channels_out=cfg.channels_out,
        threads=cfg.threads,
        mem_percent=cfg.mem_percent,
        timeout_s=cfg.timeout_s,
    )


def image_prefix(ms_path: Path, images_dir: Path) -> Path:
    """Return the product prefix of an MS's image (``images_dir/<ms stem>``)."""
    return Path(images_dir) / Path(ms_path).name.removesuffix(".ms")


def image_ms(
    ms_path: Path,
    images_dir: Path,
    cfg: ImagingConfig,
    *,
    config_hash: str = "",
) -> ImageProduct:
    """Image one MS unless its restored image already exists.

    The restored image carries provenance (input MS, backend and version,
    config hash, software version) and the drift-scan pointing track
    (``DSAPTDEC``, ``DSAT0MJD``, ``DSADTSEC``, ``DSANTIME``, ``DSAFMIN``,
    ``DSAFMAX``) from which the effective primary beam is computed.
    """
    prefix = image_prefix(ms_path, images_dir)
    image_path = prefix.with_name(f"{prefix.name}-image.fits")
    if image_path.exists():
        log.info("image exists, skipped", extra={"image": str(image_path)})
        return ImageProduct(
            Path(ms_path),
            image_path,
            prefix.with_name(f"{prefix.name}-residual.fits"),
            prefix.with_name(f"{prefix.name}-psf.fits"),
            prefix.with_name(f"{prefix.name}-model.fits"),
            prefix.with_name(f"{prefix.name}-{cfg.backend}.log"),
            cfg.backend,
            "",
            (),
            skipped=True,
        )
    Path(images_dir).mkdir(parents=True, exist_ok=True)
    info = read_ms_info(Path(ms_path))
    imager = get_imager(cfg.backend, binary=cfg.wsclean_path)
    dt_s = (
        float(np.median(np.diff(info.times_mjd)) * 86400.0)
        if info.times_mjd.size > 1
        else 0.0
    )
    header = {
        "DSAMS": Path(ms_path).name,
        "DSAGROUP": info.group_id,
        "DSAPTDEC": info.pointing_dec_deg,
        "DSAT0MJD": float(info.times_mjd[0]),
        "DSADTSEC": dt_s,
        "DSANTIME": int(info.times_mjd.size),
        "DSAFMIN": float(info.freqs_hz.min()),
        "DSAFMAX": float(info.freqs_hz.max()),
        "DSAIMGR": cfg.backend,
        "DSACFGH": config_hash,
        "DSAVERS": __version__,
        "DSACAL": "none",
        "HISTORY": [
            f"dsa110_contimg {__version__} imaged {Path(ms_path).name} with "
            f"{cfg.backend}; config hash {config_hash}"
        ],
    }
    return imager.make_image(Path(ms_path), prefix, imaging_params(cfg), header=header)
