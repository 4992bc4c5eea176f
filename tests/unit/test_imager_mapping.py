"""The imaging keys mean the same thing on WSClean and tclean."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest

from dsa110_contimg.exceptions import ConfigError
from dsa110_contimg.pipeline.stages.imaging_stage import imaging_params
from dsa110_contimg.tools.fake import FakeImager
from dsa110_contimg.tools.imagers import IMAGERS, ImagingParams, get_imager
from dsa110_contimg.tools.tclean import TcleanImager, tclean_call, w_projection_planes
from dsa110_contimg.tools.wsclean import WscleanImager, wsclean_command
from dsa110_contimg.utils.config_loader import ImagingConfig

MS = Path("/data/drift_20230601T000000_00.ms")


def _both(params: ImagingParams) -> tuple[list[str], dict[str, object]]:
    return (
        wsclean_command(MS, Path("/out/x"), params),
        tclean_call(MS, Path("/out/x"), params, w_max_lambda=2000.0),
    )


def _after(cmd: list[str], flag: str, n: int = 1) -> list[str]:
    i = cmd.index(flag)
    return cmd[i + 1 : i + 1 + n]


def test_registry_and_unknown_backend():
    assert set(IMAGERS) == {"wsclean", "tclean", "fake"}
    assert IMAGERS["tclean"] is TcleanImager and IMAGERS["wsclean"] is WscleanImager
    assert IMAGERS["fake"] is FakeImager
    assert isinstance(get_imager("tclean"), TcleanImager)
    with pytest.raises(ConfigError, match="unknown"):
        get_imager("aips")


def test_seed_keys_map_to_the_same_meaning():
    params = imaging_params(
        ImagingConfig(
            image_size=(4800, 4000),
            cell_size="3arcsec",
            niter=5000,
            threshold="1mJy",
            deconvolver="hogbom",
            gridder="wproject",
        )
    )
    cmd, call = _both(params)
    assert _after(cmd, "-size", 2) == ["4800", "4000"] and call["imsize"] == [
        4800,
        4000,
    ]
    assert _after(cmd, "-scale") == ["3.0asec"] and call["cell"] == "3.0arcsec"
    assert _after(cmd, "-niter") == ["5000"] and call["niter"] == 5000
    assert float(_after(cmd, "-threshold")[0]) == 0.001
    assert call["threshold"] == "0.001Jy"
    assert _after(cmd, "-gain") == ["0.1"] and call["gain"] == 0.1  # the default
    assert "-multiscale" not in cmd and call["deconvolver"] == "hogbom"
    assert call["gridder"] == "wproject" and "-use-wgridder" not in cmd
    assert call["stokes"] == "I" and _after(cmd, "-pol") == ["I"]
    assert call["pbcor"] is False and call["pblimit"] < 0  # no PB mask from tclean


def test_weighting_uv_cut_automask_and_cycles():
    params = ImagingParams(
        weighting="briggs",
        robust=-0.5,
        min_uv_lambda=1000.0,
        auto_threshold_sigma=1.0,
        auto_mask_sigma=4.0,
        mgain=0.8,
        gain=0.2,
        threads=3,
        mem_percent=40.0,
        data_column="CORRECTED_DATA",
    )
    cmd, call = _both(params)
    assert _after(cmd, "-weight", 2) == ["briggs", "-0.5"] and call["robust"] == -0.5
    assert _after(cmd, "-minuv-l") == ["1000.0"] and call["uvrange"] == ">1000lambda"
    assert _after(cmd, "-auto-threshold") == ["1.0"] and call["nsigma"] == 1.0
    assert _after(cmd, "-auto-mask") == ["4.0"]
    assert call["usemask"] == "auto-multithresh" and call["noisethreshold"] == 4.0
    assert _after(cmd, "-mgain") == ["0.8"]
    assert call["maxpsffraction"] == pytest.approx(0.2)
    assert _after(cmd, "-gain") == ["0.2"] and call["gain"] == 0.2
    assert _after(cmd, "-j") == ["3"] and _after(cmd, "-mem") == ["40.0"]
    assert call["datacolumn"] == "corrected"
    assert _after(cmd, "-data-column") == ["CORRECTED_DATA"]


def test_spectral_and_multiscale_options():
    mtmfs = ImagingParams(deconvolver="mtmfs", channels_out=1, nterms=2)
    cmd, call = _both(mtmfs)
    assert _after(cmd, "-channels-out") == ["2"] and "-join-channels" in cmd
    assert _after(cmd, "-fit-spectral-pol") == ["2"]
    assert call["deconvolver"] == "mtmfs" and call["nterms"] == 2
    ms = ImagingParams(deconvolver="multiscale", multiscale_scales_pix=(0, 4, 12))
    cmd, call = _both(ms)
    assert "-multiscale" in cmd and _after(cmd, "-multiscale-scales") == ["0,4,12"]
    assert call["scales"] == [0, 4, 12]
    auto = tclean_call(
        MS, Path("/o"), replace(ms, multiscale_scales_pix=None), uv_max_lambda=1e4
    )
    beam_pix = (1 / 1e4) / math.radians(3 / 3600)
    assert auto["scales"] == [0, round(2 * beam_pix), round(6 * beam_pix)]


def test_gridders_and_w_planes():
    standard = ImagingParams(gridder="standard")
    cmd, call = _both(standard)
    assert _after(cmd, "-nwlayers") == ["1"]
    assert call["gridder"] == "standard" and "wprojplanes" not in call
    fixed = ImagingParams(gridder="wproject", w_planes=64)
    cmd, call = _both(fixed)
    assert _after(cmd, "-nwlayers") == ["64"] and call["wprojplanes"] == 64
    cmd, call = _both(ImagingParams(gridder="wgridder"))
    assert "-use-wgridder" in cmd and call["gridder"] == "wproject"
    assert "-wgridder-accuracy" not in cmd  # WSClean's own default
    coarse = ImagingParams(gridder="wgridder", wgridder_accuracy=1e-3)
    cmd, call = _both(coarse)
    assert _after(cmd, "-wgridder-accuracy") == ["0.001"]
    # the accuracy is the w-gridder's only: w-stacking ignores it
    cmd, _ = _both(ImagingParams(gridder="wproject", wgridder_accuracy=1e-3))
    assert "-wgridder-accuracy" not in cmd
    # auto: 4 w_max (1 - cos(theta)) planes, never CASA's crashing -1
    auto = ImagingParams(gridder="wproject")
    radius = 0.5 * math.hypot(*auto.image_size) * math.radians(auto.cell_arcsec / 3600)
    expected = math.ceil(4 * 2000.0 * (1 - math.cos(radius)))
    _, call = _both(auto)
    assert call["wprojplanes"] == expected == w_projection_planes(2000.0, radius)
    assert w_projection_planes(0.0, radius) == 1
    assert w_projection_planes(1e9, radius) == 1024
