"""Capacity model: worker cores that keep a DSA-110-class array in real time.

``python -m benchmarks.capacity`` reads the benchmark's per-stage costs
(``benchmarks/results/benchmark.json``, full size: 96 antennas, 768 channels
averaged to 96, 4800^2-pixel images, 10^4 photometry sources) and predicts

- the worker cores that keep the full DSA-110 in real time: ``groups_per_day``
  groups (one per 309 s: ~280 a day), each converted, flagged, calibrated,
  imaged, primary-beam corrected and measured, plus the hourly mosaics (one per
  ``mosaic_step_min`` on overlapping hour-long windows: a calibration solve, a
  mosaic, its photometry) and the light-curve ingest of every image and
  mosaic, for 10^4 and 10^5 sources;
- the cores that catch up a backlog of a week within a day while live data
  keep coming (8 days of work in one);
- a DSA-2000-class array (2000 antennas), the per-group stages scaled with the
  benchmark's antenna scaling (its power-law fit, and a fit linear in
  baselines = visibilities, the upper bound);

and checks the model against measured runs on 1 and 2 Dask workers
(``benchmarks/results/dask_speedup.json``, written by
``tests/integration/test_dask_execution.py``): it predicts the 2-worker wall
time from the 1-worker run's task durations by scheduling them on 2 workers.
Results: ``benchmarks/results/capacity.json`` and ``capacity.md``.

Model: a stage's cost is its CPU time (core seconds, the benchmark's
``cpu_s``); the cores needed are the day's core seconds over 86 400 s over a
target utilisation (``utilisation``, default 0.7: headroom for bursts,
retries and the mosaic's latency). Memory per worker process is the largest
stage's peak RSS.
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "StageCost",
    "Workload",
    "stage_costs",
    "daily_core_seconds",
    "cores_needed",
    "backlog_cores",
    "scale_to_antennas",
    "makespan",
    "predict_wall",
    "predict_wall_scaled",
    "build_report",
    "main",
]

RESULTS = Path(__file__).resolve().parent / "results"
DAY_S = 86_400.0
BENCH_SOURCES = 10_000
BENCH_ANTENNAS = 96

#: per-group stages (one per MS) and their benchmark stage names
GROUP_STAGES = {
    "conversion": "conversion",
    "flagging": "flagging",
    "calibration apply": "calibration apply",
    "imaging": "imaging",
    "primary-beam correction": "primary-beam correction",
    "photometry": "photometry",
}
#: per-block stages (one per mosaic)
BLOCK_STAGES = {
    "calibration solve": "calibration solve",
    "mosaic": "mosaic of one hour",
    "mosaic photometry": "photometry",
}


@dataclass(frozen=True)
class StageCost:
    """What one run of a stage costs.

    Parameters
    ----------
    core_s : float
        CPU time of one run (core seconds).
    peak_rss_gb : float
        Peak resident memory of the run (GB).
    per : str
        ``"group"``, ``"block"`` or ``"epoch"`` (one image or mosaic ingested).
    """

    core_s: float
    peak_rss_gb: float
    per: str


@dataclass(frozen=True)
class Workload:
    """How much arrives per day.

    Parameters
    ----------
    groups_per_day : float
        Subband groups (MSs) a day (count); the DSA-110 records one per 309 s.
    mosaic_step_min : float
        Time between hourly mosaic starts (minutes); 60-min windows overlapping
        by 10 min start every 50 min.
    n_sources : int
        Catalogue sources measured on every image and mosaic (count).
    """

    groups_per_day: float = DAY_S / 309.2
    mosaic_step_min: float = 50.0
    n_sources: int = BENCH_SOURCES

    @property
    def blocks_per_day(self) -> float:
        """Mosaic blocks a day (count)."""
        return 24 * 60 / self.mosaic_step_min


def _photometry_core_s(stage: Mapping[str, Any], n_sources: int) -> float:
    """Photometry cost for ``n_sources``: fixed part + measuring, linear in sources."""
    info = stage.get("info", {})
    measure = float(info.get("measure_s", 0.0)) * stage["cpu_s"] / stage["wall_s"]
    n_bench = float(info.get("n_measured", BENCH_SOURCES)) or BENCH_SOURCES
    return stage["cpu_s"] - measure + measure * n_sources / n_bench


def stage_costs(bench: Mapping[str, Any], n_sources: int) -> dict[str, StageCost]:
    """Return the cost of each stage run, from a benchmark document.

    Photometry scales linearly with the number of sources measured (its
    ``measure_s`` part); light-curve ingest by rows (sources) per epoch.
    """
    stages = bench["stages"]
    out: dict[str, StageCost] = {}
    for per, table in (("group", GROUP_STAGES), ("block", BLOCK_STAGES)):
        for name, bench_name in table.items():
            stage = stages[bench_name]
            core_s = (
                _photometry_core_s(stage, n_sources)
                if bench_name == "photometry"
                else float(stage["cpu_s"])
            )
            out[name] = StageCost(core_s, stage["peak_rss_mb"] / 1024, per)
    ingest = stages["light-curve ingest"]
    info = ingest.get("info", {})
    per_epoch = float(info.get("per_epoch_s_median", ingest["cpu_s"]))
    rows = float(info.get("n_rows_per_epoch", BENCH_SOURCES))
    out["light-curve ingest"] = StageCost(
        per_epoch * n_sources / rows, ingest["peak_rss_mb"] / 1024, "epoch"
    )
    return out


def daily_core_seconds(
    costs: Mapping[str, StageCost], workload: Workload
) -> dict[str, float]:
    """Return each stage's core seconds per day."""
    runs = {
        "group": workload.groups_per_day,
        "block": workload.blocks_per_day,
        "epoch": workload.groups_per_day + workload.blocks_per_day,
    }
    return {name: cost.core_s * runs[cost.per] for name, cost in costs.items()}


def cores_needed(core_s_per_day: float, utilisation: float = 0.7) -> int:
    """Return the worker cores that do ``core_s_per_day`` a day at ``utilisation``."""
    if not 0 < utilisation <= 1:
        msg = f"utilisation {utilisation} must be in (0, 1]"
        raise ValueError(msg)
    return max(1, math.ceil(core_s_per_day / DAY_S / utilisation - 1e-9))


def backlog_cores(
    core_s_per_day: float,
    backlog_days: float = 7.0,
    catch_up_days: float = 1.0,
    utilisation: float = 0.7,
) -> int:
    """Return the cores that clear ``backlog_days`` in ``catch_up_days`` with live data.

    In ``catch_up_days`` the workers do the backlog plus the live data that
    arrive meanwhile: ``(backlog_days + catch_up_days) / catch_up_days`` days
    of work per day.
    """
    per_day = core_s_per_day * (backlog_days + catch_up_days) / catch_up_days
    return cores_needed(per_day, utilisation)


def _fit_baselines(
    points: Sequence[Mapping[str, float]], stage: str
) -> tuple[float, float]:
    """Least-squares ``cost = c0 + c1 * n_baselines`` over the antenna points."""
    xs = [p["value"] * (p["value"] - 1) / 2 for p in points if stage in p]
    ys = [p[stage] for p in points if stage in p]
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    c1 = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    return my - c1 * mx, max(c1, 0.0)


def scale_to_antennas(
    costs: Mapping[str, StageCost],
    scaling: Mapping[str, Any],
    n_antennas: int,
    method: str = "power",
    n_from: int = BENCH_ANTENNAS,
) -> dict[str, StageCost]:
    """Scale the per-group stages' costs from ``n_from`` to ``n_antennas``.

    Parameters
    ----------
    scaling : mapping
        The benchmark's ``scaling`` section: wall times at 24, 48 and 96
        antennas (``points.antennas``) and power-law fits ``a * N^b``
        (``fits.antennas``) for conversion, flagging and imaging.
    method : str
        ``"power"``: multiply by ``(n_antennas / n_from) ** b`` (the fit;
        optimistic: fixed costs dominate at the benchmark's sizes);
        ``"baselines"``: a fit ``c0 + c1 * n_baselines`` (cost linear in the
        visibilities: the upper bound). Calibration apply and primary-beam
        correction follow flagging and imaging (visibilities and pixels);
        photometry and the per-block stages do not depend on the array.
    """
    follows = {
        "conversion": "conversion",
        "flagging": "flagging",
        "calibration apply": "flagging",
        "imaging": "imaging",
        "calibration solve": "flagging",
    }
    fits = scaling["fits"]["antennas"]
    points = scaling["points"]["antennas"]
    out = dict(costs)
    for name, cost in costs.items():
        model = follows.get(name)
        if model is None:
            continue
        if method == "power":
            factor = (n_antennas / n_from) ** fits[model]["b"]
        elif method == "baselines":
            c0, c1 = _fit_baselines(points, model)
            base = c0 + c1 * n_from * (n_from - 1) / 2
            factor = (c0 + c1 * n_antennas * (n_antennas - 1) / 2) / base
        else:
            msg = f"method {method!r}: use 'power' or 'baselines'"
            raise ValueError(msg)
        # memory is not scaled: the benchmark measured it at one array size
        out[name] = StageCost(cost.core_s * factor, cost.peak_rss_gb, cost.per)
    return out


@dataclass(order=True)
class _Task:
    order: int
    key: str = field(compare=False)
    duration_s: float = field(compare=False)
    deps: tuple[str, ...] = field(compare=False, default=())


def makespan(tasks: Sequence[Mapping[str, Any]], n_workers: int) -> float:
    """Return the wall time of ``tasks`` on ``n_workers`` one-thread workers.

    Greedy list scheduling as the Dask scheduler does it: a task starts on the
    first free worker once its ``deps`` (keys) are done, in submission order.

    Parameters
    ----------
    tasks : sequence of mapping
        ``{"key", "duration_s", "deps"}`` in submission order.
    """
    if n_workers < 1:
        msg = f"n_workers {n_workers} must be >= 1"
        raise ValueError(msg)
    pending = [
        _Task(i, t["key"], float(t["duration_s"]), tuple(t.get("deps", ())))
        for i, t in enumerate(tasks)
    ]
    known = {t.key for t in pending}
    done_at: dict[str, float] = {}
    free = [0.0] * n_workers
    heapq.heapify(free)
    while pending:
        ready = [
            t for t in pending if all(d in done_at or d not in known for d in t.deps)
        ]
        if not ready:
            msg = "tasks have a dependency cycle"
            raise ValueError(msg)
        task = min(ready)
        pending.remove(task)
        worker_free = heapq.heappop(free)
        start = max([worker_free, *(done_at.get(d, 0.0) for d in task.deps)])
        done_at[task.key] = start + task.duration_s
        heapq.heappush(free, done_at[task.key])
    return max(done_at.values(), default=0.0)


def predict_wall(
    tasks: Sequence[Mapping[str, Any]], measured_wall_1: float, n_workers: int
) -> float:
    """Predict the wall time on ``n_workers`` from a measured 1-worker run.

    The 1-worker wall time is the tasks' makespan on one worker plus the
    client's own serial work (block bookkeeping, summaries); that overhead is
    kept and the tasks are rescheduled on ``n_workers``.
    """
    overhead = max(0.0, measured_wall_1 - makespan(tasks, 1))
    return overhead + makespan(tasks, n_workers)


def predict_wall_scaled(
    tasks: Sequence[Mapping[str, Any]], measured_wall_1: float, n_workers: int
) -> float:
    """Predict the wall time on ``n_workers`` assuming the overhead parallelises too.

    The client's work for one block runs while other blocks' tasks compute, so
    the whole 1-worker wall time shrinks as the tasks' makespan does: the lower
    estimate beside `predict_wall`'s upper one.
    """
    return measured_wall_1 * makespan(tasks, n_workers) / makespan(tasks, 1)


def _scenario(
    costs: Mapping[str, StageCost], workload: Workload, utilisation: float
) -> dict[str, Any]:
    daily = daily_core_seconds(costs, workload)
    total = sum(daily.values())
    return {
        "n_sources": workload.n_sources,
        "groups_per_day": round(workload.groups_per_day, 1),
        "blocks_per_day": round(workload.blocks_per_day, 1),
        "core_s_per_run": {k: round(c.core_s, 2) for k, c in costs.items()},
        "core_h_per_day": {k: round(v / 3600, 2) for k, v in daily.items()},
        "total_core_h_per_day": round(total / 3600, 1),
        "busy_cores": round(total / DAY_S, 2),
        "cores_real_time": cores_needed(total, utilisation),
        "cores_week_backlog_in_a_day": backlog_cores(total, 7, 1, utilisation),
        "memory_gb_per_worker": round(max(c.peak_rss_gb for c in costs.values()), 1),
    }


def build_report(
    bench: Mapping[str, Any],
    measured: Mapping[str, Any] | None = None,
    *,
    utilisation: float = 0.7,
    n_antennas_large: int = 2000,
) -> dict[str, Any]:
    """Return the capacity document (see the module docstring)."""
    report: dict[str, Any] = {
        "source": {
            "benchmark_date": bench.get("date"),
            "benchmark_size": bench.get("size"),
            "data": bench.get("data"),
            "machine": bench.get("machine"),
        },
        "utilisation": utilisation,
        "dsa110": {},
        "large_array": {"n_antennas": n_antennas_large},
    }
    for n_sources in (10_000, 100_000):
        workload = Workload(n_sources=n_sources)
        costs = stage_costs(bench, n_sources)
        report["dsa110"][f"{n_sources:.0e}"] = _scenario(costs, workload, utilisation)
        for method in ("power", "baselines"):
            scaled = scale_to_antennas(
                costs, bench["scaling"], n_antennas_large, method=method
            )
            report["large_array"][f"{method}_{n_sources:.0e}"] = _scenario(
                scaled, workload, utilisation
            )
    if measured:
        tasks = measured["tasks"]
        wall = measured["wall_s"]
        w1 = wall["dask_1_workers"]
        predicted = predict_wall(tasks, w1, 2)
        scaled = predict_wall_scaled(tasks, w1, 2)
        report["check"] = {
            "n_tasks": len(tasks),
            "task_s_total": round(sum(t["duration_s"] for t in tasks), 2),
            "measured_wall_s": {"1": w1, "2": wall["dask_2_workers"]},
            "predicted_wall_s_2": round(predicted, 2),
            "relative_error_2": round(predicted / wall["dask_2_workers"] - 1, 3),
            "predicted_wall_s_2_overhead_parallel": round(scaled, 2),
            "relative_error_2_overhead_parallel": round(
                scaled / wall["dask_2_workers"] - 1, 3
            ),
            "predicted_speedup": round(w1 / predicted, 2),
            "predicted_speedup_overhead_parallel": round(w1 / scaled, 2),
            "measured_speedup": measured.get("speedup_2_vs_1_workers"),
            "load_avg_1min": measured.get("load_avg_1min"),
        }
    return report


def markdown(report: Mapping[str, Any]) -> str:
    """Return the capacity document as Markdown."""
    lines = [
        "# Capacity model",
        "",
        f"From `benchmark.json` ({report['source']['benchmark_date']}, "
        f"size {report['source']['benchmark_size']}); cores at "
        f"{report['utilisation']:.0%} utilisation. Generated by "
        "`python -m benchmarks.capacity`.",
        "",
        "| array | sources | core-h/day | busy cores | cores, real time | "
        "cores, 1-week backlog in 1 day | peak GB per worker (at 96 antennas) |",
        "|---|---|---|---|---|---|---|",
    ]
    rows = [("DSA-110", k, v) for k, v in report["dsa110"].items()]
    n_large = report["large_array"]["n_antennas"]
    rows += [
        (f"{n_large} antennas ({k.split('_')[0]} scaling)", k.split("_")[1], v)
        for k, v in report["large_array"].items()
        if k != "n_antennas"
    ]
    for array, sources, s in rows:
        lines.append(
            f"| {array} | {sources} | {s['total_core_h_per_day']} | {s['busy_cores']} "
            f"| {s['cores_real_time']} | {s['cores_week_backlog_in_a_day']} "
            f"| {s['memory_gb_per_worker']} |"
        )
    dsa = report["dsa110"]["1e+04"]
    lines += ["", "DSA-110, 10^4 sources, core hours per day by stage:", ""]
    lines += [f"- {k}: {v}" for k, v in dsa["core_h_per_day"].items()]
    if "check" in report:
        c = report["check"]
        lines += [
            "",
            "## Check against measured Dask runs",
            "",
            f"{c['n_tasks']} tasks ({c['task_s_total']} s of task time) on 1 worker "
            f"took {c['measured_wall_s']['1']} s; on 2 workers the model predicts "
            f"{c['predicted_wall_s_2_overhead_parallel']} s (the client's overhead "
            f"parallelising with the tasks; error "
            f"{c['relative_error_2_overhead_parallel']:+.0%}) to "
            f"{c['predicted_wall_s_2']} s (overhead serial; error "
            f"{c['relative_error_2']:+.0%}), measured {c['measured_wall_s']['2']} s; "
            f"speed-up predicted {c['predicted_speedup_overhead_parallel']} to "
            f"{c['predicted_speedup']}, measured {c['measured_speedup']} (load "
            f"average {c['load_avg_1min']} on the shared 2-core machine).",
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write ``capacity.json`` and ``capacity.md``; print the Markdown."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.capacity")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--utilisation", type=float, default=0.7)
    parser.add_argument("--antennas", type=int, default=2000)
    args = parser.parse_args(argv)
    bench = json.loads((args.results / "benchmark.json").read_text())
    measured_path = args.results / "dask_speedup.json"
    measured = json.loads(measured_path.read_text()) if measured_path.exists() else None
    if measured is not None and "tasks" not in measured:
        measured = None
    report = build_report(
        bench, measured, utilisation=args.utilisation, n_antennas_large=args.antennas
    )
    (args.results / "capacity.json").write_text(json.dumps(report, indent=2) + "\n")
    text = markdown(report)
    (args.results / "capacity.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
