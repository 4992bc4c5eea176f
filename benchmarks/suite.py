"""The full benchmark: every stage at DSA-110 size, ratios, scaling, report.

``python -m benchmarks`` (or ``dsa110-contimg bench``) runs it; see the
README section "Benchmarks" for how to read the output. Each stage runs in a
fresh process (`benchmarks._measure`); the simulated raw data and the hour of
synthetic images are cached in ``benchmarks/.cache`` between runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import _stages as st
from benchmarks._measure import StageResult, measure
from benchmarks._report import write_report

__all__ = ["FULL", "QUICK", "Size", "main", "run"]

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


@dataclass(frozen=True, slots=True)
class Size:
    """Data sizes of one benchmark flavour."""

    name: str
    n_antennas: int
    n_chan_per_subband: int
    n_times: int
    chan_average: int
    image_size: int
    cell_arcsec: float
    n_photometry_sources: int
    n_lc_epochs: int
    mosaic_groups: int
    mosaic_image_size: int
    mosaic_cell_arcsec: float
    calibration_uvrange: str | None  # None: the production value
    scaling_antennas: tuple[int, ...]
    scaling_chan_per_subband: tuple[int, ...]
    scaling_image_size: tuple[int, ...]
    scaling_sources: tuple[int, ...]

    @property
    def observed_s(self) -> float:
        from dsa110_contimg.telescope import dsa110

        return self.n_times * dsa110.INTEGRATION_TIME_S


FULL = Size(
    name="full",
    n_antennas=96,
    n_chan_per_subband=48,
    n_times=24,
    chan_average=8,
    image_size=4800,
    cell_arcsec=3.0,
    n_photometry_sources=10_000,
    n_lc_epochs=10,
    mosaic_groups=12,
    mosaic_image_size=4800,
    mosaic_cell_arcsec=3.0,
    calibration_uvrange=None,
    scaling_antennas=(24, 48, 96),
    scaling_chan_per_subband=(16, 32, 48),
    scaling_image_size=(1200, 2400, 4800),
    scaling_sources=(1_000, 10_000, 100_000),
)

QUICK = Size(
    name="quick",
    n_antennas=24,
    n_chan_per_subband=8,
    n_times=6,
    chan_average=4,
    image_size=768,  # 12" samples the 24-antenna beam (~60" x 38") 3 times,
    cell_arcsec=12.0,  # the fast profile's 24" still 1.6 times
    n_photometry_sources=1000,
    n_lc_epochs=3,
    mosaic_groups=3,
    mosaic_image_size=1024,
    mosaic_cell_arcsec=5.0,
    calibration_uvrange="",
    scaling_antennas=(12, 18, 24),
    scaling_chan_per_subband=(4, 8, 16),
    scaling_image_size=(384, 576, 768),
    scaling_sources=(100, 1_000, 3_000),
)

# Imaging parameters both backends are compared with: no auto-masking, whose
# CASA implementation (auto-multithresh) alone takes ~50 min at full size.
MATCHED = {"imaging.auto_mask_sigma": None, "imaging.auto_threshold_sigma": 3.0}
# WSClean's default gridder (w-stacking), without the w-gridder's accuracy
W_STACKING = {"imaging.gridder": "wproject", "imaging.wgridder_accuracy": None}
# The imaging parameters when issue 19 was filed (major-cycle gain 0.8, minor
# loop gain 0.1, niter 5000, w-stacking), run on the same MS for the
# side-by-side ratio.
BEFORE_ISSUE_19 = {
    "imaging.mgain": 0.8,
    "imaging.gain": 0.1,
    "imaging.niter": 5000,
    **W_STACKING,
}
BEFORE_ISSUE_19_KEY = (
    "imaging, before issue 19 (mgain 0.8, gain 0.1, niter 5000, w-stacking)"
)
# Production without one of issue 19's imaging levers at a time (part "levers").
WITHOUT_LEVER = {
    "imaging, without the gridder lever (w-stacking)": W_STACKING,
    "imaging, without the major-cycle lever (mgain 0.8)": {"imaging.mgain": 0.8},
    "imaging, without the minor-loop lever (gain 0.1, niter 5000)": {
        "imaging.gain": 0.1,
        "imaging.niter": 5000,
    },
}
SKIPPABLE = (
    "pyuvdata",
    "tclean",
    "floor",
    "reproject",
    "scaling",
    "mosaic",
    "applycal",
    "levers",
    "warm",
)


def _imaging_overrides(size: Size, image_size: int | None = None) -> dict[str, Any]:
    n = image_size or size.image_size
    return {
        "imaging.image_size": [n, n],
        "imaging.cell_size": f"{size.cell_arcsec}arcsec",
        "imaging.write_png": True,
    }


def _raw(cache: Path, size: Size, *, n_antennas=None, n_chan=None) -> tuple[Path, bool]:
    n_antennas = n_antennas or size.n_antennas
    n_chan = n_chan or size.n_chan_per_subband
    path = cache / f"raw_{n_antennas}a_{n_chan}c_{size.n_times}t"
    return path, path.exists()


class Runner:
    """Runs stages, keeps their results in order and prints progress."""

    def __init__(self, size: Size, cache: Path, work: Path, skip: set[str]) -> None:
        self.size, self.cache, self.work, self.skip = size, cache, work, skip
        self.stages: dict[str, StageResult] = {}
        self.t_start = time.perf_counter()

    def __call__(
        self, key: str, fn, *, accuracy_of: str | None = None, **kwargs: Any
    ) -> StageResult:
        """Run and record one stage; ``accuracy_of`` (an imaging stage's sky
        truth CSV) adds the image's accuracy on the injected sources, measured
        here, after the stage and outside its timing."""
        elapsed = time.perf_counter() - self.t_start
        print(f"[{elapsed / 60:5.1f} min] {key}", flush=True)
        result = measure(key, fn, progress=None, **kwargs)
        if accuracy_of is not None:
            result.info.update(st.image_accuracy(result.info["image"], accuracy_of))
        print(
            f"           {result.wall_s:8.1f} s wall {result.cpu_s:8.1f} s CPU "
            f"{result.peak_rss_mb:7.0f} MB peak  {_brief(result.info)}",
            flush=True,
        )
        self.stages[key] = result
        return result

    def raw(self, *, n_antennas=None, n_chan=None, label: str) -> Path:
        path, cached = _raw(self.cache, self.size, n_antennas=n_antennas, n_chan=n_chan)
        if not cached:
            self(
                f"simulate {label}",
                st.simulate,
                raw_dir=str(path),
                n_antennas=n_antennas or self.size.n_antennas,
                n_chan_per_subband=n_chan or self.size.n_chan_per_subband,
                n_times=self.size.n_times,
            )
        return path


def _brief(info: dict[str, Any]) -> str:
    keep = {k: v for k, v in info.items() if not isinstance(v, (list, dict))}
    keep = {
        k: v for k, v in keep.items() if not (isinstance(v, str) and v.startswith("/"))
    }
    return ", ".join(f"{k}={v}" for k, v in list(keep.items())[:6])


def run(
    size: Size, *, cache: Path, work: Path, skip: set[str], rounds: int = 1
) -> dict[str, Any]:
    """Run every stage at ``size``; return the results document.

    The group path (conversion to photometry, production and `fast` profile)
    runs ``rounds`` times on the same raw files; the document's group path is
    the median round.
    """
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    cache.mkdir(parents=True, exist_ok=True)
    git = git_state()  # the code being measured, before anything runs
    r = Runner(size, cache, work, skip)
    imaging = _imaging_overrides(size)

    r(
        "disk speed",
        st.disk_speed,
        directory=str(work),
        size_mb=2048 if size is FULL else 256,
    )
    r(CPU_REFERENCE_KEY, st.cpu_reference)
    raw = r.raw(label="main group")
    sky_csv = str(raw / "truth" / "sky.csv")

    # conversion: ours without averaging vs plain pyuvdata, then the production one
    r(
        "conversion (no averaging)",
        st.convert_ours,
        raw_dir=str(raw),
        out_dir=str(work / "ms_full_res"),
        chan_average=1,
    )
    if "pyuvdata" not in skip:
        r(
            "conversion, pyuvdata read + write_ms",
            st.convert_pyuvdata,
            raw_dir=str(raw),
            out_dir=str(work / "ms_pyuvdata"),
        )
    shutil.rmtree(work / "ms_full_res", ignore_errors=True)
    shutil.rmtree(work / "ms_pyuvdata", ignore_errors=True)
    conv = r(
        "conversion",
        st.convert_ours,
        raw_dir=str(raw),
        out_dir=str(work / "ms"),
        chan_average=size.chan_average,
    )
    ms = conv.info["ms"]

    # calibration: flag and apply per group; the solve once per calibrator transit
    r("flagging", st.flag, ms=ms)
    uvrange = size.calibration_uvrange
    solve = r(
        "calibration solve",
        st.solve,
        ms=ms,
        sky_csv=sky_csv,
        table_prefix=str(work / "cal" / "bench"),
        **({} if uvrange is None else {"uvrange": uvrange}),
    )
    if "applycal" not in skip:
        # CASA's applycal, same tables and the same CORRECTED_DATA, before the
        # configured engine rewrites it
        r(
            "calibration apply, applycal",
            st.apply,
            ms=ms,
            tables=solve.info["tables"],
            engine="applycal",
        )
    r("calibration apply", st.apply, ms=ms, tables=solve.info["tables"])

    # imaging, primary-beam correction and photometry: the production
    # parameters, then the `fast` profile on the same calibrated MS
    pickle_path = str(work / "product.pickle")
    _, photometry = _image_to_photometry(r, 1, "", ms, imaging, sky_csv, work)
    table_path = photometry.info["table"]
    fast = fast_profile_overrides(size)
    _image_to_photometry(r, 1, FAST, ms, fast, sky_csv, work)
    if "warm" not in skip:  # the same six stages as a streaming worker runs them
        r(
            WARM_KEY,
            st.group_path_warm,
            raw_dir=str(raw),
            tables=solve.info["tables"],
            work_dir=str(work / "warm"),
            chan_average=size.chan_average,
            sky_csv=sky_csv,
            n_sources=size.n_photometry_sources,
            profiles={
                "production": (PROFILES["production"], imaging),
                "fast": (PROFILES["fast"], fast),
            },
            warm_rounds=rounds,
        )
        shutil.rmtree(work / "warm", ignore_errors=True)
    r(
        "light-curve ingest",
        st.lightcurve_ingest,
        table_path=table_path,
        store_dir=str(work / "lightcurves"),
        n_epochs=size.n_lc_epochs,
    )

    # imaging alternatives on the same calibrated MS
    matched = {**imaging, **MATCHED}
    before = {BEFORE_ISSUE_19_KEY: BEFORE_ISSUE_19}
    for n, (key, lever) in enumerate(
        {**({} if "levers" in skip else WITHOUT_LEVER), **before}.items()
    ):
        r(
            key,
            st.image,
            ms=ms,
            images_dir=str(work / f"images_lever_{n}"),
            overrides={**imaging, **lever},
            pickle_to=pickle_path,
            catalogue_csv=sky_csv,
            accuracy_of=sky_csv,
        )
    r(
        "imaging, WSClean matched",
        st.image,
        ms=ms,
        images_dir=str(work / "images_wsclean"),
        overrides={**matched, "imaging.backend": "wsclean"},
        pickle_to=pickle_path,
        accuracy_of=sky_csv,
    )
    if "tclean" not in skip:
        r(
            "imaging, tclean matched",
            st.image,
            accuracy_of=sky_csv,
            ms=ms,
            images_dir=str(work / "images_tclean"),
            overrides={**matched, "imaging.backend": "tclean"},
            pickle_to=pickle_path,
        )
    if "floor" not in skip:
        r(
            "gridding floor (ducc0)",
            st.gridding_floor,
            ms=ms,
            image_size=size.image_size,
            cell_arcsec=size.cell_arcsec,
        )

    if "mosaic" not in skip:
        hour = cache / f"hour_{size.mosaic_groups}x{size.mosaic_image_size}"
        if not hour.exists():
            r(
                "synthesise hour of images",
                st.synthesise_hour_images,
                directory=str(hour),
                shape=[size.mosaic_image_size] * 2,
                cell_arcsec=size.mosaic_cell_arcsec,
                n_groups=size.mosaic_groups,
            )
        mos = r(
            "mosaic of one hour",
            st.mosaic_ours,
            images_dir=str(hour),
            mosaics_dir=str(work / "mosaics"),
            method="fast",
        )
        noise = mos.info["noise"]
        mos.info.update(st.mosaic_accuracy(str(hour), mos.info["mosaic"], noise))
        if "reproject" not in skip:
            rac = r(
                "mosaic, reproject_and_coadd",
                st.mosaic_reproject_and_coadd,
                images_dir=str(hour),
                reference_mosaic=mos.info["mosaic"],
                out_path=str(work / "mosaics" / "reproject_and_coadd.fits"),
            )
            rac.info.update(st.mosaic_accuracy(str(hour), rac.info["mosaic"], noise))
            rac.info.update(
                st.mosaic_difference(mos.info["mosaic"], rac.info["mosaic"], noise)
            )

    for k in range(2, rounds + 1):  # the group path again, both profiles
        out = work / f"round_{k}"
        conv_k = r(
            round_key("conversion", k),
            st.convert_ours,
            raw_dir=str(raw),
            out_dir=str(out / "ms"),
            chan_average=size.chan_average,
        )
        ms_k = conv_k.info["ms"]
        r(round_key("flagging", k), st.flag, ms=ms_k)
        r(
            round_key("calibration apply", k),
            st.apply,
            ms=ms_k,
            tables=solve.info["tables"],
        )
        _image_to_photometry(r, k, "", ms_k, imaging, sky_csv, out)
        _image_to_photometry(r, k, FAST, ms_k, fast, sky_csv, out)
        shutil.rmtree(out, ignore_errors=True)

    scaling = {} if "scaling" in skip else _scaling(r, size, imaging, sky_csv)
    return _document(
        size, r.stages, scaling, skip, time.perf_counter() - r.t_start, git, rounds
    )


FAST = ", fast profile"
CPU_REFERENCE_KEY = "cpu reference"  # the machine's speed, see st.cpu_reference
WARM_KEY = "group path, warm worker (groups after the first, one process)"
# the key of runs before the warm rounds (one warm group), read by --report
_OLD_WARM_KEY = "group path, warm worker (the second group in one process)"
PROFILES = {"production": "", "fast": FAST}  # profile: suffix of its stage keys
FAST_PROFILE = REPO / "config" / "profiles" / "fast.yaml"


def round_key(name: str, k: int) -> str:
    """The stage key of ``name`` in round ``k`` of the group path."""
    return name if k == 1 else f"{name} (round {k})"


def fast_profile_overrides(size: Size) -> dict[str, Any]:
    """`config/profiles/fast.yaml` at this benchmark size, as overrides.

    The profile's pixel is ``f`` times production's; at a benchmark size the
    field stays the benchmark's and the pixel grows by the same ``f``
    (4800^2 x 3" becomes 2400^2 x 6"). Every other key of the file is taken
    as it is.
    """
    import astropy.units as u
    import yaml

    profile = yaml.safe_load(FAST_PROFILE.read_text())
    overrides = {
        f"{section}.{key}": value
        for section, values in profile.items()
        for key, value in values.items()
    }
    production = st._config({}).imaging
    factor = u.Quantity(overrides["imaging.cell_size"]).to_value(u.arcsec) / (
        u.Quantity(production.cell_size).to_value(u.arcsec)
    )
    n = round(size.image_size / factor)
    return {
        **overrides,
        "imaging.image_size": [n, n],
        "imaging.cell_size": f"{size.cell_arcsec * factor:g}arcsec",
        "imaging.write_png": True,
    }


def _image_to_photometry(
    r: Runner,
    k: int,
    suffix: str,
    ms: str,
    overrides: dict[str, Any],
    sky_csv: str,
    work: Path,
) -> tuple[StageResult, StageResult]:
    """Imaging, primary-beam correction and photometry of one calibrated MS.

    The stage keys carry the profile's ``suffix`` and the round ``k``; each
    image's accuracy on the injected sources is measured outside the timing.
    """
    tag = (suffix.removeprefix(", ").replace(" ", "_") or "production") + f"_{k}"
    pickle_path = str(work / f"product_{tag}.pickle")
    img = r(
        round_key(f"imaging{suffix}", k),
        st.image,
        accuracy_of=sky_csv,
        ms=ms,
        images_dir=str(work / f"images_{tag}"),
        overrides=overrides,
        pickle_to=pickle_path,
        catalogue_csv=sky_csv,
    )
    r(
        round_key(f"primary-beam correction{suffix}", k),
        st.derived_maps,
        product_pickle=pickle_path,
        overrides=overrides,
    )
    table_path = str(work / f"photometry_{tag}.csv")
    photometry = r(
        round_key(f"photometry{suffix}", k),
        st.photometry,
        image_path=img.info["image"],
        sky_csv=sky_csv,
        n_sources=r.size.n_photometry_sources,
        table_path=table_path,
    )
    # the accuracy on the injected sources, outside the stage's timing
    photometry.info.update(st.photometry_accuracy(table_path, sky_csv))
    photometry.info["table"] = table_path
    return img, photometry


def _scaling(
    r: Runner, size: Size, imaging: dict[str, Any], sky_csv: str
) -> dict[str, Any]:
    """Conversion, flagging and imaging vs antennas and channels; imaging vs
    size; photometry vs the number of catalogue sources."""
    main = {k: r.stages[k] for k in ("conversion", "flagging", "imaging")}
    points: dict[str, list[dict[str, Any]]] = {
        "antennas": [],
        "channels": [],
        "image_size": [],
        "sources": [],
    }

    def record(axis: str, value: int, results: dict[str, StageResult]) -> None:
        points[axis].append(
            {"value": value, **{k: round(v.wall_s, 3) for k, v in results.items()}}
        )

    for axis, values in (
        ("antennas", size.scaling_antennas),
        ("channels", size.scaling_chan_per_subband),
    ):
        for value in values:
            n_ant = value if axis == "antennas" else size.n_antennas
            n_chan = value if axis == "channels" else size.n_chan_per_subband
            if (n_ant, n_chan) == (size.n_antennas, size.n_chan_per_subband):
                record(axis, value if axis == "antennas" else 16 * value, main)
                continue
            label = f"{n_ant} antennas x {16 * n_chan} channels"
            raw = r.raw(n_antennas=n_ant, n_chan=n_chan, label=label)
            out = r.work / f"scale_{n_ant}_{n_chan}"
            conv = r(
                f"conversion, {label}",
                st.convert_ours,
                raw_dir=str(raw),
                out_dir=str(out / "ms"),
                chan_average=size.chan_average,
            )
            flag = r(f"flagging, {label}", st.flag, ms=conv.info["ms"])
            img = r(
                f"imaging, {label}",
                st.image,
                ms=conv.info["ms"],
                images_dir=str(out / "images"),
                overrides=imaging,
                pickle_to=str(out / "p.pickle"),
                catalogue_csv=str(raw / "truth" / "sky.csv"),
            )
            record(
                axis,
                value if axis == "antennas" else 16 * value,
                {"conversion": conv, "flagging": flag, "imaging": img},
            )
            shutil.rmtree(out, ignore_errors=True)
    ms = r.stages["conversion"].info["ms"]
    for n in size.scaling_image_size:
        if n == size.image_size:
            record("image_size", n, {"imaging": main["imaging"]})
            continue
        img = r(
            f"imaging, {n} x {n} pixels",
            st.image,
            ms=ms,
            images_dir=str(r.work / f"images_{n}"),
            overrides=_imaging_overrides(size, n),
            pickle_to=str(r.work / "p.pickle"),
            catalogue_csv=sky_csv,
        )
        record("image_size", n, {"imaging": img})
    image = r.stages["imaging"].info["image"]
    for n in size.scaling_sources:
        if n == size.n_photometry_sources:
            record("sources", n, {"photometry": r.stages["photometry"]})
            continue
        phot = r(
            f"photometry, {n} sources",
            st.photometry,
            image_path=image,
            sky_csv=sky_csv,
            n_sources=n,
            table_path=str(r.work / f"photometry_{n}.csv"),
        )
        record("sources", n, {"photometry": phot})
    fits = {}
    for axis, rows in points.items():
        rows.sort(key=lambda row: row["value"])
        fits[axis] = {}
        for stage in [k for k in rows[0] if k != "value"]:
            x = np.array([row["value"] for row in rows], dtype=float)
            y = np.array([row[stage] for row in rows], dtype=float)
            fits[axis][stage] = fit_power_law(x, y)
            if axis == "antennas":
                fit = fits[axis][stage]
                fit["power_law_predicted_s"] = round(
                    fit["a"] * PREDICT_ANTENNAS ** fit["b"], 1
                )
                fit.update(fit_baselines(x, y, PREDICT_ANTENNAS))
    return {"points": points, "fits": fits, "predict_antennas": PREDICT_ANTENNAS}


PREDICT_ANTENNAS = 2000  # a DSA-2000-sized array


def fit_baselines(x: np.ndarray, y: np.ndarray, n_predict: int) -> dict[str, Any]:
    """Fit ``y = c0 + c1 * n(n-1)/2`` (a fixed cost plus a cost per baseline)
    over antenna counts ``x``, non-negative, and predict at ``n_predict``.

    Work on visibilities grows with the baselines, so this extrapolates
    where a power law fitted over 24-96 antennas (where fixed costs weigh
    most) cannot; both are reported.
    """
    from scipy.optimize import nnls

    x, y = np.asarray(x, float), np.asarray(y, float)
    design = np.column_stack([np.ones_like(x), x * (x - 1) / 2])
    (c0, c1), _ = nnls(design, y)
    pred = c0 + c1 * n_predict * (n_predict - 1) / 2
    resid = y - design @ np.array([c0, c1])
    return {
        "fixed_s": round(float(c0), 3),
        "per_baseline_s": float(c1),
        "rms_residual_s": round(float(np.sqrt(np.mean(resid**2))), 3),
        f"predicted_{n_predict}_antennas_s": round(float(pred), 1),
    }


def fit_power_law(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Least-squares fit of ``y = a * x**b`` in log-log space.

    Returns ``a``, ``b`` and ``rms_log_residual`` (natural log).
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = (x > 0) & (y > 0)
    if ok.sum() < 2:
        msg = "a power-law fit needs at least two positive points"
        raise ValueError(msg)
    b, log_a = np.polyfit(np.log(x[ok]), np.log(y[ok]), 1)
    resid = np.log(y[ok]) - (log_a + b * np.log(x[ok]))
    return {
        "a": float(np.exp(log_a)),
        "b": round(float(b), 3),
        "rms_log_residual": round(float(np.sqrt(np.mean(resid**2))), 3),
    }


# ------------------------------------------------------------------ document

GROUP_PATH = (
    "conversion",
    "flagging",
    "calibration apply",
    "imaging",
    "primary-beam correction",
    "photometry",
)


def _document(
    size: Size,
    stages: dict[str, StageResult],
    scaling: dict[str, Any],
    skip: set[str],
    total_s: float,
    git: dict[str, Any],
    rounds: int = 1,
) -> dict[str, Any]:
    paths = group_paths(stages, size.observed_s, rounds)
    doc: dict[str, Any] = {
        "benchmark": "dsa110-contimg",
        "size": size.name,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "versions": versions(),
        "git": git,
        "data": {
            "n_antennas": size.n_antennas,
            "n_channels": 16 * size.n_chan_per_subband,
            "n_times": size.n_times,
            "observed_s": round(size.observed_s, 1),
            "chan_average": size.chan_average,
            "image": f"{size.image_size}^2 pixels of {size.cell_arcsec} arcsec",
            "n_photometry_sources": size.n_photometry_sources,
            "mosaic": f"{size.mosaic_groups} images of {size.mosaic_image_size}^2",
        },
        "skipped": sorted(skip),
        "total_wall_s": round(total_s, 1),
        "stages": {k: v.to_json() for k, v in stages.items()},
        "group_path": paths["production"],
        "group_paths": paths,
        "profiles": profile_accuracy(stages),
        "ratios": ratios(stages),
        "scaling": scaling,
    }
    doc["explanations"] = explanations(doc)
    return doc


def group_paths(
    stages: dict[str, StageResult], observed_s: float, rounds: int
) -> dict[str, dict[str, Any]]:
    """Each profile's group path: every round's sum of stage times, the median.

    Conversion, flagging and the calibration apply are shared by the
    profiles (the same stage runs); imaging, primary-beam correction and
    photometry are each profile's own. A profile whose stages did not all
    run is left out.
    """
    out: dict[str, dict[str, Any]] = {}
    for profile, suffix in PROFILES.items():
        names = [*GROUP_PATH[:3], *(f"{n}{suffix}" for n in GROUP_PATH[3:])]
        per_round = []
        for k in range(1, rounds + 1):
            keys = [round_key(n, k) for n in names]
            if not all(key in stages for key in keys):
                break
            group = [stages[key] for key in keys]
            wall = sum(s.wall_s for s in group)
            per_round.append(
                {
                    "wall_s": round(wall, 1),
                    "cpu_s": round(sum(s.cpu_s for s in group), 1),
                    "peak_rss_mb": round(max(s.peak_rss_mb for s in group), 0),
                    "real_time_factor": round(wall / observed_s, 3),
                    "stages_s": {
                        n: round(s.wall_s, 2) for n, s in zip(names, group, strict=True)
                    },
                }
            )
        if not per_round:
            continue
        walls = [p["wall_s"] for p in per_round]
        median_s = float(np.median(walls))
        warm_rounds = _warm_rounds(stages)
        reference = stages.get(CPU_REFERENCE_KEY)
        out[profile] = {
            "stages": names,
            "rounds": per_round,
            "wall_s": round(median_s, 1),
            "cpu_s": round(float(np.median([p["cpu_s"] for p in per_round])), 1),
            "peak_rss_mb": max(p["peak_rss_mb"] for p in per_round),
            "real_time_factor": round(median_s / observed_s, 3),
            # the median group path in units of this machine's CPU reference
            **(
                {"reference_units": round(median_s / reference.info["reference_s"], 1)}
                if reference is not None and reference.info.get("reference_s")
                else {}
            ),
            "stage_median_s": {
                n: round(float(np.median([p["stages_s"][n] for p in per_round])), 2)
                for n in names
            },
        }
        warm = [w for w in warm_rounds if all(n in w for n in names)]
        if warm:
            sums = [sum(w[n] for n in names) for w in warm]
            warm_s = float(np.median(sums))
            peaks = _warm_peaks(stages)
            out[profile]["warm_worker"] = {
                "wall_s": round(warm_s, 1),
                "real_time_factor": round(warm_s / observed_s, 3),
                "rounds_s": [round(s, 1) for s in sums],
                **({"pass_peak_rss_mb": peaks} if peaks else {}),
                # each stage's median over the warm rounds
                "stages_s": {
                    n: round(float(np.median([w[n] for w in warm])), 3) for n in names
                },
            }
    return out


def _warm_rounds(stages: dict[str, StageResult]) -> list[dict[str, float]]:
    """The warm worker's passes after the first (one, in runs before
    ``warm_rounds_s``): each a dict of stage wall times."""
    key = WARM_KEY if WARM_KEY in stages else _OLD_WARM_KEY
    if key not in stages:
        return []
    info = stages[key].info
    return list(info.get("warm_rounds_s") or [info["warm_s"]])


def _warm_peaks(stages: dict[str, StageResult]) -> list[float]:
    """The warm worker process's own peak memory in each pass, MB (runs
    before ``pass_peak_rss_mb``, or where it could not be reset: none)."""
    info = stages[WARM_KEY].info if WARM_KEY in stages else {}
    return [p for p in info.get("pass_peak_rss_mb") or () if p is not None]


def profile_accuracy(stages: dict[str, StageResult]) -> dict[str, dict[str, Any]]:
    """Each profile's accuracy gates (round 1): the image and its photometry.

    ``residual_rms_ratio`` is the profile's residual rms over production's on
    the same data (the issue's "within 5%" gate).
    """
    out: dict[str, dict[str, Any]] = {}
    for profile, suffix in PROFILES.items():
        image = stages.get(f"imaging{suffix}")
        phot = stages.get(f"photometry{suffix}")
        if image is None or "n_recovered" not in image.info:
            continue
        info = image.info
        out[profile] = {
            "image": f"{info['image_size'][0]}^2 x {info['cell_size']}",
            "n_recovered": info["n_recovered"],
            "n_injected": info["n_injected"],
            "median_abs_flux_error_pb_ge_0p5": info["median_abs_flux_error_pb_ge_0p5"],
            "max_offset_beams": info["max_offset_beams"],
            "residual_rms_jy": info.get("residual_rms_jy"),
            "photometry_median_abs_flux_error_pb_ge_0p5": (
                phot.info.get("median_abs_flux_error_pb_ge_0p5") if phot else None
            ),
            "pulls": info.get("pulls"),
            "dirty_equivalent": info.get("dirty_equivalent"),
        }
    base = out.get("production", {}).get("residual_rms_jy")
    for values in out.values():
        rms = values.get("residual_rms_jy")
        values["residual_rms_ratio"] = (
            round(rms / base, 4) if rms is not None and base else None
        )
    return out


def _wall(stages: dict[str, StageResult], key: str) -> float | None:
    return stages[key].wall_s if key in stages else None


def ratios(stages: dict[str, StageResult]) -> dict[str, dict[str, Any]]:
    """The side-by-side comparisons (alternative / ours, and ours / floor)."""
    out: dict[str, dict[str, Any]] = {}

    def pair(name: str, ours: str, other: str, what: str, *, floor=None) -> None:
        a = _wall(stages, ours)
        b = floor if floor is not None else _wall(stages, other)
        if a is None or b is None or b <= 0:
            return
        out[name] = {
            "ours": ours,
            "ours_s": round(a, 2),
            "alternative": other,
            "alternative_s": round(b, 3),
            "ratio": round(b / a, 3) if floor is None else round(a / b, 2),
            "meaning": what,
        }

    pair(
        "conversion_vs_pyuvdata",
        "conversion (no averaging)",
        "conversion, pyuvdata read + write_ms",
        "pyuvdata time / ours (same output, no averaging): >1 means ours is faster",
    )
    pair(
        "apply_vs_applycal",
        "calibration apply",
        "calibration apply, applycal",
        "applycal time / ours (same CORRECTED_DATA and FLAG to 1e-6)",
    )
    pair(
        "imaging_vs_before_issue_19",
        "imaging",
        BEFORE_ISSUE_19_KEY,
        "time with the imaging parameters before issue 19 / production's, same MS",
    )
    pair(
        "fast_profile_vs_production_imaging",
        f"imaging{FAST}",
        "imaging",
        "production imaging time / the fast profile's (same field, 2x pixels)",
    )
    pair(
        "wsclean_vs_tclean",
        "imaging, WSClean matched",
        "imaging, tclean matched",
        "tclean time / WSClean time, matched parameters",
    )
    pair(
        "wstacking_vs_wgridder",
        "imaging",
        "imaging, without the gridder lever (w-stacking)",
        "WSClean's w-stacking time / production's w-gridder (-use-wgridder "
        "-wgridder-accuracy 1e-3), production parameters otherwise: >1 means "
        "the w-gridder is faster",
    )
    pair(
        "mosaic_vs_reproject_and_coadd",
        "mosaic of one hour",
        "mosaic, reproject_and_coadd",
        "reproject_and_coadd time / ours",
    )
    disk = stages.get("disk speed")
    if disk:
        for key in ("conversion (no averaging)", "conversion"):
            if key in stages:
                floor = conversion_floor_s(stages[key].info, disk.info)
                name = (
                    "conversion_vs_io_floor"
                    if key == "conversion"
                    else "conversion_no_avg_vs_io_floor"
                )
                pair(
                    name,
                    key,
                    "reading the raw files + writing the MS at the disk's speed",
                    "ours / I/O floor",
                    floor=floor,
                )
    floor = stages.get("gridding floor (ducc0)")
    if floor:
        grid = floor.info["gridding_s"]
        pair(
            "imaging_vs_gridding_floor",
            "imaging",
            "one ducc0.wgridder pass",
            "ours / one gridding pass",
            floor=grid,
        )
        pair(
            "matched_imaging_vs_gridding_floor",
            "imaging, WSClean matched",
            "one ducc0.wgridder pass",
            "ours / one gridding pass",
            floor=grid,
        )
    return out


def conversion_floor_s(conv: dict[str, Any], disk: dict[str, Any]) -> float:
    """Time to read the raw files cold and write the MS at the measured speeds."""
    return conv["raw_mb"] / disk["read_mb_s"] + conv["ms_mb"] / disk["write_mb_s"]


def explanations(doc: dict[str, Any]) -> list[str]:
    """Why a stage is more than 2x its floor, from the measured facts."""
    notes = []
    stages, r = doc["stages"], doc["ratios"]
    conv = r.get("conversion_vs_io_floor")
    if conv and conv["ratio"] > 2:
        info = stages["conversion"]["info"]
        steps = ", ".join(
            f"{k} {info[f'{k}_s']} s"
            for k in ("read", "phase", "write")
            if f"{k}_s" in info
        )
        notes.append(
            f"Conversion takes {conv['ratio']:.1f}x its I/O floor "
            f"({conv['alternative_s']:.1f} s to read {info['raw_mb']:.0f} MB of raw "
            f"files cold and write the {info['ms_mb']:.0f} MB MS). Its steps: "
            f"{steps}. The read is most of it: one reader process per core "
            "reads each subband's visibility arrays directly (h5py), flags "
            "corrupt values and averages on read with pyuvdata's kernel, while "
            "this process reads the first header and loads the IERS tables; a "
            "fresh process also pays the imports (pyuvdata, casacore, astropy), "
            "which a streaming worker pays once, not per group. What remains is "
            "the cold read of the raw files and a few passes over each "
            "visibility (amplitude, averaging) on 2 cores. Without averaging, "
            "the same code is compared with the "
            "plain pyuvdata read + write_ms (side-by-side table)."
        )
    img = r.get("imaging_vs_gridding_floor")
    if img and img["ratio"] > 2:
        info = stages["imaging"]["info"]
        major = info.get("major_iterations")
        passes = (
            f" WSClean's own split: inversion {info['inversion_s']} s and "
            f"prediction {info['prediction_s']} s over {major} major cycles, "
            f"about {info['inversion_s'] / major:.1f} s per gridding pass against "
            f"{img['alternative_s']:.1f} s for the ducc0 pass; deconvolution "
            f"{info['deconvolution_s']} s."
            if "inversion_s" in info and major
            else ""
        )
        wg = r.get("wstacking_vs_wgridder")
        wgridder = (
            f" WSClean's default w-stacking takes {wg['ratio']}x the time of the "
            "w-gridder (the ducc0 kernel, at 1e-3) that production uses: the "
            "kernel is not the main cost."
            if wg
            else ""
        )
        notes.append(
            f"Imaging takes {img['ratio']:.0f}x one gridding pass. A clean is "
            f"{major if major is not None else 'several'} major cycles, each a "
            "gridding (inversion) and a degridding (prediction) pass over every "
            "visibility, plus the minor cycles on the "
            f"{doc['data']['image']} image and writing the FITS products."
            f"{passes}{wgridder} What would close it: a smaller image (imaging "
            "time grows about linearly with the image side, see Scaling; the "
            "4800-pixel image is about 2.5x the primary beam's half-power width, "
            "and DSA110.md's 2400 x 6 arcsec alternative covers the same field), "
            "fewer major cycles (a deeper auto-threshold, at the cost of clean "
            "depth), and baseline-dependent averaging of the short baselines."
        )
    return notes


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "node": platform.node(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "memory_gib": round(mem_gib, 1),
        "load_average_at_start": [round(v, 2) for v in os.getloadavg()],
    }


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in (
        "dsa110-contimg",
        "numpy",
        "astropy",
        "pyuvdata",
        "python-casacore",
        "casatools",
        "casatasks",
        "reproject",
        "photutils",
        "ducc0",
        "pyarrow",
        "duckdb",
    ):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    try:
        from dsa110_contimg.tools.wsclean import WscleanImager

        out["wsclean"] = WscleanImager().version()
    except Exception as err:  # reported, not fatal
        out["wsclean"] = f"unavailable ({err})"
    return out


def git_state() -> dict[str, Any]:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, check=False
        ).stdout.strip()

    # not git(): its strip() would take the first line's leading status column
    # (" M README.md" became "EADME.md")
    changed = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.splitlines()
    return {
        "commit": git("rev-parse", "HEAD"),
        "dirty": bool(changed),
        # earlier results rewritten by a run do not change the code measured
        "changed_files": [line[3:] for line in changed],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Benchmark every pipeline stage at full DSA-110 size; "
        "write JSON, Markdown and PNG results.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="testing-size data (a few minutes), results under results/quick",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="results directory (default benchmarks/results[/quick])",
    )
    parser.add_argument(
        "--cache",
        type=Path,
        default=HERE / ".cache",
        help="cache of simulated data (default benchmarks/.cache)",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="scratch directory (default <cache>/work_<size>; emptied at start)",
    )
    parser.add_argument(
        "--skip",
        default="",
        help=f"comma-separated parts to leave out: {', '.join(SKIPPABLE)}",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run the group path (both profiles) this many times; the report "
        "gives every round and the median (issue 19's acceptance: 3)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the scratch directory (MSs, images)"
    )
    parser.add_argument(
        "--report",
        type=Path,
        default=None,
        metavar="JSON",
        help="only re-render benchmark.md and .png beside an existing benchmark.json",
    )
    args = parser.parse_args(argv)
    if args.report is not None:
        doc = json.loads(args.report.read_text())
        doc["explanations"] = explanations(doc)
        paths = write_report(doc, args.report.parent)
        print("results: " + ", ".join(str(p) for p in paths))
        return 0
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    unknown = skip - set(SKIPPABLE)
    if unknown:
        parser.error(
            f"unknown --skip part(s) {sorted(unknown)}; "
            f"choose from {', '.join(SKIPPABLE)}"
        )
    size = QUICK if args.quick else FULL
    cache = args.cache / size.name
    work = args.workdir or args.cache / f"work_{size.name}"
    out = args.out or (HERE / "results" / ("quick" if args.quick else ""))
    print(
        f"dsa110-contimg benchmark ({size.name}); cache {cache}, scratch {work}",
        flush=True,
    )
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    doc = run(size, cache=cache, work=work, skip=skip, rounds=args.rounds)
    paths = write_report(doc, out)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    for profile, gp in doc["group_paths"].items():
        print(
            f"\ngroup path, {profile} profile: {gp['wall_s']} s (median of "
            f"{len(gp['rounds'])}) for {doc['data']['observed_s']} s of data: "
            f"real-time factor {gp['real_time_factor']}"
        )
    print("results: " + ", ".join(str(p) for p in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
