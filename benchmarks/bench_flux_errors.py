#!/usr/bin/env python3
"""Flux-error pulls of the two group-image estimators on the testing-size fields.

Runs the known-truth field of ``tests/integration/test_flux_errors.py`` (two
overlapping groups, 40 sources per group, gains and noise;
`dsa110_contimg.testing.flux_fields`) for each seed, once per
``photometry.estimator`` (``restored``: the matched filter on the restored
image with the shape and residual-excess systematics; ``dirty_equivalent``:
the residual plus each source's own clean components read through the dirty
beam; its error the background noise and the bright sources' sidelobes at
the source, its mosaics the members' mean). Reports, per estimator, kind
(group images, mosaics) and seed, the pull rms in each SNR bin with the full
errors and with the noise errors alone, and the median relative flux error at
SNR >= 30 and >= 100. Writes ``benchmarks/results/flux_errors.{json,md}``.

    .venv/bin/python -m benchmarks.bench_flux_errors [--seeds 7 3 11 42]
        [--estimators restored dirty_equivalent]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
from astropy.utils import iers

iers.conf.auto_download = False

HERE = Path(__file__).resolve().parent
ESTIMATORS = ("restored", "dirty_equivalent")
KINDS = ("image", "mosaic")


def run_pull_field(base: Path, seed: int, overrides: dict | None = None):
    """Simulate the field (`flux_fields.field_spec`) under ``base`` and run the
    batch pipeline on it; return the merged photometry table and the simulation.

    ``overrides`` are dotted configuration keys on top of the testing
    environment (e.g. ``{"photometry.estimator": "dirty_equivalent"}``).
    """
    from dsa110_contimg.pipeline.batch import run_batch
    from dsa110_contimg.pipeline.stages.photometry_stage import read_photometry_table
    from dsa110_contimg.simulation import simulate_observation
    from dsa110_contimg.testing.flux_fields import field_spec
    from dsa110_contimg.testing.layout import path_overrides
    from dsa110_contimg.utils.config_loader import load_pipeline_config

    sim = simulate_observation(field_spec(seed), base / "incoming")
    config = load_pipeline_config(
        environment="testing",
        overrides={**path_overrides(base), **(overrides or {})},
        env={},
    )
    result = run_batch(config, base / "incoming", catalog_path=sim.sky_path)
    if not result.success:
        msg = f"pull field seed {seed}: {[b.errors for b in result.blocks]}"
        raise RuntimeError(msg)
    return read_photometry_table(result.photometry_path), sim


def _summary(parts: list[tuple]) -> dict:
    """Pull rms per bin (full and noise-only errors) and flux-scale medians."""
    from dsa110_contimg.testing import flux_fields as ff

    pulls, noise_pulls, rel = (np.concatenate([p[k] for p in parts]) for k in range(3))
    snr = np.concatenate([np.asarray(p[3]["snr"], dtype=float) for p in parts])

    def bins(values):
        return {
            f"{lo:g}-{hi:g}": {"rms": round(rms, 3), "n": n}
            for (lo, hi), (rms, n) in ff.bin_rms(values, snr, 1).items()
        }

    def median(mask):
        return round(float(np.median(rel[mask])), 5) if mask.any() else None

    return {
        "pulls": bins(pulls),
        "noise_only": bins(noise_pulls),
        "median_rel_snr30": median(snr >= 30),
        "median_rel_snr100": median(snr >= 100),
    }


def _cell(summary: dict, key: str) -> str:
    from dsa110_contimg.testing.flux_fields import SNR_BINS

    out = []
    for lo, hi in SNR_BINS[:3]:
        entry = summary[key].get(f"{lo:g}-{hi:g}")
        out.append("-" if entry is None else f"{entry['rms']:.2f} ({entry['n']})")
    return " / ".join(out)


def _markdown(report: dict) -> str:
    lines = [
        "# Flux-error pulls: restored vs dirty-equivalent estimator",
        "",
        f"{report['date']}, {report['machine']}, git "
        f"{report['git']['commit'][:7]}{' (dirty)' if report['git']['dirty'] else ''}; "
        f"seeds {report['seeds']}; {report['wall_s']:.0f} s.",
        "",
        "Pull rms per noise-SNR bin 10-30 / 30-100 / 100-1000 (pulls in "
        "brackets), band 0.9-1.2; flux scale = median measured/true - 1.",
        "",
        "| estimator | kind | seed | pulls | noise errors alone | "
        "scale SNR>=30 | SNR>=100 |",
        "|---|---|---|---|---|---:|---:|",
    ]
    for est in report["results"]:
        for kind in KINDS:
            for seed, summary in report["results"][est][kind].items():

                def pct(value):
                    return "-" if value is None else f"{100 * value:+.2f}%"

                lines.append(
                    f"| {est} | {kind} | {seed} | {_cell(summary, 'pulls')} | "
                    f"{_cell(summary, 'noise_only')} | "
                    f"{pct(summary['median_rel_snr30'])} | "
                    f"{pct(summary['median_rel_snr100'])} |"
                )
    return "\n".join(lines) + "\n"


def main() -> None:
    """Run the fields and write the report."""
    from dsa110_contimg.testing import flux_fields as ff

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[7, 3, 11, 42])
    parser.add_argument(
        "--estimators", nargs="+", choices=ESTIMATORS, default=list(ESTIMATORS)
    )
    parser.add_argument(
        "--out", type=Path, default=HERE / "results" / "flux_errors.json"
    )
    args = parser.parse_args()
    t0 = time.perf_counter()
    estimators = tuple(args.estimators)
    results: dict = {est: {kind: {} for kind in KINDS} for est in estimators}
    parts: dict = {est: {kind: [] for kind in KINDS} for est in estimators}
    with tempfile.TemporaryDirectory(prefix="flux_errors_") as tmp:
        for seed in args.seeds:
            for est in estimators:
                base = Path(tmp) / f"{est}_{seed}"
                started = time.perf_counter()
                table, sim = run_pull_field(base, seed, {"photometry.estimator": est})
                print(f"seed {seed} {est}: {time.perf_counter() - started:.0f} s")
                for kind in KINDS:
                    one = ff.pulls(table, sim, kind)
                    parts[est][kind].append(one)
                    results[est][kind][str(seed)] = _summary([one])
    for est in estimators:
        for kind in KINDS:
            results[est][kind]["pooled"] = _summary(parts[est][kind])
    from benchmarks.suite import git_state

    report = {
        "benchmark": "flux_errors",
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.processor() or platform.machine()}, "
        f"{platform.python_version()}",
        "git": git_state(),
        "seeds": args.seeds,
        "wall_s": time.perf_counter() - t0,
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    markdown = _markdown(report)
    args.out.with_suffix(".md").write_text(markdown)
    print(markdown)


if __name__ == "__main__":
    main()
