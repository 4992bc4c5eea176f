"""One default per parameter: library defaults equal their config section's.

The config section's default is the documented behaviour. Value objects built
from a section (`ImagingParams`, `ObservationSpec`, `EseGrid`) and library
functions that keep a default for standalone use must agree with it; these
tests enumerate the pairs so they cannot drift apart again (issue 16: they
had: ``min_uv_lambda`` 0 vs 1000, auto-threshold 3 vs 1, auto-mask None vs 4).
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from pydantic import BaseModel

from dsa110_contimg import calibration, mosaic, variability
from dsa110_contimg.data_ingestion import grouping, ms_creation, photometry
from dsa110_contimg.data_ingestion._photometry_dirty import measure_dirty_equivalent
from dsa110_contimg.lightcurves import LightcurveStore
from dsa110_contimg.pipeline.batch import observation_spec
from dsa110_contimg.pipeline.stages import image_quality
from dsa110_contimg.pipeline.stages.imaging_stage import imaging_params
from dsa110_contimg.simulation import ObservationSpec
from dsa110_contimg.tools.imagers import ImagingParams
from dsa110_contimg.utils.config import (
    CalibrationConfig,
    ConversionConfig,
    ImagingConfig,
    MosaicConfig,
    PhotometryConfig,
    PipelineConfig,
    SimulationConfig,
    VariabilityConfig,
    section_values,
    shared_fields,
)
from dsa110_contimg.variability._analysis import _grid

# (section, value object, key prefix, fewest shared fields expected)
VALUE_OBJECTS = [
    (ImagingConfig, ImagingParams, "", 17),
    (SimulationConfig, ObservationSpec, "", 25),
    (VariabilityConfig, variability.EseGrid, "ese_", 5),
]

# (library callable, its parameter, section, section key)
FUNCTION_DEFAULTS: list[tuple[Callable[..., object], str, type[BaseModel], str]] = [
    (image_quality.thermal_rms_jy, "min_uv_lambda", ImagingConfig, "min_uv_lambda"),
    (image_quality.thermal_rms_jy, "sefd_jy", ImagingConfig, "qa_sefd_jy"),
    (
        grouping.find_subband_groups,
        "tolerance_s",
        ConversionConfig,
        "group_tolerance_s",
    ),
    (
        grouping.group_subband_files,
        "tolerance_s",
        ConversionConfig,
        "group_tolerance_s",
    ),
    (ms_creation.convert_group, "chan_average", ConversionConfig, "chan_average"),
    (ms_creation.convert_group, "overwrite", ConversionConfig, "overwrite"),
    (ms_creation.convert_group, "read_workers", ConversionConfig, "read_workers"),
    (
        ms_creation.convert_group,
        "incomplete_policy",
        ConversionConfig,
        "incomplete_policy",
    ),
    (
        ms_creation.convert_group,
        "telescope_name",
        ConversionConfig,
        "ms_telescope_name",
    ),
    (calibration.solve_calibration, "gcal_mode", CalibrationConfig, "gcal_mode"),
    (calibration.solve_calibration, "gcal_solint", CalibrationConfig, "gcal_solint"),
    (calibration.solve_calibration, "uvrange", CalibrationConfig, "uvrange"),
    (calibration.solve_calibration, "minsnr", CalibrationConfig, "bandpass_minsnr"),
    (calibration.flag_ms, "backend", CalibrationConfig, "flag_backend"),
    (calibration.flag_ms, "sigma", CalibrationConfig, "flag_sigma"),
    (
        calibration.flag_ms,
        "dead_fraction",
        CalibrationConfig,
        "dead_antenna_fraction",
    ),
    (calibration.flag_visibilities, "sigma", CalibrationConfig, "flag_sigma"),
    (
        calibration.find_transits,
        "min_flux_jy",
        CalibrationConfig,
        "min_calibrator_flux_jy",
    ),
    (
        calibration.find_transits,
        "max_offset_deg",
        CalibrationConfig,
        "max_calibrator_offset_deg",
    ),
    (mosaic.coadd_images, "pb_cut", MosaicConfig, "pb_cut"),
    (mosaic.coadd_images, "method", MosaicConfig, "method"),
    (mosaic.coadd_images, "tile_pix", MosaicConfig, "tile_pix"),
    (mosaic.mosaic_grid, "projection", MosaicConfig, "projection"),
    (photometry.measure_forced, "min_pb", PhotometryConfig, "min_pb"),
    (photometry.measure_forced, "box_beams", PhotometryConfig, "box_beams"),
    (
        photometry.measure_forced,
        "rms_box_beams",
        PhotometryConfig,
        "rms_annulus_beams",
    ),
    (
        measure_dirty_equivalent,
        "rms_box_beams",
        PhotometryConfig,
        "rms_annulus_beams",
    ),
    (LightcurveStore, "exclude_flags", VariabilityConfig, "exclude_flags"),
    (variability.lightcurve_metrics, "min_epochs", VariabilityConfig, "min_epochs"),
    (variability.metrics_from_sums, "min_epochs", VariabilityConfig, "min_epochs"),
    (
        variability.apply_flux_scale,
        "systematic_floor_frac",
        VariabilityConfig,
        "systematic_floor_frac",
    ),
    (
        variability.calibrate_epoch,
        "systematic_floor_frac",
        VariabilityConfig,
        "systematic_floor_frac",
    ),
    *(
        (fn, param, VariabilityConfig, f"ref_{param}")
        for fn in (variability.calibrate_epoch, variability.select_references)
        for param in ("min_snr", "min_epochs", "max_eta", "max_v", "max_resolved_frac")
    ),
    *(
        (fn, param, VariabilityConfig, f"ref_{param}")
        for fn in (variability.calibrate_epoch, variability.estimate_flux_scale)
        for param in ("clip_sigma", "max_iter")
    ),
    (variability.calibrate_epoch, "min_n_ref", VariabilityConfig, "ref_min_n"),
    (variability.estimate_flux_scale, "min_n_ref", VariabilityConfig, "ref_min_n"),
    (variability.bin_lightcurves, "bin_days", VariabilityConfig, "ese_bin_days"),
    *(
        (variability.search_ese, param, VariabilityConfig, f"ese_{param}")
        for param in (
            "min_significance",
            "min_delta_bic",
            "min_variance_explained",
            "min_points",
        )
    ),
]


def _same(code: object, config: object) -> bool:
    if isinstance(config, list):
        config = tuple(config)
    return code == config


@pytest.mark.parametrize(
    ("section", "target", "prefix", "n_min"),
    VALUE_OBJECTS,
    ids=[t.__name__ for _, t, _, _ in VALUE_OBJECTS],
)
def test_value_object_defaults_equal_section_defaults(
    section: type[BaseModel], target: type, prefix: str, n_min: int
) -> None:
    shared = shared_fields(section, target, prefix=prefix)
    assert len(shared) >= n_min, shared  # the pairing itself still works
    defaults = {f.name: f.default for f in dataclasses.fields(target)}
    drift = {
        name: (defaults[name], section.model_fields[key].default)
        for name, key in shared.items()
        if defaults[name] is not dataclasses.MISSING
        and not _same(defaults[name], section.model_fields[key].default)
    }
    assert not drift, f"{target.__name__} defaults differ from {section.__name__}"


@pytest.mark.parametrize(
    ("func", "param", "section", "key"),
    FUNCTION_DEFAULTS,
    ids=[f"{f.__name__}.{p}" for f, p, _, _ in FUNCTION_DEFAULTS],
)
def test_library_default_equals_section_default(
    func: Callable[..., object], param: str, section: type[BaseModel], key: str
) -> None:
    default = inspect.signature(func).parameters[param].default
    assert default is not inspect.Parameter.empty, f"{param} has no default"
    assert _same(default, section.model_fields[key].default)


def test_builders_of_default_sections_give_the_library_defaults() -> None:
    assert imaging_params(ImagingConfig()) == ImagingParams()
    start = datetime.fromisoformat(SimulationConfig().start_time).replace(tzinfo=UTC)
    assert observation_spec(PipelineConfig()) == ObservationSpec(start_time=start)
    assert _grid(VariabilityConfig()) == variability.EseGrid()


def test_builders_pass_every_shared_key_from_the_section() -> None:
    imaging = ImagingConfig(
        niter=7,
        min_uv_lambda=250.0,
        auto_threshold_sigma=None,
        auto_mask_sigma=6.0,
        multiscale_scales_pix=[0, 4],
        threshold="2mJy",
        cell_size="0.1arcmin",
    )
    params = imaging_params(imaging)
    assert (params.niter, params.min_uv_lambda) == (7, 250.0)
    assert (params.auto_threshold_sigma, params.auto_mask_sigma) == (None, 6.0)
    assert params.multiscale_scales_pix == (0, 4)
    assert params.threshold_jy == pytest.approx(0.002)
    assert params.cell_arcsec == pytest.approx(6.0)
    sim = SimulationConfig(
        n_groups=3, rfi_channels=[5], start_time="2024-01-02T03:04:05"
    )
    spec = observation_spec(PipelineConfig(simulation=sim))
    assert (spec.n_groups, spec.rfi_channels) == (3, (5,))
    assert spec.start_time == datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    grid = _grid(VariabilityConfig(ese_durations_days=[3.0], ese_min_depth=0.1))
    assert (grid.durations_days, grid.min_depth) == ((3.0,), 0.1)
    values = section_values(VariabilityConfig(), variability.EseGrid, prefix="ese_")
    assert set(values) == {
        "durations_days",
        "min_depth",
        "max_depth",
        "center_step_frac",
        "flank_ratios",
    }


def test_the_unused_annulus_key_is_refused_with_its_replacement() -> None:
    with pytest.raises(ValueError, match="rms_annulus_beams"):
        PhotometryConfig(rms_annulus_arcsec=(60.0, 180.0))
    assert PhotometryConfig(rms_annulus_beams=(4, 12)).rms_annulus_beams == (4, 12)
    with pytest.raises(ValueError, match="inner < outer"):
        PhotometryConfig(rms_annulus_beams=(12, 4))
