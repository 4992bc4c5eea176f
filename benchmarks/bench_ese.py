"""ESE detection benchmark: false positives, completeness, red-noise purity.

Usage::

    python benchmarks/bench_ese.py [--n-stable 10000] [--n-ese 2000]
        [--n-red-noise 1000] [--n-flares 200] [--n-epochs 365] [--out FILE]

A year of daily epochs of steady sources, injected ESEs (lens-shaped dips with
flanking brightenings and flat-bottomed dips, depths 20-60 %, durations 1-13
weeks, log-uniform flux so that every SNR is represented), damped-random-walk
AGN (half damped random walks, the detector's own red-noise model, half
power-law spectra P(f) ~ f^-1.5 to f^-3.5, which it does not model exactly)
and flares, with 5 % per-epoch flux-scale errors, goes through flux
calibration and the light-curve store; every source is searched.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from dsa110_contimg.lightcurves import LightcurveStore
from dsa110_contimg.simulation._lightcurves import simulate_lightcurves
from dsa110_contimg.utils.config_loader import VariabilityConfig
from dsa110_contimg.variability import analyze_store, ingest_epoch_table

__all__ = ["main"]

RESULTS = Path(__file__).resolve().parent / "results"
DEPTHS = (0.2, 0.3, 0.4, 0.5, 0.6)
DURATIONS = (7.0, 14.0, 21.0, 30.0, 60.0, 90.0)
SNR_BINS = ((10, 30), (30, 100), (100, 300), (300, 1e9))


def _fraction(flags: np.ndarray) -> dict:
    n = int(flags.size)
    k = int(flags.sum())
    return {"n": n, "flagged": k, "fraction": k / n if n else None}


def _table(completeness: dict) -> str:
    head = "depth \\ days | " + " | ".join(f"{d:>5.0f}" for d in DURATIONS)
    lines = [head, "-" * len(head)]
    for depth in DEPTHS:
        cells = []
        for duration in DURATIONS:
            cell = completeness[f"{depth:.1f}"][f"{duration:.0f}"]
            frac = cell["fraction"]
            cells.append("  n/a" if frac is None else f"{100 * frac:5.0f}")
        lines.append(f"{depth:12.1f} | " + " | ".join(cells))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark; return and write the results."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-stable", type=int, default=10_000)
    parser.add_argument("--n-ese", type=int, default=2_000)
    parser.add_argument(
        "--n-red-noise", type=int, default=2_000, help="half DRW, half power-law"
    )
    parser.add_argument("--n-flares", type=int, default=200)
    parser.add_argument("--n-epochs", type=int, default=365)
    parser.add_argument("--seed", type=int, default=2025)
    parser.add_argument("--out", type=Path, default=RESULTS / "ese.json")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    sim = simulate_lightcurves(
        n_stable=args.n_stable,
        n_ese=args.n_ese,
        n_red_noise=args.n_red_noise,
        n_flares=args.n_flares,
        n_epochs=args.n_epochs,
        gain_error_frac=0.05,
        flux_range_jy=(0.01, 2.0),
        variable_flux_range_jy=(0.01, 2.0),
        variable_flux_slope=0.0,
        drw_sigma_range_frac=(0.02, 0.5),
        red_noise_powerlaw_frac=0.5,
        powerlaw_slope_range=(1.5, 3.5),
        ese_depths=DEPTHS,
        ese_durations_days=DURATIONS,
        rng=np.random.default_rng(args.seed),
    )
    simulated = time.perf_counter()
    cfg = VariabilityConfig()
    with tempfile.TemporaryDirectory(prefix="esebench_") as tmp:
        store = LightcurveStore(Path(tmp) / "store")
        for epoch_id, table in sim.epoch_tables():
            ingest_epoch_table(store, table, epoch_id=epoch_id, cfg=cfg)
        ingested = time.perf_counter()
        result = analyze_store(store, cfg, search_all=True)
        analyzed = time.perf_counter()
    truth = sim.truth
    truth.sort("source_name")
    if not np.array_equal(result["source_name"], truth["source_name"]):
        msg = "analysis and truth disagree on the sources"
        raise RuntimeError(msg)
    kind = np.asarray(truth["kind"])
    snr = np.asarray(truth["snr"])
    flagged = np.asarray(result["ese_candidate"], dtype=bool)
    slope = np.asarray(truth["powerlaw_slope"])
    powerlaw = np.isfinite(slope)
    ese = kind == "ese"
    depth = np.asarray(truth["ese_depth"])
    duration = np.asarray(truth["ese_duration_days"])
    completeness = {
        f"{d:.1f}": {
            f"{t:.0f}": _fraction(
                flagged[ese & (snr >= 100) & np.isclose(depth, d) & (duration == t)]
            )
            for t in DURATIONS
        }
        for d in DEPTHS
    }
    acceptance = ese & (snr >= 100) & (depth >= 0.3) & (duration >= 21)
    by_snr = {
        f"{lo:g}-{hi:g}": _fraction(
            flagged[ese & (snr >= lo) & (snr < hi) & (depth >= 0.3) & (duration >= 21)]
        )
        for lo, hi in SNR_BINS
    }
    found = flagged & ese
    recovered = {
        "median_abs_depth_error": float(
            np.median(np.abs(result["ese_depth"][found] - depth[found]))
        ),
        "median_abs_center_error_days": float(
            np.median(
                np.abs(result["ese_center_mjd"][found] - truth["ese_center_mjd"][found])
            )
        ),
        "median_duration_ratio": float(
            np.median(result["ese_duration_days"][found] / duration[found])
        ),
    }
    candidates = int(flagged.sum())
    results = {
        "n_epochs": args.n_epochs,
        "gain_error_frac": 0.05,
        "false_positive_stable": _fraction(flagged[kind == "stable"]),
        "red_noise_agn_flagged": _fraction(flagged[kind == "red_noise"]),
        "red_noise_drw_agn_flagged": _fraction(
            flagged[(kind == "red_noise") & ~powerlaw]
        ),
        "red_noise_powerlaw_agn_flagged": _fraction(
            flagged[(kind == "red_noise") & powerlaw]
        ),
        "red_noise_agn_flagged_snr_ge_100": {
            "drw": _fraction(flagged[(kind == "red_noise") & ~powerlaw & (snr >= 100)]),
            "powerlaw": _fraction(
                flagged[(kind == "red_noise") & powerlaw & (snr >= 100)]
            ),
        },
        "red_noise_powerlaw_agn_flagged_by_slope": {
            f"{lo:g}-{lo + 0.5:g}": _fraction(
                flagged[powerlaw & (slope >= lo) & (slope < lo + 0.5)]
            )
            for lo in (1.5, 2.0, 2.5, 3.0)
        },
        "flares_flagged": _fraction(flagged[kind == "flare"]),
        "completeness_depth_ge_0.3_duration_ge_21d_snr_ge_100": _fraction(
            flagged[acceptance]
        ),
        "completeness_depth_ge_0.3_duration_ge_21d_by_snr": by_snr,
        "completeness_snr_ge_100_by_depth_and_duration": completeness,
        "candidate_list_purity": (found.sum() / candidates) if candidates else None,
        "n_candidates": candidates,
        "parameter_recovery": recovered,
        "stable_flagged_variable": _fraction(
            np.asarray(result["is_variable"])[kind == "stable"]
        ),
        "timing_s": {
            "simulate": simulated - start,
            "calibrate_and_ingest": ingested - simulated,
            "analyze_all_sources": analyzed - ingested,
        },
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "config": {
            k: v
            for k, v in cfg.model_dump(mode="json").items()
            if k.startswith("ese_") or k == "systematic_floor_frac"
        },
    }
    print(json.dumps({k: v for k, v in results.items() if k != "config"}, indent=1))
    print("\ncompleteness (%) at SNR >= 100, by depth and duration (days):")
    print(_table(completeness))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results: {args.out}")
    return results


if __name__ == "__main__":
    main()
