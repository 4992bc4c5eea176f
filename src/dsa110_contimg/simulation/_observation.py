"""Simulate a drift-scan observation as subband groups of raw UVH5 files."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.coordinates import EarthLocation
from astropy.time import Time
from numpy.typing import NDArray
from pyuvdata import Telescope
from pyuvdata.utils import ECEF_from_ENU

from dsa110_contimg.data_ingestion import _phasing
from dsa110_contimg.data_ingestion.skymodel import SkyCatalog, write_catalog
from dsa110_contimg.simulation._gains import GainModel, random_gain_model
from dsa110_contimg.simulation._predict import predict_visibilities
from dsa110_contimg.simulation._sky import make_sky, make_strip_sky
from dsa110_contimg.simulation._writer import write_subband_file
from dsa110_contimg.telescope import dsa110

__all__ = [
    "ObservationSpec",
    "SimulatedGroup",
    "SimulationResult",
    "simulate_observation",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ObservationSpec:
    """What to simulate. Sizes default to the real DSA-110 shape.

    The pipeline builds this from the ``simulation`` config section
    (`dsa110_contimg.pipeline.batch.observation_spec`); every field that
    section also has defaults to the section's default
    (``tests/unit/test_config_defaults.py`` keeps them equal).
    """

    start_time: datetime
    n_groups: int = 2
    n_antennas: int = dsa110.N_ANTENNAS_ACTIVE
    n_chan_per_subband: int = dsa110.N_CHAN_PER_SUBBAND
    n_times: int = dsa110.N_TIMES_PER_GROUP
    declination_deg: float = 37.0
    n_sources: int = 12
    min_flux_jy: float = 0.05
    max_flux_jy: float = 2.0
    field_radius_deg: float = 1.5
    sefd_jy: float = dsa110.SEFD_JY
    noise: bool = True
    gains: bool = False
    gain_amp_rms: float = 0.05
    gain_phase_rms_deg: float = 10.0
    bandpass: bool = False
    bandpass_ripple_frac: float = 0.05
    bandpass_phase_slope_deg: float = 30.0
    gain_drift: bool = False
    gain_amp_drift_per_hour: float = 0.01
    gain_phase_drift_deg_per_hour: float = 5.0
    add_calibrators: bool = False
    dead_antennas: tuple[int, ...] = ()  # antenna indices with no signal
    rfi_channels: tuple[int, ...] = ()  # raw-order channel indices (sb * n_chan + c)
    rfi_amplitude_jy: float = 500.0
    missing_subbands: tuple[int, ...] = ()
    timestamp_jitter_s: float = 2.0
    swapped_fraction: float = 0.05
    seed: int = 42
    # Time between integrations; None = the integration time. A few
    # integrations spread over a real group's 309 s keep testing-size groups
    # realistic in drift (beam averaging) and cadence.
    integration_spacing_s: float | None = None
    # "groups": n_sources in a disc around each group's meridian; "strip":
    # n_sources * n_groups spread uniformly along the strip the groups cover.
    sky_mode: str = "groups"
    # "station": antennas named by station number as in real files ("1"..
    # "117", numbers 0..116, with gaps); "pad": the seed's "pad001".. (1..n).
    antenna_naming: str = "station"


@dataclass(frozen=True, slots=True)
class SimulatedGroup:
    """One written group: its nominal start and its files."""

    start_time: datetime
    files: tuple[Path, ...]
    missing_subbands: tuple[int, ...]
    meridian_ra_deg: float


@dataclass(frozen=True, slots=True)
class SimulationResult:
    """Everything the simulator wrote, with the truth."""

    output_dir: Path
    groups: tuple[SimulatedGroup, ...]
    sky: SkyCatalog
    sky_path: Path
    gains_path: Path | None
    truth_path: Path
    gain_model: GainModel | None = field(default=None)


def _location() -> EarthLocation:
    return EarthLocation.from_geodetic(
        dsa110.ARRAY_LON_DEG * u.deg,
        dsa110.ARRAY_LAT_DEG * u.deg,
        dsa110.ARRAY_HEIGHT_M * u.m,
    )


def _telescope(
    n_antennas: int, location: EarthLocation, naming: str = "station"
) -> Telescope:
    enu = dsa110.antenna_layout_enu(n_antennas=n_antennas)
    ecef = ECEF_from_ENU(enu, center_loc=location)
    rel = ecef - np.array(
        [location.x.to_value(u.m), location.y.to_value(u.m), location.z.to_value(u.m)]
    )
    numbers = dsa110.antenna_numbers(n_antennas, naming)
    return Telescope.new(
        location=location,
        name=dsa110.TELESCOPE_NAME,
        instrument="DSA-110",
        antenna_positions={int(n): rel[i] for i, n in enumerate(numbers)},
        antenna_names=dsa110.antenna_names(n_antennas, naming),
        antenna_numbers=numbers,
        antenna_diameters=np.full(n_antennas, dsa110.DISH_DIAMETER_M),
        mount_type="alt-az",
        feed_array=np.tile(["x", "y"], (n_antennas, 1)),
        feed_angle=np.tile([np.pi / 2, 0.0], (n_antennas, 1)),
    )


def simulate_observation(
    spec: ObservationSpec,
    output_dir: Path,
    *,
    sky: SkyCatalog | None = None,
    progress: Callable[[str], None] | None = None,
) -> SimulationResult:
    """Write ``spec.n_groups`` subband groups of raw files plus the truth.

    Files are ``<isot>_sbNN.hdf5`` in ``output_dir``; the truth goes to
    ``output_dir/truth/`` (``sky.csv`` in the pipeline's catalogue format,
    ``gains.csv`` when gains are applied, ``observation.json``). Subbands in
    ``spec.missing_subbands`` are left out of the last group.

    Parameters
    ----------
    spec : ObservationSpec
        What to simulate.
    output_dir : Path
        Where to write.
    sky : SkyCatalog, optional
        Sources to observe; by default a random sky around each group's
        meridian (``spec.n_sources`` per group).
    progress : callable, optional
        Called with a short message after each group.

    Returns
    -------
    SimulationResult
    """
    rng = np.random.default_rng(spec.seed)
    output_dir = Path(output_dir)
    truth_dir = output_dir / "truth"
    truth_dir.mkdir(parents=True, exist_ok=True)
    location = _location()
    telescope = _telescope(spec.n_antennas, location, spec.antenna_naming)
    numbers = np.asarray(telescope.antenna_numbers)
    i1, i2 = np.triu_indices(spec.n_antennas)
    ant1, ant2 = numbers[i1], numbers[i2]
    xyz = _phasing.baseline_xyz_m(
        np.asarray(telescope.antenna_positions), i1, i2, location.lon.to_value(u.rad)
    )
    dec_app = np.deg2rad(spec.declination_deg)
    uvw_meridian = _phasing.uvw_for_hadec_m(xyz, 0.0, dec_app)
    cross = i1 != i2
    swapped = cross & (rng.uniform(size=i1.size) < spec.swapped_fraction)

    start = spec.start_time.astimezone(UTC)
    tau = dsa110.INTEGRATION_TIME_S
    step_s = spec.integration_spacing_s or tau
    group_span_s = step_s * spec.n_times
    group_starts = [
        start + timedelta(seconds=k * group_span_s) for k in range(spec.n_groups)
    ]
    group_times = [
        Time(gs).jd + (np.arange(spec.n_times) + 0.5) * step_s / 86400.0
        for gs in group_starts
    ]
    mid_ras = [
        float(np.median(_phasing.meridian_icrs_deg(dec_app, t, location)[0]))
        for t in group_times
    ]
    if sky is None and spec.sky_mode == "strip":
        sky = make_strip_sky(
            np.asarray(mid_ras),
            spec.declination_deg,
            n_sources=spec.n_sources * spec.n_groups,
            half_width_deg=spec.field_radius_deg,
            min_flux_jy=spec.min_flux_jy,
            max_flux_jy=spec.max_flux_jy,
            rng=rng,
        )
    elif sky is None:
        sky = make_sky(
            np.asarray(mid_ras),
            spec.declination_deg,
            n_sources_per_center=spec.n_sources,
            radius_deg=spec.field_radius_deg,
            min_flux_jy=spec.min_flux_jy,
            max_flux_jy=spec.max_flux_jy,
            rng=rng,
        )
    if spec.add_calibrators:
        sky = _with_calibrators(sky, np.asarray(mid_ras), spec)
    gain_model = None
    if spec.gains:
        gain_model = random_gain_model(
            list(telescope.antenna_names),
            rng=rng,
            t0_jd=float(group_times[0][0]),
            f0_hz=0.5 * (dsa110.BAND_LOW_HZ + dsa110.BAND_HIGH_HZ),
            bandwidth_hz=dsa110.BAND_HIGH_HZ - dsa110.BAND_LOW_HZ,
            amp_rms=spec.gain_amp_rms,
            phase_rms_deg=spec.gain_phase_rms_deg,
            bandpass=spec.bandpass,
            ripple_frac=spec.bandpass_ripple_frac,
            phase_slope_deg=spec.bandpass_phase_slope_deg,
            drift=spec.gain_drift,
            amp_drift_per_hour=spec.gain_amp_drift_per_hour,
            phase_drift_deg_per_hour=spec.gain_phase_drift_deg_per_hour,
        )

    groups: list[SimulatedGroup] = []
    for g, (gstart, times_jd) in enumerate(zip(group_starts, group_times, strict=True)):
        missing = tuple(spec.missing_subbands) if g == spec.n_groups - 1 else ()
        files = []
        for sb in range(dsa110.N_SUBBANDS):
            if sb in missing:
                continue
            freqs = dsa110.subband_frequencies_hz(sb, n_chan=spec.n_chan_per_subband)
            vis = predict_visibilities(
                sky,
                xyz_m=xyz,
                times_jd=times_jd,
                freq_hz=freqs,
                pointing_dec_rad=dec_app,
                location=location,
            )
            gains = None
            if gain_model is not None:
                gains = gain_model.evaluate(times_jd, freqs)
            vis = _corrupt(
                vis,
                spec,
                gains=gains,
                i1=i1,
                i2=i2,
                cross=cross,
                chan_width_hz=abs(freqs[1] - freqs[0])
                if freqs.size > 1
                else 11.71875e6,
                rng=rng,
                rfi_chan=np.array(
                    [
                        k % spec.n_chan_per_subband
                        for k in spec.rfi_channels
                        if k // spec.n_chan_per_subband == sb
                    ],
                    dtype=int,
                ),
            )
            jitter = int(round(rng.uniform(0, spec.timestamp_jitter_s)))
            stamp = (gstart + timedelta(seconds=jitter)).replace(microsecond=0)
            path = output_dir / dsa110.subband_filename(stamp, sb)
            write_subband_file(
                path,
                telescope=telescope,
                vis=vis,
                ant1=ant1,
                ant2=ant2,
                uvw_m=uvw_meridian,
                times_jd=times_jd,
                freq_hz=freqs,
                integration_time_s=tau,
                pointing_dec_rad=dec_app,
                swapped=swapped,
            )
            files.append(path)
        if progress is not None and files:
            progress(
                f"[simulate {g + 1}/{spec.n_groups}] {len(files)} subband files "
                f"{files[0].name} ... {files[-1].name}"
            )
        groups.append(SimulatedGroup(gstart, tuple(files), missing, mid_ras[g]))
        log.info(
            "group simulated",
            extra={"group": gstart.isoformat(), "n_files": len(files)},
        )

    sky_path = truth_dir / "sky.csv"
    write_catalog(sky, sky_path)
    gains_path = None
    if gain_model is not None:
        gains_path = truth_dir / "gains.json"
        gain_model.to_json(gains_path)
    truth_path = truth_dir / "observation.json"
    spec_dict = asdict(spec)
    spec_dict["start_time"] = start.isoformat()
    truth_path.write_text(
        json.dumps(
            {
                "spec": spec_dict,
                "groups": [
                    {
                        "start_time": gr.start_time.isoformat(),
                        "files": [p.name for p in gr.files],
                        "missing_subbands": list(gr.missing_subbands),
                        "meridian_ra_deg": gr.meridian_ra_deg,
                    }
                    for gr in groups
                ],
            },
            indent=2,
        )
    )
    return SimulationResult(
        output_dir, tuple(groups), sky, sky_path, gains_path, truth_path, gain_model
    )


def _with_calibrators(
    sky: SkyCatalog, centers_ra_deg: NDArray[np.float64], spec: ObservationSpec
) -> SkyCatalog:
    """Append shipped calibrators within the beam of any group to the sky."""
    from dsa110_contimg.calibration._calibrators import load_calibrators
    from dsa110_contimg.telescope.beam_models import angular_separation_rad, fwhm_deg

    reach = np.deg2rad(spec.field_radius_deg + fwhm_deg(1.4e9))
    extra = []
    for cal in load_calibrators():
        sep = angular_separation_rad(
            np.deg2rad(centers_ra_deg),
            np.deg2rad(spec.declination_deg),
            np.deg2rad(cal.ra_deg),
            np.deg2rad(cal.dec_deg),
        )
        if np.min(sep) < reach and cal.name not in set(sky.name):
            extra.append(cal.as_sky())
    if not extra:
        return sky
    parts = [sky, *extra]
    return SkyCatalog(
        name=np.concatenate([p.name for p in parts]),
        ra_deg=np.concatenate([p.ra_deg for p in parts]),
        dec_deg=np.concatenate([p.dec_deg for p in parts]),
        flux_jy=np.concatenate([p.flux_jy for p in parts]),
        spectral_index=np.concatenate([p.spectral_index for p in parts]),
        ref_freq_hz=np.concatenate([p.ref_freq_hz for p in parts]),
    )


def _corrupt(
    vis: NDArray[np.complex128],
    spec: ObservationSpec,
    *,
    gains: NDArray[np.complex128] | None,
    i1: NDArray[np.int_],
    i2: NDArray[np.int_],
    cross: NDArray[np.bool_],
    chan_width_hz: float,
    rng: np.random.Generator,
    rfi_chan: NDArray[np.int_],
) -> NDArray[np.complex128]:
    """Add system temperature, gains, noise, dead antennas and RFI; two pols."""
    out = np.repeat(vis[..., None], 2, axis=-1)
    out[:, ~cross] += spec.sefd_jy
    if gains is not None:  # (n_ant, n_time, n_chan): V_ij = g_i conj(g_j) V
        g = np.transpose(gains, (1, 0, 2))  # (n_time, n_ant, n_chan)
        out *= (g[:, i1] * np.conj(g[:, i2]))[..., None]
    dead = np.isin(i1, spec.dead_antennas) | np.isin(i2, spec.dead_antennas)
    if spec.noise:
        # Radiometer equation per real/imaginary part of a cross-correlation.
        sigma = spec.sefd_jy / np.sqrt(2.0 * chan_width_hz * dsa110.INTEGRATION_TIME_S)
        noise = sigma * (
            rng.standard_normal(out.shape) + 1j * rng.standard_normal(out.shape)
        )
        noise[:, ~cross] = (
            np.sqrt(2.0) * sigma * rng.standard_normal(noise[:, ~cross].shape)
        )
        out += noise
    if dead.any():  # no signal path: noise-level crosses, no power in the autos
        out[:, dead] *= 0.01
    if rfi_chan.size:  # a broadband-in-time burst in a few channels, middle third
        n_time = out.shape[0]
        t_sel = slice(n_time // 3, max(n_time // 3 + 1, 2 * n_time // 3))
        burst = spec.rfi_amplitude_jy * np.exp(
            2j * np.pi * rng.uniform(size=out[t_sel][:, :, rfi_chan].shape)
        )
        out[t_sel, :, rfi_chan] += burst
    return out
