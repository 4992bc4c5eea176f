"""Benchmark the imaging backends and an hourly mosaic at full DSA-110 size.

Imaging: one simulated group with the production environment's simulation
section (96 antennas, 16 x 48 channels, 24 integrations), converted with
``conversion.chan_average = 8`` (96 channels of 1.95 MHz, as DSA110.md
recommends) and imaged with the production imaging section (4800 x 3"),
once with WSClean and once with tclean; reports the imaging time per group,
the time of the derived maps (primary beam, rms, PB-corrected image, PNG) and
the flux accuracy of each backend against the injected sources.

Mosaic: twelve full-size (4800 x 3") group images of one hour are synthesised
directly (sources seen through each group's drift-averaged beam, correlated
noise, with their -pb and -rms maps), then coadded by the mosaicking stage in
a fresh process per reprojection method; reports wall time, peak resident
memory, the mosaic's flux accuracy and measured / predicted rms.

Usage::

    .venv/bin/python benchmarks/bench_imaging.py [--workdir DIR]
        [--backends wsclean,tclean] [--mosaic-methods fast,interp]
        [--skip-imaging] [--skip-mosaic] [--set KEY=VALUE ...] [--tag TAG]
        [--smoke]

Results go to ``benchmarks/results/bench_imaging[_TAG].{json,md}``. The run
saved there used the defaults (``bench_imaging.md``) and, for the imaging
only, ``--set imaging.auto_mask_sigma=null --set imaging.auto_threshold_sigma=3
--tag no_automask``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import resource
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import yaml
from astropy.time import Time

from dsa110_contimg.data_ingestion.photometry import Beam
from dsa110_contimg.mosaic import DriftTrack
from dsa110_contimg.pipeline.batch import observation_spec
from dsa110_contimg.pipeline.stages.conversion_stage import convert_groups, find_groups
from dsa110_contimg.pipeline.stages.imaging_stage import image_ms, make_derived_products
from dsa110_contimg.pipeline.stages.mosaicking_stage import MosaicMember, make_mosaic
from dsa110_contimg.pipeline.stages.photometry_stage import (
    measure_image,
    measure_mosaic,
)
from dsa110_contimg.simulation import compare_to_truth, simulate_observation
from dsa110_contimg.telescope import dsa110
from dsa110_contimg.testing.drift_skies import (
    catalog_from_rows,
    group_centers_deg,
    ring_sky,
)
from dsa110_contimg.testing.group_images import write_group_image
from dsa110_contimg.utils.config_loader import load_pipeline_config

RESULTS = Path(__file__).resolve().parent / "results"
START = datetime(2023, 6, 1, 3, 0, 0, tzinfo=UTC)
N_MOSAIC_GROUPS = 12
MOSAIC_BEAM = Beam(15.0, 12.0, 0.0)
MOSAIC_NOISE_JY = 1e-3
SMOKE = {"env": "production", "shape": (4800, 4800), "cell_arcsec": 3.0}
EXTRA_OVERRIDES: dict[str, object] = {}


def _config(workdir: Path, **extra):
    paths = {
        "incoming_dir": "incoming",
        "ms_stage1_dir": "ms",
        "images_dir": "images",
        "mosaics_dir": "mosaics",
        "products_dir": "products",
        "state_db": "pipeline.sqlite3",
        "log_dir": "logs",
        "data_dir": ".",
        "cal_tables_dir": "cal",
    }
    overrides = {f"paths.{k}": str(workdir / v) for k, v in paths.items()}
    overrides.update(
        {
            "conversion.chan_average": 8,
            "calibration.enabled": False,
            "simulation.n_groups": 1,
            "simulation.start_time": START.strftime("%Y-%m-%dT%H:%M:%S"),
        }
    )
    overrides.update(EXTRA_OVERRIDES)
    overrides.update(extra)
    if SMOKE["env"] == "testing":
        overrides["conversion.chan_average"] = 1
        overrides["imaging.image_size"] = [600, 600]
        overrides["imaging.cell_size"] = "20arcsec"
    return load_pipeline_config(environment=SMOKE["env"], overrides=overrides, env={})


def bench_backends(workdir: Path, backends: list[str]) -> dict[str, object]:
    """Simulate and convert one full-size group, then image it with each backend."""
    config = _config(workdir)
    spec = observation_spec(config)
    (ra0,) = group_centers_deg(
        spec.start_time,
        n_groups=1,
        n_times=spec.n_times,
        declination_deg=spec.declination_deg,
    )
    radii = np.linspace(0.0, 1.45, 14)
    fluxes = np.geomspace(0.1, 2.0, 14)[np.random.default_rng(3).permutation(14)]
    sky = ring_sky(ra0, spec.declination_deg, radii_deg=radii, flux_jy=fluxes)
    t0 = time.perf_counter()
    sim = simulate_observation(replace(spec, n_groups=1), workdir / "incoming", sky=sky)
    t_sim = time.perf_counter() - t0
    t0 = time.perf_counter()
    report = convert_groups(
        find_groups(workdir / "incoming", config.conversion),
        workdir / "ms",
        config.conversion,
    )
    t_convert = time.perf_counter() - t0
    (ms,) = report.ms_paths
    out: dict[str, object] = {
        "simulate_s": round(t_sim, 1),
        "convert_s": round(t_convert, 1),
        "ms": {
            "n_antennas": spec.n_antennas,
            "n_chan_raw": 16 * spec.n_chan_per_subband,
            "chan_average": config.conversion.chan_average,
            "n_times": spec.n_times,
        },
        "imaging": {k: v for k, v in config.imaging.model_dump(mode="json").items()},
        "backends": {},
    }
    tables = {}
    for backend in backends:
        cfg = _config(workdir, **{"imaging.backend": backend})
        t0 = time.perf_counter()
        product = image_ms(ms, workdir / f"images_{backend}", cfg.imaging)
        t_total = time.perf_counter() - t0
        for path in (product.pb_path, product.rms_path, product.pbcor_path):
            path.unlink()
        product.preview_path.unlink()
        t0 = time.perf_counter()
        make_derived_products(product, cfg.imaging)
        t_derived = time.perf_counter() - t0
        table = measure_image(product.image_path, sim.sky, cfg.photometry)
        tables[backend] = table
        comparison = compare_to_truth(table, sim.sky)
        within = comparison.table[np.asarray(comparison.table["pb"]) >= 0.5]
        out["backends"][backend] = {
            "version": product.backend_version,
            "imaging_s": round(t_total - t_derived, 1),
            "derived_maps_s": round(t_derived, 1),
            "n_recovered": comparison.n_recovered,
            "n_injected": comparison.n_injected,
            "median_abs_flux_error_pb_ge_0p5": round(
                float(np.median(np.abs(within["flux_error"]))), 4
            ),
            "max_offset_beams": round(comparison.max_offset_beams, 3),
        }
        print(f"{backend}: {out['backends'][backend]}", flush=True)
    if len(tables) == 2:
        a, b = (tables[k] for k in backends)
        ok = (np.asarray(a["flags"]) == 0) & (np.asarray(b["flags"]) == 0)
        ok &= np.minimum(np.asarray(a["snr"]), np.asarray(b["snr"])) >= 150
        ratio = np.asarray(b["flux_jy"])[ok] / np.asarray(a["flux_jy"])[ok]
        out["flux_ratio"] = {
            "pair": f"{backends[1]}/{backends[0]}",
            "n_sources": int(ok.sum()),
            "median": round(float(np.median(ratio)), 4),
            "min": round(float(ratio.min()), 4),
            "max": round(float(ratio.max()), 4),
        }
    return out


def synthesise_hour(
    directory: Path,
    *,
    shape: tuple[int, int] | None = None,
    cell_arcsec: float | None = None,
    n_groups: int = N_MOSAIC_GROUPS,
) -> tuple[list[MosaicMember], object]:
    """Write ``n_groups`` consecutive drift-scan group images with 120 sources.

    Returns the members (image paths and group times) and the truth catalogue.
    """
    shape = tuple(shape or SMOKE["shape"])
    cell_arcsec = float(cell_arcsec or SMOKE["cell_arcsec"])
    step_s = dsa110.INTEGRATION_TIME_S
    group_s = step_s * 24
    centers = group_centers_deg(
        START, n_groups=n_groups, n_times=24, declination_deg=37.0
    )
    rng = np.random.default_rng(7)
    cos_dec = np.cos(np.deg2rad(37.0))
    rows = []
    while len(rows) < 120:
        ra = rng.uniform(centers[0] - 1.6 / cos_dec, centers[-1] + 1.6 / cos_dec)
        dec = 37.0 + rng.uniform(-1.6, 1.6)
        rows.append((ra, dec, float(np.exp(rng.uniform(np.log(0.02), np.log(1.0))))))
    truth = catalog_from_rows(rows, name_prefix="MOS")
    sources = list(zip(truth.ra_deg, truth.dec_deg, truth.flux_jy, strict=True))
    members = []
    for k in range(n_groups):
        when = START + timedelta(seconds=k * group_s)
        track = DriftTrack(
            37.0, Time(when).mjd + 0.5 * step_s / 86400, step_s, 24, 1.3115e9, 1.4985e9
        )
        path = write_group_image(
            directory / f"drift_{when:%Y%m%dT%H%M%S}_00",
            track,
            shape=shape,
            cell_arcsec=cell_arcsec,
            sources=sources,
            beam=MOSAIC_BEAM,
            noise_rms_jy=MOSAIC_NOISE_JY,
            rng=rng,
        )
        members.append(MosaicMember(path, when))
        print(f"synthesised {path.name}", flush=True)
    return members, truth


def _mosaic_job(members, directory: str, method: str) -> dict[str, object]:
    from dsa110_contimg.utils.config_loader import MosaicConfig

    t0 = time.perf_counter()
    product = make_mosaic(
        f"bench_{method}", members, Path(directory), MosaicConfig(method=method)
    )
    elapsed = time.perf_counter() - t0
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    return {
        "mosaic_s": round(elapsed, 1),
        "peak_rss_gib": round(peak_gib, 2),
        "mosaic_path": str(product.mosaic_path),
        "noise_path": str(product.noise_path),
        "n_used": product.n_used,
    }


def bench_mosaic(workdir: Path, methods: list[str]) -> dict[str, object]:
    """Synthesise an hour of full-size images and mosaic it with each method."""
    from astropy.io import fits

    from dsa110_contimg.utils.config_loader import PhotometryConfig

    t0 = time.perf_counter()
    members, truth = synthesise_hour(workdir / "hour_images")
    out: dict[str, object] = {
        "n_images": len(members),
        "image_shape": list(SMOKE["shape"]),
        "cell_arcsec": SMOKE["cell_arcsec"],
        "synthesis_s": round(time.perf_counter() - t0, 1),
        "methods": {},
    }
    context = multiprocessing.get_context("spawn")
    for method in methods:
        with ProcessPoolExecutor(1, mp_context=context) as pool:
            result = pool.submit(
                _mosaic_job, members, str(workdir / "mosaics"), method
            ).result()
        mosaic = Path(result["mosaic_path"])
        t0 = time.perf_counter()
        table = measure_mosaic(
            mosaic, truth, PhotometryConfig(), noise_path=Path(result["noise_path"])
        )
        result["photometry_s"] = round(time.perf_counter() - t0, 1)
        good = (np.asarray(table["flags"]) == 0) & (np.asarray(table["snr"]) > 10)
        idx = np.searchsorted(truth.name, np.asarray(table["source_name"])[good])
        err = np.asarray(table["flux_jy"])[good] / truth.flux_jy[idx] - 1
        result["n_sources_snr_gt_10"] = int(good.sum())
        result["median_abs_flux_error"] = round(float(np.median(np.abs(err))), 4)
        header = fits.getheader(mosaic)
        result["mosaic_shape"] = [header["NAXIS2"], header["NAXIS1"]]
        out["methods"][method] = result
        print(f"mosaic {method}: {result}", flush=True)
    if {"fast", "interp"} <= set(out["methods"]):
        a = fits.getdata(out["methods"]["fast"]["mosaic_path"])
        b = fits.getdata(out["methods"]["interp"]["mosaic_path"])
        both = np.isfinite(a) & np.isfinite(b)
        out["fast_vs_interp_max_abs_diff_jy"] = float(np.max(np.abs(a[both] - b[both])))
    return out


def _markdown(results: dict[str, object]) -> str:
    lines = [
        "# bench_imaging",
        "",
        f"Run {results['date']} on {results['machine']}.",
        "",
    ]
    img = results.get("imaging")
    if img:
        ms = img["ms"]
        lines += [
            "## Imaging one full-size group",
            "",
            *(
                [f"Overrides: {results['overrides']}.", ""]
                if results.get("overrides")
                else []
            ),
            f"MS: {ms['n_antennas']} antennas, {ms['n_chan_raw']} channels averaged "
            f"by {ms['chan_average']}, {ms['n_times']} integrations; simulate "
            f"{img['simulate_s']} s, convert {img['convert_s']} s. Imaging: "
            f"{img['imaging']['image_size'][0]} x {img['imaging']['cell_size']}, "
            f"{img['imaging']['deconvolver']}, {img['imaging']['gridder']}, niter "
            f"{img['imaging']['niter']}, auto-mask {img['imaging']['auto_mask_sigma']}"
            f" / auto-threshold {img['imaging']['auto_threshold_sigma']} sigma.",
            "",
            "| backend | version | imaging (s) | derived maps (s) | recovered | "
            "median abs flux error (pb >= 0.5) | max offset (beam) |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, b in img["backends"].items():
            lines.append(
                f"| {name} | {b['version']} | {b['imaging_s']} | {b['derived_maps_s']}"
                f" | {b['n_recovered']}/{b['n_injected']} | "
                f"{100 * b['median_abs_flux_error_pb_ge_0p5']:.2f}% | "
                f"{b['max_offset_beams']} |"
            )
        if "flux_ratio" in img:
            r = img["flux_ratio"]
            lines += [
                "",
                f"Flux ratio {r['pair']} over {r['n_sources']} bright sources: "
                f"median {r['median']}, range {r['min']}-{r['max']}.",
            ]
    mos = results.get("mosaic")
    if mos:
        lines += [
            "",
            f"## Mosaic of one hour ({mos['n_images']} images of "
            f'{mos["image_shape"][0]} x {mos["cell_arcsec"]}")',
            "",
            "| method | mosaic (s) | peak RSS (GiB) | mosaic shape | photometry (s) | "
            "sources > 10 sigma | median abs flux error |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, m in mos["methods"].items():
            lines.append(
                f"| {name} | {m['mosaic_s']} | {m['peak_rss_gib']} | "
                f"{m['mosaic_shape'][0]} x {m['mosaic_shape'][1]} | "
                f"{m['photometry_s']} | {m['n_sources_snr_gt_10']} | "
                f"{100 * m['median_abs_flux_error']:.2f}% |"
            )
        if "fast_vs_interp_max_abs_diff_jy" in mos:
            lines += [
                "",
                "Largest |fast - interp| mosaic pixel difference: "
                f"{mos['fast_vs_interp_max_abs_diff_jy']:.2e} Jy/beam.",
            ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/bench_imaging"))
    parser.add_argument("--backends", default="wsclean,tclean")
    parser.add_argument("--mosaic-methods", default="fast,interp")
    parser.add_argument("--skip-imaging", action="store_true")
    parser.add_argument("--skip-mosaic", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument(
        "--smoke", action="store_true", help="tiny sizes, to check the script runs"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override (YAML value), e.g. imaging.auto_mask_sigma=null",
    )
    parser.add_argument("--tag", default="", help="suffix of the result files")
    args = parser.parse_args(argv)
    for item in args.set:
        key, _, value = item.partition("=")
        EXTRA_OVERRIDES[key] = yaml.safe_load(value)
    if args.smoke:
        SMOKE.update(env="testing", shape=(600, 600), cell_arcsec=24.0)
    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    results: dict[str, object] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.node()} ({multiprocessing.cpu_count()} cores, "
        f"{platform.python_version()})",
        "overrides": dict(EXTRA_OVERRIDES),
    }
    if not args.skip_imaging:
        results["imaging"] = bench_backends(
            args.workdir / "group", args.backends.split(",")
        )
    if not args.skip_mosaic:
        results["mosaic"] = bench_mosaic(
            args.workdir / "hour", args.mosaic_methods.split(",")
        )
    if args.smoke:
        print(json.dumps(results, indent=2))
        return 0
    RESULTS.mkdir(exist_ok=True)
    stem = "bench_imaging" + (f"_{args.tag}" if args.tag else "")
    (RESULTS / f"{stem}.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / f"{stem}.md").write_text(_markdown(results))
    print(_markdown(results))
    if not args.keep:
        shutil.rmtree(args.workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
