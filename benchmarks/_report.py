"""Write a benchmark results document as JSON, Markdown and a PNG chart."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["markdown", "plot", "write_report"]

STEM = "benchmark"


def write_report(doc: dict[str, Any], directory: Path) -> list[Path]:
    """Write ``benchmark.json``, ``benchmark.md`` and ``benchmark.png``."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = [directory / f"{STEM}.{ext}" for ext in ("json", "md", "png")]
    paths[0].write_text(json.dumps(doc, indent=2) + "\n")
    paths[1].write_text(markdown(doc, png_name=paths[2].name))
    plot(doc, paths[2])
    return paths


def _fmt_s(value: float) -> str:
    return (
        f"{value:.2f}"
        if value < 10
        else f"{value:.1f}"
        if value < 100
        else f"{value:.0f}"
    )


def markdown(doc: dict[str, Any], *, png_name: str = f"{STEM}.png") -> str:
    """The human summary of a results document."""
    d, m, g = doc["data"], doc["machine"], doc["group_path"]
    lines = [
        f"# dsa110-contimg benchmark ({doc['size']})",
        "",
        f"Run {doc['date']} on {m['node']}: {m['cpu']}, {m['usable_cores']} usable "
        f"cores, {m['memory_gib']} GiB, load average at start "
        f"{m['load_average_at_start'][0]}; commit {doc['git']['commit'][:10]}"
        f"{_dirty(doc['git'])}; "
        f"whole run {doc['total_wall_s'] / 60:.1f} min.",
        "",
        f"Data: one group of {d['n_antennas']} antennas x {d['n_channels']} channels "
        f"x {d['n_times']} integrations ({d['observed_s']} s observed), averaged "
        f"by {d['chan_average']} channels at conversion; image {d['image']}; "
        f"photometry of {d['n_photometry_sources']} sources; mosaic of {d['mosaic']}.",
        "",
        "## Group path and real-time factor",
        "",
        f"**{g['wall_s']} s for {d['observed_s']} s of data: real-time factor "
        f"{g['real_time_factor']}** on this machine, production profile"
        + (
            f", median of {len(g['rounds'])} rounds"
            if len(g.get("rounds", ())) > 1
            else ""
        )
        + f" ({' -> '.join(g['stages'])}; "
        f"{g['cpu_s']} s CPU, peak {g['peak_rss_mb']:.0f} MB). The calibration "
        "solve runs once per calibrator transit, not per group."
        + _reference_units(doc, g),
        "",
        "![benchmark chart](" + png_name + ")",
        "",
        *_profiles(doc),
        *_flux_errors(doc),
        *_levers(doc),
        "## Every stage",
        "",
        "Each stage runs alone in a fresh process. CPU includes the imager "
        "child processes; read/written are bytes through read/write calls "
        "(page cache included), disk are bytes that reached the device.",
        "",
        "| stage | wall (s) | CPU (s) | cores busy | peak RSS (MB) | read (MB) "
        "| written (MB) | disk read (MB) | disk written (MB) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, s in doc["stages"].items():
        lines.append(
            f"| {name} | {_fmt_s(s['wall_s'])} | {_fmt_s(s['cpu_s'])} | "
            f"{s['cpu_per_wall']:.2f} | {s['peak_rss_mb']:.0f} | {s['read_mb']:.0f} | "
            f"{s['written_mb']:.0f} | {s['disk_read_mb']:.0f} | "
            f"{s['disk_written_mb']:.0f} |"
        )
    lines += ["", "## Side by side (same input, same run)", ""]
    lines += [
        "| comparison | ours (s) | alternative | alternative (s) | ratio | meaning |"
    ]
    lines += ["|---|---:|---|---:|---:|---|"]
    for name, r in doc["ratios"].items():
        lines.append(
            f"| {name} | {_fmt_s(r['ours_s'])} | {r['alternative']} | "
            f"{_fmt_s(r['alternative_s'])} | {r['ratio']} | {r['meaning']} |"
        )
    lines += ["", _facts(doc), ""]
    if doc["explanations"]:
        lines += ["## Where a stage is more than 2x its floor", ""]
        lines += [f"- {note}" for note in doc["explanations"]]
        lines.append("")
    scaling = doc.get("scaling") or {}
    if scaling:
        lines += [
            "## Scaling",
            "",
            "Wall time fitted as `a * x**b` over three points per axis (antennas "
            "and channels: conversion, flagging, imaging at the production image "
            "size, of uncalibrated groups except the full-size point, which is "
            "the main run's; image size: imaging of the main MS). Predictions "
            "extrapolate the fit.",
            "",
            "| axis | stage | exponent b | rms log residual | points (x: s) "
            "| predicted at 2x the largest x (s) |",
            "|---|---|---:|---:|---|---:|",
        ]
        for axis, fits in scaling["fits"].items():
            rows = scaling["points"][axis]
            top = max(row["value"] for row in rows)
            for stage, fit in fits.items():
                pts = ", ".join(f"{row['value']}: {_fmt_s(row[stage])}" for row in rows)
                pred = fit["a"] * (2 * top) ** fit["b"]
                lines.append(
                    f"| {axis} | {stage} | {fit['b']} | {fit['rms_log_residual']} "
                    f"| {pts} | {_fmt_s(pred)} |"
                )
        lines.append("")
        n = scaling.get("predict_antennas")
        rows = [
            (stage, fit)
            for stage, fit in scaling["fits"].get("antennas", {}).items()
            if n and f"predicted_{n}_antennas_s" in fit
        ]
        if rows:
            lines += [
                f"Predicted at {n} antennas ({n * (n - 1) // 2} baselines), same "
                "channels, integrations and image: a fixed cost plus a cost per "
                "baseline fitted over the antenna points (visibilities grow with "
                "the baselines), beside the power law's extrapolation (which the "
                "fixed costs at 24-96 antennas flatten).",
                "",
                "| stage | fixed (s) | per baseline (ms) | rms residual (s) "
                f"| predicted at {n} antennas (s) | power law at {n} antennas (s) |",
                "|---|---:|---:|---:|---:|---:|",
            ]
            for stage, fit in rows:
                lines.append(
                    f"| {stage} | {_fmt_s(fit['fixed_s'])} "
                    f"| {1e3 * fit['per_baseline_s']:.3f} "
                    f"| {_fmt_s(fit['rms_residual_s'])} "
                    f"| {_fmt_s(fit[f'predicted_{n}_antennas_s'])} "
                    f"| {_fmt_s(fit['power_law_predicted_s'])} |"
                )
            lines.append("")
    if doc["skipped"]:
        lines += [f"Skipped in this run: {', '.join(doc['skipped'])}.", ""]
    lines += [
        "Versions: " + ", ".join(f"{k} {v}" for k, v in doc["versions"].items()),
        "",
    ]
    return "\n".join(lines)


PROFILE_SUFFIX = ", fast profile"


def _reference_units(doc: dict[str, Any], group_path: dict[str, Any]) -> str:
    """The group path in units of the run's CPU reference ('' without one)."""
    units = group_path.get("reference_units")
    reference = doc["stages"].get("cpu reference", {}).get("info", {})
    if units is None or not reference.get("reference_s"):
        return ""
    return (
        f" In units of this machine's CPU reference ({reference['reference_s']} s, "
        f"a fixed numpy workload on one core, see *Every stage*): **{units}**; "
        "compare machines by that figure, not by the real-time factor."
    )


def _profiles(doc: dict[str, Any]) -> list[str]:
    """The group path of each imaging profile, every round, and its accuracy."""
    paths, accuracy = doc.get("group_paths") or {}, doc.get("profiles") or {}
    if not paths:
        return []
    observed = doc["data"]["observed_s"]
    lines = [
        "## Profiles: production and `fast`, same data, same run",
        "",
        "The production profile images the benchmark field at "
        f"{doc['data']['image']}; `fast` (`config/profiles/fast.yaml`) images "
        "the same field in pixels twice as large. Conversion, flagging and the "
        "calibration apply are the same stages for both. Group path = the sum "
        "of the six stages' wall times in one round; the headline is the "
        f"median round. Observed: {observed} s.",
        "",
        "| profile | image | group path, median (s) | real-time factor "
        "| CPU-reference units | rounds (s) "
        "| imaging (s) | PB correction (s) | photometry (s) | CPU (s) | peak (MB) "
        "| recovered | median abs flux error (pb >= 0.5) | max offset (beam) "
        "| residual rms / production | warm worker (s) | warm real-time factor |",
        "|---|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for profile, gp in paths.items():
        acc = accuracy.get(profile, {})
        warm = gp.get("warm_worker")
        med = gp["stage_median_s"]
        imaging, pb, phot = (med[n] for n in gp["stages"][3:])
        rounds = ", ".join(_fmt_s(p["wall_s"]) for p in gp["rounds"])
        lines.append(
            f"| {profile} | {acc.get('image', '')} | {_fmt_s(gp['wall_s'])} "
            f"| {gp['real_time_factor']} | {gp.get('reference_units', '')} "
            f"| {rounds} | {_fmt_s(imaging)} "
            f"| {_fmt_s(pb)} | {_fmt_s(phot)} | {_fmt_s(gp['cpu_s'])} "
            f"| {gp['peak_rss_mb']:.0f} | {acc.get('n_recovered')}/"
            f"{acc.get('n_injected')} | {acc.get('median_abs_flux_error_pb_ge_0p5')} "
            f"| {acc.get('max_offset_beams')} | {acc.get('residual_rms_ratio')} "
            f"| {_fmt_s(warm['wall_s']) if warm else ''} "
            f"| {warm['real_time_factor'] if warm else ''} |"
        )
    lines.append("")
    if any("warm_worker" in gp for gp in paths.values()):
        lines += [
            "Warm worker: the six stages run group after group in one "
            "process, as a streaming worker runs them (imports, IERS tables, "
            "and subband readers paid once; every map made anew); the "
            "groups after the first, raw files cold each time, the median of "
            "their group paths (rounds: "
            + "; ".join(
                f"{profile} "
                + ", ".join(_fmt_s(v) for v in gp["warm_worker"].get("rounds_s", ()))
                for profile, gp in paths.items()
                if "warm_worker" in gp
            )
            + " s). Per stage, median (s): "
            + "; ".join(
                f"{profile}: "
                + ", ".join(
                    f"{n.removesuffix(PROFILE_SUFFIX)} {_fmt_s(v)}"
                    for n, v in gp["warm_worker"]["stages_s"].items()
                )
                for profile, gp in paths.items()
                if "warm_worker" in gp
            )
            + "."
            + _warm_peak_note(paths),
            "",
        ]
    return lines


def _warm_peak_note(paths: dict[str, Any]) -> str:
    peaks = next(
        (
            gp["warm_worker"]["pass_peak_rss_mb"]
            for gp in paths.values()
            if gp.get("warm_worker", {}).get("pass_peak_rss_mb")
        ),
        None,
    )
    if not peaks:
        return ""
    return (
        " The worker process's own peak memory per group (reset before each; "
        "every profile images the group in one pass; WSClean and the subband "
        "readers run in their own processes): "
        + ", ".join(f"{p:.0f}" for p in peaks)
        + " MB."
    )


def _flux_errors(doc: dict[str, Any]) -> list[str]:
    """Each profile's pulls against the truth, per photometry estimator."""
    accuracy = doc.get("profiles") or {}
    rows = []
    for profile, acc in accuracy.items():
        for estimator, bins in (acc.get("pulls") or {}).items():
            summary = acc if estimator == "restored" else acc.get(estimator) or {}
            cells = [
                " / ".join(
                    f"{v[0]} ({v[1]})" if (v := bins[kind].get(b)) else "-"
                    for b in ("10-30", "30-100", "100-1000", "1000-inf")
                )
                for kind in ("full", "noise_only")
            ]
            rows.append(
                f"| {profile} | {estimator} "
                f"| {summary.get('median_abs_flux_error_pb_ge_0p5')} "
                f"| {cells[0]} | {cells[1]} |"
            )
    if not rows:
        return []
    return [
        "## Flux errors against the truth, per photometry estimator",
        "",
        "The group image of each profile measured with `photometry.estimator` "
        "`restored` (the default) and `dirty_equivalent` (issue 13): median "
        "|flux error| at pb >= 0.5 and the pull rms (measured - true) / error "
        "per SNR bin 10-30 / 30-100 / 100-1000 / > 1000 (pulls in brackets), "
        "with the full error and with the noise error alone. One image: the "
        "block's overlap fit is not in these errors.",
        "",
        "| profile | estimator | median abs flux error | pulls | noise errors alone |",
        "|---|---|---:|---|---|",
        *rows,
        "",
    ]


def _levers(doc: dict[str, Any]) -> list[str]:
    """Production imaging beside itself without each lever (same MS, same run)."""
    stages = doc["stages"]
    base = stages.get("imaging", {}).get("info", {})
    keys = [
        k
        for k in stages
        if k == "imaging"
        or k.startswith(("imaging, without", "imaging, before issue 19"))
        or k == "imaging, fast profile"
    ]
    if len(keys) < 2 or "residual_rms_jy" not in base:
        return []
    lines = [
        "## Imaging levers, same calibrated MS, same run",
        "",
        "Production imaging, the same without one of issue 19's levers, with "
        "neither (the parameters when the issue was filed) and the fast "
        "profile; time is the stage's wall time (a fresh process), accuracy "
        "the injected sources' and the residual's.",
        "",
        "| imaging | wall (s) | CPU (s) | time / production | major cycles "
        "| recovered | median abs flux error (pb >= 0.5) | max offset (beam) "
        "| residual rms (mJy/beam) | residual rms / production |",
        "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    t0 = stages["imaging"]["wall_s"]
    for key in keys:
        s, info = stages[key], stages[key]["info"]
        rms = info.get("residual_rms_jy")
        rms_text = "" if rms is None else f"{1e3 * rms:.4f}"
        ratio = "" if rms is None else f"{rms / base['residual_rms_jy']:.4f}"
        lines.append(
            f"| {key} | {_fmt_s(s['wall_s'])} | {_fmt_s(s['cpu_s'])} "
            f"| {s['wall_s'] / t0:.2f} | {info.get('major_iterations', '')} "
            f"| {info.get('n_recovered')}/{info.get('n_injected')} "
            f"| {info.get('median_abs_flux_error_pb_ge_0p5')} "
            f"| {info.get('max_offset_beams')} "
            f"| {rms_text} | {ratio} |"
        )
    lines.append("")
    return lines


def _dirty(git: dict[str, Any]) -> str:
    if not git.get("dirty"):
        return ""
    changed = git.get("changed_files")
    if changed and all(p.startswith("benchmarks/results/") for p in changed):
        return " (only earlier results changed)"
    return " (uncommitted changes)"


def _facts(doc: dict[str, Any]) -> str:
    s = {k: v for k, v in doc["stages"].items() if v.get("info")}
    facts = []
    if "disk speed" in s:
        info = s["disk speed"]["info"]
        facts.append(
            f"Disk: {info['write_mb_s']} MB/s sequential write (fsync'd), "
            f"{info['read_mb_s']} MB/s cold read, over {info['size_mb']} MB."
        )
    if "cpu reference" in s:
        info = s["cpu reference"]["info"]
        facts.append(
            f"CPU reference: {info['reference_s']} s on one core (complex64 FFTs "
            f"of 2048^2 {info['fft_s']} s, a float32 sort of 8 M values "
            f"{info['sort_s']} s, element-wise exp and sqrt over 16 M values "
            f"{info['elementwise_s']} s; medians of three)."
        )
    for key, stage in s.items():
        info = stage["info"]
        if key.startswith("imaging") and "n_recovered" in info:
            facts.append(
                f"{key}: auto-mask {info['auto_mask_sigma']}, auto-threshold "
                f"{info['auto_threshold_sigma']} sigma, niter {info['niter']}"
                + (
                    f", {info['major_iterations']} major iterations"
                    if "major_iterations" in info
                    else ""
                )
                + f"; injected sources recovered {info['n_recovered']}/"
                f"{info['n_injected']}, median |flux error| "
                f"{info['median_abs_flux_error_pb_ge_0p5']} (pb >= 0.5), max "
                f"offset {info['max_offset_beams']} beam"
                + (
                    f"; residual rms {1e3 * info['residual_rms_jy']:.4f} mJy/beam"
                    if info.get("residual_rms_jy") is not None
                    else ""
                )
                + "."
            )
    if "photometry" in s:
        info = s["photometry"]["info"]
        facts.append(
            f"Photometry: {info['n_measured']} sources measured; injected sources "
            f"recovered {info['n_recovered']}/{info['n_injected']}, median "
            f"|flux error| {info['median_abs_flux_error_pb_ge_0p5']} (pb >= 0.5)."
        )
    if "light-curve ingest" in s:
        info = s["light-curve ingest"]["info"]
        facts.append(
            f"Light-curve ingest: {info['per_epoch_s_median']} s per epoch of "
            f"{info['n_rows_per_epoch']} rows (median of {info['n_epochs']})."
        )
    if (
        "mosaic of one hour" in s
        and "median_abs_flux_error" in s["mosaic of one hour"]["info"]
    ):
        info = s["mosaic of one hour"]["info"]
        facts.append(
            f"Mosaic: median |flux error| {info['median_abs_flux_error']} over "
            f"{info['n_sources_snr_gt_10']} injected sources above 10 sigma."
        )
    if "mosaic, reproject_and_coadd" in s:
        info = s["mosaic, reproject_and_coadd"]["info"]
        if info.get("max_abs_diff_vs_ours_jy") is not None:
            facts.append(
                "reproject_and_coadd mosaic: median |flux error| "
                f"{info.get('median_abs_flux_error')}; it differs from ours by at "
                f"most {info['max_abs_diff_vs_ours_jy']:.2g} Jy/beam, 99% of pixels "
                f"by less than {info['p99_abs_diff_vs_ours_in_noise']:.2g} of the "
                "mosaic noise. The largest differences sit on source peaks: its "
                "default bilinear interpolation flattens a beam sampled by a few "
                "pixels, where ours interpolates the images with a cubic spline."
            )
    return "\n".join(f"- {f}" for f in facts)


def plot(doc: dict[str, Any], path: Path) -> None:
    """A chart: group path vs real time, side-by-side ratios, scaling fits."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    scaling = doc.get("scaling") or {}
    n_scaling = len(scaling.get("points", {}))
    rows = 2 if n_scaling else 1
    fig = plt.figure(figsize=(15, 4.8 * rows))
    grid = fig.add_gridspec(rows, 6)
    axes = [fig.add_subplot(grid[0, :3]), fig.add_subplot(grid[0, 3:])]
    width = 6 // max(n_scaling, 1)
    axes += [
        fig.add_subplot(grid[1, k * width : (k + 1) * width]) for k in range(n_scaling)
    ]
    stages, g = doc["stages"], doc["group_path"]

    ax = axes[0]
    names = g["stages"]
    median = g.get("stage_median_s") or {}
    walls = [median.get(n, stages[n]["wall_s"]) for n in names]
    ax.barh(names[::-1], walls[::-1], color="tab:blue")
    ax.axvline(
        doc["data"]["observed_s"], color="tab:red", ls="--", label="observed time"
    )
    ax.axvline(
        g["wall_s"],
        color="k",
        ls=":",
        label=f"group path (RTF {g['real_time_factor']})",
    )
    ax.set_xlabel("wall time (s)")
    ax.set_title("One group, stage by stage")
    ax.legend(fontsize=8, loc="lower right")

    ax = axes[1]
    ratios = doc["ratios"]
    labels = list(ratios)
    y = np.arange(len(labels))
    ours = [ratios[k]["ours_s"] for k in labels]
    other = [ratios[k]["alternative_s"] for k in labels]
    ax.barh(y - 0.2, ours, 0.4, label="ours", color="tab:blue")
    ax.barh(y + 0.2, other, 0.4, label="alternative / floor", color="tab:orange")
    ax.set_yticks(y, [k.replace("_", " ") for k in labels], fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("wall time (s)")
    ax.set_title("Side by side")
    ax.legend(fontsize=8)

    for ax, (axis, rows) in zip(
        axes[2:], scaling.get("points", {}).items(), strict=False
    ):
        x = np.array([row["value"] for row in rows], float)
        for stage, fit in scaling["fits"][axis].items():
            yv = np.array([row[stage] for row in rows], float)
            line = ax.loglog(x, yv, "o", label=f"{stage}: b={fit['b']}")[0]
            xx = np.geomspace(x.min(), 2 * x.max(), 20)
            ax.loglog(
                xx, fit["a"] * xx ** fit["b"], "-", color=line.get_color(), alpha=0.6
            )
        ax.set_xlabel(
            {
                "antennas": "antennas",
                "channels": "raw channels",
                "image_size": "image side (pixels)",
                "sources": "catalogue sources",
            }[axis]
        )
        ax.set_ylabel("wall time (s)")
        ax.set_xticks(x, [f"{v:g}" for v in x])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_title(f"Scaling with {axis.replace('_', ' ')}")
        ax.legend(fontsize=7)
    fig.suptitle(
        f"dsa110-contimg benchmark ({doc['size']}), "
        f"{doc['machine']['usable_cores']} cores, {doc['date'][:10]}",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
