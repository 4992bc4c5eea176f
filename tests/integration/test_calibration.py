"""Calibration known-truth tests: gains recovered, science effect, loud failures."""

from __future__ import annotations

import shutil
from datetime import UTC
from pathlib import Path

import numpy as np
import pytest
from astropy import units as u

from dsa110_contimg.calibration import (
    find_transits,
    load_calibrators,
    read_gain_table,
    transit_time,
)
from dsa110_contimg.data_ingestion.grouping import (
    discover_subband_files,
    group_subband_files,
)
from dsa110_contimg.data_ingestion.ms_creation import convert_group
from dsa110_contimg.exceptions import CalibrationError
from dsa110_contimg.pipeline.stages.calibration_stage import calibrate_block
from dsa110_contimg.simulation import ObservationSpec, simulate_observation
from dsa110_contimg.simulation._gains import GainModel
from dsa110_contimg.state.calibration import (
    InMemorySolutionRegistry,
    open_solution_registry,
)
from dsa110_contimg.telescope import dsa110
from dsa110_contimg.utils.config_loader import load_pipeline_config

pytestmark = [pytest.mark.integration, pytest.mark.casa]

N_TIMES = 12
CAL = "3C286"
N_ANT = 48
DEAD = 7  # simulated antenna index with no signal
# the simulator names antennas as real files do: station numbers "1".."117"
NAMES = dsa110.antenna_names(N_ANT, "station")
NUMBERS = dsa110.antenna_numbers(N_ANT, "station")


def _spec(**kw) -> ObservationSpec:
    from astropy.time import Time

    cal = next(c for c in load_calibrators() if c.name == CAL)
    transit = transit_time(cal.ra_deg, Time("2023-06-01T00:00:00", scale="utc"))
    start = transit - 0.5 * N_TIMES * dsa110.INTEGRATION_TIME_S * u.s
    base = dict(
        start_time=start.to_datetime(UTC),
        n_groups=2,
        n_antennas=N_ANT,
        n_chan_per_subband=4,
        n_times=N_TIMES,
        declination_deg=30.5,
        n_sources=5,
        min_flux_jy=0.5,
        max_flux_jy=2.0,
        field_radius_deg=0.6,
        add_calibrators=True,
        seed=11,
    )
    base.update(kw)
    return ObservationSpec(**base)


def _convert(raw: Path, ms_dir: Path) -> list[Path]:
    groups = group_subband_files(discover_subband_files(raw))
    return [convert_group(g, ms_dir).path for g in groups]


def _config(base: Path, **extra):
    paths = {
        "cal_tables_dir": "cal",
        "state_db": "db.sqlite3",
        "images_dir": "images",
        "ms_stage1_dir": "ms",
        "products_dir": "products",
    }
    overrides = {f"paths.{k}": str(base / v) for k, v in paths.items()}
    overrides.update(
        {
            "calibration.enabled": True,
            "calibration.uvrange": "",
        }
    )
    overrides.update(extra)
    return load_pipeline_config(environment="testing", overrides=overrides, env={})


@pytest.fixture(scope="module")
def corrupted(tmp_path_factory):
    base = tmp_path_factory.mktemp("cal")
    sim = simulate_observation(
        _spec(
            gains=True,
            bandpass=True,
            gain_drift=True,
            dead_antennas=(DEAD,),
            rfi_channels=(30, 31),
        ),
        base / "raw",
    )
    ms = _convert(base / "raw", base / "ms")
    config = _config(base)
    with open_solution_registry(base / "db.sqlite3") as registry:
        outcome = calibrate_block(
            ms,
            config.calibration,
            cal_tables_dir=base / "cal",
            registry=registry,
            block_id="block_test",
            sky_model=sim.sky,
        )
    return base, sim, ms, config, outcome


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    base = tmp_path_factory.mktemp("clean")
    sim = simulate_observation(_spec(), base / "raw")
    return base, sim, _convert(base / "raw", base / "ms")


def test_transit_found_and_solved_once(corrupted):
    base, sim, ms, config, outcome = corrupted
    assert not outcome.errors, outcome.errors
    assert [s.calibrator for s in outcome.solved] == [CAL]
    # One ANTENNA row per antenna with data (no blank row 0): only the dead
    # antenna's solutions are flagged, 1 of the 48.
    quality = outcome.solved[0].quality
    assert quality["bandpass_flagged_fraction"] == pytest.approx(1 / 48)
    assert len(outcome.applied) == 2
    with open_solution_registry(base / "db.sqlite3") as registry:
        again = calibrate_block(
            ms,
            config.calibration,
            cal_tables_dir=base / "cal",
            registry=registry,
            block_id="block_test",
        )
    assert again.solved == []  # the registry already holds this transit's solution
    assert not again.errors


def test_in_memory_registry_makes_the_same_choices(corrupted):
    """calibrate_block without a database: same reuse, same choice, same refusal."""
    base, sim, ms, config, outcome = corrupted
    (solution,) = outcome.solved
    memory = InMemorySolutionRegistry([solution])
    again = calibrate_block(
        ms,
        config.calibration,
        cal_tables_dir=base / "cal",
        registry=memory,
        block_id="block_test",
    )
    assert not again.errors
    assert again.solved == []  # reused within its validity, as from the database
    assert again.applied == outcome.applied
    # the same transit registered 2 days away is found (no new solve) but expired
    late = InMemorySolutionRegistry()
    late.register(
        calibrator=solution.calibrator,
        group_id=solution.group_id,
        ms_path=Path(ms[0]),
        tables=solution.tables,
        refant=solution.refant,
        dec_strip_deg=solution.dec_strip_deg,
        transit_mjd=solution.transit_mjd - 2.0,
        validity_hours=config.calibration.validity_hours,
        quality=solution.quality,
    )
    refused = calibrate_block(
        ms,
        config.calibration,
        cal_tables_dir=base / "cal",
        registry=late,
        block_id="block_late",
    )
    assert refused.solved == [] and refused.applied == {}
    assert sorted(refused.errors) == sorted(str(p) for p in ms)
    assert all(
        "block_late" in str(e) and "h away" in str(e) for e in refused.errors.values()
    )
    assert late.applications == {}


def test_gains_recovered(corrupted):
    from casacore.tables import table

    base, sim, ms, config, outcome = corrupted
    solution = outcome.solved[0]
    bp, gain = (
        read_gain_table(solution.bandpass_table),
        read_gain_table(solution.gain_table),
    )
    with table(f"{ms[0]}/ANTENNA", ack=False) as ant:
        names = list(ant.getcol("NAME"))
    with table(f"{ms[0]}/SPECTRAL_WINDOW", ack=False) as spw:
        freqs = spw.getcol("CHAN_FREQ")[0]
    model = GainModel.from_json(sim.gains_path)
    times = np.unique(gain["TIME"])
    truth = model.evaluate(times / 86400 + 2400000.5, freqs)  # (ant, time, chan)
    solved = np.full(truth.shape, np.nan, complex)
    flagged = np.zeros(truth.shape, bool)
    for k, name in enumerate(model.antenna_names):
        idx = names.index(name)
        b = bp["CPARAM"][bp["ANTENNA1"] == idx][0, :, 0]
        bf = bp["FLAG"][bp["ANTENNA1"] == idx][0, :, 0]
        rows = gain["ANTENNA1"] == idx
        g = gain["CPARAM"][rows][:, 0, 0]
        gf = gain["FLAG"][rows][:, 0, 0]
        t_idx = np.searchsorted(times, gain["TIME"][rows])
        solved[k, t_idx] = g[:, None] * b[None, :]
        flagged[k, t_idx] = gf[:, None] | bf[None, :]
    # CASA's gains are the complex conjugates of the simulator's (MS convention)
    ratio = solved / np.conj(truth)
    ref = model.antenna_names.index(solution.refant)
    ratio = ratio / (ratio[ref] / np.abs(ratio[ref]))[None]
    dead = DEAD
    good = ~flagged
    good[dead] = False
    amp_err = np.abs(np.abs(ratio[good]) - 1)
    phase_err = np.abs(np.degrees(np.angle(ratio[good])))
    print(
        f"\ngain recovery: median amplitude error {100 * np.median(amp_err):.3f}%, "
        f"median phase error {np.median(phase_err):.3f} deg "
        f"({good.sum()} antenna-time-channel solutions)"
    )
    assert np.median(amp_err) <= 0.01
    assert np.median(phase_err) <= 1.0
    assert flagged[dead].all()  # the dead antenna has no solution


def test_flagging_catches_dead_antenna_and_rfi(corrupted, clean):
    from dsa110_contimg.calibration import flag_ms

    base, sim, ms, config, outcome = corrupted
    report = outcome.flag_reports[str(ms[0])]
    print(f"\nflagging: {report.summary()}")
    assert report.dead_antennas == (NAMES[DEAD],)
    assert report.rfi_fraction > 0
    # raw channels 30, 31 = sb07 channels 2, 3 -> ascending MS channels 33, 32
    assert max(report.per_subband, key=report.per_subband.get) == 7
    from casacore.tables import table

    with table(str(ms[0]), ack=False) as t:
        flags = t.getcol("FLAG")
        a1, a2 = t.getcol("ANTENNA1"), t.getcol("ANTENNA2")
        _, t_idx = np.unique(t.getcol("TIME"), return_inverse=True)
    with table(f"{ms[0]}/ANTENNA", ack=False) as ant:
        dead_row = list(ant.getcol("NAME")).index(report.dead_antennas[0])
    live = (a1 != a2) & (a1 != dead_row) & (a2 != dead_row)
    burst = live & (t_idx >= N_TIMES // 3) & (t_idx < 2 * N_TIMES // 3)
    caught = flags[burst][:, [32, 33], :].mean()
    elsewhere = np.delete(flags[live], [32, 33], axis=1).mean()
    print(
        f"RFI burst flagged {100 * caught:.1f}%, "
        f"other clean data {100 * elsewhere:.2f}%"
    )
    assert caught > 0.95
    assert elsewhere < 0.01
    clean_ms = clean[2][0]
    copy = base / "clean_copy.ms"
    shutil.copytree(clean_ms, copy)
    clean_report = flag_ms(copy)
    print(f"clean data: {clean_report.summary()}")
    assert clean_report.total_fraction < 0.01
    assert clean_report.dead_antennas == ()


def test_calibrated_image_recovers_fluxes(corrupted, clean, tmp_path):
    from dsa110_contimg.pipeline.stages import imaging_stage, photometry_stage
    from dsa110_contimg.simulation import compare_to_truth

    base, sim, ms, config, outcome = corrupted
    results = {}
    for label, ms_path, cfg in (
        ("calibrated", ms[0], config),
        ("uncorrupted", clean[2][0], config),
    ):
        product = imaging_stage.image_ms(ms_path, tmp_path / label, cfg.imaging)
        table = photometry_stage.measure_image(
            product.image_path, sim.sky, cfg.photometry
        )
        results[label] = (product, table)
    # the uncalibrated data: image DATA of the corrupted MS
    raw_copy = tmp_path / "raw_copy.ms"
    shutil.copytree(ms[0], raw_copy)
    from casacore.tables import table as ctable

    with ctable(str(raw_copy), readonly=False, ack=False) as t:
        t.removekeyword("DSA110_CALTABLES")
    product = imaging_stage.image_ms(
        raw_copy, tmp_path / "uncalibrated", config.imaging
    )
    results["uncalibrated"] = (
        product,
        photometry_stage.measure_image(product.image_path, sim.sky, config.photometry),
    )
    summary = {}
    for label, (_, table) in results.items():
        cmp = compare_to_truth(
            table, clean[1].sky if label == "uncorrupted" else sim.sky, snr_min=0
        )
        rms = float(np.median(table["rms_jy"] / 1.0))
        summary[label] = (cmp.median_abs_flux_error, rms)
        print(
            f"\n{label}: median |flux error| {100 * cmp.median_abs_flux_error:.2f}%, "
            f"median local rms {1e3 * rms:.2f} mJy"
        )
    assert summary["calibrated"][0] <= 0.03
    assert summary["calibrated"][1] <= 1.5 * summary["uncorrupted"][1]
    assert summary["uncalibrated"][0] > 3 * summary["calibrated"][0]
    from astropy.io import fits

    header = fits.getheader(results["calibrated"][0].image_path)
    assert CAL in header["DSACAL"]
    # the reference antenna's provenance travels into the image header
    assert f"refant {outcome.solved[0].refant} (automatic)" in header["DSACAL"]


def test_refant_chosen_on_real_named_data(corrupted):
    """Real files name antennas "1".."117": the seed's pad001.. must not break it."""
    import json
    import sqlite3

    from dsa110_contimg.calibration import choose_refant
    from dsa110_contimg.pipeline.stages.calibration_stage import ms_calibration

    base, sim, ms, config, outcome = corrupted
    solution = outcome.solved[0]
    refant = solution.refant
    q = solution.quality
    print(
        f"\nrefant chosen on real-name data: {refant} ({q['refant_how']}; "
        f"{q['refant_distance_m']:.0f} m from the array centre, unflagged "
        f"{q['refant_unflagged_fraction']:.3f}, instability "
        f"{q['refant_instability']:.3f}): {q['refant_reason']}"
    )
    assert refant in NAMES
    assert refant != NAMES[DEAD]
    assert q["refant_how"] == "automatic"
    assert q["refant_distance_m"] < 500.0  # not an outrigger
    # provenance: the cal_solutions row and the MS keyword of every calibrated MS
    with sqlite3.connect(base / "db.sqlite3") as conn:
        row_refant, quality_json, cal_ms = conn.execute(
            "SELECT refant, quality_json, ms_path FROM cal_solutions WHERE id=?",
            (solution.id,),
        ).fetchone()
    assert row_refant == refant
    assert json.loads(quality_json)["refant_how"] == "automatic"
    for path in ms:
        assert f"refant {refant} (automatic)" in ms_calibration(Path(path))
    # the seed's configuration (pad001, fallback pad002..pad004) matches no real
    # antenna: it used to end in CalibrationError; now the data choose
    cal_ms = Path(cal_ms)
    seed = choose_refant(cal_ms, ["pad001", "pad002", "pad003", "pad004"])
    assert (seed.name, seed.how) == (refant, "automatic")
    assert "pad001 (not in the MS)" in seed.reason
    # a configured antenna that exists and is good is used as configured ...
    other = next(n for n in NAMES if n not in (refant, NAMES[DEAD]))
    assert choose_refant(cal_ms, [other]).how == "configured"
    # ... and the dead antenna is passed over for the fallback
    fallback = choose_refant(cal_ms, [NAMES[DEAD], other])
    assert (fallback.name, fallback.how) == (other, "fallback")


@pytest.mark.parametrize("naming", ["station", "pad"])
def test_simulator_writes_both_naming_schemes(tmp_path, naming):
    import h5py

    spec = _spec(
        n_groups=1,
        n_antennas=8,
        n_chan_per_subband=1,
        n_times=1,
        n_sources=1,
        add_calibrators=False,
        antenna_naming=naming,
    )
    sim = simulate_observation(spec, tmp_path)
    with h5py.File(sim.groups[0].files[0], "r") as h5:
        names = [n.decode() for n in h5["Header/antenna_names"][()]]
        numbers = list(h5["Header/antenna_numbers"][()])
        used = set(h5["Header/ant_1_array"][()]) | set(h5["Header/ant_2_array"][()])
    assert names == dsa110.antenna_names(8, naming)
    if naming == "station":  # as the correlator writes: str(number + 1), gaps
        assert names == [str(n + 1) for n in numbers]
        assert numbers[0] == 0
        assert max(numbers) == dsa110.N_STATION_SLOTS - 1
    else:
        assert names[:2] == ["pad001", "pad002"]
        assert numbers == list(range(1, 9))
    assert used == set(numbers)


def test_other_strip_is_never_applied(corrupted):
    base, sim, ms, config, outcome = corrupted
    with open_solution_registry(base / "db.sqlite3") as registry:
        solution = outcome.solved[0]
        with pytest.raises(CalibrationError) as info:
            registry.select(
                time_mjd=solution.transit_mjd,
                dec_deg=54.6,
                dec_tolerance_deg=0.5,
                aging_warn_hours=6,
                what="block_20230601T060000",
            )
        message = str(info.value)
        assert "block_20230601T060000" in message
        assert "54.60" in message
        assert solution.bandpass_table.name in message
        with pytest.raises(CalibrationError, match="h away"):
            registry.select(
                time_mjd=solution.transit_mjd + 2.0,
                dec_deg=30.5,
                dec_tolerance_deg=0.5,
                aging_warn_hours=6,
                what="late block",
            )


def test_block_without_calibration_fails_loudly(clean, tmp_path):
    base, sim, ms = clean
    copy = tmp_path / "no_transit.ms"
    shutil.copytree(ms[1], copy)
    config = _config(tmp_path, **{"calibration.min_calibrator_flux_jy": 1000.0})
    with open_solution_registry(tmp_path / "db.sqlite3") as registry:
        outcome = calibrate_block(
            [copy],
            config.calibration,
            cal_tables_dir=tmp_path / "cal",
            registry=registry,
            block_id="block_X",
        )
    (err,) = outcome.errors.values()
    assert "block_X" in str(err)
    assert "30.5" in str(err)


def test_transit_ranking():
    from astropy.time import Time

    transits = find_transits(
        load_calibrators(),
        30.5,
        Time("2023-06-01T00:00:00"),
        Time("2023-06-02T00:00:00"),
    )
    assert transits[0].calibrator.name == CAL
    assert transits[0].beam_weighted_flux_jy == pytest.approx(15.0, rel=0.02)


def test_antenna_with_unstable_gains_is_not_the_reference(corrupted, tmp_path):
    """An antenna whose phases jump between integrations is passed over."""
    import sqlite3

    from casacore.tables import table

    from dsa110_contimg.calibration import choose_refant
    from dsa110_contimg.calibration._refant import antenna_stats

    base, sim, ms, config, outcome = corrupted
    with sqlite3.connect(base / "db.sqlite3") as conn:
        (cal_ms,) = conn.execute(
            "SELECT ms_path FROM cal_solutions WHERE id=?", (outcome.solved[0].id,)
        ).fetchone()
    copy = tmp_path / "unstable.ms"
    shutil.copytree(cal_ms, copy)
    jumpy = 20  # simulated antenna index
    with table(f"{copy}/ANTENNA", ack=False) as ant:  # MS rows are compacted
        row = list(ant.getcol("NAME")).index(NAMES[jumpy])
    rng = np.random.default_rng(3)
    with table(str(copy), readonly=False, ack=False) as t:
        a1, a2 = t.getcol("ANTENNA1"), t.getcol("ANTENNA2")
        _, t_idx = np.unique(t.getcol("TIME"), return_inverse=True)
        data = t.getcol("DATA")
        jumps = np.exp(1j * rng.uniform(-1.5, 1.5, t_idx.max() + 1))
        data[a1 == row] *= jumps[t_idx[a1 == row], None, None]
        data[a2 == row] *= np.conj(jumps[t_idx[a2 == row], None, None])
        t.putcol("DATA", data)
    stats = antenna_stats(copy)
    live = np.isfinite(stats.instability)
    median = np.median(stats.instability[live])
    print(
        f"\ngain instability: jumpy antenna {stats.instability[row]:.3f}, "
        f"array median {median:.3f}"
    )
    assert stats.instability[row] > 3 * median
    choice = choose_refant(copy, [NAMES[jumpy]])
    assert choice.how == "automatic"
    assert choice.name != NAMES[jumpy]
    assert f"{NAMES[jumpy]} (unflagged" in choice.reason
