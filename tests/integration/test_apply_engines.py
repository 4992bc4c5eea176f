"""The arrays apply writes the CORRECTED_DATA and FLAG that applycal writes.

Known truth: CASA's applycal on the same MS with the same solved tables
(bandpass and gains solved by the pipeline's `solve_calibration` on a
simulated calibrator transit with drifting gains, four gain intervals), then
with flagged solutions (interior, first, last and every gain interval of an
antenna; interior, edge and every bandpass channel), a bandpass of several
intervals, and a table the arrays engine leaves to applycal. And a
half-written CORRECTED_DATA is detected, by the MS and by imaging.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from dsa110_contimg.calibration import (
    _apply,
    recorded_calibration,
    solve_calibration,
    write_model_data,
)
from dsa110_contimg.calibration._apply import (
    CALTABLES_KEY,
    INCOMPLETE_KEY,
    apply_calibration,
)
from dsa110_contimg.data_ingestion.grouping import (
    discover_subband_files,
    group_subband_files,
)
from dsa110_contimg.data_ingestion.ms_creation import convert_group
from dsa110_contimg.exceptions import CalibrationError
from dsa110_contimg.pipeline.stages.calibration_stage import ms_calibration
from dsa110_contimg.simulation import ObservationSpec, simulate_observation
from dsa110_contimg.testing.calibrator_transit import transit_centred_start

pytestmark = [pytest.mark.integration, pytest.mark.casa]

tables = pytest.importorskip("casacore.tables")

N_TIMES = 12
RTOL = 1e-6


@pytest.fixture(scope="module")
def solved(tmp_path_factory):
    """A calibrator MS (10 antennas, 32 channels, 12 integrations), B and G tables."""
    base = tmp_path_factory.mktemp("apply")
    start = transit_centred_start(N_TIMES)
    spec = ObservationSpec(
        start_time=start,
        n_groups=1,
        n_antennas=10,
        n_chan_per_subband=2,
        n_times=N_TIMES,
        declination_deg=30.5,
        n_sources=3,
        min_flux_jy=0.5,
        max_flux_jy=2.0,
        field_radius_deg=0.6,
        add_calibrators=True,
        seed=3,
        gains=True,
        bandpass=True,
        gain_drift=True,
        # fast drifts: linear interpolation between intervals matters
        gain_phase_drift_deg_per_hour=600.0,
        gain_amp_drift_per_hour=2.0,
    )
    sim = simulate_observation(spec, base / "raw")
    group = group_subband_files(discover_subband_files(base / "raw"))[0]
    ms = convert_group(group, base / "ms").path
    write_model_data(ms, sim.sky)
    solution = solve_calibration(
        ms, base / "cal" / "t", refant="3", gcal_solint="40s", uvrange=""
    )
    with tables.table(str(solution.gain_table), ack=False) as g:
        assert np.unique(g.getcol("TIME")).size == 4  # four gain intervals
    return base, ms, solution.bandpass_table, solution.gain_table


def _copy_tables(base: Path, out: Path, *names: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    copies = []
    for name in names:
        shutil.copytree(name, out / name.name)
        copies.append(out / name.name)
    return copies


def _flag_solutions(b_tab: Path, g_tab: Path) -> None:
    with tables.table(str(g_tab), readonly=False, ack=False) as g:
        f, a, t = g.getcol("FLAG"), g.getcol("ANTENNA1"), g.getcol("TIME")
        ut = np.unique(t)
        f[(a == 2) & (t == ut[1]), 0, 0] = True  # an interior interval, X
        f[(a == 5) & (t == ut[0]), 0, 1] = True  # the first interval, Y
        f[(a == 6) & (t == ut[3]), 0, :] = True  # the last interval
        f[a == 8, 0, 0] = True  # every interval, X
        g.putcol("FLAG", f)
    with tables.table(str(b_tab), readonly=False, ack=False) as b:
        f, a = b.getcol("FLAG"), b.getcol("ANTENNA1")
        f[a == 1, 7, 0] = True  # one interior channel
        f[a == 4, 20:22, :] = True  # two channels
        f[a == 3, 0:2, 0] = True  # the lower edge
        f[a == 7, 31, :] = True  # the upper edge
        f[a == 9, :, 1] = True  # every channel of Y
        b.putcol("FLAG", f)


def _both_engines(ms: Path, cal: list[Path], out: Path) -> dict[str, dict]:
    result = {}
    for engine in ("applycal", "arrays"):
        copy = out / f"{engine}.ms"
        shutil.copytree(ms, copy)
        with tables.table(str(copy), readonly=False, ack=False) as t:
            flag = t.getcol("FLAG")
            flag[5, 3, 0] = True  # data flagged before: still calibrated
            t.putcol("FLAG", flag)
        apply_calibration(copy, cal, engine=engine)
        with tables.table(str(copy), ack=False) as t:
            result[engine] = {
                k: t.getcol(k)
                for k in ("CORRECTED_DATA", "FLAG", "WEIGHT", "WEIGHT_SPECTRUM")
            }
            result[engine]["keywords"] = t.getkeywords()
    return result


def _assert_same(result: dict[str, dict]) -> None:
    ours, casa = result["arrays"], result["applycal"]
    np.testing.assert_array_equal(ours["FLAG"], casa["FLAG"])
    np.testing.assert_allclose(
        ours["CORRECTED_DATA"], casa["CORRECTED_DATA"], rtol=RTOL, atol=0
    )
    # calwt=False: the weights are not touched
    for key in ("WEIGHT", "WEIGHT_SPECTRUM"):
        np.testing.assert_array_equal(ours[key], casa[key])
    for r in result.values():
        assert r["keywords"][CALTABLES_KEY] == "t.B,t.G"
        assert INCOMPLETE_KEY not in r["keywords"]


def test_arrays_equal_applycal(solved, tmp_path):
    base, ms, b_tab, g_tab = solved
    cal = _copy_tables(base, tmp_path / "cal", b_tab, g_tab)
    result = _both_engines(ms, cal, tmp_path)
    _assert_same(result)
    # the data were calibrated: CORRECTED_DATA differs from DATA
    assert result["arrays"]["FLAG"].sum() == 1


def test_arrays_equal_applycal_with_flagged_solutions(solved, tmp_path):
    base, ms, b_tab, g_tab = solved
    cal = _copy_tables(base, tmp_path / "cal", b_tab, g_tab)
    _flag_solutions(*cal)
    result = _both_engines(ms, cal, tmp_path)
    _assert_same(result)
    flags = result["arrays"]["FLAG"]
    # flagged gain intervals flag data; flagged bandpass channels are
    # interpolated over (only antenna 9's all-channel Y flags data)
    assert flags.sum() > 10 * 32
    with tables.table(str(ms), ack=False) as t:
        a1, a2 = t.getcol("ANTENNA1"), t.getcol("ANTENNA2")
    rows_1 = (a1 == 1) ^ (a2 == 1)
    rows_1 &= (a1 != 2) & (a2 != 2) & (a1 != 5) & (a2 != 5)
    rows_1 &= (a1 != 6) & (a2 != 6) & (a1 != 8) & (a2 != 8)
    rows_1 &= (a1 != 9) & (a2 != 9)
    assert not flags[rows_1, 7].any()


def test_bandpass_of_several_intervals(solved, tmp_path):
    """A bandpass with four intervals (time 'nearest'), one flagged."""
    base, ms, _b_tab, g_tab = solved
    from dsa110_contimg.calibration._casa_log import _casa_log, _casatasks

    b_tab = tmp_path / "cal" / "t.B"
    b_tab.parent.mkdir()
    work = tmp_path / "solve.ms"
    shutil.copytree(ms, work)
    with _casa_log(tmp_path / "bandpass.casa.log"):
        _casatasks().bandpass(
            vis=str(work),
            caltable=str(b_tab),
            solint="40s",
            refant="3",
            minsnr=3.0,
            solnorm=False,
            bandtype="B",
        )
    with tables.table(str(b_tab), readonly=False, ack=False) as b:
        t, a, f = b.getcol("TIME"), b.getcol("ANTENNA1"), b.getcol("FLAG")
        assert np.unique(t).size == 4
        f[(a == 4) & (t == np.unique(t)[2])] = True
        b.putcol("FLAG", f)
    (g_copy,) = _copy_tables(base, tmp_path / "cal", g_tab)
    result = _both_engines(ms, [b_tab, g_copy], tmp_path)
    _assert_same(result)


def test_table_it_cannot_apply_goes_to_applycal(solved, tmp_path, caplog):
    """A bandpass on other channels (interpolated in frequency) is applycal's."""
    base, ms, b_tab, g_tab = solved
    cal = _copy_tables(base, tmp_path / "cal", b_tab, g_tab)
    with tables.table(f"{cal[0]}/SPECTRAL_WINDOW", readonly=False, ack=False) as sw:
        freq = sw.getcell("CHAN_FREQ", 0)
        sw.putcell("CHAN_FREQ", 0, freq + 0.3 * (freq[1] - freq[0]))
    with caplog.at_level(logging.INFO, logger=_apply.__name__):
        result = _both_engines(ms, cal, tmp_path)
    assert "using applycal" in caplog.text
    _assert_same(result)


def test_half_written_corrected_data_is_detected(solved, tmp_path, monkeypatch):
    base, ms, b_tab, g_tab = solved
    cal = _copy_tables(base, tmp_path / "cal", b_tab, g_tab)
    work = tmp_path / "work.ms"
    shutil.copytree(ms, work)
    apply_calibration(work, cal, record="first solution")
    assert recorded_calibration(work) == "first solution"

    calls = []
    real = _apply._correct_chunk

    def crash_after_first_block(*args):
        calls.append(1)
        if len(calls) > 1:
            raise KeyboardInterrupt  # the worker dies mid-write
        return real(*args)

    monkeypatch.setattr(_apply, "_CHUNK_ROWS", 100)
    monkeypatch.setattr(_apply, "_correct_chunk", crash_after_first_block)
    with pytest.raises(KeyboardInterrupt):
        apply_calibration(work, cal, record="second solution")
    # neither the old record nor a complete-looking column is left
    with pytest.raises(CalibrationError, match="CORRECTED_DATA is incomplete"):
        recorded_calibration(work)
    with pytest.raises(CalibrationError, match="calibrate the MS again"):
        ms_calibration(work)  # what imaging reads first
    from dsa110_contimg.pipeline.stages.imaging_stage import image_ms
    from dsa110_contimg.utils.config import ImagingConfig

    with pytest.raises(CalibrationError, match="incomplete"):
        image_ms(work, tmp_path / "images", ImagingConfig())
    monkeypatch.undo()
    apply_calibration(work, cal, record="second solution")
    assert recorded_calibration(work) == "second solution"


def test_failed_applycal_leaves_the_ms_marked(solved, tmp_path, monkeypatch):
    base, ms, b_tab, g_tab = solved
    cal = _copy_tables(base, tmp_path / "cal", b_tab, g_tab)
    work = tmp_path / "work.ms"
    shutil.copytree(ms, work)
    apply_calibration(work, cal, engine="arrays")

    def fail(ms_path, tabs):
        msg = f"{ms_path}: applycal failed (simulated)"
        raise CalibrationError(msg)

    monkeypatch.setattr(_apply, "_applycal", fail)
    with pytest.raises(CalibrationError, match="simulated"):
        apply_calibration(work, cal, engine="applycal")
    with pytest.raises(CalibrationError, match="incomplete"):
        recorded_calibration(work)


def test_unknown_engine_is_refused(solved):
    _, ms, b_tab, g_tab = solved
    with pytest.raises(CalibrationError, match="apply_engine"):
        apply_calibration(ms, [b_tab, g_tab], engine="fast")


def test_reader_waits_for_the_arrays_apply(solved, tmp_path, monkeypatch):
    """A casacore reader started mid-apply gets the table only once it is complete."""
    import json
    import subprocess
    import sys
    import time

    base, ms, b_tab, g_tab = solved
    cal = _copy_tables(base, tmp_path / "cal", b_tab, g_tab)
    work = tmp_path / "work.ms"
    shutil.copytree(ms, work)
    apply_calibration(work, cal, record="first solution")
    reader = (
        "import json, time\n"
        "from casacore import tables\n"
        f"t = tables.table({str(work)!r}, ack=False)\n"
        "kw = t.getkeywords()\n"
        "print(json.dumps({'t': time.time(), 'record': kw.get('DSA110_CALTABLES'),"
        " 'incomplete': 'DSA110_CAL_INCOMPLETE' in kw}))\n"
    )
    started = []
    real = _apply._correct_chunk

    def start_reader_then_work(*args):
        if not started:
            started.append(
                subprocess.Popen(
                    [sys.executable, "-c", reader], stdout=subprocess.PIPE, text=True
                )
            )
            time.sleep(2.0)  # the reader is blocked meanwhile
        return real(*args)

    monkeypatch.setattr(_apply, "_correct_chunk", start_reader_then_work)
    apply_calibration(work, cal, record="second solution")
    done = time.time()
    out, _ = started[0].communicate(timeout=120)
    seen = json.loads(out)
    assert seen["record"] == "second solution"
    assert not seen["incomplete"]
    assert seen["t"] >= done - 0.5
