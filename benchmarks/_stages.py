"""The benchmarked stages, one module-level function each.

Every function runs in a fresh process under `benchmarks._measure.measure`,
takes plain (picklable) arguments, does one stage's work the way the
pipeline does it, and returns a dict of facts about that work (sizes,
counts, checks against the truth). Paths are strings.
"""

from __future__ import annotations

import os
import re
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._measure import peak_rss_self_mb, reset_peak_rss

__all__ = [
    "apply",
    "convert_ours",
    "convert_pyuvdata",
    "cpu_reference",
    "derived_maps",
    "disk_speed",
    "drop_page_cache",
    "flag",
    "gridding_floor",
    "image",
    "image_accuracy",
    "lightcurve_ingest",
    "mosaic_accuracy",
    "mosaic_difference",
    "mosaic_ours",
    "mosaic_reproject_and_coadd",
    "photometry",
    "photometry_accuracy",
    "simulate",
    "solve",
    "synthesise_hour_images",
]

_MB = 2**20


def _dir_mb(path: str | Path) -> float:
    path = Path(path)
    if path.is_file():
        return path.stat().st_size / _MB
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / _MB


def _config(overrides: dict[str, Any]):
    from dsa110_contimg.utils.config_loader import load_pipeline_config

    return load_pipeline_config(environment="production", overrides=overrides, env={})


def _group(raw_dir: str):
    from dsa110_contimg.data_ingestion.grouping import (
        discover_subband_files,
        group_subband_files,
    )

    (group,) = group_subband_files(discover_subband_files(Path(raw_dir)))
    return group


# ---------------------------------------------------------------- data, disk


def simulate(
    raw_dir: str,
    n_antennas: int,
    n_chan_per_subband: int,
    n_times: int,
    n_sources: int = 30,
    seed: int = 5,
) -> dict[str, Any]:
    """Write one group holding a 3C286 transit with gains, bandpass and drift."""

    from dsa110_contimg.simulation import ObservationSpec, simulate_observation
    from dsa110_contimg.testing.calibrator_transit import transit_centred_start

    start = transit_centred_start(n_times)
    spec = ObservationSpec(
        start_time=start,
        n_groups=1,
        n_antennas=n_antennas,
        n_chan_per_subband=n_chan_per_subband,
        n_times=n_times,
        declination_deg=30.5,
        n_sources=n_sources,
        min_flux_jy=0.05,
        max_flux_jy=2.0,
        field_radius_deg=1.2,
        add_calibrators=True,
        gains=True,
        bandpass=True,
        gain_drift=True,
        seed=seed,
    )
    tmp = Path(f"{raw_dir}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    simulate_observation(spec, tmp)
    os.replace(tmp, raw_dir)  # a cache entry is complete or absent
    return {"raw_mb": round(_dir_mb(raw_dir), 1)}


def disk_speed(directory: str, size_mb: int = 2048) -> dict[str, Any]:
    """Sequential write (fsync'd) and cold read speed of ``directory``'s disk."""
    path = Path(directory) / "disk_speed.bin"
    path.parent.mkdir(parents=True, exist_ok=True)
    block = np.random.default_rng(0).integers(0, 255, 64 * _MB, dtype=np.uint8)
    data = block.tobytes()
    n_blocks = max(1, size_mb // 64)
    try:
        t0 = time.perf_counter()
        with open(path, "wb") as fh:
            for _ in range(n_blocks):
                fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        write_s = time.perf_counter() - t0
        with open(path, "rb") as fh:  # drop it from the page cache: a cold read
            os.posix_fadvise(fh.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        t0 = time.perf_counter()
        with open(path, "rb", buffering=0) as fh:
            while fh.read(64 * _MB):
                pass
        read_s = time.perf_counter() - t0
    finally:
        path.unlink(missing_ok=True)
    total = n_blocks * 64
    return {
        "size_mb": total,
        "write_mb_s": round(total / write_s, 1),
        "read_mb_s": round(total / read_s, 1),
    }


def cpu_reference(repeats: int = 3) -> dict[str, Any]:
    """Time a fixed numpy workload on one core: the machine's speed, in the run.

    The same work on every machine and in every run (complex64 FFTs of
    2048^2, a float32 sort of 8 M values, element-wise exp/sqrt over 16 M
    values; seeded data, about 1-3 s): dividing a stage's time by it gives
    a figure that can be compared between machines. 2-core VMs of one name
    differ by 2x and more (the same imaging took 49 s on one and 106 s on
    another), so a real-time factor alone says as much about the VM as
    about the code. Each part's time is the median of ``repeats``.
    """
    rng = np.random.default_rng(0)
    field = rng.standard_normal((2048, 2048)).astype(np.complex64)
    values = rng.standard_normal(2**23).astype(np.float32)
    pixels = rng.standard_normal(2**24).astype(np.float32)

    def fft():
        for _ in range(4):
            np.fft.fft2(field)

    def sort():
        for _ in range(2):
            np.sort(values)

    def elementwise():
        for _ in range(4):
            np.exp(pixels) + np.sqrt(np.abs(pixels))

    out: dict[str, Any] = {}
    for name, fn in (("fft", fft), ("sort", sort), ("elementwise", elementwise)):
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        out[f"{name}_s"] = round(float(np.median(times)), 3)
    out["reference_s"] = round(out["fft_s"] + out["sort_s"] + out["elementwise_s"], 3)
    return out


# ---------------------------------------------------------------- conversion


def drop_page_cache(paths) -> None:
    """Evict files from the page cache so the next read comes from the disk."""
    for path in paths:
        with open(path, "rb") as fh:
            os.posix_fadvise(fh.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def convert_ours(raw_dir: str, out_dir: str, chan_average: int) -> dict[str, Any]:
    """The pipeline's conversion of one group (`convert_group`), raw files cold."""
    from dsa110_contimg.data_ingestion._uvh5_subband import shutdown_pools
    from dsa110_contimg.data_ingestion.ms_creation import convert_group

    shutil.rmtree(out_dir, ignore_errors=True)
    drop_page_cache(_group(raw_dir).files.values())
    product = convert_group(_group(raw_dir), Path(out_dir), chan_average=chan_average)
    # the reader processes exit (and are waited for) here, so that their CPU
    # time and memory count in this stage's figures (RUSAGE_CHILDREN)
    shutdown_pools()
    return {
        "ms": str(product.path),
        "ms_mb": round(_dir_mb(product.path), 1),
        "raw_mb": round(_dir_mb(raw_dir), 1),
        "chan_average": chan_average,
        **{f"{k}_s": round(v, 2) for k, v in product.durations_s.items()},
    }


def convert_pyuvdata(raw_dir: str, out_dir: str) -> dict[str, Any]:
    """The obvious alternative: pyuvdata reads each subband, concatenates, write_ms.

    DSA-110's files cannot be read as one list by pyuvdata (float32 uvw, so
    the files fail its type check when combined); the per-file read with the
    checks off, a cast and ``fast_concat`` along frequency is what the
    existing DSA-110 conversion does. The group is phased to its middle
    time, as ours is.
    """
    from astropy.time import Time
    from pyuvdata import UVData

    shutil.rmtree(out_dir, ignore_errors=True)
    Path(out_dir).mkdir(parents=True)
    files = [str(f) for _, f in sorted(_group(raw_dir).files.items())]
    drop_page_cache(files)  # cold, as for ours
    checks = {
        "run_check": False,
        "check_extra": False,
        "run_check_acceptability": False,
    }
    parts = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        for name in files:
            uv = UVData()
            uv.read(name, file_type="uvh5", **checks)
            uv.uvw_array = uv.uvw_array.astype(np.float64)
            parts.append(uv)
        uv = parts[0].fast_concat(
            parts[1:], axis="freq", inplace=False, run_check=False
        )
        del parts
        uv.reorder_freqs(channel_order="freq", run_check=False)
        read_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        mid = np.median(np.unique(uv.time_array))
        uv.phase_to_time(Time(mid, format="jd"))
        phase_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        path = Path(out_dir) / "pyuvdata.ms"
        uv.write_ms(str(path), clobber=True, run_check=False)
        write_s = time.perf_counter() - t0
    return {
        "ms": str(path),
        "ms_mb": round(_dir_mb(path), 1),
        "read_s": round(read_s, 2),
        "phase_s": round(phase_s, 2),
        "write_ms_s": round(write_s, 2),
    }


# ---------------------------------------------------------------- calibration


def flag(ms: str) -> dict[str, Any]:
    """The pipeline's flagging (zeros, autocorrelations, dead antennas, MAD clip)."""
    from dsa110_contimg.calibration import flag_ms

    cfg = _config({}).calibration
    report = flag_ms(
        Path(ms),
        sigma=cfg.flag_sigma,
        backend=cfg.flag_backend,
        dead_fraction=cfg.dead_antenna_fraction,
    )
    return {"summary": report.summary()}


def solve(
    ms: str, sky_csv: str, table_prefix: str, uvrange: str | None = None
) -> dict[str, Any]:
    """Model the calibrator field and solve bandpass and gains (once per transit).

    ``uvrange`` None means the production value (small test arrays need "").
    """
    from dsa110_contimg.calibration import (
        choose_refant,
        solve_calibration,
        write_model_data,
    )
    from dsa110_contimg.data_ingestion.skymodel import load_catalog

    cfg = _config({}).calibration
    t0 = time.perf_counter()
    write_model_data(Path(ms), load_catalog(sky_csv))
    model_s = time.perf_counter() - t0
    Path(table_prefix).parent.mkdir(parents=True, exist_ok=True)
    solution = solve_calibration(
        Path(ms),
        Path(table_prefix),
        refant=choose_refant(Path(ms), [cfg.gcal_refant, *cfg.refant_fallback]).name,
        gcal_mode=cfg.gcal_mode,
        gcal_solint=cfg.gcal_solint,
        uvrange=cfg.uvrange if uvrange is None else uvrange,
        minsnr=cfg.bandpass_minsnr,
    )
    return {
        "tables": [str(t) for t in solution.tables],
        "model_s": round(model_s, 2),
        **{k: round(v, 2) for k, v in solution.durations_s.items()},
    }


def apply(ms: str, tables: list[str], engine: str | None = None) -> dict[str, Any]:
    """Apply the solutions into CORRECTED_DATA, as the pipeline.

    ``engine`` None is the configured ``calibration.apply_engine``; the
    tables' names are recorded as the calibration stage records its
    solution, so imaging then reads CORRECTED_DATA.
    """
    from dsa110_contimg.calibration import apply_calibration

    engine = engine or _config({}).calibration.apply_engine
    apply_calibration(Path(ms), [Path(t) for t in tables], engine=engine)
    return {"engine": engine}


# ---------------------------------------------------------------- imaging


def _wsclean_log(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return {}
    out: dict[str, Any] = {}
    major = re.findall(r"(\d+) major iterations were performed", text)
    if major:
        out["major_iterations"] = int(major[-1])
    times = re.search(
        r"Inversion: ([\d:.]+), prediction: ([\d:.]+), deconvolution: ([\d:.]+)", text
    )
    if times:
        for key, value in zip(
            ("inversion_s", "prediction_s", "deconvolution_s"),
            times.groups(),
            strict=True,
        ):
            h, m, s = value.split(":")
            out[key] = round(int(h) * 3600 + int(m) * 60 + float(s), 2)
    return out


def image(
    ms: str,
    images_dir: str,
    overrides: dict[str, Any],
    pickle_to: str,
    catalogue_csv: str | None = None,
) -> dict[str, Any]:
    """Image one MS as the pipeline does (restored image, residual, PSF).

    With ``catalogue_csv`` (the pipeline's photometry catalogue) its bright
    sources are fitted, subtracted and restored as the pipeline does; without
    it (the matched WSClean / tclean comparison) only the flux standards are.
    """
    import pickle

    from dsa110_contimg.data_ingestion.skymodel import load_catalog
    from dsa110_contimg.pipeline.stages.imaging_stage import image_ms

    cfg = _config(overrides).imaging
    catalog = load_catalog(catalogue_csv) if catalogue_csv else None
    shutil.rmtree(images_dir, ignore_errors=True)
    product = image_ms(Path(ms), Path(images_dir), cfg, derived=False, catalog=catalog)
    Path(pickle_to).write_bytes(pickle.dumps(product))
    out = {
        "backend": cfg.backend,
        "version": product.backend_version,
        "image": str(product.image_path),
        "image_size": list(cfg.image_size),
        "cell_size": cfg.cell_size,
        "niter": cfg.niter,
        "auto_mask_sigma": cfg.auto_mask_sigma,
        "auto_threshold_sigma": cfg.auto_threshold_sigma,
    }
    if cfg.backend == "wsclean":
        out.update(_wsclean_log(product.log_path))
    return out


def image_accuracy(image_path: str, sky_csv: str) -> dict[str, Any]:
    """Injected sources above 10 sigma: recovered, flux error (pb >= 0.5), offset;
    and the residual image's robust rms.

    Not a stage: the suite calls it after an imaging stage, outside the timing.
    """
    from astropy.io import fits

    from dsa110_contimg.data_ingestion.skymodel import load_catalog
    from dsa110_contimg.pipeline.stages.photometry_stage import measure_image
    from dsa110_contimg.visualization import robust_rms

    truth = load_catalog(sky_csv)
    table = measure_image(Path(image_path), truth, _config({}).photometry)
    out = _truth_summary(table, truth)
    out["pulls"] = {"restored": _pull_bins(table, truth)}
    products = [image_path.replace("-image.fits", f"-{k}.fits") for k in _DIRTY_EQ]
    if all(Path(p).exists() for p in products):  # issue 13: the other estimator
        cfg = _config({"photometry.estimator": "dirty_equivalent"}).photometry
        table_de = measure_image(Path(image_path), truth, cfg)
        out["dirty_equivalent"] = _truth_summary(table_de, truth)
        out["pulls"]["dirty_equivalent"] = _pull_bins(table_de, truth)
    residual = Path(image_path.replace("-image.fits", "-residual.fits"))
    if residual.exists():  # the residual's robust rms (Jy/beam): the depth reached
        out["residual_rms_jy"] = float(robust_rms(fits.getdata(residual)))
    return out


_DIRTY_EQ = ("residual", "model", "psf")


def _pull_bins(table, truth) -> dict[str, dict[str, list[float]]]:
    """Pull rms per SNR bin of the unflagged rows (SNR >= 10) against the truth.

    ``{"full": {"10-30": [rms, n], ...}, "noise_only": {...}}``: with
    ``flux_err_jy`` and with the noise error alone (``flux_sys_jy`` taken
    out). One image's rows: the block-level overlap fit is not in them.
    """
    from dsa110_contimg.testing.flux_fields import bin_rms

    index = {str(n): i for i, n in enumerate(truth.name)}
    rows = table[
        (np.asarray(table["flags"]) == 0)
        & (np.asarray(table["snr"], dtype=float) >= 10)
        & np.isin(np.asarray(table["source_name"]).astype(str), list(index))
    ]
    true = np.array(
        [
            truth.flux_at(float(f))[index[str(n)]]
            for n, f in zip(rows["source_name"], rows["freq_hz"], strict=True)
        ]
    )
    flux = np.asarray(rows["flux_jy"], dtype=float)
    err = np.asarray(rows["flux_err_jy"], dtype=float)
    sys = np.asarray(rows["flux_sys_jy"], dtype=float)
    noise = np.sqrt(np.maximum(err**2 - sys**2, 0.0))
    snr = np.asarray(rows["snr"], dtype=float)
    return {
        label: {
            f"{lo:g}-{hi:g}": [round(rms, 3), n]
            for (lo, hi), (rms, n) in bin_rms((flux - true) / e, snr, 1).items()
        }
        for label, e in (("full", err), ("noise_only", noise))
    }


def _truth_summary(table, truth) -> dict[str, Any]:
    """Recovered (>10 sigma, unflagged), median |flux error| at pb >= 0.5, offset."""
    from dsa110_contimg.simulation import compare_to_truth

    comparison = compare_to_truth(table, truth)
    good = comparison.table[np.asarray(comparison.table["pb"]) >= 0.5]
    return {
        "n_recovered": comparison.n_recovered,
        "n_injected": comparison.n_injected,
        "median_abs_flux_error_pb_ge_0p5": round(
            float(np.median(np.abs(good["flux_error"]))), 4
        )
        if len(good)
        else None,
        "max_offset_beams": round(comparison.max_offset_beams, 3),
    }


def derived_maps(product_pickle: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """Primary-beam model, rms map, PB-corrected image and PNG preview."""
    import pickle

    from dsa110_contimg.pipeline.stages.derived_maps import make_derived_products

    product = pickle.loads(Path(product_pickle).read_bytes())
    done = make_derived_products(product, _config(overrides).imaging)
    return {"pbcor": str(done.pbcor_path), "rms": str(done.rms_path)}


def gridding_floor(ms: str, image_size: int, cell_arcsec: float) -> dict[str, Any]:
    """One ducc0.wgridder pass (w-stacking, 2 threads) over the MS's Stokes I.

    The floor for any imager: a clean needs at least this (a major cycle is
    one gridding and one degridding pass). Reading the MS is timed apart.
    """
    import ducc0
    from casacore.tables import table

    t0 = time.perf_counter()
    with table(ms, ack=False) as tab:
        column = "CORRECTED_DATA" if "CORRECTED_DATA" in tab.colnames() else "DATA"
        data = tab.getcol(column)
        flags = tab.getcol("FLAG")
        uvw = tab.getcol("UVW")
    with table(f"{ms}/SPECTRAL_WINDOW", ack=False) as spw:
        freqs = spw.getcol("CHAN_FREQ")[0]
    read_s = time.perf_counter() - t0
    vis = (0.5 * (data[..., 0] + data[..., -1])).astype(np.complex64)
    weight = (~(flags[..., 0] | flags[..., -1])).astype(np.float32)
    del data, flags
    pixsize = np.deg2rad(cell_arcsec / 3600.0)
    t0 = time.perf_counter()
    dirty = ducc0.wgridder.ms2dirty(
        uvw=uvw,
        freq=freqs,
        ms=vis,
        wgt=weight,
        npix_x=image_size,
        npix_y=image_size,
        pixsize_x=pixsize,
        pixsize_y=pixsize,
        epsilon=1e-4,
        do_wstacking=True,
        nthreads=2,
    )
    grid_s = time.perf_counter() - t0
    return {
        "column": column,
        "n_vis": int(vis.size),
        "read_s": round(read_s, 2),
        "gridding_s": round(grid_s, 3),
        "ducc0": ducc0.__version__,
        "dirty_peak_jy": round(float(np.max(dirty)) / float(weight.sum()), 4),
    }


# ---------------------------------------------------------------- photometry


def _catalogue(image_path: str, sky_csv: str, n_sources: int):
    """The injected sources plus grid positions up to ``n_sources`` on the image.

    The extra positions sit on a jittered grid (about 2 beams apart at full
    size, like a dense survey catalogue) and keep 3 arcmin from the injected
    sources, so they do not blend with them or each other.
    """
    from astropy.coordinates import SkyCoord
    from astropy.io import fits
    from astropy.wcs import WCS, FITSFixedWarning

    from dsa110_contimg.data_ingestion.skymodel import SkyCatalog, load_catalog

    truth = load_catalog(sky_csv)
    header = fits.getheader(image_path)
    with warnings.catch_warnings():  # `celestial_wcs`, without importing the
        warnings.simplefilter("ignore", FITSFixedWarning)  # imaging stage (3 s)
        wcs = WCS(header).celestial
    rng = np.random.default_rng(1)
    n_extra = max(0, n_sources - len(truth))
    nx, ny = header["NAXIS1"], header["NAXIS2"]
    n_side = int(np.ceil(np.sqrt(n_extra * 1.05))) + 1
    gx, gy = np.meshgrid(
        np.linspace(0.03 * nx, 0.97 * nx, n_side),
        np.linspace(0.03 * ny, 0.97 * ny, n_side),
    )
    jitter = 0.1 * (0.94 * nx / n_side)
    x = gx.ravel() + rng.uniform(-jitter, jitter, gx.size)
    y = gy.ravel() + rng.uniform(-jitter, jitter, gy.size)
    grid = wcs.pixel_to_world(x, y)
    injected = SkyCoord(truth.ra_deg, truth.dec_deg, unit="deg")
    _, sep, _ = grid.match_to_catalog_sky(injected)
    grid = grid[sep.arcmin > 3.0][:n_extra]
    n_extra = len(grid)
    catalogue = SkyCatalog(
        name=np.concatenate(
            [truth.name, np.array([f"BENCH{k:06d}" for k in range(n_extra)])]
        ),
        ra_deg=np.concatenate([truth.ra_deg, grid.ra.deg]),
        dec_deg=np.concatenate([truth.dec_deg, grid.dec.deg]),
        flux_jy=np.concatenate([truth.flux_jy, np.full(n_extra, 0.01)]),
        spectral_index=np.concatenate([truth.spectral_index, np.zeros(n_extra)]),
        ref_freq_hz=np.concatenate([truth.ref_freq_hz, np.full(n_extra, 1.4e9)]),
    )
    return catalogue, truth


def photometry(
    image_path: str, sky_csv: str, n_sources: int, table_path: str
) -> dict[str, Any]:
    """Forced photometry of ``n_sources`` catalogue positions on one image."""
    from dsa110_contimg.pipeline.stages.photometry_stage import (
        measure_image,
        write_photometry_table,
    )

    catalogue, _ = _catalogue(image_path, sky_csv, n_sources)
    t0 = time.perf_counter()
    table = measure_image(Path(image_path), catalogue, _config({}).photometry)
    measure_s = time.perf_counter() - t0
    write_photometry_table([table], Path(table_path))
    return {"n_measured": len(table), "measure_s": round(measure_s, 2)}


def photometry_accuracy(table_path: str, sky_csv: str) -> dict[str, Any]:
    """The injected sources' rows of a photometry table against the truth.

    Not a stage: the suite calls it after `photometry`, outside the timing
    (`compare_to_truth` imports the simulation package, pyuvdata with it).
    """
    from dsa110_contimg.data_ingestion.skymodel import load_catalog
    from dsa110_contimg.pipeline.stages.photometry_stage import read_photometry_table

    truth = load_catalog(sky_csv)
    table = read_photometry_table(Path(table_path))
    injected = table[np.isin(np.asarray(table["source_name"]), truth.name)]
    return _truth_summary(injected, truth)


def lightcurve_ingest(table_path: str, store_dir: str, n_epochs: int) -> dict[str, Any]:
    """Ingest ``n_epochs`` epochs of one group's photometry, as the variability service.

    Each epoch is the measured table with the sources' fluxes replaced by
    steady sources (5 mJy to 1 Jy, 1 mJy noise) times a 1% epoch gain error,
    so the flux-scale calibration finds its reference sources as on the sky;
    each epoch names its own image, as a new group's would.
    """
    from dsa110_contimg.lightcurves import LightcurveStore
    from dsa110_contimg.pipeline.stages.photometry_stage import read_photometry_table
    from dsa110_contimg.variability import ingest_epoch_table

    shutil.rmtree(store_dir, ignore_errors=True)
    base = read_photometry_table(Path(table_path))
    store = LightcurveStore(Path(store_dir))
    rng = np.random.default_rng(2)
    n = len(base)
    steady = np.exp(rng.uniform(np.log(0.005), np.log(1.0), n))
    times = []
    for k in range(n_epochs):
        epoch = base.copy()
        epoch["mjd"] = np.asarray(epoch["mjd"]) + k
        noise = 1e-3 * rng.normal(size=n)
        epoch["flux_jy"] = steady * (1 + 0.01 * rng.normal()) + noise
        if "peak_jy" in epoch.colnames:  # point sources: peak = integrated flux
            epoch["peak_jy"] = epoch["flux_jy"]
        epoch["flux_err_jy"] = np.full(n, 1e-3)
        epoch["rms_jy"] = np.full(n, 1e-3)
        epoch["flags"] = np.zeros(n, dtype=int)
        epoch["image_path"] = [f"epoch_{k:04d}-image.fits"] * n
        t0 = time.perf_counter()
        ingest_epoch_table(store, epoch, epoch_id=f"bench_{k:04d}")
        times.append(time.perf_counter() - t0)
    return {
        "n_rows_per_epoch": n,
        "n_epochs": n_epochs,
        "per_epoch_s_median": round(float(np.median(times)), 3),
        "store_mb": round(_dir_mb(store_dir), 1),
    }


# ---------------------------------------------------------------- mosaics


def synthesise_hour_images(
    directory: str, shape: list[int], cell_arcsec: float, n_groups: int
) -> dict[str, Any]:
    """Write an hour of group images (image, pb, rms maps) with 120 sources."""
    import json

    from benchmarks.bench_imaging import synthesise_hour
    from dsa110_contimg.data_ingestion.skymodel import write_catalog

    tmp = Path(f"{directory}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    members, truth = synthesise_hour(
        tmp, shape=tuple(shape), cell_arcsec=cell_arcsec, n_groups=n_groups
    )
    write_catalog(truth, tmp / "truth.csv")
    listing = [[m.image_path.name, m.group_time.isoformat()] for m in members]
    (tmp / "members.json").write_text(json.dumps(listing))
    os.replace(tmp, directory)
    return {"n_images": len(members), "mb": round(_dir_mb(directory), 1)}


def _members(directory: str):
    import json
    from datetime import datetime

    from dsa110_contimg.pipeline.stages.mosaicking_stage import MosaicMember

    listing = json.loads((Path(directory) / "members.json").read_text())
    return [
        MosaicMember(Path(directory) / name, datetime.fromisoformat(when))
        for name, when in listing
    ]


def mosaic_ours(images_dir: str, mosaics_dir: str, method: str) -> dict[str, Any]:
    """The pipeline's mosaic of the hour (PB^2/sigma^2 weights, tiled)."""
    from dsa110_contimg.pipeline.stages.mosaicking_stage import make_mosaic
    from dsa110_contimg.utils.config_loader import MosaicConfig

    shutil.rmtree(mosaics_dir, ignore_errors=True)
    product = make_mosaic(
        f"bench_{method}",
        _members(images_dir),
        Path(mosaics_dir),
        MosaicConfig(method=method, write_png=False),
    )
    return {
        "mosaic": str(product.mosaic_path),
        "noise": str(product.noise_path),
        "n_used": product.n_used,
    }


def mosaic_accuracy(images_dir: str, mosaic: str, noise: str) -> dict[str, Any]:
    """Injected sources above 10 sigma on a mosaic: count and median |flux error|.

    Not a stage: the suite calls it after a mosaic stage, outside the timing.
    """
    from dsa110_contimg.data_ingestion.skymodel import load_catalog
    from dsa110_contimg.pipeline.stages.photometry_stage import measure_mosaic
    from dsa110_contimg.utils.config_loader import PhotometryConfig

    truth = load_catalog(Path(images_dir) / "truth.csv")
    table = measure_mosaic(
        Path(mosaic), truth, PhotometryConfig(), noise_path=Path(noise)
    )
    good = (np.asarray(table["flags"]) == 0) & (np.asarray(table["snr"]) > 10)
    order = np.argsort(truth.name)
    idx = order[
        np.searchsorted(truth.name[order], np.asarray(table["source_name"])[good])
    ]
    err = np.asarray(table["flux_jy"])[good] / truth.flux_jy[idx] - 1
    return {
        "n_sources_snr_gt_10": int(good.sum()),
        "median_abs_flux_error": round(float(np.median(np.abs(err))), 4)
        if good.any()
        else None,
    }


def mosaic_reproject_and_coadd(
    images_dir: str, reference_mosaic: str, out_path: str, pb_cut: float = 0.2
) -> dict[str, Any]:
    """``reproject.mosaicking.reproject_and_coadd`` with its defaults.

    Same inputs and weights as ours (PB-corrected images, weights
    PB^2/sigma^2, zero below the PB cut) on our mosaic's grid, with
    ``reproject_interp`` (bilinear) and the default ``combine_function='mean'``.
    """
    from astropy.io import fits
    from reproject import reproject_interp
    from reproject.mosaicking import reproject_and_coadd

    from dsa110_contimg.pipeline.stages.imaging_stage import celestial_wcs

    header = fits.getheader(reference_mosaic)
    wcs_out = celestial_wcs(header)
    shape_out = (header["NAXIS2"], header["NAXIS1"])
    inputs, weights = [], []
    for member in _members(images_dir):
        prefix = str(member.image_path).removesuffix("-image.fits")
        with fits.open(member.image_path) as hdul:
            image_hdr = hdul[0].header
            data = np.asarray(hdul[0].data, dtype=np.float32).squeeze()
        pb = np.asarray(fits.getdata(f"{prefix}-pb.fits"), dtype=np.float32).squeeze()
        rms = np.asarray(fits.getdata(f"{prefix}-rms.fits"), dtype=np.float32).squeeze()
        ok = np.isfinite(pb) & (pb >= pb_cut) & np.isfinite(rms) & (rms > 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            inputs.append((np.where(ok, data / pb, 0.0), celestial_wcs(image_hdr)))
            weights.append(np.where(ok, (pb / rms) ** 2, 0.0))
    t0 = time.perf_counter()
    array, footprint = reproject_and_coadd(
        inputs,
        wcs_out,
        shape_out=shape_out,
        input_weights=weights,
        reproject_function=reproject_interp,
    )
    coadd_s = time.perf_counter() - t0
    array[footprint == 0] = np.nan
    fits.PrimaryHDU(array.astype(np.float32), header=header).writeto(
        out_path, overwrite=True
    )
    return {
        "mosaic": out_path,
        "coadd_s": round(coadd_s, 1),
        "reproject": __import__("reproject").__version__,
    }


def mosaic_difference(ours: str, theirs: str, noise: str) -> dict[str, Any]:
    """Largest and 99th-percentile |ours - theirs| where both have data.

    Not a stage: the suite calls it after both mosaics, outside the timing.
    """
    from astropy.io import fits

    a = np.asarray(fits.getdata(ours), dtype=np.float64).squeeze()
    b = np.asarray(fits.getdata(theirs), dtype=np.float64).squeeze()
    sigma = np.asarray(fits.getdata(noise), dtype=np.float64).squeeze()
    both = np.isfinite(a) & np.isfinite(b) & np.isfinite(sigma) & (sigma > 0)
    diff = np.abs(a[both] - b[both])
    if not diff.size:
        return {"max_abs_diff_vs_ours_jy": None, "p99_abs_diff_vs_ours_in_noise": None}
    return {
        "max_abs_diff_vs_ours_jy": float(diff.max()),
        "p99_abs_diff_vs_ours_in_noise": round(
            float(np.percentile(diff / sigma[both], 99)), 5
        ),
    }


# ------------------------------------------------------- warm group path


def group_path_warm(
    raw_dir: str,
    tables: list[str],
    work_dir: str,
    chan_average: int,
    sky_csv: str,
    n_sources: int,
    profiles: dict[str, tuple[str, dict[str, Any]]],
    warm_rounds: int = 1,
) -> dict[str, Any]:
    """The group path ``1 + warm_rounds`` times in one process, as a streaming
    worker runs it.

    A streaming worker imports the stages, loads the IERS tables and starts
    its subband readers once, then converts, flags, applies, images, corrects
    and measures group after group; a fresh process per stage (the suite's
    other figures) pays those costs every time. Here the same raw group goes
    through every stage ``1 + warm_rounds`` times (a fresh MS and images each
    pass, raw files cold each time); the passes after the first are the warm
    figures (``warm_rounds_s``, one dict of stage wall times per pass).
    ``profiles`` maps a profile to (its stage-key suffix, its imaging
    overrides); each profile images, corrects and measures the same MS.
    CPU time is not split per stage: the readers live through both passes.
    """
    from dsa110_contimg.calibration import apply_calibration, flag_ms
    from dsa110_contimg.data_ingestion._uvh5_subband import shutdown_pools
    from dsa110_contimg.data_ingestion.ms_creation import convert_group
    from dsa110_contimg.data_ingestion.skymodel import load_catalog
    from dsa110_contimg.pipeline.stages.derived_maps import make_derived_products
    from dsa110_contimg.pipeline.stages.imaging_stage import image_ms
    from dsa110_contimg.pipeline.stages.photometry_stage import (
        measure_image,
        write_photometry_table,
    )

    base = _config({})
    sky = load_catalog(sky_csv)  # the photometry catalogue's bright sources
    passes: list[dict[str, float]] = []
    if warm_rounds < 1:
        msg = f"warm_rounds must be at least 1, not {warm_rounds}"
        raise ValueError(msg)
    peaks: list[float | None] = []
    for k in range(1 + warm_rounds):
        out = Path(work_dir) / f"pass_{k}"
        shutil.rmtree(out, ignore_errors=True)
        times: dict[str, float] = {}
        reset = reset_peak_rss()

        def timed(name: str, fn, *args, _times=times, **kwargs):
            t0 = time.perf_counter()
            result = fn(*args, **kwargs)
            _times[name] = round(time.perf_counter() - t0, 3)
            return result

        group = _group(raw_dir)
        drop_page_cache(group.files.values())
        ms = timed(
            "conversion",
            convert_group,
            group,
            out / "ms",
            chan_average=chan_average,
        ).path
        cal = base.calibration
        timed(
            "flagging",
            flag_ms,
            ms,
            sigma=cal.flag_sigma,
            backend=cal.flag_backend,
            dead_fraction=cal.dead_antenna_fraction,
        )
        timed(
            "calibration apply",
            apply_calibration,
            ms,
            [Path(t) for t in tables],
            engine=cal.apply_engine,
        )
        for profile, (suffix, overrides) in profiles.items():
            cfg = _config(overrides).imaging
            product = timed(
                f"imaging{suffix}",
                image_ms,
                ms,
                out / f"images_{profile}",
                cfg,
                derived=False,
                catalog=sky,
            )
            timed(
                f"primary-beam correction{suffix}", make_derived_products, product, cfg
            )

            def measure(image=product.image_path, name=profile, _out=out):
                catalogue, _ = _catalogue(str(image), sky_csv, n_sources)
                table = measure_image(image, catalogue, base.photometry)
                write_photometry_table([table], _out / f"photometry_{name}.csv")
                return table

            timed(f"photometry{suffix}", measure)
        passes.append(times)
        peaks.append(round(peak_rss_self_mb(), 0) if reset else None)
        if k < warm_rounds:  # the last pass's products stay for a look
            shutil.rmtree(out, ignore_errors=True)
    shutdown_pools()
    return {
        "first_pass_s": passes[0],
        "warm_rounds_s": passes[1:],
        # the worker process's own peak in each pass (reset before it; both
        # profiles image the group in a pass); the imager runs in its own
        # process, the subband readers in theirs
        "pass_peak_rss_mb": peaks,
    }
