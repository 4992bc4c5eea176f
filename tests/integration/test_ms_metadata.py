"""A converted MS as CASA and WSClean see it: antennas, pointing, observation, weights.

Truths used:
- the raw files' antenna table (names, numbers with gaps, ECEF positions);
- the drift-scan geometry: every antenna points at HA = 0 at the pointing
  declination at each integration, and the common phase centre is that
  direction at the group's median time;
- the simulator's noise, drawn from the radiometer equation
  ``SEFD / sqrt(2 dnu tau)`` per real and imaginary part: the visibilities'
  measured scatter must equal the MS's SIGMA, and a naturally weighted dirty
  image's rms must equal ``SIGMA / sqrt(2 N_vis)`` (Stokes I of XX and YY).
"""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import h5py
import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import EarthLocation, HADec, SkyCoord
from astropy.io import fits
from astropy.time import Time

from dsa110_contimg.data_ingestion._ms_metadata import (
    INSTRUMENT_KEY,
    RAW_NUMBERS_KEY,
    radiometer_sigma_jy,
)
from dsa110_contimg.data_ingestion.grouping import (
    discover_subband_files,
    group_subband_files,
)
from dsa110_contimg.data_ingestion.ms_creation import convert_group
from dsa110_contimg.simulation import ObservationSpec, simulate_observation
from dsa110_contimg.telescope import dsa110

tables = pytest.importorskip("casacore.tables")

pytestmark = [pytest.mark.integration, pytest.mark.casa]

N_ANT = 24
N_TIMES = 6
N_CHAN = 2  # per subband in the raw files
CHAN_AVERAGE = 2
LOCATION = EarthLocation.from_geodetic(
    dsa110.ARRAY_LON_DEG * u.deg,
    dsa110.ARRAY_LAT_DEG * u.deg,
    dsa110.ARRAY_HEIGHT_M * u.m,
)


def _renumber_raw_antennas(directory: Path) -> dict[int, int]:
    """Give the raw antennas numbers with gaps, not starting at 0 (as a real file may).

    Returns the map old number -> new number.
    """
    mapping: dict[int, int] = {}
    for path in sorted(directory.glob("*.hdf5")):
        with h5py.File(path, "r+") as h5:
            header = h5["Header"]
            old = header["antenna_numbers"][()]
            new = 3 * old + 2
            mapping = dict(zip(old.tolist(), new.tolist(), strict=True))
            lut = np.zeros(old.max() + 1, dtype=old.dtype)
            lut[old] = new
            for key in ("ant_1_array", "ant_2_array"):
                values = lut[header[key][()]]
                del header[key]
                header[key] = values
            del header["antenna_numbers"]
            header["antenna_numbers"] = new
    return mapping


@pytest.fixture(scope="module")
def observation(tmp_path_factory):
    """A noise-dominated testing-size group (sources of 0.1 mJy) with gapped numbers."""
    base = tmp_path_factory.mktemp("ms_metadata")
    spec = ObservationSpec(
        start_time=datetime(2023, 6, 1, 0, 0, 0, tzinfo=UTC),
        n_groups=1,
        n_antennas=N_ANT,
        n_chan_per_subband=N_CHAN,
        n_times=N_TIMES,
        n_sources=2,
        min_flux_jy=1e-4,
        max_flux_jy=2e-4,
        seed=3,
    )
    result = simulate_observation(spec, base / "raw")
    mapping = _renumber_raw_antennas(base / "raw")
    (group,) = group_subband_files(discover_subband_files(base / "raw"))
    product = convert_group(group, base / "ms", chan_average=CHAN_AVERAGE)
    with h5py.File(group.files[0], "r") as h5:
        header = h5["Header"]
        raw = {
            "names": [n.decode() for n in header["antenna_names"][()]],
            "numbers": header["antenna_numbers"][()],
            "positions": header["antenna_positions"][()],
            "times_jd": np.unique(header["time_array"][()]),
            "instrument": header["instrument"][()].decode(),
        }
    return {
        "base": base,
        "result": result,
        "product": product,
        "raw": raw,
        "map": mapping,
    }


def test_antenna_table_is_exactly_the_raw_antennas(observation) -> None:
    casatools = pytest.importorskip("casatools")
    ms = str(observation["product"].path)
    raw = observation["raw"]
    assert min(observation["map"].values()) > 0  # raw numbers start above 0 ...
    assert np.any(np.diff(np.sort(raw["numbers"])) > 1)  # ... and have gaps

    md = casatools.msmetadata()
    md.open(ms)
    try:
        n_ant = md.nantennas()
        names = list(md.antennanames())
    finally:
        md.done()
    assert n_ant == N_ANT
    order = np.argsort(raw["numbers"])
    assert names == [raw["names"][i] for i in order]

    with tables.table(f"{ms}/ANTENNA", ack=False) as ant:
        pos = ant.getcol("POSITION")
        mounts = list(ant.getcol("MOUNT"))
        diam = ant.getcol("DISH_DIAMETER")
        raw_numbers = ant.getkeyword(RAW_NUMBERS_KEY)
    centre = np.array([LOCATION.x.value, LOCATION.y.value, LOCATION.z.value])
    np.testing.assert_allclose(pos, raw["positions"][order] + centre, atol=1e-3)
    np.testing.assert_array_equal(raw_numbers, raw["numbers"][order])
    assert mounts == ["ALT-AZ"] * N_ANT
    np.testing.assert_allclose(diam, dsa110.DISH_DIAMETER_M)
    # geodetic positions on the site: within 3 km, heights within 10 m
    geo = EarthLocation.from_geocentric(*pos.T, unit=u.m).to_geodetic()
    assert np.all(np.abs(geo.height.to_value(u.m) - dsa110.ARRAY_HEIGHT_M) < 10.0)
    assert np.all(np.hypot(*(pos - centre)[:, :2].T) < 3000.0)

    with tables.table(ms, ack=False) as main:
        used = np.unique(
            np.concatenate([main.getcol("ANTENNA1"), main.getcol("ANTENNA2")])
        )
    np.testing.assert_array_equal(used, np.arange(N_ANT))  # no antenna without data


def test_pointing_is_the_meridian_at_each_integration(observation) -> None:
    ms = str(observation["product"].path)
    with tables.table(f"{ms}/POINTING", ack=False) as pt:
        direction = pt.getcol("DIRECTION")[:, :, 0]
        times_s = pt.getcol("TIME")
        ant_id = pt.getcol("ANTENNA_ID")
        ref = pt.getcolkeyword("DIRECTION", "MEASINFO")["Ref"]
    assert ref == "ICRS"
    assert direction.shape[0] == N_ANT * N_TIMES
    assert sorted(set(ant_id.tolist())) == list(range(N_ANT))
    # Known truth: HA = 0 and apparent dec = pointing dec at the row's time.
    coord = SkyCoord(ra=direction[:, 0] * u.rad, dec=direction[:, 1] * u.rad)
    frame = HADec(obstime=Time(times_s / 86400.0, format="mjd"), location=LOCATION)
    hadec = coord.transform_to(frame)
    ha_arcsec = hadec.ha.wrap_at(180 * u.deg).to_value(u.arcsec)
    assert np.max(np.abs(ha_arcsec)) < 1.0
    np.testing.assert_allclose(hadec.dec.deg, 37.0, atol=1 / 3600)
    np.testing.assert_allclose(
        np.unique(times_s) / 86400.0 + 2400000.5,
        observation["raw"]["times_jd"],
        atol=1e-8,
    )
    # The data's phase centre is the pointing at the group's median time.
    uniq, first = np.unique(times_s, return_index=True)
    ra_track = np.unwrap(direction[first, 0])
    ra_mid = np.interp(np.median(uniq), uniq, ra_track)
    with tables.table(f"{ms}/FIELD", ack=False) as field:
        ra_f, dec_f = field.getcol("PHASE_DIR")[0, 0]
    d_ra = (ra_mid - ra_f + np.pi) % (2 * np.pi) - np.pi
    assert np.degrees(abs(d_ra) * np.cos(dec_f)) * 3600 < 1.0
    assert np.degrees(abs(direction[first, 1].mean() - dec_f)) * 3600 < 1.0


def test_observation_table_and_listobs(observation, tmp_path) -> None:
    casatasks = pytest.importorskip("casatasks")
    casatools = pytest.importorskip("casatools")
    ms = str(observation["product"].path)
    times_jd = observation["raw"]["times_jd"]
    tau = dsa110.INTEGRATION_TIME_S
    t0 = Time(times_jd[0], format="jd").mjd * 86400.0 - tau / 2
    t1 = Time(times_jd[-1], format="jd").mjd * 86400.0 + tau / 2
    with tables.table(f"{ms}/OBSERVATION", ack=False) as obs:
        np.testing.assert_allclose(obs.getcol("TIME_RANGE")[0], [t0, t1], atol=1e-3)
        assert obs.getcol("TELESCOPE_NAME")[0] == dsa110.CASA_TELESCOPE_NAME
        assert obs.getcol("OBSERVER")[0] == "DSA-110"
        assert "drift scan" in obs.getcol("PROJECT")[0]
    with tables.table(ms, ack=False) as main:
        assert main.getkeyword(INSTRUMENT_KEY) == observation["raw"]["instrument"]
    md = casatools.msmetadata()
    md.open(ms)
    try:
        span = md.timerangeforobs(0)
    finally:
        md.done()
    assert span["begin"]["m0"]["value"] * 86400 == pytest.approx(t0, abs=1e-3)
    assert span["end"]["m0"]["value"] * 86400 == pytest.approx(t1, abs=1e-3)

    listing = tmp_path / "listobs.txt"
    casatasks.listobs(vis=ms, listfile=str(listing), overwrite=True)
    text = listing.read_text()
    print("\n" + text)
    assert f"Antennas: {N_ANT}:" in text
    assert "Observer: DSA-110" in text
    assert "Observation: OVRO_MMA" in text
    assert f"Total elapsed time = {t1 - t0:.4f} seconds" in text
    for name in observation["raw"]["names"][:3]:
        assert name in text


_OFFSETS_SCRIPT = """
import json, sys
from dsa110_contimg._casa import import_casa
casatools = import_casa("casatools")
md = casatools.msmetadata()
md.open(sys.argv[1])
offsets = [md.antennaoffset(k) for k in range(md.nantennas())]
md.done()
me = casatools.measures()
site = me.observatory("DSA_110")
print(json.dumps({
    "east": [o["longitude offset"]["value"] for o in offsets],
    "north": [o["latitude offset"]["value"] for o in offsets],
    "up": [o["elevation offset"]["value"] for o in offsets],
    "refer": site["refer"],
    "lon_rad": me.measure(site, "WGS84")["m0"]["value"],
}))
"""


def test_casa_knows_the_site_antenna_offsets_are_metres(observation) -> None:
    """listobs's antenna offsets need CASA's observatory row to be right.

    casadata types OVRO_MMA's geodetic height as an ITRF radius; the
    installation's CASA data (`dsa110_contimg._casa_data`) retypes it, so the
    offsets of the antennas from the site are metres, not ~6 370 km. Run in a
    fresh process: CASA keeps the data of its first start for the life of a
    process.
    """
    import json
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", _OFFSETS_SCRIPT, str(observation["product"].path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    got = json.loads(done.stdout.strip().splitlines()[-1])
    up, east, north = (np.array(got[k]) for k in ("up", "east", "north"))
    assert np.all(np.abs(up) < 100.0), f"elevation offsets {up.min()}..{up.max()} m"
    assert np.all(np.hypot(east, north) < 3000.0)
    assert got["refer"] == "WGS84"
    lon = np.degrees(got["lon_rad"])
    assert lon == pytest.approx(dsa110.ARRAY_LON_DEG, abs=1e-6)


def test_casa_solves_without_mount_warnings(observation, tmp_path) -> None:
    """pyuvdata's MOUNT 'other' gave one parAngle warning per antenna and solve."""
    casatasks = pytest.importorskip("casatasks")
    ms = tmp_path / "copy.ms"
    shutil.copytree(observation["product"].path, ms)
    log = tmp_path / "casa.log"
    previous = casatasks.casalog.logfile()
    casatasks.casalog.setlogfile(str(log))
    try:
        casatasks.gaincal(
            vis=str(ms),
            caltable=str(tmp_path / "p.G"),
            solint="inf",
            refant=observation["raw"]["names"][0],
            calmode="p",
        )
    finally:
        casatasks.casalog.setlogfile(previous)
    text = log.read_text()
    assert "gaincal" in text  # the log did capture the solve
    assert "unhandled mount type" not in text
    assert (tmp_path / "p.G").exists()


def test_weights_follow_the_radiometer_equation(observation) -> None:
    ms = str(observation["product"].path)
    with tables.table(f"{ms}/SPECTRAL_WINDOW", ack=False) as spw:
        width = spw.getcol("CHAN_WIDTH")[0]
    with tables.table(ms, ack=False) as main:
        a1, a2 = main.getcol("ANTENNA1"), main.getcol("ANTENNA2")
        sigma, weight = main.getcol("SIGMA"), main.getcol("WEIGHT")
        spectrum = main.getcol("WEIGHT_SPECTRUM")
        data = main.getcol("DATA")
        interval = main.getcol("INTERVAL")
    raw_width = dsa110.N_CHAN_PER_SUBBAND * dsa110.CHANNEL_WIDTH_HZ / N_CHAN
    np.testing.assert_allclose(width, CHAN_AVERAGE * raw_width)
    expected = dsa110.SEFD_JY / np.sqrt(2 * width[0] * dsa110.INTEGRATION_TIME_S)
    np.testing.assert_allclose(interval, dsa110.INTEGRATION_TIME_S)
    np.testing.assert_allclose(sigma, expected, rtol=1e-5)
    np.testing.assert_allclose(weight, expected**-2, rtol=1e-5)
    np.testing.assert_allclose(spectrum, expected**-2, rtol=1e-5)
    assert radiometer_sigma_jy(width[0], dsa110.INTEGRATION_TIME_S) == pytest.approx(
        expected
    )
    # Known truth: the simulator's noise (per raw channel) averaged by CHAN_AVERAGE.
    cross = data[a1 != a2]
    measured = np.std(np.concatenate([cross.real.ravel(), cross.imag.ravel()]))
    print(f"\nvisibility scatter {measured:.4f} Jy, SIGMA {expected:.4f} Jy")
    assert measured == pytest.approx(expected, rel=0.02)


@pytest.mark.wsclean
def test_wsclean_natural_weighting_noise_matches_sigma(observation, tmp_path) -> None:
    """A naturally weighted dirty image of the noise has rms SIGMA / sqrt(2 N_vis).

    The pixels (6 arcsec) are small enough for the longest baseline (~2.7 km,
    13.5 klambda) to fall inside the uv grid, so every visibility counts; the
    rms is measured in the central third, away from the edges where the
    gridding correction amplifies the noise.
    """
    ms = Path(observation["product"].path)
    copy = tmp_path / ms.name
    shutil.copytree(ms, copy)
    prefix = tmp_path / "dirty"
    cmd = [
        "wsclean", "-quiet", "-size", "768", "768", "-scale", "6asec",
        "-weight", "natural", "-niter", "0", "-pol", "I", "-j", "2",
        "-no-reorder", "-name", str(prefix), str(copy),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    with fits.open(f"{prefix}-dirty.fits") as hdul:
        image = np.asarray(hdul[0].data, dtype=float).squeeze()
    with tables.table(str(ms), ack=False) as main:
        a1, a2 = main.getcol("ANTENNA1"), main.getcol("ANTENNA2")
        sigma = main.getcol("SIGMA")[a1 != a2]
        n_chan = main.getcol("WEIGHT_SPECTRUM", 0, 1).shape[1]
    n_vis = sigma.shape[0] * n_chan
    predicted = float(np.median(sigma)) / np.sqrt(2 * n_vis)
    n = image.shape[0] // 3
    rms = float(np.std(image[n:-n, n:-n]))
    print(f"\ndirty-image rms {1e3 * rms:.3f} mJy, predicted {1e3 * predicted:.3f} mJy")
    assert rms == pytest.approx(predicted, rel=0.05)
