"""WSClean behind the `Imager` protocol.

WSClean is an external binary (Debian package ``wsclean``), never the
unrelated PyPI package of that name. The exact command is logged, the
output goes to a per-image log file, and a failure raises `ImagingError`
with the log tail. Products are written in a temporary directory and moved
into place only when WSClean succeeded, the restored image last.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

from dsa110_contimg.exceptions import ImagingError
from dsa110_contimg.products import ImageNames
from dsa110_contimg.tools._imager_run import publish_products, run_imager, scratch_dir
from dsa110_contimg.tools._imager_types import ImageProduct, ImagingParams
from dsa110_contimg.tools.fits_header import set_header_cards

__all__ = ["WscleanImager", "wsclean_command", "find_wsclean", "output_channels"]

log = logging.getLogger(__name__)

_PRODUCTS = ("psf", "residual", "model", "dirty", "image")


def find_wsclean(binary: str | None = None) -> str:
    """Return the WSClean executable; raise `ImagingError` saying how to install it."""
    found = shutil.which(binary or "wsclean")
    if found is None:
        msg = (
            f"WSClean executable {binary or 'wsclean'!r} not found; install it with "
            "'apt-get install wsclean' or set imaging.wsclean_path"
        )
        raise ImagingError(msg)
    return found


def output_channels(params: ImagingParams) -> int:
    """Return WSClean's ``-channels-out`` (at least ``nterms`` for mtmfs)."""
    if params.deconvolver == "mtmfs":
        return max(params.channels_out, params.nterms)
    return params.channels_out


def wsclean_command(
    ms_path: Path, prefix: Path, params: ImagingParams, *, binary: str = "wsclean"
) -> list[str]:
    """Map backend-neutral parameters onto a WSClean command line.

    Notes
    -----
    ``gridder``: ``wproject``/``wstacking`` use WSClean's w-stacking (its
    w-correction; CASA's w-projection has no WSClean twin), ``wgridder`` the
    ducc w-gridder, ``standard`` w-stacking with a single w-layer (no
    w-correction); ``w_planes`` sets ``-nwlayers``; ``wgridder_accuracy``
    ``-wgridder-accuracy`` (the w-gridder only). ``deconvolver``:
    ``hogbom``/``clark`` WSClean's default point-source clean, ``multiscale``
    adds ``-multiscale`` (``-multiscale-scales`` when scales are given),
    ``mtmfs`` joins ``max(channels_out, nterms)`` channels with an
    ``nterms``-term spectral fit. The full mapping onto tclean is in
    `dsa110_contimg.tools.tclean`.
    """
    nx, ny = params.image_size
    cmd = [
        binary,
        "-name",
        str(prefix),
        "-size",
        str(nx),
        str(ny),
        "-scale",
        f"{params.cell_arcsec}asec",
        "-pol",
        "I",
        "-niter",
        str(params.niter),
        "-threshold",
        f"{params.threshold_jy:.6g}",
        "-mgain",
        str(params.mgain),
        "-gain",
        str(params.gain),
        "-j",
        str(params.threads),
        "-mem",
        str(params.mem_percent),
        "-no-update-model-required",
        "-data-column",
        params.data_column,
        "-temp-dir",
        str(prefix.parent),
    ]
    if params.weighting == "briggs":
        cmd += ["-weight", "briggs", str(params.robust)]
    else:
        cmd += ["-weight", params.weighting]
    if params.min_uv_lambda > 0:
        cmd += ["-minuv-l", str(params.min_uv_lambda)]
    if params.auto_threshold_sigma:
        cmd += ["-auto-threshold", str(params.auto_threshold_sigma)]
    if params.auto_mask_sigma:
        cmd += ["-auto-mask", str(params.auto_mask_sigma)]
    if params.gridder == "wgridder":
        cmd += ["-use-wgridder"]
        if params.wgridder_accuracy is not None:
            cmd += ["-wgridder-accuracy", f"{params.wgridder_accuracy:g}"]
    elif params.gridder == "standard":
        cmd += ["-nwlayers", "1"]
    elif params.w_planes is not None:
        cmd += ["-nwlayers", str(params.w_planes)]
    if params.deconvolver == "multiscale":
        cmd += ["-multiscale"]
        if params.multiscale_scales_pix:
            scales = ",".join(str(s) for s in params.multiscale_scales_pix)
            cmd += ["-multiscale-scales", scales]
    n_chan = output_channels(params)
    if n_chan > 1:
        cmd += ["-channels-out", str(n_chan), "-join-channels"]
        if params.deconvolver == "mtmfs":
            cmd += ["-fit-spectral-pol", str(params.nterms)]
    cmd.append(str(ms_path))
    return cmd


class WscleanImager:
    """Image a Measurement Set with WSClean."""

    name = "wsclean"

    def __init__(self, *, binary: str | None = None) -> None:
        self._binary = binary
        self._version: str | None = None

    def version(self) -> str:
        """Return WSClean's version line."""
        if self._version is None:
            out = subprocess.run(
                [find_wsclean(self._binary), "--version"],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            lines = [ln for ln in out.stdout.splitlines() if "version" in ln.lower()]
            self._version = lines[0].strip() if lines else "unknown"
        return self._version

    def make_image(
        self,
        ms_path: Path,
        prefix: Path,
        params: ImagingParams,
        *,
        header: Mapping[str, object] | None = None,
    ) -> ImageProduct:
        """Run WSClean on ``ms_path``; products end up as ``<prefix>-<kind>.fits``.

        ``header`` cards (provenance), plus ``DSAIMGRV`` (WSClean's version),
        are written into the restored, residual, PSF and model images before
        they are moved into place. With several output channels the MFS
        products are the ones kept.

        Raises
        ------
        ImagingError
            WSClean is missing, fails, is killed or times out; no final
            product is left behind.
        """
        ms_path, prefix = Path(ms_path), Path(prefix)
        try:
            binary = find_wsclean(self._binary)
        except ImagingError as err:
            msg = f"cannot image {ms_path}: {err}"
            raise ImagingError(msg) from err
        names = ImageNames(prefix)
        final = {k: names.path(k) for k in _PRODUCTS}
        log_path = names.log("wsclean")
        stem = prefix.name + ("-MFS" if output_channels(params) > 1 else "")
        with scratch_dir(prefix) as work:
            cmd = wsclean_command(ms_path, work / prefix.name, params, binary=binary)
            duration_s = run_imager(
                cmd,
                program="WSClean",
                ms_path=ms_path,
                log_path=log_path,
                timeout_s=params.timeout_s,
                cwd=work,
                expected=work / f"{stem}-image.fits",
            )
            cards = {**(header or {}), "DSAIMGRV": self.version()}
            for kind in ("image", "residual", "psf", "model"):
                if (work / f"{stem}-{kind}.fits").exists():
                    set_header_cards(work / f"{stem}-{kind}.fits", cards)
            publish_products(
                {k: (work / f"{stem}-{k}.fits", final[k]) for k in _PRODUCTS}
            )
        log.info(
            "wsclean done",
            extra={
                "ms": str(ms_path),
                "image": str(final["image"]),
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
            self.version(),
            tuple(cmd),
        )
