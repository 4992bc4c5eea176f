"""Image quality gates: measurements of a restored image and its clean.

Every group image is measured after the imager ran (`measure_quality`):

* ``rms_jy``: robust rms (1.4826 MAD) of the residual over the image;
* ``thermal_rms_jy``: the radiometer-equation rms of a naturally weighted
  Stokes I image of the MS's unflagged cross-correlations
  (`thermal_rms_jy`), and ``expected_rms_jy``, that rms combined in
  quadrature with the dynamic-range floor ``peak / qa_dynamic_range``
  (a bright source's residual sidelobes set the rms of its image);
* ``peak_jy`` and ``min_jy``: the largest and the most negative pixel of the
  restored image, ``dynamic_range = peak / rms`` and
  ``negative_ratio = -min / peak``;
* the clean's history (`CleanHistory`): the peak residual at the start of
  each major cycle, parsed from the WSClean log or from tclean's summary.
  A clean that converges lowers that peak every cycle; ``peak_growth`` is the
  largest ratio of a cycle's starting peak to the smallest of the earlier
  ones, or of a WSClean minor loop's final peak to its start (infinite when
  the loop ran away to NaN, e.g. with a loop gain above 2; 1 when it never
  rose).

The gates (`ImagingConfig.qa_*`): ``peak_growth <= qa_max_peak_growth`` (a
diverging clean), ``rms_jy <= qa_max_rms_ratio * expected_rms_jy`` and
``negative_ratio <= qa_max_negative_ratio`` (stripes and holes of a bad
model). The result is written beside the image as ``<prefix>-qa.json``, so the
mosaicking stage can leave a failed image out with the reason, and recorded in
the ``image_quality`` table of the state database.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.stats import mad_std

from dsa110_contimg.data_ingestion.ms_noise import thermal_rms_jy
from dsa110_contimg.exceptions import InputDataError
from dsa110_contimg.products import ImageNames
from dsa110_contimg.utils.config import ImagingConfig

__all__ = [
    "CleanHistory",
    "ImageQuality",
    "clean_history",
    "measure_quality",
    "parse_wsclean_log",
    "quality_path",
    "read_quality",
    "thermal_rms_jy",
    "write_quality",
]

log = logging.getLogger(__name__)

_UNITS = {
    "Jy": 1.0,
    "mJy": 1e-3,
    "µJy": 1e-6,
    "uJy": 1e-6,
    "nJy": 1e-9,
    "KJy": 1e3,
    "kJy": 1e3,
    "MJy": 1e6,
}
# WSClean prints a diverged minor loop's peak as e.g. "-1.04918e+23 KJy" or
# "-nan Jy"
_FLUX = r"(-?(?:nan|inf|[0-9.]+(?:e[-+]?[0-9]+)?))\s*((?i:[mµun]?Jy)|[kKM]Jy)"
_INITIAL = re.compile(rf"(?i:Initial peak):\s*{_FLUX}")
_STOPPED = re.compile(rf"(?i:Stopped on peak)\s*{_FLUX}")
_NOISE = re.compile(
    rf"(?i:Estimated standard deviation of background noise):\s*{_FLUX}"
)
_NITER = re.compile(r"maximum number of (?:minor )?(?:deconvolution )?iterations")


def _jy(value: str, unit: str) -> float:
    # case-sensitive first ("MJy" is not "mJy"), then the small units any case
    scale = _UNITS.get(unit) or _UNITS[unit[:-2].lower() + "Jy"]
    return float(value) * scale


@dataclass(frozen=True, slots=True)
class CleanHistory:
    """The course of one clean.

    Parameters
    ----------
    start_peaks_jy : tuple of float
        Peak residual (signed) at the start of each major cycle, Jy/beam.
    noise_jy : tuple of float
        The imager's noise estimate per major cycle, Jy/beam (WSClean only).
    hit_niter : bool
        The clean stopped because it reached ``niter``.
    end_peaks_jy : tuple of float
        Peak residual (signed) where each minor loop stopped, one per start
        peak (its start peak when WSClean logged no stop), Jy/beam (WSClean
        only; NaN or huge when the minor loop itself diverged).
    """

    start_peaks_jy: tuple[float, ...] = ()
    noise_jy: tuple[float, ...] = ()
    hit_niter: bool = False
    end_peaks_jy: tuple[float, ...] = ()

    @property
    def peak_growth(self) -> float:
        """Return how far the clean's peak residual rose.

        The largest of: a major cycle's starting peak over the smallest
        earlier one (a diverging major cycle), and a minor loop's final peak
        over its starting peak (a diverging minor loop, e.g. with a loop gain
        that overshoots). A non-finite peak (the loop ran away to NaN or
        infinity) gives infinity; 1 when the peak never rose.
        """
        starts = [abs(p) for p in self.start_peaks_jy]
        ends = [abs(p) for p in self.end_peaks_jy]
        if not all(math.isfinite(p) for p in starts + ends):
            return math.inf
        growth, lowest = 1.0, math.inf
        for peak in starts:
            if lowest < math.inf and lowest > 0:
                growth = max(growth, peak / lowest)
            lowest = min(lowest, peak)
        for start, end in zip(starts, ends, strict=False):
            if start > 0:
                growth = max(growth, end / start)
        return growth


def parse_wsclean_log(text: str) -> CleanHistory:
    """Return the clean history in a WSClean 3.x log.

    Parameters
    ----------
    text : str
        The log (WSClean's stdout and stderr).

    Notes
    -----
    Each major cycle prints ``Estimated standard deviation of background
    noise: <x> mJy`` and ``Initial peak: <x> Jy at <x>,<y>``, each minor
    loop ends with ``Stopped on peak <x> Jy, because ...`` (``-nan Jy`` or
    e.g. ``-1.05e+23 KJy`` when it ran away); a clean that ran out of
    iterations prints ``... because maximum number of iterations was
    reached``.
    """
    noise = tuple(_jy(v, u) for v, u in _NOISE.findall(text))
    # pair each minor loop's stop with its start, in log order
    events = sorted(
        [(m.start(), "start", _jy(*m.groups())) for m in _INITIAL.finditer(text)]
        + [(m.start(), "end", _jy(*m.groups())) for m in _STOPPED.finditer(text)]
    )
    peaks: list[float] = []
    ends: list[float] = []
    for _, kind, value in events:
        if kind == "start":
            peaks.append(value)
            ends.append(value)  # no stop logged (yet): the loop did not move it
        elif peaks:
            ends[-1] = value
    hit_niter = bool(_NITER.search(text.lower()))
    return CleanHistory(tuple(peaks), noise, hit_niter, tuple(ends))


def clean_history(log_path: Path, backend: str) -> CleanHistory:
    """Return the clean history of an imager run from its log.

    For tclean the child process appends a ``DSA_TCLEAN_PEAKS <json>`` line
    to the log (the major cycles' starting peaks from tclean's summary).
    A missing log gives an empty history (no divergence gate).
    """
    try:
        text = Path(log_path).read_text(errors="replace")
    except OSError:
        return CleanHistory()
    if backend == "wsclean":
        return parse_wsclean_log(text)
    for line in reversed(text.splitlines()):
        if line.startswith("DSA_TCLEAN_PEAKS "):
            record = json.loads(line.removeprefix("DSA_TCLEAN_PEAKS "))
            return CleanHistory(
                tuple(float(p) for p in record.get("start_peaks_jy", ())),
                (),
                bool(record.get("hit_niter", False)),
            )
    return CleanHistory()


@dataclass(frozen=True, slots=True)
class ImageQuality:
    """Quality measurements and gate verdict of one image.

    All fluxes in Jy/beam; ``reasons`` names each failed gate with its figure.
    ``attempts`` holds the earlier (failed) attempts' records, oldest first,
    each with the parameters it was made with; ``end_peaks_jy`` the peak
    residual where each minor loop stopped (`CleanHistory`).
    """

    image_path: str
    rms_jy: float
    thermal_rms_jy: float
    expected_rms_jy: float
    rms_ratio: float
    peak_jy: float
    min_jy: float
    dynamic_range: float
    negative_ratio: float
    start_peaks_jy: tuple[float, ...]
    peak_growth: float
    hit_niter: bool
    passed: bool
    reasons: tuple[str, ...]
    params: Mapping[str, object] = field(default_factory=dict)
    attempts: tuple[Mapping[str, object], ...] = ()
    end_peaks_jy: tuple[float, ...] = ()

    @property
    def reason(self) -> str:
        """Return the failed gates as one line ('' when passed)."""
        return "; ".join(self.reasons)

    def to_dict(self) -> dict[str, object]:
        """Return a JSON-ready dict (NaN as None)."""
        return _json_ready(asdict(self))


def _json_ready(value: object) -> object:
    if isinstance(value, Mapping):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(v) for v in value]
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, bool | int | str) or value is None:
        return value
    return str(value)


def _robust_rms(data: np.ndarray) -> float:
    finite = data[np.isfinite(data)]
    if finite.size == 0:
        return math.nan
    return float(mad_std(finite))


def _plane(path: Path) -> np.ndarray:
    try:
        with fits.open(path, memmap=False) as hdul:
            data = np.asarray(hdul[0].data, dtype=np.float64)
    except (OSError, TypeError, ValueError) as err:
        msg = f"{path}: cannot read FITS image ({err}); delete it and re-image the MS"
        raise InputDataError(msg) from err
    return data.reshape(data.shape[-2:])


def measure_quality(
    image_path: Path,
    residual_path: Path,
    history: CleanHistory,
    thermal_jy: float,
    cfg: ImagingConfig,
    *,
    params: Mapping[str, object] | None = None,
    attempts: Sequence[Mapping[str, object]] = (),
) -> ImageQuality:
    """Measure an image and apply the quality gates of ``cfg``.

    Parameters
    ----------
    image_path, residual_path : Path
        Restored image and residual (the restored image stands in for a
        missing residual).
    history : CleanHistory
        The clean's history (`clean_history`).
    thermal_jy : float
        Radiometer-equation rms (`thermal_rms_jy`); NaN skips the rms gate.
    cfg : ImagingConfig
        Gate thresholds (``qa_max_peak_growth``, ``qa_max_rms_ratio``,
        ``qa_dynamic_range``, ``qa_max_negative_ratio``).
    params : mapping, optional
        Imaging parameters of this attempt (recorded).
    attempts : sequence of mapping, optional
        Earlier attempts' records (`ImageQuality.to_dict`).
    """
    image = _plane(Path(image_path))
    residual = _plane(residual_path) if Path(residual_path).exists() else image
    rms = _robust_rms(residual)
    finite = image[np.isfinite(image)]
    peak = float(finite.max()) if finite.size else math.nan
    low = float(finite.min()) if finite.size else math.nan
    floor = abs(peak) / cfg.qa_dynamic_range if math.isfinite(peak) else 0.0
    expected = math.hypot(thermal_jy, floor) if math.isfinite(thermal_jy) else math.nan
    ratio = rms / expected if expected and math.isfinite(expected) else math.nan
    dyn = peak / rms if rms > 0 else math.nan
    neg = -low / peak if peak > 0 else math.nan
    growth = history.peak_growth
    reasons = []
    if growth > cfg.qa_max_peak_growth:
        peaks = ", ".join(f"{1e3 * p:.3g}" for p in history.start_peaks_jy)
        ends = ", ".join(f"{1e3 * p:.3g}" for p in history.end_peaks_jy)
        rose = f"{growth:.2f}x" if math.isfinite(growth) else "to NaN or infinity"
        reasons.append(
            f"clean diverged: peak residual rose {rose} "
            f"(> imaging.qa_max_peak_growth {cfg.qa_max_peak_growth}; "
            f"start peaks {peaks} mJy"
            f"{f'; minor loops stopped at {ends} mJy' if ends else ''}"
            f"{', stopped at niter' if history.hit_niter else ''})"
        )
    if math.isfinite(ratio) and ratio > cfg.qa_max_rms_ratio:
        reasons.append(
            f"rms {1e3 * rms:.3g} mJy is {ratio:.2f}x the expected "
            f"{1e3 * expected:.3g} mJy (thermal {1e3 * thermal_jy:.3g} mJy, dynamic "
            f"range floor {1e3 * floor:.3g} mJy; > imaging.qa_max_rms_ratio "
            f"{cfg.qa_max_rms_ratio})"
        )
    if math.isfinite(neg) and neg > cfg.qa_max_negative_ratio:
        reasons.append(
            f"most negative pixel {1e3 * low:.3g} mJy is {neg:.3f} of the peak "
            f"{1e3 * peak:.3g} mJy (> imaging.qa_max_negative_ratio "
            f"{cfg.qa_max_negative_ratio})"
        )
    if not finite.size:
        reasons.append("restored image has no finite pixel")
    return ImageQuality(
        str(image_path),
        rms,
        thermal_jy,
        expected,
        ratio,
        peak,
        low,
        dyn,
        neg,
        history.start_peaks_jy,
        growth,
        history.hit_niter,
        not reasons,
        tuple(reasons),
        dict(params or {}),
        tuple(attempts),
        history.end_peaks_jy,
    )


def quality_path(image_path: Path) -> Path:
    """Return the quality record beside a restored image (``-qa.json``)."""
    image_path = Path(image_path)
    return ImageNames.of(image_path).path("quality")


def write_quality(quality: ImageQuality) -> Path:
    """Write the quality record beside its image (temporary name, then rename)."""
    path = quality_path(Path(quality.image_path))
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(quality.to_dict(), indent=1))
    os.replace(tmp, path)
    return path


def read_quality(image_path: Path) -> dict[str, object] | None:
    """Return the quality record of an image, or None when it has none.

    Raises
    ------
    InputDataError
        The record exists but is not valid JSON (delete it to re-measure).
    """
    path = quality_path(Path(image_path))
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        msg = f"{path}: unreadable quality record ({err}); delete it to re-measure"
        raise InputDataError(msg) from err
