"""Scale benchmark of the light-curve store: ingest, metric update, fetch, memory.

Usage::

    python benchmarks/bench_lightcurves.py --n-rows 10000000 [--n-epochs 365]
        [--root /tmp/lcbench] [--keep] [--out benchmarks/results/...json]

Synthetic measurements of ``n_rows / n_epochs`` steady sources with 5 % per-epoch
scale errors go, epoch by epoch, through the same path as the streaming
service (``ingest_epoch_table``: flux calibration, Parquet write, running-sum
update, size-tiered merging of epochs into runs sorted by source). Reported:
ingest rate (including the merging), the time to add one epoch and recompute
eta and V for every source, the time to fetch one light curve after ingest,
after a full compaction and after 24 more epochs, compaction time, disk use
and peak memory (``ru_maxrss``).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from astropy.table import Table

from dsa110_contimg.lightcurves import LightcurveStore
from dsa110_contimg.utils.config_loader import VariabilityConfig
from dsa110_contimg.variability import (
    analyze_store,
    ingest_epoch_table,
    metrics_from_sums,
)

__all__ = ["main"]

RESULTS = Path(__file__).resolve().parent / "results"


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _disk_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def _epoch(
    k: int,
    names: np.ndarray,
    mean: np.ndarray,
    rms: np.ndarray,
    gain: float,
    rng: np.random.Generator,
) -> Table:
    n = names.size
    return Table(
        {
            "source_name": names,
            "mjd": np.full(n, 60000.0 + k),
            "flux_jy": mean * gain + rms * rng.standard_normal(n),
            "flux_err_jy": rms,
            "rms_jy": rms,
            "pb": np.ones(n),
            "flags": np.zeros(n, dtype=np.int32),
            "image_path": np.full(n, f"mosaic_{k:05d}.fits"),
            "image_kind": np.full(n, "mosaic"),
        },
        copy=False,
    )


def _fetch_ms(store: LightcurveStore, names: np.ndarray, n_expected: int) -> dict:
    store.lightcurve(str(names[0]))  # first query pays the DuckDB set-up
    times = []
    for name in names:
        start = time.perf_counter()
        lc = store.lightcurve(str(name))
        times.append(1e3 * (time.perf_counter() - start))
        if len(lc) != n_expected:
            msg = f"{name}: {len(lc)} rows, expected {n_expected}"
            raise RuntimeError(msg)
    return {
        "median_ms": float(np.median(times)),
        "p95_ms": float(np.percentile(times, 95)),
        "max_ms": float(np.max(times)),
    }


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark; return and write the results."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-rows", type=float, default=1e8)
    parser.add_argument("--n-epochs", type=int, default=365)
    parser.add_argument("--root", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the store")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--n-fetch", type=int, default=50)
    args = parser.parse_args(argv)
    n_epochs = args.n_epochs
    n_src = int(round(args.n_rows / n_epochs))
    root = args.root or Path(tempfile.mkdtemp(prefix="lcbench_"))
    rng = np.random.default_rng(1)
    names = np.array([f"J{k:08d}" for k in range(n_src)])
    u = rng.uniform(size=n_src)
    mean = (0.01**-1.5 + u * (2.0**-1.5 - 0.01**-1.5)) ** (-1 / 1.5)
    rms = 1e-3 / rng.uniform(0.5, 1.0, n_src)
    gains = 1.0 + 0.05 * rng.standard_normal(n_epochs)
    cfg = VariabilityConfig()
    store = LightcurveStore(root / "store")
    print(
        f"{n_src} sources x {n_epochs} epochs = {n_src * n_epochs:.3g} rows -> {root}"
    )
    per_epoch = []
    start = time.perf_counter()
    for k in range(n_epochs):
        table = _epoch(k, names, mean, rms, gains[k], rng)
        result = ingest_epoch_table(store, table, epoch_id=f"E{k:05d}", cfg=cfg)
        per_epoch.append(result.duration_s)
        if k % max(1, n_epochs // 10) == 0:
            print(f"  epoch {k}: {result.duration_s:.2f} s, scale {result.scale:.4f}")
    ingest_s = time.perf_counter() - start
    n_rows = store.n_rows()
    start = time.perf_counter()
    metrics = metrics_from_sums(store.summary(), min_epochs=cfg.min_epochs)
    metrics_s = time.perf_counter() - start
    sample = rng.choice(names, size=args.n_fetch, replace=False)
    runs_after_ingest = len(store._load_manifest().get("runs", []))
    fetch_after_ingest = _fetch_ms(store, sample, n_epochs)
    start = time.perf_counter()
    store.compact()
    compact_s = time.perf_counter() - start
    fetch_compacted = _fetch_ms(LightcurveStore(root / "store"), sample, n_epochs)
    # Streaming: epochs keep arriving after the (nightly) compaction.
    n_delta = 24
    for k in range(n_epochs, n_epochs + n_delta):
        table = _epoch(k, names, mean, rms, 1.0, rng)
        ingest_epoch_table(store, table, epoch_id=f"E{k:05d}", cfg=cfg)
    fetch_delta = _fetch_ms(store, sample, n_epochs + n_delta)
    start = time.perf_counter()
    analysis = analyze_store(store, cfg)
    analyze_s = time.perf_counter() - start
    results = {
        "n_rows": int(n_rows),
        "n_sources": n_src,
        "n_epochs": n_epochs,
        "ingest_s": ingest_s,
        "ingest_rate_rows_per_s": n_rows / ingest_s,
        "epoch_update_s_median": float(np.median(per_epoch)),
        "epoch_update_s_last": per_epoch[-1],
        "metrics_all_sources_s": metrics_s,
        "one_new_epoch_total_s": per_epoch[-1] + metrics_s,
        "runs_after_ingest": runs_after_ingest,
        "fetch_after_ingest_auto_merged": fetch_after_ingest,
        "compact_s": compact_s,
        "fetch_compacted": fetch_compacted,
        "fetch_compacted_plus_24_new_epochs": fetch_delta,
        "analyze_store_s": analyze_s,
        "analyze_store_n_ese_searched": int(np.isfinite(analysis["ese_depth"]).sum()),
        "disk_mb": _disk_mb(root / "store"),
        "peak_rss_mb": _peak_rss_mb(),
        "median_eta": float(np.nanmedian(metrics["eta"])),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "n_cpu": len(__import__("os").sched_getaffinity(0)),
        "python": sys.version.split()[0],
    }
    print(json.dumps(results, indent=2))
    out = args.out or RESULTS / f"lightcurves_{n_src * n_epochs:.0e}.json".replace(
        "+", ""
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results: {out}")
    if not args.keep and args.root is None:
        shutil.rmtree(root, ignore_errors=True)
    return results


if __name__ == "__main__":
    main()
