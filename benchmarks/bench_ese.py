"""ESE detection benchmark: completeness grid, false positives, red-noise purity.

Usage::

    python benchmarks/bench_ese.py [--n-stable 10000] [--n-red-noise 2000]
        [--n-ese 500] [--n-flares 200] [--grid-repeats 10] [--out FILE]

Two parts, a year of daily epochs each, 10 % of epochs missing and a 0.5 %
multiplicative scatter per measurement (the analysis' systematic floor):

1. Completeness grid (``simulate_ese_grid``): dips of five shapes (Gaussian,
   flat-bottomed box, asymmetric, caustic-flanked, ray-traced lens), depths
   20-70 % and durations 1 week to 4 months at SNR 100-1000, each realisation
   dipped to every depth; searched with ``analyze_lightcurves``.
2. Population through flux calibration and the light-curve store
   (``simulate_lightcurves``, 5 % per-epoch flux-scale errors): steady
   sources, red-noise variables (half damped random walks, half bent power
   laws P(f) ~ 1 / (1 + (2 pi f tau)^slope), slope 1.5-3.5; 5-20 % rms,
   timescales 10-300 days), flares and ESEs of all shapes; every source is
   searched. Reports false positives, purity by process, timescale and rms.
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
from dsa110_contimg.simulation._ese_profiles import ESE_SHAPES
from dsa110_contimg.simulation._lightcurves import (
    simulate_ese_grid,
    simulate_lightcurves,
)
from dsa110_contimg.utils.config_loader import VariabilityConfig
from dsa110_contimg.variability import (
    analyze_lightcurves,
    analyze_store,
    ingest_epoch_table,
)

__all__ = ["main"]

RESULTS = Path(__file__).resolve().parent / "results"
DEPTHS = (0.2, 0.3, 0.5, 0.7)
DURATIONS = (7.0, 14.0, 21.0, 42.0, 60.0, 90.0, 120.0)
TAU_BINS = ((10, 30), (30, 100), (100, 300))
RMS_BINS = ((0.05, 0.1), (0.1, 0.2))
SNR_BINS = ((10, 30), (30, 100), (100, 300), (300, 1e9))


def _fraction(flags: np.ndarray) -> dict:
    n = int(flags.size)
    k = int(flags.sum())
    return {"n": n, "flagged": k, "fraction": k / n if n else None}


def _table(cells: dict) -> str:
    head = "depth \\ days | " + " | ".join(f"{d:>5.0f}" for d in DURATIONS)
    lines = [head, "-" * len(head)]
    for depth in DEPTHS:
        row = []
        for duration in DURATIONS:
            frac = cells[f"{depth:.1f}"][f"{duration:.0f}"]["fraction"]
            row.append("  n/a" if frac is None else f"{100 * frac:5.0f}")
        lines.append(f"{depth:12.1f} | " + " | ".join(row))
    return "\n".join(lines)


def _grid_part(repeats: int, seed: int, cfg: VariabilityConfig) -> dict:
    started = time.perf_counter()
    table, truth = simulate_ese_grid(
        shapes=ESE_SHAPES,
        depths=DEPTHS,
        durations_days=DURATIONS,
        n_repeats=repeats,
        rng=np.random.default_rng(seed),
    )
    result = analyze_lightcurves(table, cfg)
    truth.sort("source_name")
    if not np.array_equal(result["source_name"], truth["source_name"]):
        msg = "grid analysis and truth disagree on the sources"
        raise RuntimeError(msg)
    found = np.asarray(result["ese_candidate"], dtype=bool)
    incomplete = np.asarray(result["ese_incomplete"], dtype=bool)
    shape = np.asarray(truth["ese_shape"])
    depth = np.asarray(truth["ese_depth"])
    duration = np.asarray(truth["ese_duration_days"])

    def cells(select: np.ndarray, flags: np.ndarray) -> dict:
        return {
            f"{d:.1f}": {
                f"{t:.0f}": _fraction(
                    flags[select & np.isclose(depth, d) & (duration == t)]
                )
                for t in DURATIONS
            }
            for d in DEPTHS
        }

    everything = np.ones(found.size, dtype=bool)
    goal = (depth >= 0.3) & (duration >= 14) & (duration <= 120)
    by_shape = {s: cells(shape == s, found) for s in ESE_SHAPES}
    return {
        "n_light_curves": int(found.size),
        "snr_range": [100, 1000],
        "completeness_goal_depth_ge_0.3_duration_14_120d": _fraction(found[goal]),
        "completeness_goal_by_shape": {
            s: _fraction(found[goal & (shape == s)]) for s in ESE_SHAPES
        },
        "incomplete_goal_by_shape": {
            s: _fraction(incomplete[goal & (shape == s)]) for s in ESE_SHAPES
        },
        "completeness_by_depth_and_duration": cells(everything, found),
        "completeness_by_shape_depth_and_duration": by_shape,
        "incomplete_by_depth_and_duration": cells(everything, incomplete),
        "timing_s": time.perf_counter() - started,
    }


def _population_part(args: argparse.Namespace, cfg: VariabilityConfig) -> dict:
    started = time.perf_counter()
    sim = simulate_lightcurves(
        n_stable=args.n_stable,
        n_ese=args.n_ese,
        n_red_noise=args.n_red_noise,
        n_flares=args.n_flares,
        n_epochs=365,
        gain_error_frac=0.05,
        systematic_frac=0.005,
        missing_frac=0.1,
        flux_range_jy=(0.01, 2.0),
        variable_flux_range_jy=(0.01, 2.0),
        variable_flux_slope=0.0,
        ese_depths=(0.3, 0.5, 0.7),
        ese_durations_days=(14.0, 42.0, 90.0, 120.0),
        ese_shapes=ESE_SHAPES,
        drw_tau_range_days=(10.0, 300.0),
        drw_sigma_range_frac=(0.05, 0.2),
        red_noise_powerlaw_frac=0.5,
        powerlaw_slope_range=(1.5, 3.5),
        powerlaw_break=True,
        rng=np.random.default_rng(args.seed),
    )
    simulated = time.perf_counter()
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
    incomplete = np.asarray(result["ese_incomplete"], dtype=bool)
    red = kind == "red_noise"
    powerlaw = red & np.isfinite(np.asarray(truth["powerlaw_slope"]))
    process = {"drw": red & ~powerlaw, "powerlaw": powerlaw}
    tau = np.asarray(truth["drw_tau_days"])
    rms = np.asarray(truth["drw_sigma_frac"])
    ese = kind == "ese"
    shape = np.asarray(truth["ese_shape"])
    return {
        "false_positive_stable": _fraction(flagged[kind == "stable"]),
        "stable_flagged_variable": _fraction(
            np.asarray(result["is_variable"])[kind == "stable"]
        ),
        "red_noise_called_ese": {p: _fraction(flagged[m]) for p, m in process.items()},
        "red_noise_called_ese_by_timescale_days": {
            p: {
                f"{lo}-{hi}": _fraction(flagged[m & (tau >= lo) & (tau < hi)])
                for lo, hi in TAU_BINS
            }
            for p, m in process.items()
        },
        "red_noise_called_ese_by_rms": {
            p: {
                f"{lo:g}-{hi:g}": _fraction(flagged[m & (rms >= lo) & (rms <= hi)])
                for lo, hi in RMS_BINS
            }
            for p, m in process.items()
        },
        "red_noise_called_ese_snr_ge_100": {
            p: _fraction(flagged[m & (snr >= 100)]) for p, m in process.items()
        },
        "red_noise_reported_incomplete": {
            p: _fraction(incomplete[m]) for p, m in process.items()
        },
        "flares_called_ese": _fraction(flagged[kind == "flare"]),
        "ese_completeness_snr_ge_100_by_shape": {
            s: _fraction(flagged[ese & (snr >= 100) & (shape == s)]) for s in ESE_SHAPES
        },
        "ese_completeness_by_snr": {
            f"{lo:g}-{hi:g}": _fraction(flagged[ese & (snr >= lo) & (snr < hi)])
            for lo, hi in SNR_BINS
        },
        "timing_s": {
            "simulate": simulated - started,
            "calibrate_and_ingest": ingested - simulated,
            "analyze_all_sources": analyzed - ingested,
        },
    }


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark; return and write the results."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-stable", type=int, default=10_000)
    parser.add_argument(
        "--n-red-noise", type=int, default=2_000, help="half DRW, half power-law"
    )
    parser.add_argument("--n-ese", type=int, default=500)
    parser.add_argument("--n-flares", type=int, default=200)
    parser.add_argument(
        "--grid-repeats", type=int, default=10, help="per shape and duration"
    )
    parser.add_argument("--seed", type=int, default=2025)
    parser.add_argument("--out", type=Path, default=RESULTS / "ese.json")
    args = parser.parse_args(argv)
    cfg = VariabilityConfig()
    grid = _grid_part(args.grid_repeats, args.seed, cfg)
    population = _population_part(args, cfg)
    results = {
        "n_epochs": 365,
        "missing_frac": 0.1,
        "systematic_frac": 0.005,
        "grid": grid,
        "population": population,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "config": {
            k: v
            for k, v in cfg.model_dump(mode="json").items()
            if k.startswith("ese_") or k == "systematic_floor_frac"
        },
    }
    summary = {k: v for k, v in results.items() if k not in ("config", "grid")}
    summary["grid"] = {
        k: v for k, v in grid.items() if not k.startswith(("completeness_by", "inc"))
    }
    print(json.dumps(summary, indent=1))
    print("\ncompleteness (%), all shapes, SNR 100-1000, by depth and duration (days):")
    print(_table(grid["completeness_by_depth_and_duration"]))
    for shape in ESE_SHAPES:
        print(f"\n{shape}:")
        print(_table(grid["completeness_by_shape_depth_and_duration"][shape]))
    print("\nreported incomplete (%), all shapes:")
    print(_table(grid["incomplete_by_depth_and_duration"]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results: {args.out}")
    return results


if __name__ == "__main__":
    main()
