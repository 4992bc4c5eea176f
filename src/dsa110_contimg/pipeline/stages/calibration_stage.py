"""Calibration stage: flag, solve on calibrator transits, apply to every MS.

For a block: every MS is flagged once; for each calibrator transiting within
the strip's beam during the block, the group holding the transit is solved
(unless the registry already has that solution, so re-running a block does not
solve twice), with the reference antenna from `choose_refant` (configured
when present and good, else chosen from the data; its provenance goes into
the solution's quality record); then each MS gets the nearest valid solution
of its own declination strip applied (CORRECTED_DATA), and the tables used
(and the reference antenna) are recorded in the MS (keyword
``DSA110_CALTABLES``) and the registry.

The stage opens no database: the caller passes the `SolutionRegistry`
(`state.calibration.open_solution_registry` for the pipeline database,
`InMemorySolutionRegistry` without one).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from astropy.time import Time

from dsa110_contimg._optional import require
from dsa110_contimg.calibration import (
    FlagReport,
    apply_calibration,
    choose_refant,
    find_transits,
    flag_ms,
    load_calibrators,
    recorded_calibration,
    solve_calibration,
    write_model_data,
)
from dsa110_contimg.calibration._apply import CALTABLES_KEY
from dsa110_contimg.data_ingestion.ms_info import MsInfo, read_ms_info
from dsa110_contimg.data_ingestion.skymodel import SkyCatalog
from dsa110_contimg.exceptions import CalibrationError
from dsa110_contimg.state.calibration import RegisteredSolution, SolutionRegistry
from dsa110_contimg.telescope.beam_models import angular_separation_rad, fwhm_deg
from dsa110_contimg.utils.config import CalibrationConfig
from dsa110_contimg.utils.logging import bind_context

__all__ = ["CalibrationOutcome", "calibrate_block", "ms_calibration"]

log = logging.getLogger(__name__)

_FLAGGED_KEY = "DSA110_FLAGGED"
_CALTABLES_KEY = CALTABLES_KEY
_SAME_SOURCE_ARCSEC = 30.0


@dataclass(slots=True)
class CalibrationOutcome:
    """What the stage did for a block."""

    applied: dict[str, RegisteredSolution] = field(default_factory=dict)
    solved: list[RegisteredSolution] = field(default_factory=list)
    flag_reports: dict[str, FlagReport] = field(default_factory=dict)
    errors: dict[str, CalibrationError] = field(default_factory=dict)


def ms_calibration(ms_path: Path) -> str | None:
    """Return the calibration recorded in an MS (None when uncalibrated).

    Raises
    ------
    CalibrationError
        CORRECTED_DATA was left half written (`calibration.recorded_calibration`).
    """
    return recorded_calibration(ms_path)


def _set_keyword(ms_path: Path, key: str, value: object) -> None:
    tables = require("casacore.tables", "casa")
    with tables.table(str(ms_path), readonly=False, ack=False) as ms:
        ms.putkeyword(key, value)


def _get_keyword(ms_path: Path, key: str) -> object:
    tables = require("casacore.tables", "casa")
    with tables.table(str(ms_path), ack=False) as ms:
        return ms.getkeywords().get(key)


def _write_flag_report(report: FlagReport, path: Path) -> None:
    """Write the flagged fractions (per antenna, per subband) as JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    from dsa110_contimg.utils.storage import publish, temporary_path

    tmp = temporary_path(path)
    try:
        tmp.write_text(json.dumps(asdict(report), indent=1))
        publish(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _span(info: MsInfo) -> tuple[float, float]:
    dt = float(np.median(np.diff(info.times_mjd))) if info.times_mjd.size > 1 else 0.0
    return float(info.times_mjd[0] - dt / 2), float(info.times_mjd[-1] + dt / 2)


def calibrate_block(
    ms_paths: list[Path],
    cfg: CalibrationConfig,
    *,
    cal_tables_dir: Path,
    registry: SolutionRegistry,
    block_id: str = "block",
    sky_model: SkyCatalog | None = None,
) -> CalibrationOutcome:
    """Flag, solve where a calibrator transits, and apply to every MS of a block.

    Parameters
    ----------
    ms_paths : list of Path
        The block's MSs.
    cfg : CalibrationConfig
        The ``calibration`` section.
    cal_tables_dir : Path
        Where solution tables, flag reports and QA plots are written.
    registry : SolutionRegistry
        Where solutions are looked up (a transit already solved is not solved
        again), registered, chosen for each MS and their application recorded.
    block_id : str, optional
        Names the block in messages.
    sky_model : SkyCatalog, optional
        The pipeline's catalogue: adds the other sources in the calibrator
        group's beam to the calibration model; without it the model is the
        calibrator alone and bright field sources bias the gains.

    Returns
    -------
    CalibrationOutcome
        Solutions applied (per MS) and solved, flag reports, errors per MS.
    """
    outcome = CalibrationOutcome()
    infos = {Path(p): read_ms_info(Path(p)) for p in ms_paths}
    with bind_context(stage="flag"):
        t0 = time.perf_counter()
        for path in infos:
            _flag_once(path, cfg, Path(cal_tables_dir), outcome)
        _stage_done("flag", t0, n_ms=len(infos), n_flagged=len(outcome.flag_reports))
    _note_leap_seconds(infos)
    with bind_context(stage="solve"):
        t0 = time.perf_counter()
        _solve_transits(infos, cfg, registry, Path(cal_tables_dir), outcome, sky_model)
        _stage_done("solve", t0, n_solved=len(outcome.solved))
    with bind_context(stage="apply"):
        t0 = time.perf_counter()
        for path, info in infos.items():
            _apply(path, info, cfg, registry, outcome, block_id)
        _stage_done("apply", t0, n_applied=len(outcome.applied))
    return outcome


def _flag_once(
    path: Path, cfg: CalibrationConfig, cal_dir: Path, outcome: CalibrationOutcome
) -> None:
    """Flag ``path`` unless it is marked flagged; write its flag report JSON."""
    if _get_keyword(path, _FLAGGED_KEY):
        return
    report = flag_ms(
        path,
        sigma=cfg.flag_sigma,
        backend=cfg.flag_backend,
        dead_fraction=cfg.dead_antenna_fraction,
    )
    _set_keyword(path, _FLAGGED_KEY, report.summary())
    outcome.flag_reports[str(path)] = report
    _write_flag_report(report, cal_dir / "flags" / f"{path.stem}.json")


def _stage_done(stage: str, t0: float, **fields: object) -> None:
    log.info(
        f"{stage} done",
        extra={**fields, "duration_s": round(time.perf_counter() - t0, 2)},
    )


def _note_leap_seconds(infos: dict[Path, MsInfo]) -> None:
    """Say once whether CASA's leap-second table covers these data."""
    from dsa110_contimg.tools.casa_env import warn_leap_seconds_once

    end = max(float(np.max(i.times_mjd)) for i in infos.values()) if infos else 0.0
    try:
        warn_leap_seconds_once(end)
    except (ImportError, RuntimeError, OSError, ValueError) as err:
        log.warning("leap-second table unreadable", extra={"error": str(err)})


def _write_qa_plots(solution, prefix: Path, path: Path, outcome, name: str) -> None:
    """Write the solve's bandpass, gain and flag plots next to its tables."""
    from dsa110_contimg.visualization import write_calibration_plots

    report = outcome.flag_reports.get(str(path))
    flags = prefix.parent / "flags" / f"{path.stem}.json"
    if report is not None:
        flag_report = asdict(report)
    elif flags.exists():
        flag_report = json.loads(flags.read_text())
    else:
        flag_report = None
    try:
        write_calibration_plots(
            solution.bandpass_table,
            solution.gain_table,
            flag_report=flag_report,
            title=f"{name} {path.stem}",
        )
    except (ImportError, RuntimeError, OSError, ValueError) as err:
        log.warning("calibration plots failed", extra={"error": str(err)})


def _model_sky(
    calibrator_sky: SkyCatalog, info: MsInfo, sky_model: SkyCatalog | None
) -> SkyCatalog:
    """Return the calibrator plus catalogue sources in the beam (no duplicates)."""
    if sky_model is None or len(sky_model) == 0:
        return calibrator_sky
    field = sky_model.select_within(
        info.phase_center_ra_deg, info.phase_center_dec_deg, 1.5 * fwhm_deg(1.4e9)
    )
    sep = angular_separation_rad(
        np.deg2rad(field.ra_deg),
        np.deg2rad(field.dec_deg),
        np.deg2rad(calibrator_sky.ra_deg[0]),
        np.deg2rad(calibrator_sky.dec_deg[0]),
    )
    keep = np.degrees(sep) * 3600 > _SAME_SOURCE_ARCSEC
    return SkyCatalog(
        name=np.concatenate([calibrator_sky.name, field.name[keep]]),
        ra_deg=np.concatenate([calibrator_sky.ra_deg, field.ra_deg[keep]]),
        dec_deg=np.concatenate([calibrator_sky.dec_deg, field.dec_deg[keep]]),
        flux_jy=np.concatenate([calibrator_sky.flux_jy, field.flux_jy[keep]]),
        spectral_index=np.concatenate(
            [calibrator_sky.spectral_index, field.spectral_index[keep]]
        ),
        ref_freq_hz=np.concatenate(
            [calibrator_sky.ref_freq_hz, field.ref_freq_hz[keep]]
        ),
    )


def _solve_transits(
    infos: dict[Path, MsInfo],
    cfg: CalibrationConfig,
    registry: SolutionRegistry,
    cal_dir: Path,
    outcome: CalibrationOutcome,
    sky_model: SkyCatalog | None,
) -> None:
    calibrators = load_calibrators(cfg.calibrator_catalog)
    spans = {p: _span(i) for p, i in infos.items()}
    start = Time(min(s for s, _ in spans.values()), format="mjd", scale="utc")
    end = Time(max(e for _, e in spans.values()), format="mjd", scale="utc")
    strip = float(np.median([i.pointing_dec_deg for i in infos.values()]))
    transits = find_transits(
        calibrators,
        strip,
        start,
        end,
        min_flux_jy=cfg.min_calibrator_flux_jy,
        max_offset_deg=cfg.max_calibrator_offset_deg,
    )
    for transit in transits:
        t = transit.transit_time.mjd
        path = min(
            spans,
            key=lambda p: (
                0.0
                if spans[p][0] <= t <= spans[p][1]
                else min(abs(t - spans[p][0]), abs(t - spans[p][1]))
            ),
        )
        info = infos[path]
        name = transit.calibrator.name
        if registry.find(calibrator=name, group_id=info.group_id) is not None:
            log.info(
                "calibration already solved",
                extra={"calibrator": name, "group": info.group_id},
            )
            continue
        try:
            write_model_data(
                path, _model_sky(transit.calibrator.as_sky(), info, sky_model)
            )
            refant = choose_refant(path, [cfg.gcal_refant, *cfg.refant_fallback])
            prefix = cal_dir / f"{info.group_id.replace(':', '')}_{name}"
            solution = solve_calibration(
                path,
                prefix,
                refant=refant.name,
                gcal_mode=cfg.gcal_mode,
                gcal_solint=cfg.gcal_solint,
                uvrange=cfg.uvrange,
                minsnr=cfg.bandpass_minsnr,
            )
        except CalibrationError as err:
            outcome.errors[str(path)] = err
            log.error(
                "calibration solve failed", extra={"ms": str(path), "error": str(err)}
            )
            continue
        _write_qa_plots(solution, prefix, path, outcome, name)
        registered = registry.register(
            calibrator=name,
            group_id=info.group_id,
            ms_path=path,
            tables=solution.tables,
            refant=solution.refant,
            dec_strip_deg=info.pointing_dec_deg,
            transit_mjd=t,
            validity_hours=cfg.validity_hours,
            quality={
                **solution.quality,
                **solution.durations_s,
                **refant.provenance(),
            },
        )
        outcome.solved.append(registered)


def _apply(
    path: Path,
    info: MsInfo,
    cfg: CalibrationConfig,
    registry: SolutionRegistry,
    outcome: CalibrationOutcome,
    block_id: str,
) -> None:
    if str(path) in outcome.errors:
        return
    mid = float(np.mean(info.times_mjd))
    try:
        solution = registry.select(
            time_mjd=mid,
            dec_deg=info.pointing_dec_deg,
            dec_tolerance_deg=cfg.dec_tolerance_deg,
            aging_warn_hours=cfg.aging_warn_hours,
            what=f"{block_id} ({path.name})",
        )
    except CalibrationError as err:
        outcome.errors[str(path)] = err
        return
    try:
        done = ms_calibration(path) == solution.describe()
    except CalibrationError:
        done = False  # half written: applied again below
    if done:
        outcome.applied[str(path)] = solution
        return
    try:
        # records solution.describe() only once CORRECTED_DATA is complete
        apply_calibration(
            path, solution.tables, engine=cfg.apply_engine, record=solution.describe()
        )
    except CalibrationError as err:
        outcome.errors[str(path)] = err
        return
    registry.record_application(ms_path=path, solution_id=solution.id)
    outcome.applied[str(path)] = solution
