"""The drift-averaged primary beam counts only the integrations that are imaged.

One testing-size group (six 51.5 s integrations, 309 s) at dec +37 with 2 Jy
sources from the beam centre out to primary beam ~0.35 on both sides in RA.
The converted MS is imaged three times: as it is; with its first three
integrations flagged (an RFI burst, or a flagger run on a bad stretch); and
with its two middle integrations missing (dumps the correlator dropped). The
image holds each source at the beam of the integrations that are in it, so
the primary-beam correction must weight the drift by the unflagged weight of
each integration, on the integrations' cadence. Before, the beam was the
equal mean over ``DSANTIME`` steps from the first integration, the count of
integrations present: measured here, with the first half flagged the sources
at primary beam 0.3-0.6 came out 21-33% off (low on one side, high on the
other), and with the gap the track ended two steps early (13-31% off); with
the weighted beam every source is within 5% of the truth (1-4% is the
testing-size clean's own error, the same with nothing flagged) and within 3%
of its flux in the unflagged image. A fourth image has the upper half of the
band flagged: its fluxes now refer to the unflagged channels' mean frequency
(1358 MHz, not the imager's 1405 MHz reference) with the beam of those
channels; before, the alpha = -0.7 sources read 3-10% high (mean +6.5%, +1.1%
now, +1.7% with nothing flagged). Known truth: the simulated
fluxes; the test also evaluates the old beam on the same images and requires
it to be wrong by more than the new one's tolerance.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from datetime import UTC, datetime

import numpy as np
import pytest
from casacore import tables

from dsa110_contimg.mosaic import DriftTrack, primary_beam_at
from dsa110_contimg.pipeline.stages.conversion_stage import convert_groups, find_groups
from dsa110_contimg.pipeline.stages.imaging_stage import image_ms
from dsa110_contimg.pipeline.stages.photometry_stage import measure_image
from dsa110_contimg.simulation import ObservationSpec, simulate_observation
from dsa110_contimg.testing.drift_skies import catalog_from_rows, group_centers_deg
from dsa110_contimg.utils.config_loader import load_pipeline_config

pytestmark = [pytest.mark.integration, pytest.mark.wsclean]

START = datetime(2023, 6, 1, 3, 0, 0, tzinfo=UTC)
DEC = 37.0
SPEC_KW = {
    "n_groups": 1,
    "n_times": 6,
    "integration_spacing_s": 51.5,
    "declination_deg": DEC,
}
FLUX_JY = 2.0
# RA offsets on the sky (deg): centre to primary beam ~0.35 on both sides
OFFSETS = (-1.5, -1.1, -0.6, 0.0, 0.6, 1.1, 1.5)
# measured / true - 1 with the weighted beam (SNR 150-500; testing-size
# images carry deconvolution errors of 1-4% at these fluxes)
TOLERANCE = 0.05
# measured ratio to the unflagged image of the same sky, same source (the
# two images' deconvolution errors differ: half the data, another clean)
RATIO_TOLERANCE = 0.04


@pytest.fixture(scope="module")
def imaged(tmp_path_factory):
    base = tmp_path_factory.mktemp("flagged_beam")
    (ra0,) = group_centers_deg(START, **SPEC_KW)
    cos_dec = np.cos(np.deg2rad(DEC))
    sky = catalog_from_rows(
        [(ra0 + dx / cos_dec, DEC, FLUX_JY) for dx in OFFSETS], name_prefix="B"
    )
    spec = ObservationSpec(
        start_time=START, n_antennas=24, n_chan_per_subband=2, seed=5, **SPEC_KW
    )
    simulate_observation(spec, base / "incoming", sky=sky)
    cfg = load_pipeline_config(environment="testing", env={})
    (ms,) = convert_groups(
        find_groups(base / "incoming", cfg.conversion), base / "ms", cfg.conversion
    ).ms_paths
    with tables.table(str(ms), ack=False) as t:
        times = np.unique(t.getcol("TIME"))
    assert times.size == 6
    flagged = base / "flagged.ms"
    shutil.copytree(ms, flagged)
    with tables.table(str(flagged), readonly=False, ack=False) as t:
        flag = t.getcol("FLAG")
        flag[t.getcol("TIME") < times[3] - 1.0] = True
        t.putcol("FLAG", flag)
    upper = base / "upper.ms"
    shutil.copytree(ms, upper)
    with tables.table(str(upper), readonly=False, ack=False) as t:
        flag = t.getcol("FLAG")
        flag[:, flag.shape[1] // 2 :, :] = True
        t.putcol("FLAG", flag)
    dropped = base / "dropped.ms"
    with tables.table(str(ms), ack=False) as t:
        keep = t.query(f"TIME < {times[1] + 1.0} || TIME > {times[4] - 1.0}")
        keep.copy(str(dropped), deep=True)
        keep.close()
    out = {}
    for label, path in (
        ("all", ms),
        ("flagged", flagged),
        ("dropped", dropped),
        ("upper", upper),
    ):
        product = image_ms(path, base / f"images_{label}", cfg.imaging)
        table = measure_image(product.image_path, sky, cfg.photometry)
        out[label] = (product, table)
    return sky, times / 86400.0, out


def _old_track(track: DriftTrack, times_mjd, label: str) -> DriftTrack:
    """The track the imaging stage wrote before: equal weights over the MS's
    unique times counted from the first at their median spacing."""
    present = times_mjd if label != "dropped" else np.delete(times_mjd, [2, 3])
    step = float(np.median(np.diff(present)) * 86400.0)
    return replace(
        track,
        start_mjd=float(present[0]),
        step_s=step,
        n_time=present.size,
        time_weights=None,
        freq_weights=None,
    )


def _errors(imaged, label):
    """Return measured/true - 1 with the image's beam and with the old beam."""
    from astropy.io import fits

    sky, times_mjd, out = imaged
    product, table = out[label]
    header = fits.getheader(product.image_path)
    track = DriftTrack.from_header(header)
    old = _old_track(track, times_mjd, label)
    # before, the flux referred to the imager's reference frequency
    old_freq = float(header["CRVAL3"])
    assert str(header["CTYPE3"]).startswith("FREQ")
    rows = {str(r["source_name"]): r for r in table}
    new_err, old_err = [], []
    for i, name in enumerate(sky.name):
        row = rows[str(name)]
        true = float(sky.flux_at(float(row["freq_hz"]))[i])
        pb_old = float(primary_beam_at(old, [sky.ra_deg[i]], [sky.dec_deg[i]])[0])
        new_err.append(row["flux_jy"] / true - 1)
        old_true = float(sky.flux_at(old_freq)[i])
        old_err.append(row["flux_jy"] * row["pb"] / pb_old / old_true - 1)
        print(
            f"\n{label} {name}: freq {row['freq_hz'] / 1e6:.1f} MHz (old "
            f"{old_freq / 1e6:.1f}), pb {row['pb']:.3f} (old {pb_old:.3f}), flux error "
            f"{100 * new_err[-1]:+.2f}% (old beam {100 * old_err[-1]:+.2f}%), "
            f"snr {row['snr']:.0f}"
        )
    return track, np.array(new_err), np.array(old_err)


@pytest.mark.parametrize(
    ("label", "weights"),
    [
        ("all", [1] * 6),
        ("flagged", [0] * 3 + [1] * 3),
        ("dropped", [1, 1, 0, 0, 1, 1]),
        ("upper", [1] * 6),
    ],
)
def test_weighted_drift_beam_gives_the_true_flux(imaged, label, weights):
    track, new_err, old_err = _errors(imaged, label)
    assert track.n_time == 6
    assert np.allclose(track.time_weights, weights, atol=1e-3)
    assert np.all(np.abs(new_err) < TOLERANCE)
    if label == "all":
        assert np.allclose(new_err, old_err, atol=1e-3)  # nothing changes
        return
    # against the unflagged image of the same sky (its deconvolution errors
    # are common to both): what a light curve sees when one day is flagged
    _, all_err, _ = _errors(imaged, "all")
    new_ratio = (1 + new_err) / (1 + all_err) - 1
    old_ratio = (1 + old_err) / (1 + all_err) - 1
    print(
        f"\n{label}: vs the unflagged image, max |ratio - 1| "
        f"{np.abs(new_ratio).max():.3f} (old beam {np.abs(old_ratio).max():.3f})"
    )
    assert np.all(np.abs(new_ratio) < RATIO_TOLERANCE)
    # the old beam and frequency: max |ratio - 1| 0.33 (flagged), 0.28
    # (dropped), 0.066 (upper band; mean 0.047 against 0.010 now)
    assert np.max(np.abs(old_ratio)) > 0.06
    assert np.mean(np.abs(old_ratio)) > 3 * np.mean(np.abs(new_ratio))
