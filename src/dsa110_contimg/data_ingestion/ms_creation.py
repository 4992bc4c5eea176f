"""Subband groups to Measurement Sets.

One MS per group: the 16 subbands combined in ascending frequency, every
integration rotated from its own meridian fringe-stop centre to one common
phase centre (the meridian at the group's median time), UVWs recomputed, then
written with pyuvdata + python-casacore under a temporary name, checked, and
renamed. An existing MS that passed those checks is skipped.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy import units as u
from pyuvdata import UVData

from dsa110_contimg import __version__
from dsa110_contimg._optional import require
from dsa110_contimg.data_ingestion import _ms_metadata, _phasing
from dsa110_contimg.data_ingestion._uvh5_reader import read_group_checked
from dsa110_contimg.data_ingestion._uvh5_subband import default_workers
from dsa110_contimg.data_ingestion.grouping import SubbandGroup
from dsa110_contimg.data_ingestion.ms_info import (
    _GROUP_KEY,
    _MISSING_KEY,
    _PT_DEC_KEY,
    MsInfo,
    _read_ms_summary,
    read_ms_info,
)
from dsa110_contimg.exceptions import (
    DataQualityWarning,
    InputDataError,
    ResourceError,
)
from dsa110_contimg.telescope import dsa110
from dsa110_contimg.utils.processes import pid_running
from dsa110_contimg.utils.storage import (
    ensure_free_space,
    fsync_tree,
    write_errors_as_resource,
)

__all__ = [
    "MsProduct",
    "MsInfo",
    "read_ms_info",
    "convert_group",
    "phase_to_common_center",
    "validate_ms",
    "is_valid_ms",
    "recover_replaced_ms",
]

log = logging.getLogger(__name__)

_COMPLETE_KEY = "DSA110_COMPLETE"
# Version of what the converter writes: 2 = one ANTENNA row per antenna, real
# POINTING/OBSERVATION, radiometer weights. Older MSs are converted again.
_FORMAT_KEY = "DSA110_MS_FORMAT"
_FORMAT = 2
_CORRUPT_KEY = "DSA110_N_CORRUPT_VIS"
# an MS being replaced is renamed to this while its successor moves in
_REPLACED_TAG = ".replaced-"
# bytes on disk per visibility (DATA complex64, WEIGHT/SIGMA_SPECTRUM float32,
# FLAG) and per row (UVW, TIME, ANTENNA1/2, ... ), with a margin
_MS_BYTES_PER_VIS = 20.0
_MS_BYTES_PER_ROW = 300.0
_MS_SPACE_MARGIN = 1.25
_MIN_BASELINE_M = 5.0
_MAX_BASELINE_M = 3210.0
_PHASE_TOL_ARCSEC = 1.0


@dataclass(frozen=True, slots=True)
class MsProduct:
    """A converted group."""

    group_id: str
    path: Path
    phase_center_ra_deg: float
    phase_center_dec_deg: float
    pointing_dec_deg: float
    n_subbands_present: int
    skipped: bool = False
    # visibilities flagged at conversion as non-finite or absurd (bit rot)
    n_corrupt_flagged: int = 0
    # seconds per step: read (with the channel averaging), phase, write (with
    # the validation read-back)
    durations_s: dict[str, float] = field(default_factory=dict, compare=False)


def phase_to_common_center(
    uv: UVData, *, pointing_dec_rad: float
) -> tuple[float, float]:
    """Rotate drift-scan visibilities to the meridian at the median time.

    Each integration of ``uv`` is fringe-stopped at (HA=0, Dec=pointing); this
    rotates every row to one ICRS centre and recomputes UVWs, in place.

    Parameters
    ----------
    uv : UVData
        Group data; ant1 <= ant2 already.
    pointing_dec_rad : float
        Apparent pointing declination from the files.

    Returns
    -------
    ra_deg, dec_deg : float
        The common ICRS phase centre.
    """
    location = uv.telescope.location
    numbers = np.asarray(uv.telescope.antenna_numbers)
    index = np.full(numbers.max() + 1, -1)
    index[numbers] = np.arange(numbers.size)
    xyz = _phasing.baseline_xyz_m(
        np.asarray(uv.telescope.antenna_positions, dtype=np.float64),
        index[uv.ant_1_array],
        index[uv.ant_2_array],
        location.lon.to_value(u.rad),
    )
    w_old = _phasing.uvw_for_hadec_m(xyz, 0.0, pointing_dec_rad)[:, 2]
    times, inverse = np.unique(uv.time_array, return_inverse=True)
    t_mid = np.atleast_1d(np.median(times))
    ra_c, dec_c = _phasing.meridian_icrs_deg(pointing_dec_rad, t_mid, location)
    ha, dec = _phasing.icrs_to_hadec_rad(ra_c, dec_c, times, location)
    w_new = _phasing.uvw_for_hadec_m(xyz, ha[inverse, 0], dec[inverse, 0])[:, 2]
    _phasing.rotate_phase_center(uv.data_array, w_old, w_new, uv.freq_array)

    uv.phase_center_catalog = {
        0: {
            "cat_name": f"meridian_{float(ra_c[0]):.4f}_{float(dec_c[0]):+.4f}",
            "cat_type": "sidereal",
            "cat_lon": float(np.deg2rad(ra_c[0])),
            "cat_lat": float(np.deg2rad(dec_c[0])),
            "cat_frame": "icrs",
            "cat_epoch": 2000.0,
        }
    }
    uv.phase_center_id_array = np.zeros(uv.Nblts, dtype=int)
    uv._set_app_coords_helper()
    with warnings.catch_warnings():  # visibilities were rotated above, on purpose
        warnings.simplefilter("ignore")
        uv.set_uvws_from_antenna_positions(update_vis=False)
    dw = np.max(np.abs(uv.uvw_array[:, 2] - w_new))
    if dw > 2e-3:
        msg = (
            f"UVW recomputation disagrees with the phase rotation by {dw:.4f} m; "
            "refusing to write an incoherent MS"
        )
        raise InputDataError(msg)
    return float(ra_c[0]), float(dec_c[0])


def convert_group(
    group: SubbandGroup,
    output_dir: Path,
    *,
    incomplete_policy: str = "fail",
    telescope_name: str = dsa110.CASA_TELESCOPE_NAME,
    chan_average: int = 1,
    sefd_jy: float = dsa110.SEFD_JY,
    overwrite: bool = False,
    read_workers: int = 0,
    direct_read: bool = True,
) -> MsProduct:
    """Convert one subband group to a Measurement Set.

    Parameters
    ----------
    group : SubbandGroup
        The raw files.
    output_dir : Path
        Directory of the MS (``paths.ms_stage1_dir``).
    incomplete_policy : {"fail", "flag"}
        What to do when subbands are missing.
    telescope_name : str
        OBSERVATION.TELESCOPE_NAME of the MS. The default ``OVRO_MMA`` is the
        name under which CASA's observatory table knows the site, so CASA
        tasks that need the array position (listobs, plotms, tclean's
        primary beam, the measures frames) find it; ``DSA_110`` is the name
        EveryBeam expects for a DSA-110 beam model (``conversion.
        ms_telescope_name``; ``DSA110.md``). The raw files' instrument name
        is kept either way (MS keyword ``DSA110_INSTRUMENT``,
        OBSERVATION.SCHEDULE).
    chan_average : int
        Average this many adjacent channels before writing (1 = none); must
        divide the channels per subband so no average crosses a subband edge.
        Cuts the imaging cost in proportion with no loss of flux accuracy
        for the 4-degree field (``DSA110.md``, Imaging).
    sefd_jy : float
        System-equivalent flux density for the radiometer-equation weights
        (WEIGHT_SPECTRUM, WEIGHT, SIGMA), Jy.
    overwrite : bool
        Rewrite even when a valid MS exists.
    read_workers : int
        Processes reading the subbands in parallel (``conversion.
        read_workers``); 0 = one per usable core (at most 16), 1 = read in
        this process.
    direct_read : bool
        Read the visibility arrays directly with h5py, averaged on read
        (`_uvh5_subband`); False reads each file with pyuvdata's generic
        reader (the reference the direct path is tested against; also what
        files of another layout get).

    Returns
    -------
    MsProduct

    Raises
    ------
    InputDataError
        Missing subbands (policy "fail"), unreadable or inconsistent files.
    ResourceError
        The output directory is not writable or the disk is full.
    """
    final = Path(output_dir) / dsa110.ms_filename(group.start_time)
    recover_replaced_ms(final)
    if final.exists() and not overwrite and is_valid_ms(final):
        ra, dec, pt_dec, n_sb = _read_ms_summary(final)
        log.info(
            "ms exists, skipped", extra={"group": group.group_id, "path": str(final)}
        )
        return MsProduct(group.group_id, final, ra, dec, pt_dec, n_sb, skipped=True)
    if incomplete_policy not in ("fail", "flag"):
        msg = f"incomplete_policy must be 'fail' or 'flag', got {incomplete_policy!r}"
        raise ValueError(msg)
    t0 = time.perf_counter()
    steps: dict[str, float] = {}
    # each subband is averaged as it is read (see read_group)
    corrupt: dict[int, int] = {}
    header, uv = read_group_checked(
        group,
        fill_missing=incomplete_policy == "flag",
        chan_average=chan_average,
        corrupt_counts=corrupt,
        workers=read_workers or default_workers(),
        fast=direct_read,
        while_reading=lambda meta: _phasing.warm_up(
            meta.telescope.location, float(meta.time_array[0])
        ),
    )
    n_corrupt = sum(corrupt.values())
    steps["read"] = time.perf_counter() - t0
    if n_corrupt:
        bad = ", ".join(f"sb{sb:02d}: {n}" for sb, n in sorted(corrupt.items()) if n)
        warnings.warn(
            f"group {group.group_id}: {n_corrupt} non-finite or absurd visibilities "
            f"flagged ({bad}); the raw files may be damaged",
            DataQualityWarning,
            stacklevel=2,
        )
    raw_numbers = _ms_metadata.compact_antennas(uv)
    if group.missing_subbands:
        warnings.warn(
            f"group {group.group_id}: subbands {list(group.missing_subbands)} missing; "
            "their channels are flagged",
            DataQualityWarning,
            stacklevel=2,
        )
    ra, dec = phase_to_common_center(uv, pointing_dec_rad=header.pointing_dec_rad)
    steps["phase"] = time.perf_counter() - t0 - sum(steps.values())
    instrument = str(uv.telescope.instrument or uv.telescope.name)
    uv.telescope.name = telescope_name
    uv.history += (
        f"\nconverted by dsa110_contimg {__version__}: group {group.group_id}, "
        f"phase centre RA {ra:.6f} Dec {dec:.6f} deg (ICRS)"
    )
    _ms_metadata.set_radiometer_weights(uv, sefd_jy=sefd_jy)
    _write_atomic(
        uv,
        final,
        group=group,
        pointing_dec_rad=header.pointing_dec_rad,
        center=(ra, dec),
        n_corrupt=n_corrupt,
        metadata={
            "location": uv.telescope.location,
            "raw_antenna_numbers": raw_numbers,
            "instrument": instrument,
            "observer": str(uv.extra_keywords.get("observer", "DSA-110")),
            "project": f"dsa110_contimg drift scan, group {group.group_id}",
        },
    )
    steps["write"] = time.perf_counter() - t0 - sum(steps.values())
    log.info(
        "ms written",
        extra={
            "group": group.group_id,
            "path": str(final),
            "duration_s": round(time.perf_counter() - t0, 2),
            "steps_s": {k: round(v, 2) for k, v in steps.items()},
        },
    )
    return MsProduct(
        group.group_id,
        final,
        ra,
        dec,
        float(np.degrees(header.pointing_dec_rad)),
        len(group.files),
        skipped=False,
        n_corrupt_flagged=n_corrupt,
        durations_s=steps,
    )


def _write_atomic(
    uv: UVData,
    final: Path,
    *,
    group: SubbandGroup,
    pointing_dec_rad: float,
    center: tuple[float, float],
    n_corrupt: int = 0,
    metadata: dict[str, object],
) -> None:
    """Write ``uv`` to a temporary MS, check it, flush it, and swap it in.

    An existing MS at ``final`` is renamed aside before the new one moves in
    and deleted only afterwards, so a crash at any point leaves either the
    old or the new MS under ``final`` or aside (`recover_replaced_ms` puts
    it back), never neither.
    """
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    aside = final.with_name(f".{final.name}{_REPLACED_TAG}{os.getpid()}")
    try:
        with write_errors_as_resource(final, "MS"):
            final.parent.mkdir(parents=True, exist_ok=True)
            if tmp.exists():
                shutil.rmtree(tmp)
            need = _MS_SPACE_MARGIN * (
                uv.Nblts * uv.Nfreqs * uv.Npols * _MS_BYTES_PER_VIS
                + uv.Nblts * _MS_BYTES_PER_ROW
            )
            ensure_free_space(final.parent, need, f"MS of group {group.group_id}")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                uv.write_ms(str(tmp), clobber=True, run_check=False)
            _ms_metadata.write_ms_metadata(
                str(tmp), pointing_dec_rad=pointing_dec_rad, **metadata
            )
            tables = require("casacore.tables", "casa")
            with tables.table(str(tmp), readonly=False, ack=False) as ms:
                ms.putkeyword(_PT_DEC_KEY, float(pointing_dec_rad))
                ms.putkeyword(_GROUP_KEY, group.group_id)
                ms.putkeyword(
                    _MISSING_KEY, ",".join(str(s) for s in group.missing_subbands)
                )
                ms.putkeyword(_CORRUPT_KEY, int(n_corrupt))
            validate_ms(tmp, expected_center_deg=center)
            with tables.table(str(tmp), readonly=False, ack=False) as ms:
                ms.putkeyword(_FORMAT_KEY, _FORMAT)
                ms.putkeyword(_COMPLETE_KEY, True)
            fsync_tree(tmp)
            if final.exists():
                os.replace(final, aside)
            os.replace(tmp, final)
            shutil.rmtree(aside, ignore_errors=True)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        msg = (
            f"group {group.group_id}: writing {final} failed ({err}); check that "
            f"{final.parent} is writable and has free space"
        )
        raise ResourceError(msg) from err
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        recover_replaced_ms(final)
        raise


def recover_replaced_ms(final: Path) -> Path | None:
    """Finish an MS replacement that a crash interrupted.

    When ``final`` is missing but a complete predecessor was renamed aside
    (``.<name>.replaced-<pid>``), it is moved back; when ``final`` exists,
    leftovers aside are deleted. Returns the restored path, if any.
    """
    final = Path(final)
    leftovers = sorted(final.parent.glob(f".{final.name}{_REPLACED_TAG}*"))
    restored = None
    for old in leftovers:
        if _writer_alive(old.name.rsplit(_REPLACED_TAG, 1)[-1]):
            continue  # that writer is mid-swap right now
        if restored is None and not final.exists() and is_valid_ms(old):
            os.replace(old, final)
            restored = final
            log.warning(
                "interrupted MS replacement: previous MS restored",
                extra={"path": str(final), "from": str(old)},
            )
        else:
            shutil.rmtree(old, ignore_errors=True)
    return restored


def _writer_alive(pid_text: str) -> bool:
    """Return True when a ``.replaced-<pid>`` pid is another, live process."""
    return (
        pid_text.isdigit()
        and int(pid_text) != os.getpid()
        and pid_running(int(pid_text))
    )


def validate_ms(
    path: Path, *, expected_center_deg: tuple[float, float] | None = None
) -> None:
    """Assert the invariants of a converted MS; raise InputDataError if broken.

    Checks: channel frequencies ascending with positive widths, a single field
    whose phase centre equals ``expected_center_deg`` within 1 arcsec,
    cross-correlation baseline lengths within 5-3210 m, one named ANTENNA row
    per antenna with data, antenna positions within 3.5 km of the array
    centre.
    """
    tables = require("casacore.tables", "casa")
    p = str(path)
    with tables.table(f"{p}/SPECTRAL_WINDOW", ack=False) as spw:
        freqs = np.concatenate([np.atleast_1d(f) for f in spw.getcol("CHAN_FREQ")])
        widths = np.concatenate([np.atleast_1d(w) for w in spw.getcol("CHAN_WIDTH")])
    problems = []
    if np.any(np.diff(freqs) <= 0):
        problems.append("channel frequencies are not strictly ascending")
    if np.any(widths <= 0):
        problems.append("channel widths are not positive")
    with tables.table(f"{p}/FIELD", ack=False) as field:
        phase_dir = field.getcol("PHASE_DIR")
    if phase_dir.shape[0] != 1:
        problems.append(
            f"{phase_dir.shape[0]} fields; one common phase centre expected"
        )
    elif expected_center_deg is not None:
        ra, dec = np.rad2deg(phase_dir[0, 0])
        d_ra = ((ra - expected_center_deg[0] + 180) % 360 - 180) * np.cos(
            np.deg2rad(dec)
        )
        off = 3600 * np.hypot(d_ra, dec - expected_center_deg[1])
        if off > _PHASE_TOL_ARCSEC:
            problems.append(f"FIELD phase centre is {off:.2f} arcsec from the data's")
    with tables.table(p, ack=False) as ms:
        uvw = ms.getcol("UVW")
        a1, a2 = ms.getcol("ANTENNA1"), ms.getcol("ANTENNA2")
    lengths = np.linalg.norm(uvw[a1 != a2], axis=1)
    if lengths.size and (
        lengths.min() < _MIN_BASELINE_M or lengths.max() > _MAX_BASELINE_M
    ):
        problems.append(
            f"baseline lengths {lengths.min():.1f}-{lengths.max():.1f} m "
            f"outside {_MIN_BASELINE_M}-{_MAX_BASELINE_M} m"
        )
    with tables.table(f"{p}/ANTENNA", ack=False) as ant:
        pos = ant.getcol("POSITION")
        names = ant.getcol("NAME")
    used = np.unique(np.concatenate([a1, a2]))
    if used.size != pos.shape[0] or not all(names):
        problems.append(
            f"ANTENNA has {pos.shape[0]} rows for {used.size} antennas with data "
            "(blank or unused rows)"
        )
    center = pos[used].mean(axis=0)
    if np.linalg.norm(pos[used] - center, axis=1).max() > 3500.0:
        problems.append("antenna positions spread beyond 3.5 km")
    if problems:
        msg = f"{path}: MS check failed: " + "; ".join(problems)
        raise InputDataError(msg)


def is_valid_ms(path: Path) -> bool:
    """Return True when ``path`` is an MS this module completed.

    An MS written in an older format (``DSA110_MS_FORMAT`` below the
    current one, e.g. with a blank ANTENNA row and unit weights) counts as
    not done, so that `convert_group` writes it again.
    """
    tables = require("casacore.tables", "casa")
    try:
        with tables.table(str(path), ack=False) as ms:
            kw = ms.getkeywords()
    except RuntimeError:
        return False
    return bool(kw.get(_COMPLETE_KEY, False)) and int(kw.get(_FORMAT_KEY, 1)) >= _FORMAT
