"""Raw UVH5 subband groups -> Measurement Sets: invariants, known truth, bad input.

Truths used:
- a round trip: the MS read back with pyuvdata equals the raw files (read with
  pyuvdata, conjugated to ant1 < ant2, sorted ascending in frequency) rotated by
  ``exp(-2 pi i (w_ms - w_raw) / lambda)``; amplitudes and autocorrelations are
  untouched;
- a one-source sky placed at the converter's phase centre: every
  cross-correlation is real and equals the Airy beam at the source's offset
  from the (moving) meridian pointing.
"""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

import h5py
import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import EarthLocation, SkyCoord
from astropy.time import Time
from pyuvdata import UVData

from dsa110_contimg.data_ingestion import _phasing, ms_creation
from dsa110_contimg.data_ingestion._uvh5_reader import read_group
from dsa110_contimg.data_ingestion.grouping import (
    SubbandGroup,
    discover_subband_files,
    group_subband_files,
)
from dsa110_contimg.data_ingestion.ms_creation import MsProduct, convert_group
from dsa110_contimg.data_ingestion.skymodel import SkyCatalog
from dsa110_contimg.exceptions import (
    DataQualityWarning,
    InputDataError,
    ResourceError,
)
from dsa110_contimg.simulation import ObservationSpec, simulate_observation
from dsa110_contimg.telescope import dsa110
from dsa110_contimg.telescope.beam_models import airy_beam

tables = pytest.importorskip("casacore.tables")

pytestmark = [pytest.mark.integration, pytest.mark.casa]

C_M_S = 299_792_458.0
N_ANT_TINY = 24
N_TIMES_TINY = 6
N_CHAN_TINY = 2


# --- helpers ---


def _only_group(directory: Path) -> SubbandGroup:
    groups = group_subband_files(discover_subband_files(directory))
    assert len(groups) == 1
    return groups[0]


def _file_of(directory: Path, subband: int) -> Path:
    (path,) = directory.glob(f"*_sb{subband:02d}.hdf5")
    return path


def _leftovers(directory: Path) -> list[Path]:
    """Temporary MS directories left behind anywhere under ``directory``."""
    return [p for p in directory.rglob("*") if ".tmp" in p.name]


def _read_raw(path: Path) -> UVData:
    return UVData.from_file(
        str(path),
        file_type="uvh5",
        run_check=False,
        run_check_acceptability=False,
        check_extra=False,
        fix_autos=False,
    )


def _row_order(uv: UVData) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Row order by (integration, name1, name2), and those keys, to match objects."""
    names = dict(
        zip(
            np.asarray(uv.telescope.antenna_numbers),
            uv.telescope.antenna_names,
            strict=True,
        )
    )
    n1 = np.array([names[a] for a in uv.ant_1_array])
    n2 = np.array([names[a] for a in uv.ant_2_array])
    t_idx = np.round(
        (uv.time_array - uv.time_array.min()) * 86400.0 / dsa110.INTEGRATION_TIME_S
    ).astype(int)
    order = np.lexsort((n2, n1, t_idx))
    return order, t_idx[order], n1[order], n2[order]


def _raw_corrected(paths: list[Path]) -> dict[str, np.ndarray]:
    """Read raw files with pyuvdata and apply the fixes independently of the converter.

    Returns rows sorted by (integration, name1, name2) with ant1 <= ant2 (by
    conjugating swapped rows and negating their uvw), channels ascending.
    """
    datas, freqs, keys, w_raw = [], [], None, None
    for path in paths:
        uv = _read_raw(path)
        swap = uv.ant_1_array > uv.ant_2_array
        uv.data_array[swap] = np.conj(uv.data_array[swap])
        a1 = np.where(swap, uv.ant_2_array, uv.ant_1_array)
        a2 = np.where(swap, uv.ant_1_array, uv.ant_2_array)
        uv.ant_1_array, uv.ant_2_array = a1, a2
        uvw = np.asarray(uv.uvw_array, dtype=np.float64)
        uvw[swap] *= -1.0
        order, t_idx, n1, n2 = _row_order(uv)
        these = (t_idx, n1, n2)
        if keys is None:
            keys, w_raw = these, uvw[order, 2]
        else:
            for a, b in zip(keys, these, strict=True):
                np.testing.assert_array_equal(a, b)
            np.testing.assert_array_equal(uvw[order, 2], w_raw)
        datas.append(uv.data_array[order])
        freqs.append(np.asarray(uv.freq_array).ravel())
        assert uv.data_array.dtype == np.complex64
    freq = np.concatenate(freqs)
    data = np.concatenate(datas, axis=1)
    chan = np.argsort(freq)
    return {
        "data": data[:, chan],
        "freq": freq[chan],
        "w": w_raw,
        "t_idx": keys[0],
        "name1": keys[1],
        "name2": keys[2],
    }


# --- fixtures ---


@pytest.fixture
def converted(tiny_group_dir: Path, tmp_path: Path) -> tuple[SubbandGroup, MsProduct]:
    group = _only_group(tiny_group_dir)
    product = convert_group(group, tmp_path / "ms")
    return group, product


@pytest.fixture(scope="module")
def one_source_observation(tmp_path_factory: pytest.TempPathFactory):
    """Noise-free group of a single 1 Jy, flat-spectrum source at the phase centre."""
    start = datetime(2023, 6, 1, 0, 0, 0, tzinfo=UTC)
    spec = ObservationSpec(
        start_time=start,
        n_groups=1,
        n_antennas=12,
        n_chan_per_subband=2,
        n_times=6,
        noise=False,
        seed=11,
    )
    loc = EarthLocation.from_geodetic(
        dsa110.ARRAY_LON_DEG * u.deg,
        dsa110.ARRAY_LAT_DEG * u.deg,
        dsa110.ARRAY_HEIGHT_M * u.m,
    )
    tau_d = dsa110.INTEGRATION_TIME_S / 86400
    times = Time(start).jd + (np.arange(spec.n_times) + 0.5) * tau_d
    dec_app = np.deg2rad(spec.declination_deg)
    t_mid = np.atleast_1d(np.median(times))
    ra_c, dec_c = _phasing.meridian_icrs_deg(dec_app, t_mid, loc)
    sky = SkyCatalog(
        name=np.array(["CENTRE"]),
        ra_deg=ra_c,
        dec_deg=dec_c,
        flux_jy=np.array([1.0]),
        spectral_index=np.array([0.0]),
        ref_freq_hz=np.array([1.4e9]),
    )
    out = tmp_path_factory.mktemp("one_source")
    result = simulate_observation(spec, out / "raw", sky=sky)
    return {
        "result": result,
        "times": times,
        "dec_app": dec_app,
        "location": loc,
        "centre": (float(ra_c[0]), float(dec_c[0])),
        "out": out,
    }


@pytest.fixture(scope="module")
def two_group_observation(tmp_path_factory: pytest.TempPathFactory):
    """Two consecutive small groups (8 integrations, 103 s each) in one directory."""
    spec = ObservationSpec(
        start_time=datetime(2023, 6, 1, 1, 0, 0, tzinfo=UTC),
        n_groups=2,
        n_antennas=8,
        n_chan_per_subband=1,
        n_times=8,
        n_sources=2,
        noise=False,
        seed=5,
    )
    return simulate_observation(spec, tmp_path_factory.mktemp("two_groups"))


# --- structure of a converted MS ---


def test_read_group_fixes_raw_quirks(tiny_group_dir: Path) -> None:
    group = _only_group(tiny_group_dir)
    raw = _read_raw(group.files[0])
    # The simulator reproduces the quirks; the reader must undo them.
    assert np.any(raw.ant_1_array > raw.ant_2_array)
    assert np.all(np.diff(np.asarray(raw.freq_array).ravel()) < 0)
    with h5py.File(group.files[0], "r") as h5:
        assert h5["Header/uvw_array"].dtype == np.float32
        assert np.all(h5["Header/channel_width"][()] < 0)
    uv = read_group(group)
    assert not np.any(uv.ant_1_array > uv.ant_2_array)
    freqs = np.asarray(uv.freq_array).ravel()
    assert freqs.size == 16 * N_CHAN_TINY
    assert np.all(np.diff(freqs) > 0)
    assert np.all(np.asarray(uv.channel_width) > 0)
    assert uv.uvw_array.dtype == np.float64
    assert uv.Nspws == 1


def test_ms_structure(converted: tuple[SubbandGroup, MsProduct]) -> None:
    group, product = converted
    ms = product.path
    assert product.skipped is False
    assert ms.name == dsa110.ms_filename(group.start_time)
    assert ms.name == "drift_20230601T000000_00.ms"
    assert product.n_subbands_present == 16
    assert product.pointing_dec_deg == pytest.approx(37.0, abs=1e-9)

    with tables.table(f"{ms}/SPECTRAL_WINDOW", ack=False) as spw:
        assert spw.nrows() == 1
        freqs = spw.getcol("CHAN_FREQ")[0]
        widths = spw.getcol("CHAN_WIDTH")[0]
    assert freqs.size == 16 * N_CHAN_TINY
    assert np.all(np.diff(freqs) > 0)
    assert np.all(widths > 0)
    np.testing.assert_allclose(freqs, dsa110.band_frequencies_hz(n_chan=N_CHAN_TINY))

    with tables.table(f"{ms}/FIELD", ack=False) as field:
        assert field.nrows() == 1
        ra, dec = np.rad2deg(field.getcol("PHASE_DIR")[0, 0])
    assert (ra % 360) == pytest.approx(product.phase_center_ra_deg, abs=1e-9)
    assert dec == pytest.approx(product.phase_center_dec_deg, abs=1e-9)
    # The common centre is the meridian at the group's middle, at the pointing dec.
    assert dec == pytest.approx(37.0, abs=0.5)

    n_bl = N_ANT_TINY * (N_ANT_TINY + 1) // 2
    assert n_bl == 300
    with tables.table(str(ms), ack=False) as main:
        assert main.nrows() == n_bl * N_TIMES_TINY
        a1, a2 = main.getcol("ANTENNA1"), main.getcol("ANTENNA2")
        uvw = main.getcol("UVW")
        data = main.getcol("DATA")
        field_id = main.getcol("FIELD_ID")
        n_times = np.unique(main.getcol("TIME")).size
        keywords = main.getkeywords()
    assert not np.any(a1 > a2)
    assert np.sum(a1 == a2) == N_ANT_TINY * N_TIMES_TINY
    assert uvw.dtype == np.float64
    assert data.shape == (n_bl * N_TIMES_TINY, 16 * N_CHAN_TINY, 2)
    assert np.all(field_id == 0)
    assert n_times == N_TIMES_TINY
    cross = a1 != a2
    lengths = np.linalg.norm(uvw[cross], axis=1)
    assert lengths.min() > 5.0 and lengths.max() < 3210.0
    assert keywords["DSA110_COMPLETE"] is True
    assert keywords["DSA110_GROUP_ID"] == group.group_id

    with tables.table(f"{ms}/OBSERVATION", ack=False) as obs:
        assert obs.getcol("TELESCOPE_NAME")[0] == dsa110.CASA_TELESCOPE_NAME
    # one ANTENNA row per antenna with data (the raw numbers start at 1)
    with tables.table(f"{ms}/ANTENNA", ack=False) as ant:
        assert ant.nrows() == N_ANT_TINY
        assert all(ant.getcol("NAME"))
        assert list(ant.getcol("MOUNT")) == ["ALT-AZ"] * N_ANT_TINY


def test_round_trip_against_raw_files(
    converted: tuple[SubbandGroup, MsProduct],
) -> None:
    group, product = converted
    raw = _raw_corrected([group.files[sb] for sb in sorted(group.files)])
    uv_ms = UVData.from_file(str(product.path), run_check=False)
    order, t_idx, n1, n2 = _row_order(uv_ms)
    np.testing.assert_array_equal(t_idx, raw["t_idx"])
    np.testing.assert_array_equal(n1, raw["name1"])
    np.testing.assert_array_equal(n2, raw["name2"])
    # ant1 <= ant2 by antenna number (names need not sort like numbers: real
    # files name antennas "1".."117")
    assert np.all(uv_ms.ant_1_array <= uv_ms.ant_2_array)
    np.testing.assert_allclose(np.asarray(uv_ms.freq_array).ravel(), raw["freq"])
    np.testing.assert_array_equal(uv_ms.polarization_array, [-5, -6])

    v_ms = uv_ms.data_array[order]
    v_raw = raw["data"]
    assert v_ms.shape == v_raw.shape

    # Phase rotation preserves amplitude.
    scale = np.median(np.abs(v_raw))
    np.testing.assert_allclose(
        np.abs(v_ms), np.abs(v_raw), rtol=1e-5, atol=1e-6 * scale
    )

    # Autocorrelations have w = 0 in every frame: untouched, bit for bit.
    auto = n1 == n2
    assert auto.sum() == N_ANT_TINY * N_TIMES_TINY
    np.testing.assert_array_equal(v_ms[auto], v_raw[auto])

    # Cross-correlations: V_ms = V_raw exp(-2 pi i (w_ms - w_raw) / lambda), with the
    # raw (float32) uvw and the MS uvw as stored (observed error ~1e-5 relative).
    w_ms = uv_ms.uvw_array[order, 2]
    lam = C_M_S / raw["freq"]
    rot = np.exp(-2j * np.pi * (w_ms - raw["w"])[:, None] / lam[None, :])
    expected = v_raw * rot[:, :, None]
    err = np.abs(v_ms - expected)[~auto]
    assert np.all(err <= 1e-4 * np.abs(v_raw[~auto]) + 1e-6 * scale)
    # ... and the rotation is not trivial: most cross rows changed phase.
    moved = np.abs(v_ms - v_raw)[~auto] > 0.1 * np.abs(v_raw[~auto])
    assert moved.mean() > 0.5

    # The MS flags nothing the raw files did not flag.
    assert not uv_ms.flag_array.any()


def test_point_source_at_phase_centre_is_real_and_beam_attenuated(
    one_source_observation: dict, tmp_path: Path
) -> None:
    obs = one_source_observation
    group = _only_group(obs["result"].output_dir)
    product = convert_group(group, tmp_path / "ms")
    ra_c, dec_c = obs["centre"]
    # The converter chose the centre the source was placed at.
    chosen = SkyCoord(
        product.phase_center_ra_deg * u.deg, product.phase_center_dec_deg * u.deg
    )
    off = chosen.separation(SkyCoord(ra_c * u.deg, dec_c * u.deg)).arcsec
    assert off < 0.01

    with tables.table(str(product.path), ack=False) as main:
        a1, a2 = main.getcol("ANTENNA1"), main.getcol("ANTENNA2")
        times_s = main.getcol("TIME")
        data = main.getcol("DATA")
    with tables.table(f"{product.path}/SPECTRAL_WINDOW", ack=False) as spw:
        freqs = spw.getcol("CHAN_FREQ")[0]
    cross = a1 != a2
    vis = data[cross]
    assert np.abs(np.angle(vis)).max() < 0.01

    # Expected amplitude: the Airy beam at the source's offset from each
    # integration's meridian pointing (independent geometry: astropy separation).
    sim_times = np.sort(obs["times"])
    pt_ra, pt_dec = _phasing.meridian_icrs_deg(
        obs["dec_app"], sim_times, obs["location"]
    )
    theta = (
        SkyCoord(ra_c * u.deg, dec_c * u.deg)
        .separation(SkyCoord(pt_ra * u.deg, pt_dec * u.deg))
        .rad
    )
    assert theta.max() > np.deg2rad(0.1)  # the source really drifts through the beam
    beam = airy_beam(theta[:, None], freqs[None, :])  # (n_time, n_chan)
    ms_jd = times_s[cross] / 86400.0 + 2400000.5
    t_idx = np.abs(ms_jd[:, None] - sim_times[None, :]).argmin(axis=1)
    assert np.abs(ms_jd - sim_times[t_idx]).max() * 86400 < 0.01
    expected = beam[t_idx]  # (n_row, n_chan)
    for pol in range(2):
        np.testing.assert_allclose(np.abs(vis[:, :, pol]), expected, rtol=1e-3)
    assert expected.min() < 0.999  # attenuated, not the catalogue flux


# --- idempotence ---


def _mtimes(path: Path) -> dict[str, int]:
    return {str(p.relative_to(path)): p.stat().st_mtime_ns for p in path.rglob("*")} | {
        ".": path.stat().st_mtime_ns
    }


def test_rerun_skips_without_rewriting(
    converted: tuple[SubbandGroup, MsProduct],
) -> None:
    group, first = converted
    before = _mtimes(first.path)
    again = convert_group(group, first.path.parent)
    assert again.skipped is True
    assert again.path == first.path
    assert (again.phase_center_ra_deg, again.phase_center_dec_deg) == pytest.approx(
        (first.phase_center_ra_deg, first.phase_center_dec_deg), abs=1e-9
    )
    assert again.pointing_dec_deg == pytest.approx(first.pointing_dec_deg, abs=1e-9)
    assert again.n_subbands_present == 16
    assert _mtimes(first.path) == before


def test_overwrite_rewrites(converted: tuple[SubbandGroup, MsProduct]) -> None:
    group, first = converted
    again = convert_group(group, first.path.parent, overwrite=True)
    assert again.skipped is False
    assert ms_creation.is_valid_ms(again.path)
    assert _leftovers(first.path.parent) == []


def test_ms_without_completion_mark_is_redone(
    converted: tuple[SubbandGroup, MsProduct],
) -> None:
    group, first = converted
    with tables.table(str(first.path), readonly=False, ack=False) as ms:
        ms.removekeyword("DSA110_COMPLETE")
    assert not ms_creation.is_valid_ms(first.path)
    again = convert_group(group, first.path.parent)
    assert again.skipped is False
    assert ms_creation.is_valid_ms(again.path)


def test_ms_of_an_older_format_is_redone(
    converted: tuple[SubbandGroup, MsProduct],
) -> None:
    group, first = converted
    with tables.table(str(first.path), readonly=False, ack=False) as ms:
        assert ms.getkeyword("DSA110_MS_FORMAT") == 2
        ms.removekeyword("DSA110_MS_FORMAT")  # as written before format 2
    assert not ms_creation.is_valid_ms(first.path)
    again = convert_group(group, first.path.parent)
    assert again.skipped is False
    assert ms_creation.is_valid_ms(again.path)


# --- incomplete groups ---


def test_missing_subband_fails_by_default(tiny_group_dir: Path, tmp_path: Path) -> None:
    _file_of(tiny_group_dir, 5).unlink()
    group = _only_group(tiny_group_dir)
    assert group.missing_subbands == (5,)
    out = tmp_path / "ms"
    with pytest.raises(InputDataError, match="sb05") as excinfo:
        convert_group(group, out)
    message = str(excinfo.value)
    assert group.group_id in message
    assert "incomplete_policy" in message
    assert not out.exists() or list(out.iterdir()) == []


def test_missing_subband_flag_policy(tiny_group_dir: Path, tmp_path: Path) -> None:
    _file_of(tiny_group_dir, 5).unlink()
    group = _only_group(tiny_group_dir)
    with pytest.warns(DataQualityWarning, match="missing"):
        product = convert_group(group, tmp_path / "ms", incomplete_policy="flag")
    assert product.n_subbands_present == 15
    with tables.table(f"{product.path}/SPECTRAL_WINDOW", ack=False) as spw:
        freqs = spw.getcol("CHAN_FREQ")[0]
    assert freqs.size == 16 * N_CHAN_TINY
    assert np.all(np.diff(freqs) > 0)
    sb05 = np.isin(freqs, dsa110.subband_frequencies_hz(5, n_chan=N_CHAN_TINY))
    assert sb05.sum() == N_CHAN_TINY
    with tables.table(str(product.path), ack=False) as main:
        flags = main.getcol("FLAG")
        data = main.getcol("DATA")
        keywords = main.getkeywords()
    assert flags[:, sb05, :].all()
    assert not flags[:, ~sb05, :].any()
    assert np.all(data[:, sb05, :] == 0)
    assert np.all(np.abs(data[:, ~sb05, :]).sum(axis=(0, 2)) > 0)
    assert keywords["DSA110_MISSING_SUBBANDS"] == "5"
    # A rerun recognises the finished (flagged) MS and reports the same coverage.
    again = convert_group(group, tmp_path / "ms", incomplete_policy="flag")
    assert again.skipped is True
    assert again.n_subbands_present == 15


def test_unknown_policy_rejected(tiny_group_dir: Path, tmp_path: Path) -> None:
    group = _only_group(tiny_group_dir)
    with pytest.raises(ValueError, match="incomplete_policy"):
        convert_group(group, tmp_path / "ms", incomplete_policy="wait")


# --- bad input files ---


def _truncate(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


def _shift_times(path: Path) -> None:
    with h5py.File(path, "r+") as h5:
        times = h5["Header/time_array"][()]
        h5["Header/time_array"][...] = times + 60.0 / 86400.0


def _drop_dec(path: Path) -> None:
    with h5py.File(path, "r+") as h5:
        del h5["Header/extra_keywords/phase_center_dec"]


def _not_hdf5(path: Path) -> None:
    path.write_bytes(b"this is a text file, not HDF5\n" * 20)


@pytest.mark.parametrize(
    ("damage", "subband", "expected"),
    [
        (_truncate, 9, "truncated or corrupt"),
        (_shift_times, 7, "integration times differ"),
        (_drop_dec, 4, "phase_center_dec"),
        (_not_hdf5, 11, "cannot read HDF5"),
    ],
    ids=["truncated", "time-shifted", "no-pointing-dec", "not-hdf5"],
)
def test_bad_file_names_culprit(
    tiny_group_dir: Path, tmp_path: Path, damage, subband: int, expected: str
) -> None:
    culprit = _file_of(tiny_group_dir, subband)
    damage(culprit)
    group = _only_group(tiny_group_dir)
    assert group.is_complete  # the names are fine; the contents are not
    out = tmp_path / "ms"
    with pytest.raises(InputDataError) as excinfo:
        convert_group(group, out)
    message = str(excinfo.value)
    assert str(culprit) in message
    assert expected in message
    # No other file of the group is blamed.
    others = [p for sb, p in group.files.items() if sb != subband]
    assert not any(str(p) in message for p in others)
    assert not out.exists() or list(out.iterdir()) == []


# --- output problems ---


def test_unwritable_output_dir(tiny_group_dir: Path, tmp_path: Path) -> None:
    group = _only_group(tiny_group_dir)
    blocker = tmp_path / "file.txt"
    blocker.write_text("a regular file, not a directory\n")
    out = blocker / "ms"
    with pytest.raises(ResourceError) as excinfo:
        convert_group(group, out)
    assert str(out) in str(excinfo.value)
    assert group.group_id in str(excinfo.value)
    assert _leftovers(tmp_path) == []
    assert blocker.read_text() == "a regular file, not a directory\n"


def test_failed_validation_leaves_nothing(
    tiny_group_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(path: Path, **_: object) -> None:
        msg = f"{path}: MS check failed: injected"
        raise InputDataError(msg)

    monkeypatch.setattr(ms_creation, "validate_ms", refuse)
    group = _only_group(tiny_group_dir)
    out = tmp_path / "ms"
    with pytest.raises(InputDataError, match="injected"):
        convert_group(group, out)
    assert list(out.iterdir()) == []


# --- one bad group does not stop the others ---


def test_failed_group_does_not_block_the_next(
    two_group_observation, tmp_path: Path
) -> None:
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    for sim_group in two_group_observation.groups:
        for path in sim_group.files:
            shutil.copy2(path, incoming / path.name)
    groups = group_subband_files(discover_subband_files(incoming))
    assert len(groups) == 2
    assert all(g.is_complete for g in groups)
    culprit = groups[0].files[3]
    _truncate(culprit)

    out = tmp_path / "ms"
    products, failures = [], []
    for group in groups:
        try:
            products.append(convert_group(group, out))
        except InputDataError as err:
            failures.append((group, err))
    assert [g.group_id for g, _ in failures] == [groups[0].group_id]
    assert str(culprit) in str(failures[0][1])
    assert [p.group_id for p in products] == [groups[1].group_id]
    assert ms_creation.is_valid_ms(products[0].path)
    assert sorted(p.name for p in out.iterdir()) == [products[0].path.name]
    with tables.table(str(products[0].path), ack=False) as main:
        assert main.nrows() == 8 * 9 // 2 * 8


# --- channel averaging ---


def test_read_group_averages_each_subband_like_the_joined_band(
    tiny_group_dir: Path,
) -> None:
    group = _only_group(tiny_group_dir)
    joined = read_group(group)
    joined.frequency_average(n_chan_to_avg=2, propagate_flags=True)
    per_subband = read_group(group, chan_average=2)
    assert per_subband.Nfreqs == 16 == joined.Nfreqs
    np.testing.assert_allclose(per_subband.freq_array, joined.freq_array, rtol=1e-12)
    np.testing.assert_allclose(per_subband.channel_width, joined.channel_width)
    np.testing.assert_allclose(
        per_subband.data_array, joined.data_array, rtol=1e-6, atol=1e-6
    )
    np.testing.assert_array_equal(per_subband.flag_array, joined.flag_array)
    np.testing.assert_allclose(per_subband.nsample_array, joined.nsample_array)
    # known truth: each averaged channel sits at the mean of its two raw channels
    raw = np.sort(
        np.concatenate(
            [dsa110.subband_frequencies_hz(sb, n_chan=N_CHAN_TINY) for sb in range(16)]
        )
    )
    np.testing.assert_allclose(
        np.ravel(per_subband.freq_array), raw.reshape(-1, 2).mean(axis=1), rtol=1e-12
    )


def test_averaged_conversion_with_a_missing_subband(
    tiny_group_dir: Path, tmp_path: Path
) -> None:
    _file_of(tiny_group_dir, 5).unlink()
    group = _only_group(tiny_group_dir)
    with pytest.warns(DataQualityWarning, match="missing"):
        product = convert_group(
            group, tmp_path / "ms", incomplete_policy="flag", chan_average=2
        )
    with tables.table(f"{product.path}/SPECTRAL_WINDOW", ack=False) as spw:
        freqs = spw.getcol("CHAN_FREQ")[0]
    with tables.table(str(product.path), ack=False) as main:
        flags = main.getcol("FLAG")
    assert freqs.size == 16 and np.all(np.diff(freqs) > 0)
    sb05 = np.isclose(freqs, dsa110.subband_frequencies_hz(5, n_chan=1)[0])
    assert sb05.sum() == 1
    assert flags[:, sb05, :].all() and not flags[:, ~sb05, :].any()
    assert set(product.durations_s) == {"read", "phase", "write"}


def test_chan_average_must_divide_the_subband(tiny_group_dir: Path, tmp_path: Path):
    group = _only_group(tiny_group_dir)
    with pytest.raises(InputDataError, match="chan_average=3 does not divide") as err:
        convert_group(group, tmp_path / "ms", chan_average=3)
    assert group.group_id in str(err.value) and "divisor" in str(err.value)
    assert not (tmp_path / "ms").exists() or not any((tmp_path / "ms").iterdir())
