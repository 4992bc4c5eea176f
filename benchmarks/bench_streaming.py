#!/usr/bin/env python3
"""Load benchmark of the streaming services: simulated groups faster than real time.

Simulates ``--n-groups`` subband groups of real length (24 integrations,
309 s), then starts ``python -m dsa110_contimg.services`` and delivers one
group every ``309 s / --speedup`` into its incoming directory, copying the 16
files one by one as a correlator would write them. Every second it samples the
job queue (backlog by kind and state) and the memory of the stream process and
its pool workers. When the last block is done it stops the stream with SIGTERM
and writes ``<out-dir>/streaming[_full].{json,png}``: throughput, per-group
latency, backlog over time and memory growth.

``--size testing`` (default): 12 groups of 24 antennas x 2 channels per
subband, the testing environment, one simulated hour at 12x real time.
``--size full``: 6 groups of the full array (96 antennas x 48 channels per
subband, averaged by 8 at conversion), the production environment (4800^2 x
3" images, calibration solved on the 3C286 transit in the first group and
applied to every group), delivered at 12x real time, faster than the pipeline
can process them: the throughput is then the capacity of the machine, with
``services.max_workers`` (2) groups in flight. It needs about 25 GB of disk
under ``--workdir``.

    .venv/bin/python benchmarks/bench_streaming.py [--size testing|full]
        [--n-groups N] [--speedup 12] [--n-times 24] [--workdir DIR]
        [--out-dir benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import psutil
import yaml

from dsa110_contimg.testing.layout import run_paths

HERE = Path(__file__).resolve().parent

__all__ = ["BenchmarkResult", "run_benchmark", "main"]


@dataclass
class BenchmarkResult:
    """Samples and summary of one benchmark run."""

    samples: list[dict] = field(default_factory=list)
    deliveries: list[dict] = field(default_factory=list)
    summary: dict = field(default_factory=dict)


@dataclass(frozen=True)
class _Source:
    groups: list[list[Path]]
    sky_path: Path


#: Environment of the stream for each ``--size``.
SIZE_ENV = {"testing": "testing", "full": "production"}


def _spec(size: str, n_groups: int, n_times: int):
    """The simulated observation for ``size`` (``testing`` or ``full``)."""
    from dsa110_contimg.simulation import ObservationSpec

    if size == "testing":
        return ObservationSpec(
            start_time=datetime(2023, 6, 1, 0, 0, 0, tzinfo=UTC),
            n_groups=n_groups,
            n_antennas=24,
            n_chan_per_subband=2,
            n_times=n_times,
            n_sources=6,
            min_flux_jy=0.5,
            max_flux_jy=3.0,
            field_radius_deg=0.6,
            seed=11,
        )
    if size != "full":
        msg = f"--size must be testing or full, not {size!r}"
        raise ValueError(msg)

    # the benchmark suite's full-size field: 3C286 transits in the first group
    from dsa110_contimg.testing.calibrator_transit import transit_centred_start

    start = transit_centred_start(n_times)
    return ObservationSpec(
        start_time=start,
        n_groups=n_groups,
        n_antennas=96,
        n_chan_per_subband=48,
        n_times=n_times,
        declination_deg=30.5,
        n_sources=30,
        min_flux_jy=0.05,
        max_flux_jy=2.0,
        field_radius_deg=1.2,
        add_calibrators=True,
        gains=True,
        bandpass=True,
        gain_drift=True,
        seed=5,
    )


def _simulate(size: str, n_groups: int, n_times: int, dest: Path) -> _Source:
    """Simulate once into ``dest``; reuse it when the spec matches."""
    from dsa110_contimg.simulation import simulate_observation

    spec = _spec(size, n_groups, n_times)
    truth = dest / "truth" / "observation.json"
    if truth.exists():
        stored = json.loads(truth.read_text())
        kept = stored["spec"]
        if (kept["n_groups"], kept["n_times"], kept["n_antennas"]) == (
            spec.n_groups,
            spec.n_times,
            spec.n_antennas,
        ):
            groups = [[dest / f for f in g["files"]] for g in stored["groups"]]
            return _Source(groups, dest / "truth" / "sky.csv")
    shutil.rmtree(dest, ignore_errors=True)
    sim = simulate_observation(spec, dest)
    return _Source([list(g.files) for g in sim.groups], sim.sky_path)


def _write_config(
    base: Path, *, interval_s: float, speedup: float, size: str = "testing"
) -> Path:
    tree = {
        "paths": run_paths(base),
        "services": {
            "mosaic_duration_min": 15,
            "mosaic_overlap_min": 5,
            "max_workers": 2,
            "max_concurrent_blocks": 1,
        },
        # testing size: one thread per imager, two groups in flight; full
        # size keeps the production environment's imaging settings
        "imaging": {"threads": 1} if size == "testing" else {},
        # groups shorter than the default 90 s tolerance must not merge
        "conversion": {"group_tolerance_s": min(90.0, interval_s * speedup / 3)},
        "watcher": {
            "scan_interval_s": 2.0,
            "settle_s": 1.0,
            "group_timeout_s": 120,
            # production pauses intake below 200 GB free; a benchmark disk
            # holds the run (full size: ~25 GB) with a few GB to spare
            "min_free_disk_gb": 5.0,
        },
        # a block window waits about three group cadences for late groups,
        # as production does (900 s for 309 s groups)
        "queue": {
            "block_wait_s": round(3 * interval_s, 1),
            "poll_interval_s": 0.5,
            "pool_recycle_jobs": 16,  # fresh workers about every 16 jobs
        },
        "logging": {"level": "INFO"},
    }
    path = base / "stream.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path


def _queue_counts(db: Path) -> dict[str, dict[str, int]] | None:
    from dsa110_contimg.state.db import connect, schema_version
    from dsa110_contimg.state.jobs import count_jobs_by_kind

    if not db.exists():
        return None
    try:
        with closing(connect(db, readonly=True)) as conn:
            if schema_version(conn) < 2:
                return None
            return count_jobs_by_kind(conn)
    except Exception:  # noqa: BLE001 - a sample may race a migration
        return None


def _memory_mb(proc: psutil.Process) -> tuple[float, float]:
    """Return (stream process RSS, pool workers RSS) in MB, imagers excluded."""
    try:
        main = proc.memory_info().rss / 1e6
        workers = 0.0
        for child in proc.children(recursive=False):
            try:
                if "spawn_main" in " ".join(child.cmdline()):
                    workers += child.memory_info().rss / 1e6
            except psutil.Error:
                continue
        return main, workers
    except psutil.Error:
        return float("nan"), float("nan")


def _deliver(files: list[Path], incoming: Path) -> None:
    for path in sorted(files):
        shutil.copyfile(path, incoming / path.name)


def run_benchmark(
    *,
    n_groups: int = 12,
    speedup: float = 12.0,
    n_times: int = 24,
    workdir: Path,
    timeout_s: float = 1800.0,
    progress=print,
    size: str = "testing",
) -> BenchmarkResult:
    """Simulate, stream at ``speedup`` x real time, and sample the queue.

    ``size`` is ``testing`` or ``full`` (see the module docstring).

    Returns
    -------
    BenchmarkResult
        Samples (``t_s``, counts by kind and state, memory), deliveries and
        a summary (throughput, latency, backlog, memory growth).
    """
    from dsa110_contimg.telescope import dsa110
    from dsa110_contimg.utils.config_loader import find_config_dir

    workdir = Path(workdir)
    shutil.rmtree(workdir / "run", ignore_errors=True)
    base = workdir / "run"
    (base / "incoming").mkdir(parents=True)
    progress(f"simulating {n_groups} {size}-size groups of {n_times} integrations")
    source = workdir / ("source" if size == "testing" else f"source_{size}")
    sim = _simulate(size, n_groups, n_times, source)
    group_s = n_times * dsa110.INTEGRATION_TIME_S
    interval_s = group_s / speedup
    config = _write_config(base, interval_s=interval_s, speedup=speedup, size=size)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DSA110")}
    env["DSA110_CONFIG_DIR"] = str(find_config_dir(env={}))
    log = open(base / "stream.out", "wb")  # noqa: SIM115 - closed below
    cmd = [
        sys.executable, "-m", "dsa110_contimg.services", "--env", SIZE_ENV[size],
        "--config", str(config), "--incoming-dir", str(base / "incoming"),
        "--catalog", str(sim.sky_path),
    ]  # fmt: skip
    proc = subprocess.Popen(
        cmd, stdout=log, stderr=subprocess.STDOUT, cwd=base, env=env
    )
    ps = psutil.Process(proc.pid)
    result = BenchmarkResult()
    t0 = time.monotonic()
    next_delivery = t0 + 2.0
    delivered = 0
    idle_since: float | None = None
    db = base / "pipeline.sqlite3"
    try:
        while time.monotonic() - t0 < timeout_s:
            now = time.monotonic()
            if delivered < len(sim.groups) and now >= next_delivery:
                _deliver(sim.groups[delivered], base / "incoming")
                result.deliveries.append(
                    {
                        "group": delivered,
                        "t_s": round(time.monotonic() - t0, 2),
                        "wall": time.time(),
                    }
                )
                delivered += 1
                next_delivery += interval_s
            counts = _queue_counts(db)
            main_mb, workers_mb = _memory_mb(ps)
            sample = {"t_s": round(now - t0, 2), "main_mb": main_mb,
                      "workers_mb": workers_mb, "counts": counts}  # fmt: skip
            result.samples.append(sample)
            if counts is not None and delivered == len(sim.groups):
                busy = sum(c["pending"] + c["running"] for c in counts.values())
                converted = counts["convert_group"]["done"]
                if busy == 0 and converted == len(sim.groups):
                    idle_since = idle_since or now
                    # the last block window waits queue.block_wait_s for late data
                    if now - idle_since > 3 * interval_s + 10.0:
                        break
                else:
                    idle_since = None
            if proc.poll() is not None:
                msg = f"stream exited early ({proc.returncode}); see {base}/stream.out"
                raise RuntimeError(msg)
            time.sleep(max(0.0, 1.0 - (time.monotonic() - now)))
        wall_s = time.monotonic() - t0
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    result.summary = _summarize(result, base, sim, interval_s=interval_s, wall_s=wall_s)
    result.summary["stream_exit_code"] = proc.returncode
    return result


def _summarize(
    result: BenchmarkResult,
    base: Path,
    sim: _Source,
    *,
    interval_s: float,
    wall_s: float,
) -> dict:
    from dsa110_contimg.products import IMAGE_FILES, ImageNames
    from dsa110_contimg.state.db import connect
    from dsa110_contimg.state.jobs import list_jobs

    with closing(connect(base / "pipeline.sqlite3", readonly=True)) as conn:
        jobs = list_jobs(conn)
    conversions = sorted(
        (j for j in jobs if j.kind == "convert_group"), key=lambda j: j.data_time_iso
    )
    # latency from the end of a group's delivery to its converted MS and image
    to_ms_s, to_image_s = [], []
    for delivery, job in zip(result.deliveries, conversions, strict=False):
        if job.state != "done":
            continue
        finished = datetime.fromisoformat(str(job.finished_at)).timestamp()
        to_ms_s.append(finished - delivery["wall"])
        image = ImageNames.for_ms(str(job.result["ms_path"]), base / "images").image
        if image.exists():
            to_image_s.append(image.stat().st_mtime - delivery["wall"])
    sampled = [s for s in result.samples if s["counts"]]
    backlog = [
        sum(c["pending"] + c["running"] for c in s["counts"].values()) for s in sampled
    ]
    pending_conversions = [s["counts"]["convert_group"]["pending"] for s in sampled]
    warm = _warm_index(sampled)
    mains = [s["main_mb"] for s in sampled]
    workers = [s["workers_mb"] for s in sampled]
    pattern = "*" + IMAGE_FILES["image"]
    n_images = len(list((base / "images").glob(pattern)))
    images_s = [
        p.stat().st_mtime - result.deliveries[0]["wall"]
        for p in (base / "images").glob(pattern)
    ]
    busy_s = {
        kind: round(
            sum(
                (
                    datetime.fromisoformat(str(j.finished_at))
                    - datetime.fromisoformat(str(j.started_at))
                ).total_seconds()
                for j in jobs
                if j.kind == kind and j.state == "done"
            ),
            1,
        )
        for kind in ("convert_group", "process_block", "update_variability")
    }
    work_s_per_group = sum(busy_s.values()) / max(1, len(conversions))
    return {
        "n_groups": len(sim.groups),
        "delivery_interval_s": round(interval_s, 2),
        "wall_s": round(wall_s, 1),
        "jobs_done": {
            kind: sum(1 for j in jobs if j.kind == kind and j.state == "done")
            for kind in ("convert_group", "process_block", "update_variability")
        },
        "jobs_not_done": [(j.kind, j.key, j.state) for j in jobs if j.state != "done"],
        "n_images": n_images,
        # from the first delivery to the last image
        "throughput_groups_per_hour": round(n_images / max(images_s) * 3600, 1),
        "delivered_groups_per_hour": round(3600 / interval_s, 1),
        "job_busy_s": busy_s,
        "work_s_per_group": round(work_s_per_group, 2),
        "latency_delivery_to_ms_s": _stats(to_ms_s),
        "latency_delivery_to_image_s": _stats(to_image_s),
        "max_backlog_jobs": max(backlog, default=0),
        "max_pending_conversions": max(pending_conversions, default=0),
        "final_backlog_jobs": backlog[-1] if backlog else None,
        "memory_main_mb": _growth(mains[warm:]),
        # samples between two worker pools (none alive) are left out
        "memory_workers_mb": _growth([w for w in workers[warm:] if w > 0]),
        "memory_total_mb": _growth(
            [m + w for m, w in list(zip(mains, workers, strict=True))[warm:] if w > 0]
        ),
        "host_cpu_count": os.cpu_count(),
        "load_avg_1min_at_end": round(os.getloadavg()[0], 2),
    }


def _growth(values: list[float]) -> dict:
    """Median of the first and last tenth of the samples after warm-up."""
    if len(values) < 2:
        return {}
    n = max(1, len(values) // 10)
    start, end = statistics.median(values[:n]), statistics.median(values[-n:])
    return {
        "after_warmup": round(start, 1),
        "end": round(end, 1),
        "peak": round(max(values), 1),
        "growth_frac": round(end / start - 1, 4),
    }


def _warm_index(samples: list[dict]) -> int:
    """First sample after every job kind has run once (all code paths loaded)."""
    for i, s in enumerate(samples):
        if s["counts"]["update_variability"]["done"] >= 1:
            return i
    return 0


def _stats(values: list[float]) -> dict:
    if not values:
        return {}
    return {
        "n": len(values),
        "median": round(statistics.median(values), 2),
        "max": round(max(values), 2),
    }


_TIMELINE_COLUMNS = [
    "t_s",
    *(f"{kind}_{state}" for kind in ("convert_group", "process_block",
      "update_variability") for state in ("pending", "running", "done")),
    "main_mb",
    "workers_mb",
]  # fmt: skip


def timeline(result: BenchmarkResult, *, every: int = 5) -> dict:
    """Return every ``every``-th sample as rows of `_TIMELINE_COLUMNS`."""
    rows = []
    for s in [s for s in result.samples if s["counts"]][::every]:
        row = [s["t_s"]]
        for kind in ("convert_group", "process_block", "update_variability"):
            row += [
                s["counts"][kind][state] for state in ("pending", "running", "done")
            ]
        row += [round(s["main_mb"], 1), round(s["workers_mb"], 1)]
        rows.append(row)
    return {"columns": _TIMELINE_COLUMNS, "rows": rows}


def plot(result: BenchmarkResult, path: Path) -> Path:
    """Write the backlog, progress and memory over time as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = [s for s in result.samples if s["counts"]]
    t = [s["t_s"] for s in samples]
    fig, axes = plt.subplots(3, 1, figsize=(9, 9), sharex=True)
    for kind, color in (
        ("convert_group", "C0"),
        ("process_block", "C1"),
        ("update_variability", "C2"),
    ):
        axes[0].plot(
            t,
            [
                s["counts"][kind]["pending"] + s["counts"][kind]["running"]
                for s in samples
            ],
            color=color,
            label=kind,
        )
        axes[1].plot(
            t, [s["counts"][kind]["done"] for s in samples], color=color, label=kind
        )
    for d in result.deliveries:
        axes[0].axvline(d["t_s"], color="0.85", lw=0.8, zorder=0)
    axes[0].set_ylabel("backlog (pending + running jobs)")
    axes[0].legend(loc="upper right", fontsize=8)
    axes[1].plot(
        [d["t_s"] for d in result.deliveries],
        range(1, len(result.deliveries) + 1),
        "k.",
        label="groups delivered",
    )
    axes[1].set_ylabel("jobs done (cumulative)")
    axes[1].legend(loc="upper left", fontsize=8)
    axes[2].plot(t, [s["main_mb"] for s in samples], label="stream process")
    axes[2].plot(t, [s["workers_mb"] for s in samples], label="pool workers")
    axes[2].set_ylabel("RSS (MB)")
    axes[2].set_xlabel("time since start (s)")
    axes[2].legend(loc="upper left", fontsize=8)
    s = result.summary
    fig.suptitle(
        f"{s['n_groups']} groups every {s['delivery_interval_s']} s: "
        f"{s['throughput_groups_per_hour']} groups/h, "
        f"max backlog {s['max_backlog_jobs']}, "
        f"memory growth {100 * s['memory_main_mb']['growth_frac']:.1f}% (stream)"
    )  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write its JSON and PNG reports."""
    from astropy.utils import iers

    iers.conf.auto_download = False
    # SIGTERM unwinds like Ctrl-C, so the stream started below is stopped too
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZE_ENV), default="testing")
    parser.add_argument(
        "--n-groups", type=int, default=None, help="default 12 (testing), 6 (full)"
    )
    parser.add_argument("--speedup", type=float, default=12.0)
    parser.add_argument("--n-times", type=int, default=24)
    parser.add_argument("--workdir", type=Path, default=HERE / ".cache" / "streaming")
    parser.add_argument("--out-dir", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    full = args.size == "full"
    result = run_benchmark(
        n_groups=args.n_groups or (6 if full else 12),
        speedup=args.speedup,
        n_times=args.n_times,
        workdir=args.workdir,
        size=args.size,
        timeout_s=7200.0 if full else 1800.0,
    )
    result.summary["size"] = args.size
    stem = "streaming_full" if full else "streaming"
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / f"{stem}.json").write_text(
        json.dumps(
            {
                "summary": result.summary,
                "deliveries_t_s": [d["t_s"] for d in result.deliveries],
                "timeline": timeline(result),
            },
            indent=1,
        )
        + "\n"
    )
    png = plot(result, args.out_dir / f"{stem}.png")
    print(json.dumps(result.summary, indent=2))
    print(f"wrote {png} and {args.out_dir / f'{stem}.json'}")
    return 0 if result.summary["stream_exit_code"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
