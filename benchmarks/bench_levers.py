"""Side-by-side timing of the group path's speed levers (issue 19): old vs new code.

Each lever runs the seed's code (the modules as they were at ``--old-ref``,
loaded from git) and the working tree's on the same data, interleaved
(old, new, old, new, ...) ``--repeats`` times, and reports the median wall and
CPU seconds of each and their ratio, plus a check that the new path gives
the same numbers. The ratio of two interleaved runs holds on a shared,
loaded machine where absolute timings do not.

    python -m benchmarks.bench_levers --ms GROUP.ms --image IMAGE.fits \
        --truth TRUTH.csv --out benchmarks/results/perf_levers

``--ms`` is a converted (uncalibrated) group MS, ``--image`` a restored
image made by this pipeline (``benchmarks.bench_imaging.synthesise_hour``
writes one with its truth catalogue).

The WSClean levers compare imaging configurations (each a `WSCLEAN_LEVERS`
name, or names joined by " + ") with a baseline row on one calibrated MS:

    python -m benchmarks.bench_levers --only wsclean --calibrated-ms CAL.ms \
        --sky truth/sky.csv --wsclean-size 4800 --wsclean-baseline "-mgain 0.8" \
        --wsclean-levers production "production + -reorder" \
        --out benchmarks/results/perf_wsclean_levers

(a name that starts with "-" is given as "production + NAME", which argparse
does not take for an option). Every run is appended to ``OUT.runs.json`` as
it ends; ``--from-runs OUT.runs.json`` writes the tables of a run cut short.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Callable
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
LEVERS = ("conversion", "flagging", "derived", "photometry", "wsclean")
SRC = "src/dsa110_contimg"


def old_module(relpath: str, ref: str) -> types.ModuleType:
    """Return the module at ``relpath`` as it was at git ``ref``."""
    text = subprocess.run(
        ["git", "-C", str(REPO), "show", f"{ref}:{relpath}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    name = "_old_" + relpath.removesuffix(".py").replace("/", "_")
    module = types.ModuleType(name)
    module.__file__ = f"{ref}:{relpath}"
    sys.modules[name] = module  # dataclasses look their module up
    exec(compile(text, module.__file__, "exec"), module.__dict__)  # noqa: S102
    return module


@contextmanager
def patched(module: types.ModuleType, **names: Any):
    """Temporarily replace attributes of ``module``."""
    saved = {k: getattr(module, k) for k in names}
    for k, v in names.items():
        setattr(module, k, v)
    try:
        yield
    finally:
        for k, v in saved.items():
            setattr(module, k, v)


def side_by_side(
    old: Callable[[], Any],
    new: Callable[[], Any],
    *,
    repeats: int,
    setup: Callable[[], None] | None = None,
) -> tuple[dict[str, Any], Any, Any]:
    """Run ``old`` and ``new`` interleaved; return timings and the last results."""
    times: dict[str, list[tuple[float, float]]] = {"old": [], "new": []}
    results: dict[str, Any] = {}
    for _ in range(repeats):
        for key, fn in (("old", old), ("new", new)):
            if setup is not None:
                setup()
            w0, c0 = time.perf_counter(), time.process_time()
            results[key] = fn()
            times[key].append((time.perf_counter() - w0, time.process_time() - c0))
    out: dict[str, Any] = {}
    medians = {}
    for key in ("old", "new"):
        wall, cpu = np.array(times[key]).T
        medians[key] = (float(np.median(wall)), float(np.median(cpu)))
        out[f"{key}_wall_s"] = [round(float(v), 3) for v in wall]
        out[f"{key}_wall_median_s"] = round(medians[key][0], 3)
        out[f"{key}_cpu_median_s"] = round(medians[key][1], 3)
    for k, what in enumerate(("wall", "cpu")):
        ratio = medians["old"][k] / max(medians["new"][k], 1e-9)
        out[f"ratio_{what}"] = round(ratio, 2)
    return out, results["old"], results["new"]


# ---------------------------------------------------------------- levers


def lever_conversion(raw: Path, ref: str, repeats: int) -> dict[str, Any]:
    """`read_group` of one group averaged by 8 on read (raw files in page cache)."""
    from benchmarks import _stages as st
    from dsa110_contimg.data_ingestion import _uvh5_reader as new_mod

    old_mod = old_module(f"{SRC}/data_ingestion/_uvh5_reader.py", ref)
    group = st._group(str(raw))

    def run(mod):
        def go():
            uv = mod.read_group(group, chan_average=8)
            return uv.data_array, uv.flag_array

        return go

    new_mod.read_group(group, chan_average=8)  # compile pyuvdata's numba once
    timing, a, b = side_by_side(run(old_mod), run(new_mod), repeats=repeats)
    same = np.array_equal(a[0], b[0], equal_nan=True) and np.array_equal(a[1], b[1])
    timing["check"] = "DATA and FLAG identical" if same else "arrays DIFFER"
    timing["size"] = f"{len(group.files)} files, averaged to {b[0].shape}"
    return timing


def lever_flagging(ms: Path, work: Path, ref: str, repeats: int) -> dict[str, Any]:
    """`flag_ms` (MAD clip) on a fresh copy of the MS each run."""
    from casacore.tables import table

    from dsa110_contimg.calibration import _flagging as new_mod

    old_mod = old_module(f"{SRC}/calibration/_flagging.py", ref)
    copy = work / "flag.ms"

    def fresh() -> None:
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(ms, copy)

    def run(mod):
        def go():
            mod.flag_ms(copy, sigma=7.0)
            with table(str(copy), ack=False) as tab:
                return tab.getcol("FLAG")

        return go

    timing, old_flags, new_flags = side_by_side(
        run(old_mod), run(new_mod), repeats=repeats, setup=fresh
    )
    shutil.rmtree(copy, ignore_errors=True)
    timing["check"] = (
        "FLAG identical"
        if np.array_equal(old_flags, new_flags)
        else f"FLAG differs in {int(np.sum(old_flags != new_flags))} values"
    )
    timing["size"] = f"{old_flags.shape} (rows, channels, correlations)"
    return timing


def _png_pixels(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im)


def _product(image: Path, directory: Path):
    from dsa110_contimg.tools.imagers import ImageProduct

    directory.mkdir(parents=True, exist_ok=True)
    local = directory / image.name
    shutil.copy(image, local)
    stem = str(local).removesuffix("-image.fits")
    return ImageProduct(
        ms_path=Path(f"{stem}.ms"),
        image_path=local,
        residual_path=Path(f"{stem}-residual.fits"),
        psf_path=Path(f"{stem}-psf.fits"),
        model_path=Path(f"{stem}-model.fits"),
        log_path=Path(f"{stem}.log"),
        backend="wsclean",
        backend_version="",
        command=(),
    )


def lever_derived(image: Path, work: Path, ref: str, repeats: int) -> dict[str, Any]:
    """`make_derived_products` (PB, rms, PB-corrected maps, 3 PNGs), fresh each run."""
    from astropy.io import fits

    from dsa110_contimg import visualization
    from dsa110_contimg.pipeline.stages import derived_maps
    from dsa110_contimg.utils.config import ImagingConfig

    old_beam = old_module(f"{SRC}/mosaic/_beam.py", ref)
    old_noise = old_module(f"{SRC}/mosaic/_noise.py", ref)
    old_figure = old_module(f"{SRC}/visualization/_figure.py", ref)
    old_preview = old_module(f"{SRC}/visualization/_preview.py", ref)
    old_preview.save_figure = old_figure.save_figure  # the seed's PNG writer
    cfg = ImagingConfig(write_png=True)
    directory = work / "derived"
    product = {}

    def fresh() -> None:
        shutil.rmtree(directory, ignore_errors=True)
        product["p"] = _product(image, directory)

    def maps(done) -> dict[str, np.ndarray]:
        out = {k: fits.getdata(getattr(done, f"{k}_path")) for k in ("pb", "rms")}
        out["png"] = _png_pixels(done.preview_path)
        return out

    def old():
        with (
            patched(
                derived_maps,
                primary_beam_image=old_beam.primary_beam_image,
                noise_map=old_noise.noise_map,
            ),
            patched(visualization, write_preview=old_preview.write_preview),
        ):
            return maps(derived_maps.make_derived_products(product["p"], cfg))

    def new():
        return maps(derived_maps.make_derived_products(product["p"], cfg))

    fresh()
    new()  # pay the IERS table and matplotlib imports once, for both
    timing, a, b = side_by_side(old, new, repeats=repeats, setup=fresh)
    shutil.rmtree(directory, ignore_errors=True)
    ok = np.isfinite(a["rms"]) & np.isfinite(b["rms"])
    pb_err = float(np.nanmax(np.abs(a["pb"] - b["pb"])))
    rms_err = float(np.max(np.abs(b["rms"][ok] / a["rms"][ok] - 1)))
    same_nan = bool(np.array_equal(np.isnan(a["rms"]), np.isnan(b["rms"])))
    timing["check"] = (
        f"max abs pb difference {pb_err:.1e}; max relative rms difference "
        f"{rms_err:.1e}; same NaN pixels: {same_nan}; image PNG pixels "
        f"identical: {bool(np.array_equal(a['png'], b['png']))}"
    )
    timing["size"] = f"{a['pb'].shape[-2:]} pixels"
    return timing


def old_photometry(ref: str) -> types.ModuleType:
    """Return the forced-photometry module with its helpers as they were at ``ref``.

    The helper modules are loaded first and stand in for the current ones
    while the next is loaded, so the old `measure_forced` and
    `residual_excess` run the old kernels (the result types stay current).
    """
    package = "dsa110_contimg.data_ingestion"
    saved = dict(sys.modules)
    try:
        for name in ("_photometry_kernels", "_photometry_noise", "_photometry_peak"):
            module = old_module(f"{SRC}/data_ingestion/{name}.py", ref)
            sys.modules[f"{package}.{name}"] = module
        return old_module(f"{SRC}/data_ingestion/photometry.py", ref)
    finally:
        for name in ("_photometry_kernels", "_photometry_noise", "_photometry_peak"):
            sys.modules[f"{package}.{name}"] = saved[f"{package}.{name}"]


def lever_photometry(
    image: Path, truth: Path, ref: str, repeats: int, n_sources: int
) -> dict[str, Any]:
    """`measure_image` of ``n_sources`` positions: the measurement at ``ref`` vs now."""
    from benchmarks import _stages as st
    from dsa110_contimg.pipeline.stages import photometry_stage
    from dsa110_contimg.pipeline.stages.photometry_stage import measure_image

    old_phot = old_photometry(ref)
    catalogue, _ = st._catalogue(str(image), str(truth), n_sources)
    cfg = st._config({}).photometry

    def old():
        with patched(
            photometry_stage,
            measure_forced=old_phot.measure_forced,
            residual_excess=old_phot.residual_excess,
        ):
            return measure_image(image, catalogue, cfg)

    def new():
        return measure_image(image, catalogue, cfg)

    new()  # warm the imports and the compiled loops for both
    timing, a, b = side_by_side(old, new, repeats=repeats)
    worst = 0.0
    same = np.array_equal(np.asarray(a["flags"]), np.asarray(b["flags"]))
    for c in ("flux_jy", "flux_err_jy", "flux_sys_jy", "rms_jy", "snr", "peak_jy"):
        x, y = np.asarray(a[c], float), np.asarray(b[c], float)
        same &= np.array_equal(np.isnan(x), np.isnan(y))
        ok = np.isfinite(x) & (x != 0)
        worst = max(worst, float(np.max(np.abs(y[ok] / x[ok] - 1), initial=0.0)))
    timing["check"] = (
        f"flags and NaNs identical: {bool(same)}; max relative difference of flux, "
        f"error, systematic, rms, snr, peak {worst:.1e}"
    )
    timing["size"] = f"{len(b)} positions"
    return timing


# name -> (config overrides, extra WSClean flags appended to the command);
# "{half}" and "{third}" are replaced by a half and a third of the image side
WSCLEAN_LEVERS: dict[str, tuple[dict[str, Any], tuple[str, ...]]] = {
    "production": ({}, ()),
    "-parallel-gridding 2": ({}, ("-parallel-gridding", "2")),
    "-baseline-averaging 10": ({}, ("-baseline-averaging", "10")),
    "-parallel-deconvolution (4 sub-images)": (
        {},
        ("-parallel-deconvolution", "{half}"),
    ),
    "-mgain 0.8": ({"imaging.mgain": 0.8}, ()),
    "-mgain 0.9": ({"imaging.mgain": 0.9}, ()),
    "-mgain 0.95": ({"imaging.mgain": 0.95}, ()),
    "-baseline-averaging 2": ({}, ("-baseline-averaging", "2")),
    "-baseline-averaging 4": ({}, ("-baseline-averaging", "4")),
    "-use-wgridder": ({"imaging.gridder": "wgridder"}, ()),
    "-use-wgridder -wgridder-accuracy 1e-3": (
        {"imaging.gridder": "wgridder"},
        ("-wgridder-accuracy", "1e-3"),
    ),
    "-no-small-inversion": ({}, ("-no-small-inversion",)),
    "-no-dirty": ({}, ("-no-dirty",)),
    "-reorder": ({}, ("-reorder",)),
    "-reorder -parallel-reordering 2": (
        {},
        ("-reorder", "-parallel-reordering", "2"),
    ),
    "-temp-dir /dev/shm": ({}, ("-temp-dir", "/dev/shm")),
    "-gain 0.2": ({"imaging.gain": 0.2}, ()),
    # issue 19, perf_wsclean_levers_5: a larger minor-loop gain with niter cut
    # by the same factor (the same depth in fewer components), sub-image
    # deconvolution, a major-cycle cap, a clean border, local rms, masks
    "-gain 0.2 -niter 2500": ({"imaging.gain": 0.2, "imaging.niter": 2500}, ()),
    "-gain 0.25 -niter 2000": ({"imaging.gain": 0.25, "imaging.niter": 2000}, ()),
    "-gain 0.3 -niter 1700": ({"imaging.gain": 0.3, "imaging.niter": 1700}, ()),
    "-niter 2500": ({"imaging.niter": 2500}, ()),
    "-parallel-deconvolution 1600 (9 sub-images)": (
        {},
        ("-parallel-deconvolution", "{third}"),
    ),
    "-nmiter 2": ({}, ("-nmiter", "2")),
    "-clean-border 5": ({}, ("-clean-border", "5")),
    "-local-rms": ({}, ("-local-rms",)),
    "-auto-mask 5": ({"imaging.auto_mask_sigma": 5.0}, ()),
    "-auto-mask 3": ({"imaging.auto_mask_sigma": 3.0}, ()),
    "-nwlayers-factor 0.5": ({}, ("-nwlayers-factor", "0.5")),
    "-padding 1.1": ({}, ("-padding", "1.1")),
    "-mgain 0.97 -nmiter 2": ({"imaging.mgain": 0.97}, ("-nmiter", "2")),
    # the `fast` profile (config/profiles/fast.yaml): the same field in coarser
    # pixels; the 28" x 56" beam is still sampled 4.7-9 times by 6"
    "cell 4.5arcsec (2/3 the pixels per side)": (
        {"imaging.cell_size": "4.5arcsec", "imaging.image_size": "{two_thirds}"},
        (),
    ),
    "cell 6arcsec (half the pixels per side)": (
        {"imaging.cell_size": "6arcsec", "imaging.image_size": "{half}"},
        (),
    ),
}
# the levers of the first (1200^2) run; --wsclean-levers chooses others
DEFAULT_WSCLEAN_LEVERS = tuple(list(WSCLEAN_LEVERS)[:4])


def wsclean_lever(name: str) -> tuple[dict[str, Any], tuple[str, ...]]:
    """Return the overrides and flags of a lever, or of levers joined by " + "."""
    overrides: dict[str, Any] = {}
    flags: tuple[str, ...] = ()
    for part in name.split(" + "):
        if part not in WSCLEAN_LEVERS:
            msg = f"unknown WSClean lever {part!r}; known: {', '.join(WSCLEAN_LEVERS)}"
            raise SystemExit(msg)
        more, extra = WSCLEAN_LEVERS[part]
        overrides, flags = {**overrides, **more}, (*flags, *extra)
    return overrides, flags


def _source_fluxes(image: str, sky_csv: str) -> dict[str, Any]:
    """The accuracy gates plus each injected source's flux (row-to-row check)."""
    from benchmarks import _stages as st
    from dsa110_contimg.data_ingestion.skymodel import load_catalog
    from dsa110_contimg.pipeline.stages.photometry_stage import measure_image
    from dsa110_contimg.simulation import compare_to_truth

    truth = load_catalog(sky_csv)
    photometry = measure_image(Path(image), truth, st._config({}).photometry)
    table = compare_to_truth(photometry, truth).table
    err = np.abs(np.asarray(table["flux_error"], float))
    return {
        **st._truth_summary(photometry, truth),
        "median_abs_flux_error_all": round(float(np.median(err)), 4),
        "p90_abs_flux_error_all": round(float(np.percentile(err, 90)), 4),
        "flux_by_source": {
            str(n): float(f)
            for n, f in zip(table["source_name"], table["flux_jy"], strict=True)
        },
    }


def lever_wsclean(
    ms: Path,
    sky_csv: Path,
    work: Path,
    repeats: int,
    image_size: int,
    levers: tuple[str, ...] = DEFAULT_WSCLEAN_LEVERS,
    progress: Path | None = None,
    baseline: str = "production",
) -> dict[str, Any]:
    """WSClean with and without each lever, on a calibrated MS, interleaved.

    Each configuration images the MS as the pipeline does (`image_ms`,
    production parameters at ``image_size`` pixels of 3 arcsec, quality
    gates on) with the lever's config overrides and its flags appended to the
    WSClean command; time is wall and CPU (WSClean's child process apart, and
    the whole call), accuracy the injected sources on the image, the
    residual's robust rms, the quality gates' verdict and each source's flux
    against the ``baseline`` row's (run first in every round). ``progress``
    gets every run as it ends (JSON), so a run cut short still leaves its
    figures.
    """
    import resource

    from astropy.io import fits

    from benchmarks import _stages as st
    from dsa110_contimg.pipeline.stages import image_quality as qa
    from dsa110_contimg.tools import wsclean
    from dsa110_contimg.visualization import robust_rms

    base = {
        "imaging.image_size": [image_size, image_size],
        "imaging.cell_size": "3.0arcsec",
        "imaging.write_png": False,
    }
    base_command = wsclean.wsclean_command
    names = (baseline, *[n for n in levers if n != baseline])
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in names}
    for _ in range(repeats):
        for name in names:
            overrides, extra = wsclean_lever(name)
            sizes = {
                "half": image_size // 2,
                "third": image_size // 3,
                "two_thirds": 2 * image_size // 3,
            }
            flags = [f.format(**sizes) for f in extra]
            if isinstance(overrides.get("imaging.image_size"), str):
                n = int(overrides["imaging.image_size"].format(**sizes))
                overrides = {**overrides, "imaging.image_size": [n, n]}

            def command(*args, _flags=flags, **kwargs):
                cmd = base_command(*args, **kwargs)
                return [*cmd[:-1], *_flags, cmd[-1]]

            directory = work / "wsclean"
            child0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            self0 = time.process_time()
            t0 = time.perf_counter()
            with patched(wsclean, wsclean_command=command):
                info = st.image(
                    str(ms),
                    str(directory),
                    {**base, **overrides},
                    str(work / "product.pickle"),
                )
            wall = time.perf_counter() - t0
            child1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            child_cpu = (
                child1.ru_utime + child1.ru_stime - child0.ru_utime - child0.ru_stime
            )
            cpu = (time.process_time() - self0) + child_cpu
            fluxes = _source_fluxes(info["image"], str(sky_csv))
            acc = {k: v for k, v in fluxes.items() if k != "flux_by_source"}
            residual = Path(info["image"].replace("-image.fits", "-residual.fits"))
            rms = robust_rms(np.asarray(fits.getdata(residual)).squeeze())
            quality = qa.read_quality(Path(info["image"])) or {}
            record = {
                "wall_s": wall,
                "cpu_s": cpu,
                "wsclean_cpu_s": child_cpu,
                "rms_jy": rms,
                "qa_passed": quality.get("passed"),
                "qa_attempts": 1 + len(quality.get("attempts", ())),
                "qa_rms_ratio": quality.get("rms_ratio"),
                "thermal_rms_jy": quality.get("thermal_rms_jy"),
                "hit_niter": quality.get("hit_niter"),
                **fluxes,
                **info,
            }
            runs[name].append(record)
            shutil.rmtree(directory, ignore_errors=True)
            print(
                f"  {name}: {wall:.1f} s wall, {cpu:.1f} s CPU ({child_cpu:.1f} s "
                f"WSClean), rms {rms:.3e}, {acc}, cycles "
                f"{info.get('major_iterations')}, qa {quality.get('passed')}",
                flush=True,
            )
            if progress is not None:
                progress.write_text(json.dumps(runs, indent=1, default=str) + "\n")
    return summarise_wsclean(runs, baseline)


def summarise_wsclean(
    runs: dict[str, list[dict[str, Any]]], baseline: str = "production"
) -> dict[str, Any]:
    """Medians per configuration and ratios to the ``baseline`` row's."""

    def med(rs, key):
        vals = [r[key] for r in rs if r.get(key) is not None]
        return float(np.median(vals)) if vals else None

    prod = runs[baseline]
    base_wall, base_cpu = med(prod, "wall_s"), med(prod, "cpu_s")
    base_ws, base_rms = med(prod, "wsclean_cpu_s"), med(prod, "rms_jy")
    base_flux = prod[-1]["flux_by_source"]
    out: dict[str, Any] = {}
    for name, rs in runs.items():
        if not rs:
            continue
        last = rs[-1]
        common = sorted(set(base_flux) & set(last["flux_by_source"]))
        change = [last["flux_by_source"][k] / base_flux[k] - 1 for k in common]
        out[name] = {
            "n_runs": len(rs),
            "wall_s": [round(r["wall_s"], 2) for r in rs],
            "wall_median_s": round(med(rs, "wall_s"), 2),
            "cpu_median_s": round(med(rs, "cpu_s"), 2),
            "wsclean_cpu_median_s": round(med(rs, "wsclean_cpu_s"), 2),
            "speedup_vs_baseline": round(base_wall / med(rs, "wall_s"), 2),
            "cpu_ratio_vs_baseline": round(base_cpu / med(rs, "cpu_s"), 2),
            "wsclean_cpu_ratio_vs_baseline": round(
                base_ws / med(rs, "wsclean_cpu_s"), 2
            ),
            "rms_vs_baseline": round(med(rs, "rms_jy") / base_rms, 4),
            "n_recovered": f"{last['n_recovered']}/{last['n_injected']}",
            "median_abs_flux_error": last["median_abs_flux_error_pb_ge_0p5"],
            "median_abs_flux_error_all": last.get("median_abs_flux_error_all"),
            "p90_abs_flux_error_all": last.get("p90_abs_flux_error_all"),
            "median_abs_flux_change_vs_baseline": round(
                float(np.median(np.abs(change))), 4
            )
            if change
            else None,
            "max_offset_beams": last["max_offset_beams"],
            "major_iterations": last.get("major_iterations"),
            "inversion_s": med(rs, "inversion_s"),
            "prediction_s": med(rs, "prediction_s"),
            "deconvolution_s": med(rs, "deconvolution_s"),
            "qa_passed": all(bool(r.get("qa_passed")) for r in rs),
            "qa_attempts": max(r.get("qa_attempts", 1) for r in rs),
            "hit_niter": any(bool(r.get("hit_niter")) for r in rs),
        }
    return out


# ---------------------------------------------------------------- report


def _machine() -> str:
    load = os.getloadavg()[0]
    return f"{os.cpu_count()} cores, load average {load:.1f} at start"


def write(doc: dict[str, Any], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(doc, indent=1) + "\n")
    lines = [
        "# Group-path speed levers: old vs new code, side by side",
        "",
        f"Run {doc['run']} on {doc['machine']}; "
        + (
            f"old = `{doc['old_ref']}`, new = the working tree; "
            if doc["levers"]
            else ""
        )
        + f"{doc['repeats']} interleaved repeats, medians. "
        "Written by `python -m benchmarks.bench_levers`.",
    ]
    if doc["levers"]:
        lines += [
            "",
            "| stage | old wall (s) | new wall (s) | ratio wall | ratio CPU | "
            "accuracy check | size |",
            "|---|---:|---:|---:|---:|---|---|",
        ]
    for name, r in doc["levers"].items():
        lines.append(
            f"| {name} | {r['old_wall_median_s']} | {r['new_wall_median_s']} | "
            f"{r['ratio_wall']} | {r['ratio_cpu']} | {r['check']} | {r['size']} |"
        )
    if doc.get("wsclean"):
        n = doc["wsclean_size"]
        lines += [
            "",
            f"## WSClean levers ({n}^2 pixels of 3 arcsec, production parameters)",
            "",
            "Ratios and flux changes are against "
            f"`{doc.get('wsclean_baseline', 'production')}`.",
            "",
            "| configuration | wall (s) | CPU (s) | WSClean CPU (s) | ratio wall | "
            "ratio CPU | ratio WSClean CPU | residual rms / baseline | "
            "recovered | median abs flux error (pb >= 0.5) | median abs flux "
            "change vs baseline | max offset (beam) | major cycles | "
            "quality gates |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---|",
        ]
        for name, r in doc["wsclean"].items():
            gates = "passed" if r.get("qa_passed", True) else "FAILED"
            lines.append(
                f"| {name} | {r['wall_median_s']} | {r['cpu_median_s']} | "
                f"{r.get('wsclean_cpu_median_s', '')} | "
                f"{r['speedup_vs_baseline']} | "
                f"{r.get('cpu_ratio_vs_baseline', '')} | "
                f"{r.get('wsclean_cpu_ratio_vs_baseline', '')} | "
                f"{r['rms_vs_baseline']} | {r['n_recovered']} | "
                f"{r['median_abs_flux_error']} | "
                f"{r.get('median_abs_flux_change_vs_baseline', '')} | "
                f"{r['max_offset_beams']} | {r['major_iterations']} | {gates} |"
            )
    lines += ["", *doc.get("notes", [])]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ms", type=Path)
    parser.add_argument("--image", type=Path)
    parser.add_argument("--truth", type=Path)
    parser.add_argument("--old-ref", default="0911ccd")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--n-sources", type=int, default=10_000)
    parser.add_argument("--only", nargs="*", choices=LEVERS)
    parser.add_argument(
        "--out", type=Path, default=REPO / "benchmarks/results/perf_levers"
    )
    parser.add_argument("--raw", type=Path, help="directory of one raw group")
    parser.add_argument("--calibrated-ms", type=Path, help="for the WSClean levers")
    parser.add_argument("--sky", type=Path, help="sky truth CSV of --calibrated-ms")
    parser.add_argument("--wsclean-size", type=int, default=1200)
    parser.add_argument(
        "--wsclean-levers",
        nargs="*",
        default=list(DEFAULT_WSCLEAN_LEVERS),
        help="WSClean configurations to compare, each a lever name or names "
        "joined by ' + ' (the baseline always runs)",
    )
    parser.add_argument(
        "--wsclean-baseline",
        default="production",
        help="the configuration the others are compared with",
    )
    parser.add_argument(
        "--from-runs",
        type=Path,
        help="write the WSClean table from a runs JSON (a run cut short) instead "
        "of running anything",
    )
    parser.add_argument(
        "--notes", type=Path, help="text file of lines to append to the report"
    )
    args = parser.parse_args(argv)
    only = set(args.only or LEVERS)
    for name in (*args.wsclean_levers, args.wsclean_baseline):
        wsclean_lever(name)  # unknown names fail before anything runs
    # the imagers run in their scratch directories: paths must be absolute
    for key in ("ms", "image", "truth", "raw", "calibrated_ms", "sky"):
        if getattr(args, key) is not None:
            setattr(args, key, getattr(args, key).resolve())
    doc: dict[str, Any] = {
        "run": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": _machine(),
        "old_ref": args.old_ref,
        "repeats": args.repeats,
        "levers": {},
    }
    if args.notes is not None:
        doc["notes"] = args.notes.read_text().splitlines()
    if args.from_runs is not None:
        runs = json.loads(args.from_runs.read_text())
        doc["repeats"] = max(len(v) for v in runs.values())
        doc["run"] = "from " + args.from_runs.name
        doc["machine"] = f"{os.cpu_count()} cores (the load: see the notes)"
        doc["wsclean"] = summarise_wsclean(runs, args.wsclean_baseline)
        doc["wsclean_baseline"] = args.wsclean_baseline
        doc["wsclean_size"] = args.wsclean_size
        write(doc, args.out)
        return 0
    with tempfile.TemporaryDirectory(prefix="levers_") as tmp:
        work = Path(tmp)
        if "conversion" in only and args.raw:
            print("conversion read", flush=True)
            doc["levers"]["conversion read (read_group, 16 subbands)"] = (
                lever_conversion(args.raw, args.old_ref, args.repeats)
            )
        if "flagging" in only and args.ms:
            print("flagging", flush=True)
            doc["levers"]["flagging (flag_ms)"] = lever_flagging(
                args.ms, work, args.old_ref, args.repeats
            )
        if "derived" in only and args.image:
            print("derived maps", flush=True)
            doc["levers"]["PB + rms + pbcor maps + PNGs"] = lever_derived(
                args.image, work, args.old_ref, args.repeats
            )
        if "photometry" in only and args.image and args.truth:
            print("photometry", flush=True)
            doc["levers"][f"photometry of {args.n_sources} positions"] = (
                lever_photometry(
                    args.image, args.truth, args.old_ref, args.repeats, args.n_sources
                )
            )
        if "wsclean" in only and args.calibrated_ms and args.sky:
            print("wsclean levers", flush=True)
            doc["wsclean"] = lever_wsclean(
                args.calibrated_ms,
                args.sky,
                work,
                args.repeats,
                args.wsclean_size,
                tuple(args.wsclean_levers),
                progress=args.out.with_suffix(".runs.json"),
                baseline=args.wsclean_baseline,
            )
            doc["wsclean_baseline"] = args.wsclean_baseline
            doc["wsclean_size"] = args.wsclean_size
    for name, r in {**doc["levers"], **doc.get("wsclean", {})}.items():
        print(name, r)
    write(doc, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
