"""A fake imager for tests and demos: the model sky through the beam, with noise.

``imaging.backend: fake`` (with ``imaging.fake_sky_path``, the catalogue the
MS was simulated from, e.g. the simulator's ``truth/sky.csv``) makes the
whole chain run without WSClean or CASA. It never looks at the visibilities'
values: it renders the catalogue's point sources, each at its flux averaged
over the MS's channels times the drift-averaged primary beam
(`dsa110_contimg.mosaic.primary_beam_at`), as Gaussians of the restoring beam
fitted to the MS's naturally weighted PSF, on correlated Gaussian noise at the
MS's radiometer level (`dsa110_contimg.data_ingestion.ms_noise`). The products
have WSClean's layout (``<prefix>-image/-residual/-psf/-model.fits``, 4-axis
RA/DEC/FREQ/STOKES, BMAJ/BMIN/BPA, BUNIT) and say ``DSASIMUL = T``, with a
``HISTORY`` line, so a simulated image is never mistaken for an observation.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from dsa110_contimg import __version__
from dsa110_contimg._optional import require
from dsa110_contimg.data_ingestion._sky_image import (
    add_point_sources,
    correlated_noise,
    psf_beam,
)
from dsa110_contimg.data_ingestion.ms_noise import thermal_rms_jy
from dsa110_contimg.data_ingestion.photometry import Beam
from dsa110_contimg.data_ingestion.skymodel import load_catalog
from dsa110_contimg.exceptions import ConfigError, ImagingError
from dsa110_contimg.mosaic import DriftTrack, primary_beam_at
from dsa110_contimg.tools._imager_run import publish_products, scratch_dir
from dsa110_contimg.tools._imager_types import ImageProduct, ImagingParams
from dsa110_contimg.tools.fits_header import set_header_cards

__all__ = ["FakeImager"]

log = logging.getLogger(__name__)

_C_M_S = 299_792_458.0
_PRODUCTS = ("psf", "residual", "model", "image")
_SIMULATED = "SIMULATED by the dsa110_contimg fake imager: not an observation"


class FakeImager:
    """Render the model sky of a simulated MS as WSClean would image it.

    Parameters
    ----------
    binary : str, optional
        The sky catalogue CSV (``imaging.fake_sky_path``; named ``binary``
        as the other imagers' executables are).
    seed : int, optional
        Seed of the noise; default drawn from the MS name, so a re-made
        image is the same.
    """

    name = "fake"

    def __init__(self, *, binary: str | None = None, seed: int | None = None) -> None:
        self._sky_path = binary
        self._seed = seed

    def version(self) -> str:
        """Return the fake imager's version (the package's)."""
        return f"dsa110_contimg {__version__} fake imager"

    def make_image(
        self,
        ms_path: Path,
        prefix: Path,
        params: ImagingParams,
        *,
        header: Mapping[str, object] | None = None,
    ) -> ImageProduct:
        """Write ``<prefix>-image.fits`` and friends from the model sky.

        ``header`` must hold the pointing-track cards (``DSAPTDEC``,
        ``DSAT0MJD``, ...) the imaging stage writes; they set the primary
        beam. They and ``DSAIMGRV`` are written into every product.

        Raises
        ------
        ConfigError
            No sky catalogue was given.
        ImagingError
            The MS has no unflagged cross-correlation to set the beam and
            noise from; no product is left behind.
        """
        ms_path, prefix = Path(ms_path), Path(prefix)
        if not self._sky_path:
            msg = (
                "imaging.backend 'fake' needs imaging.fake_sky_path: the sky "
                "catalogue CSV the MS was simulated from (e.g. truth/sky.csv)"
            )
            raise ConfigError(msg)
        sky = load_catalog(self._sky_path)
        track = DriftTrack.from_header(dict(header or {}))
        obs = _read_ms(ms_path, params.min_uv_lambda)
        log_path = prefix.with_name(f"{prefix.name}-fake.log")
        call = (
            f"fake imager: sky {self._sky_path}, {params.image_size[0]}x"
            f"{params.image_size[1]} px of {params.cell_arcsec} arcsec, MS {ms_path}"
        )
        log_path.write_text(f"{call}\n{_SIMULATED}\n")
        try:
            beam = psf_beam(obs["uv_lambda"], obs["weights"])
        except ValueError as err:
            msg = f"fake imager cannot image {ms_path}: {err}"
            raise ImagingError(msg) from err
        rms_jy = thermal_rms_jy(ms_path, min_uv_lambda=params.min_uv_lambda)
        nx, ny = params.image_size
        wcs = _image_wcs(obs, params)
        cel = wcs.celestial
        freqs = obs["freqs_hz"]
        ratio = freqs[None, :] / sky.ref_freq_hz[:, None]
        spectrum = sky.flux_jy[:, None] * ratio ** sky.spectral_index[:, None]
        flux = spectrum.mean(axis=1) * primary_beam_at(track, sky.ra_deg, sky.dec_deg)
        seed = self._seed if self._seed is not None else _name_seed(ms_path.name)
        rng = np.random.default_rng(seed)
        residual = rms_jy * correlated_noise((ny, nx), cel, beam, rng)
        image = residual.copy()
        add_point_sources(image, cel, sky.ra_deg, sky.dec_deg, flux, beam=beam)
        model = np.zeros((ny, nx))
        _add_deltas(model, cel, sky.ra_deg, sky.dec_deg, flux)
        psf = np.zeros((ny, nx))
        centre = cel.pixel_to_world_values(nx // 2, ny // 2)
        add_point_sources(psf, cel, [centre[0]], [centre[1]], [1.0], beam=beam)
        cards = {
            **(header or {}),
            "DSAIMGRV": self.version(),
            "DSASIMUL": (True, "simulated image (fake imager)"),
        }
        with scratch_dir(prefix) as work:
            written = {}
            for kind, data in (
                ("psf", psf),
                ("residual", residual),
                ("model", model),
                ("image", image),
            ):
                path = work / f"{prefix.name}-{kind}.fits"
                _write(path, data, wcs, beam, "JY/PIXEL" if kind == "model" else None)
                set_header_cards(path, cards)
                written[kind] = path
            final = {k: prefix.with_name(f"{prefix.name}-{k}.fits") for k in _PRODUCTS}
            publish_products({k: (written[k], final[k]) for k in _PRODUCTS})
        log.warning(
            "fake imager: simulated image written (not an observation)",
            extra={
                "ms": str(ms_path),
                "image": str(final["image"]),
                "rms_jy": rms_jy,
                "n_sources": len(sky),
            },
        )
        return ImageProduct(
            ms_path,
            final["image"],
            final["residual"],
            final["psf"],
            final["model"],
            log_path,
            self.name,
            self.version(),
            (call,),
        )


def _name_seed(name: str) -> int:
    return int.from_bytes(name.encode()[-8:].rjust(8, b"\0"), "little") % (2**32)


def _read_ms(ms_path: Path, min_uv_lambda: float) -> dict[str, np.ndarray]:
    """Return the phase centre, channels, times and weighted uv samples."""
    tables = require("casacore.tables", "casa")
    try:
        with tables.table(str(ms_path), ack=False) as ms:
            uvw = ms.getcol("UVW")
            flag = ms.getcol("FLAG")
            weight = ms.getcol("WEIGHT")
            cross = ms.getcol("ANTENNA1") != ms.getcol("ANTENNA2")
        with tables.table(f"{ms_path}/SPECTRAL_WINDOW", ack=False) as spw:
            freqs = np.asarray(spw.getcol("CHAN_FREQ"), dtype=float).ravel()
        with tables.table(f"{ms_path}/FIELD", ack=False) as field:
            ra_rad, dec_rad = np.asarray(field.getcol("PHASE_DIR"))[0, 0]
    except RuntimeError as err:
        msg = f"fake imager cannot read {ms_path}: {err}"
        raise ImagingError(msg) from err
    # one sample per row and (at most 8) channels, weighted by the parallel
    # hands' unflagged weight
    n_chan = flag.shape[1]
    chans = np.unique(np.linspace(0, n_chan - 1, min(8, n_chan)).astype(int))
    good = ~flag[:, chans, :]
    w = (good * weight[:, None, :]).sum(axis=2) * cross[:, None]
    uv = uvw[:, None, :2] * (freqs[chans][None, :, None] / _C_M_S)
    if min_uv_lambda > 0:
        w = w * (np.hypot(uv[..., 0], uv[..., 1]) >= min_uv_lambda)
    return {
        "uv_lambda": uv.reshape(-1, 2),
        "weights": w.ravel(),
        "freqs_hz": freqs,
        "ra_deg": np.array(math.degrees(ra_rad) % 360.0),
        "dec_deg": np.array(math.degrees(dec_rad)),
    }


def _image_wcs(obs: Mapping[str, np.ndarray], params: ImagingParams) -> WCS:
    """Return WSClean's 4-axis SIN WCS of an image of the MS."""
    nx, ny = params.image_size
    freqs = obs["freqs_hz"]
    wcs = WCS(naxis=4)
    wcs.wcs.ctype = ["RA---SIN", "DEC--SIN", "FREQ", "STOKES"]
    wcs.wcs.cunit = ["deg", "deg", "Hz", ""]
    wcs.wcs.crpix = [nx // 2 + 1, ny // 2 + 1, 1, 1]
    wcs.wcs.crval = [
        float(obs["ra_deg"]),
        float(obs["dec_deg"]),
        0.5 * float(freqs.min() + freqs.max()),
        1.0,
    ]
    width = float(freqs.max() - freqs.min()) or 1.0
    cell_deg = params.cell_arcsec / 3600.0
    wcs.wcs.cdelt = [-cell_deg, cell_deg, width, 1]
    wcs.wcs.radesys = "ICRS"
    wcs.wcs.equinox = 2000.0
    wcs.wcs.set()
    return wcs


def _add_deltas(model, wcs, ra_deg, dec_deg, flux_jy) -> None:
    x, y = wcs.all_world2pix(np.asarray(ra_deg), np.asarray(dec_deg), 0)
    ok = np.isfinite(x) & np.isfinite(y)
    ix, iy = np.rint(x[ok]).astype(int), np.rint(y[ok]).astype(int)
    inside = (ix >= 0) & (ix < model.shape[1]) & (iy >= 0) & (iy < model.shape[0])
    np.add.at(model, (iy[inside], ix[inside]), np.asarray(flux_jy)[ok][inside])


def _write(
    path: Path, data: np.ndarray, wcs: WCS, beam: Beam, bunit: str | None
) -> None:
    header = wcs.to_header()
    header["BUNIT"] = bunit or "JY/BEAM"
    header["BMAJ"] = (beam.major_arcsec / 3600.0, "[deg] restoring beam major axis")
    header["BMIN"] = (beam.minor_arcsec / 3600.0, "[deg] restoring beam minor axis")
    header["BPA"] = (beam.pa_deg, "[deg] restoring beam position angle")
    header["ORIGIN"] = "dsa110_contimg fake imager"
    header["HISTORY"] = _SIMULATED
    cube = data.astype(np.float32).reshape(1, 1, *data.shape)
    fits.PrimaryHDU(cube, header).writeto(path)
