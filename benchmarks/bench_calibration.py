#!/usr/bin/env python3
"""Benchmark calibration at full DSA-110 size (96 antennas, 768 chans, 24 times).

Simulates one group holding a 3C286 transit with antenna gains, bandpass and
drift (cached in ``benchmarks/.cache``), converts it, then times flagging, the
model prediction, the CASA solves (phase, bandpass, gains) and applycal, and
checks the recovered gains against the truth. Writes
``benchmarks/results/calibration.json``.

    .venv/bin/python benchmarks/bench_calibration.py [--n-antennas 96] [--n-chan 48]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import shutil
import time
from pathlib import Path

import numpy as np
from astropy.utils import iers

iers.conf.auto_download = False

HERE = Path(__file__).resolve().parent


def main() -> None:
    """Run the benchmark and write its JSON report."""
    from dsa110_contimg.calibration import (
        apply_calibration,
        choose_refant,
        flag_ms,
        read_gain_table,
        solve_calibration,
        write_model_data,
    )
    from dsa110_contimg.data_ingestion.grouping import (
        discover_subband_files,
        group_subband_files,
    )
    from dsa110_contimg.data_ingestion.ms_creation import convert_group
    from dsa110_contimg.simulation import ObservationSpec, simulate_observation
    from dsa110_contimg.simulation._gains import GainModel

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-antennas", type=int, default=96)
    parser.add_argument("--n-chan", type=int, default=48, help="channels per subband")
    parser.add_argument("--n-times", type=int, default=24)
    args = parser.parse_args()

    from dsa110_contimg.testing.calibrator_transit import transit_centred_start

    start = transit_centred_start(args.n_times)
    tag = f"cal_{args.n_antennas}a_{args.n_chan}c_{args.n_times}t"
    cache = HERE / ".cache" / tag
    spec = ObservationSpec(
        start_time=start,
        n_groups=1,
        n_antennas=args.n_antennas,
        n_chan_per_subband=args.n_chan,
        n_times=args.n_times,
        declination_deg=30.5,
        n_sources=10,
        min_flux_jy=0.2,
        max_flux_jy=2.0,
        field_radius_deg=1.0,
        add_calibrators=True,
        gains=True,
        bandpass=True,
        gain_drift=True,
        seed=5,
    )
    timings: dict[str, float] = {}
    if not (cache / "raw" / "truth" / "gains.json").exists():
        t0 = time.perf_counter()
        simulate_observation(spec, cache / "raw", progress=print)
        timings["simulate_s"] = time.perf_counter() - t0
    work = cache / "work"
    shutil.rmtree(work, ignore_errors=True)
    group = group_subband_files(discover_subband_files(cache / "raw"))[0]
    t0 = time.perf_counter()
    product = convert_group(group, work / "ms")
    timings["convert_s"] = time.perf_counter() - t0
    ms = product.path
    t0 = time.perf_counter()
    report = flag_ms(ms)
    timings["flag_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    from dsa110_contimg.data_ingestion.skymodel import load_catalog

    sky = load_catalog(cache / "raw" / "truth" / "sky.csv")
    write_model_data(ms, sky)
    timings["model_s"] = time.perf_counter() - t0
    solution = solve_calibration(
        ms,
        work / "cal" / "bench",
        refant=choose_refant(ms, ["auto"]).name,
        uvrange=">1klambda" if args.n_antennas >= 48 else "",
    )
    timings.update(solution.durations_s)
    timings["apply_s"] = apply_calibration(ms, solution.tables)

    # gains vs truth (CASA's gains are the conjugate of the simulator's)
    from casacore.tables import table

    bp, gain = (
        read_gain_table(solution.bandpass_table),
        read_gain_table(solution.gain_table),
    )
    with table(f"{ms}/ANTENNA", ack=False) as ant:
        names = list(ant.getcol("NAME"))
    with table(f"{ms}/SPECTRAL_WINDOW", ack=False) as spw:
        freqs = spw.getcol("CHAN_FREQ")[0]
    model = GainModel.from_json(cache / "raw" / "truth" / "gains.json")
    t_mid = np.unique(gain["TIME"])[0] / 86400 + 2400000.5
    truth = model.evaluate(np.array([t_mid]), freqs)[:, 0]
    ref = model.antenna_names.index(solution.refant)
    ratios = []
    for k, name in enumerate(model.antenna_names):
        idx = names.index(name)
        b = bp["CPARAM"][bp["ANTENNA1"] == idx][0, :, 0]
        g = gain["CPARAM"][gain["ANTENNA1"] == idx][0, 0, 0]
        ratios.append(g * b / np.conj(truth[k]))
    ratios = np.array(ratios)
    ratios /= (ratios[ref] / np.abs(ratios[ref]))[None]
    result = {
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": __import__("os").cpu_count(),
        },
        "size": {
            "n_antennas": args.n_antennas,
            "n_chan": 16 * args.n_chan,
            "n_times": args.n_times,
        },
        "timings_s": {k: round(v, 2) for k, v in timings.items()},
        "solve_total_s": round(sum(solution.durations_s.values()), 2),
        "flagged": report.summary(),
        "median_gain_amp_error_pct": float(100 * np.median(np.abs(np.abs(ratios) - 1))),
        "median_gain_phase_error_deg": float(
            np.median(np.abs(np.angle(ratios, deg=True)))
        ),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    out = HERE / "results" / "calibration.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
