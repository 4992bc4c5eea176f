"""CASA tclean behind the `Imager` protocol, run in a child Python process.

The call runs in a separate interpreter (``imaging.casa_python``, default this
one) through ``_tclean_child.py``, so a CASA crash (tclean's automatic
w-projection planes, ``wprojplanes=-1``, segfaults on DSA-110 MSs in CASA 6.7)
kills the child, not the worker, and casatools' global state stays out of the
pipeline process. The exact call is logged and written at the top of the
per-image log ``<prefix>-tclean.log``, followed by CASA's log. Products are
exported to FITS (``exportfits``) in a temporary directory, given the same
provenance cards as WSClean's, and moved into place only when everything
succeeded, the restored image last.

Mapping of the imaging keys (``imaging.*``) onto the two backends:

=====================  ==========================  ==========================
key                    WSClean 3.1                 tclean (CASA 6.7)
=====================  ==========================  ==========================
image_size [nx, ny]    -size nx ny                 imsize=[nx, ny]
cell_size              -scale <arcsec>asec         cell='<arcsec>arcsec'
niter                  -niter (minor iterations)   niter (minor iterations)
threshold              -threshold <Jy>             threshold='<Jy>Jy'
deconvolver hogbom     default clean               deconvolver='hogbom'
deconvolver clark      default clean               deconvolver='clark'
deconvolver multiscale -multiscale                 deconvolver='multiscale'
multiscale_scales_pix  -multiscale-scales          scales (null: 0, 2, 6 beams)
deconvolver mtmfs      -join-channels              deconvolver='mtmfs'
nterms (mtmfs)         -fit-spectral-pol nterms    nterms
channels_out           -channels-out (>= nterms    one MFS plane (mtmfs does
                       for mtmfs); MFS image kept  the spectral fit)
gridder wproject       w-stacking                  gridder='wproject'
gridder wstacking      w-stacking                  gridder='wproject'
gridder wgridder       -use-wgridder               gridder='wproject'
gridder standard       -nwlayers 1                 gridder='standard'
w_planes (null: auto)  -nwlayers (null: WSClean)   wprojplanes (null: max w)
wgridder_accuracy      -wgridder-accuracy          (not used)
weighting, robust      -weight briggs <robust>     weighting, robust
min_uv_lambda          -minuv-l                    uvrange='>Nlambda'
auto_threshold_sigma   -auto-threshold             nsigma
auto_mask_sigma        -auto-mask                  usemask='auto-multithresh',
                                                   noisethreshold,
                                                   sidelobethreshold=1,
                                                   growiterations=10
mgain                  -mgain                      maxpsffraction = 1 - mgain
gain                   -gain                       gain
threads                -j                          OMP_NUM_THREADS, casarc
mem_percent            -mem                        casarc memfrac
data_column            -data-column                datacolumn data|corrected
timeout_s              process killed              child process killed
=====================  ==========================  ==========================

Both use Stokes I and no primary-beam correction (the
pipeline applies the drift-averaged beam itself; tclean's ``pblimit`` is
negative so it masks nothing).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from dsa110_contimg._casa import CASA_SITE_CONFIG, casa_environment
from dsa110_contimg._optional import require
from dsa110_contimg.exceptions import ImagingError
from dsa110_contimg.products import ImageNames
from dsa110_contimg.tools._imager_run import publish_products, run_imager, scratch_dir
from dsa110_contimg.tools._imager_types import ImageProduct, ImagingParams
from dsa110_contimg.tools.fits_header import set_header_cards

__all__ = ["TcleanImager", "tclean_call", "w_projection_planes", "find_casa_python"]

log = logging.getLogger(__name__)

_C_M_S = 299_792_458.0
_CHILD = Path(__file__).with_name("_tclean_child.py")
_PRODUCTS = ("psf", "residual", "model", "image")
_CASA_SUFFIX = {
    "image": ".image",
    "residual": ".residual",
    "psf": ".psf",
    "model": ".model",
}
_MAX_W_PLANES = 1024
# auto-multithresh masks above max(sidelobethreshold x PSF sidelobe x peak,
# noisethreshold x rms). A DSA-110 snapshot PSF has sidelobes of 0.2-0.45, so
# CASA's default of 3 masks nothing and tclean stops at once ('zero mask').
_SIDELOBE_THRESHOLD = 1.0
# Mask growth by binary dilation: CASA's default 75 iterations took 17 min per
# major cycle on a 4800^2 image (2 cores); point sources need few.
_GROW_ITERATIONS = 10


def _child_casa_environment(python: str) -> dict[str, str]:
    """Return the environment of a tclean child.

    This interpreter's own child gets the pipeline's CASA site configuration
    (`dsa110_contimg._casa`); a separate CASA installation keeps its own.
    """
    if Path(python).resolve() == Path(sys.executable).resolve():
        return casa_environment()
    env = dict(os.environ)
    if env.get("CASASITECONFIG") == str(CASA_SITE_CONFIG):
        del env["CASASITECONFIG"]
    return env


def find_casa_python(python: str | None = None) -> str:
    """Return the interpreter that runs tclean; raise `ImagingError` if unusable."""
    if python is None:
        if importlib.util.find_spec("casatasks") is None:
            msg = (
                "casatasks is not installed in this Python; install it with "
                "pip install 'dsa110-contimg[casa]' or set imaging.casa_python"
            )
            raise ImagingError(msg)
        return sys.executable
    found = shutil.which(python)
    if found is None:
        msg = f"CASA Python {python!r} (imaging.casa_python) not found"
        raise ImagingError(msg)
    return found


def w_projection_planes(w_max_lambda: float, field_radius_rad: float) -> int:
    r"""Return enough w-projection planes for a field.

    Parameters
    ----------
    w_max_lambda : float
        Largest ``|w|`` of the data, wavelengths.
    field_radius_rad : float
        Largest distance of an image pixel from the phase centre, radians.

    Returns
    -------
    int
        :math:`\lceil 4 w_{max} (1 - \cos\theta) \rceil`, between 1 and 1024:
        the w-phase :math:`2\pi w (n - 1)` then changes by at most
        :math:`\pi/2` between adjacent planes anywhere in the field.
    """
    n = math.ceil(4.0 * abs(w_max_lambda) * (1.0 - math.cos(field_radius_rad)))
    return int(min(_MAX_W_PLANES, max(1, n)))


def tclean_call(
    ms_path: Path,
    imagename: Path,
    params: ImagingParams,
    *,
    w_max_lambda: float = 0.0,
    uv_max_lambda: float = 0.0,
) -> dict[str, object]:
    """Map backend-neutral parameters onto ``casatasks.tclean`` keywords.

    Parameters
    ----------
    ms_path : Path
        Measurement Set to image.
    imagename : Path
        Prefix of the CASA images.
    params : ImagingParams
        Imaging parameters (see the module docstring for the mapping).
    w_max_lambda : float
        Largest ``|w|`` in wavelengths (sets ``wprojplanes`` when
        ``params.w_planes`` is None).
    uv_max_lambda : float
        Longest baseline in wavelengths (sets the default multiscale scales).

    Returns
    -------
    dict
        Keyword arguments of ``tclean``.
    """
    nx, ny = params.image_size
    cell_rad = math.radians(params.cell_arcsec / 3600.0)
    gridder = "standard" if params.gridder == "standard" else "wproject"
    kwargs: dict[str, object] = {
        "vis": str(ms_path),
        "imagename": str(imagename),
        "datacolumn": "corrected"
        if params.data_column.upper() == "CORRECTED_DATA"
        else "data",
        "imsize": [int(nx), int(ny)],
        "cell": f"{params.cell_arcsec}arcsec",
        "stokes": "I",
        "specmode": "mfs",
        "gridder": gridder,
        "deconvolver": params.deconvolver,
        "weighting": params.weighting,
        "niter": int(params.niter),
        "gain": float(params.gain),
        "threshold": f"{params.threshold_jy:.6g}Jy",
        "nsigma": float(params.auto_threshold_sigma or 0.0),
        # WSClean's -mgain g ends a minor cycle at (1 - g) x the peak residual;
        # tclean ends it at cyclefactor x PSF sidelobe x peak, clipped to
        # [minpsffraction, maxpsffraction] x peak: cap it at 1 - g.
        "minpsffraction": round(min(0.05, 1.0 - params.mgain), 6),
        "maxpsffraction": round(1.0 - params.mgain, 6),
        "pblimit": -1e-3,
        "pbcor": False,
        "restoration": True,
        "savemodel": "none",
        "interactive": False,
    }
    if params.weighting == "briggs":
        kwargs["robust"] = float(params.robust)
    if params.min_uv_lambda > 0:
        kwargs["uvrange"] = f">{params.min_uv_lambda:g}lambda"
    if gridder == "wproject":
        radius = 0.5 * math.hypot(nx, ny) * cell_rad
        kwargs["wprojplanes"] = params.w_planes or w_projection_planes(
            w_max_lambda, radius
        )
    if params.deconvolver == "mtmfs":
        kwargs["nterms"] = int(params.nterms)
    if params.deconvolver == "multiscale":
        kwargs["scales"] = list(
            params.multiscale_scales_pix or _default_scales(uv_max_lambda, cell_rad)
        )
    if params.auto_mask_sigma:
        kwargs["usemask"] = "auto-multithresh"
        kwargs["noisethreshold"] = float(params.auto_mask_sigma)
        kwargs["sidelobethreshold"] = _SIDELOBE_THRESHOLD
        kwargs["growiterations"] = _GROW_ITERATIONS
    return kwargs


def _default_scales(uv_max_lambda: float, cell_rad: float) -> list[int]:
    beam_pix = (1.0 / uv_max_lambda) / cell_rad if uv_max_lambda > 0 else 3.0
    return sorted({0, max(1, round(2 * beam_pix)), max(2, round(6 * beam_pix))})


def _uv_extent_lambda(ms_path: Path) -> tuple[float, float]:
    """Return the largest |w| and uv distance of an MS, wavelengths."""
    tables = require("casacore.tables", "casa")
    with tables.table(str(ms_path), ack=False) as ms:
        uvw = ms.getcol("UVW")
    with tables.table(f"{ms_path}/SPECTRAL_WINDOW", ack=False) as spw:
        f_max = float(np.max(spw.getcol("CHAN_FREQ")))
    scale = f_max / _C_M_S
    if uvw.size == 0:
        return 0.0, 0.0
    w_max = float(np.max(np.abs(uvw[:, 2]))) * scale
    uv_max = float(np.max(np.hypot(uvw[:, 0], uvw[:, 1]))) * scale
    return w_max, uv_max


def _format_call(kwargs: Mapping[str, object]) -> str:
    return "tclean(" + ", ".join(f"{k}={v!r}" for k, v in kwargs.items()) + ")"


class TcleanImager:
    """Image a Measurement Set with CASA tclean in a child process."""

    name = "tclean"

    def __init__(self, *, binary: str | None = None) -> None:
        self._python = binary
        self._version = ""

    def version(self) -> str:
        """Return the CASA version of the last run ('' before the first)."""
        return self._version

    def make_image(
        self,
        ms_path: Path,
        prefix: Path,
        params: ImagingParams,
        *,
        header: Mapping[str, object] | None = None,
    ) -> ImageProduct:
        """Run tclean on ``ms_path``; products end up as ``<prefix>-<kind>.fits``.

        ``header`` cards (provenance), plus ``DSAIMGRV`` (CASA's version),
        are written into the restored, residual, PSF and model images.

        Raises
        ------
        ImagingError
            casatasks or the interpreter is missing, or tclean fails, crashes
            or times out; no final product is left behind.
        """
        ms_path, prefix = Path(ms_path), Path(prefix)
        try:
            python = find_casa_python(self._python)
        except ImagingError as err:
            msg = f"cannot image {ms_path} with tclean: {err}"
            raise ImagingError(msg) from err
        log_path = ImageNames(prefix).log("tclean")
        with scratch_dir(prefix) as work:
            return self._run(ms_path, prefix, params, python, work, log_path, header)

    def _run(
        self,
        ms_path: Path,
        prefix: Path,
        params: ImagingParams,
        python: str,
        work: Path,
        log_path: Path,
        header: Mapping[str, object] | None,
    ) -> ImageProduct:
        needs_uv = params.gridder != "standard" or params.deconvolver == "multiscale"
        w_max, uv_max = _uv_extent_lambda(ms_path) if needs_uv else (0.0, 0.0)
        kwargs = tclean_call(
            ms_path,
            work / prefix.name,
            params,
            w_max_lambda=w_max,
            uv_max_lambda=uv_max,
        )
        tt = ".tt0" if params.deconvolver == "mtmfs" else ""
        exported = {k: work / f"{prefix.name}-{k}.fits" for k in _PRODUCTS}
        spec = {
            "tclean": kwargs,
            "export": {
                f"{work / prefix.name}{_CASA_SUFFIX[k]}{tt}": str(exported[k])
                for k in _PRODUCTS
            },
            "casa_log": str(log_path),
            "result": str(work / "result.json"),
        }
        (work / "spec.json").write_text(json.dumps(spec))
        (work / "casarc").write_text(
            f"system.resources.memfrac: {int(round(params.mem_percent))}\n"
            f"system.resources.cores: {int(params.threads)}\n"
        )
        env = {
            **_child_casa_environment(python),
            "CASARCFILES": str(work / "casarc"),
            "OMP_NUM_THREADS": str(params.threads),
        }
        cmd = [python, str(_CHILD), str(work / "spec.json")]
        call = _format_call(kwargs)
        duration_s = run_imager(
            cmd,
            program="tclean",
            ms_path=ms_path,
            log_path=log_path,
            timeout_s=params.timeout_s,
            cwd=work,
            expected=exported["image"],
            call=call,
            env=env,
        )
        result = json.loads((work / "result.json").read_text())
        self._version = str(result.get("version", ""))
        cards = {**(header or {}), "DSAIMGRV": self._version}
        for kind in _PRODUCTS:
            set_header_cards(exported[kind], cards)
        final = {k: ImageNames(prefix).path(k) for k in _PRODUCTS}
        publish_products({k: (exported[k], final[k]) for k in _PRODUCTS})
        log.info(
            "tclean done",
            extra={
                "ms": str(ms_path),
                "image": str(final["image"]),
                "stop": result.get("stop"),
                "iterdone": result.get("iterdone"),
                "duration_s": round(duration_s, 2),
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
            self._version,
            (call,),
        )
