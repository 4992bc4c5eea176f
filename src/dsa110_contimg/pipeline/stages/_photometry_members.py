"""A mosaic's fluxes read from its members' group-image measurements.

With ``photometry.estimator: dirty_equivalent`` a group image's flux of a
source is the dirty image's (residual plus the source's own clean components
through the dirty beam), free of the clean's bias and with the residual's
noise as its error. The restored mosaic cannot be read that way (it has no
residual and no dirty beam), but a primary-beam-weighted mosaic at a source is
the weighted mean of its members there, weights :math:`p_i^2/\\sigma_i^2`
(`dsa110_contimg.mosaic.coadd_images`); `mosaic_from_members` forms that mean
from the members' dirty-equivalent measurements. The members are different
5-minute groups, so the thermal part of their noise errors averages as
independent; the rest of the noise error (the residual's excess over the
radiometer noise, the clean's error on this one sky: `thermal_fraction`) and
their sidelobe parts (``flux_sys_jy``) are the same sky's, but seen at other
places in the members' beams, with other neighbours: they are correlated by
:math:`\rho`, which the pair differences of the block's overlapping images
measure (`overlap_fit`); the overlap fit (`add_overlap_systematic`) adds the
members' `f/p`, as shared, afterwards.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import numpy as np
from astropy.table import Table

from dsa110_contimg.data_ingestion.photometry import PhotometryFlag
from dsa110_contimg.pipeline.stages._photometry_systematics import (
    kept_systematic,
    mark_shared_systematic,
    noise_errors,
    shared_error_correlation,
)
from dsa110_contimg.tables import image_id

__all__ = ["mosaic_from_members"]

log = logging.getLogger(__name__)

#: member rows with any of these flags do not enter a mosaic's mean: off the
#: image or in its outer band (which holds the mosaic's guard band), blank
#: pixels, primary beam below ``min_pb`` (the mosaic's ``pb_cut`` likewise)
_UNUSABLE = PhotometryFlag.EDGE | PhotometryFlag.NAN | PhotometryFlag.LOW_PB


def mosaic_from_members(
    mosaic: Table,
    images: Iterable[Table],
    used: Iterable[str],
) -> Table:
    r"""Return the mosaic's rows with fluxes combined from its members' rows.

    Parameters
    ----------
    mosaic : astropy.table.Table
        The mosaic's rows (`measure_mosaic`).
    images : iterable of astropy.table.Table
        Group-image rows (`measure_image`, ``image_kind == 'image'``); those of
        images not in ``used`` are ignored.
    used : iterable of str
        Paths of the images the mosaic coadded (members with status ``used``).

    Returns
    -------
    astropy.table.Table
        A copy of ``mosaic``. A source with usable member rows (finite flux,
        noise error and primary beam; no ``EDGE``, ``NAN`` or ``LOW_PB`` flag)
        gets :math:`S = \sum_i w_i S_i / \sum_i w_i`, :math:`w_i = 1/(n_i^2 +
        s_i^2)` (:math:`n_i` the member's noise error, :math:`s_i` its
        sidelobe systematic, both primary-beam corrected). With
        :math:`\phi_i` the member's thermal fraction (``meta
        ['thermal_fraction']``, 1 if absent) the noise error is
        :math:`\sqrt{\sum_i w_i^2 \phi_i^2 n_i^2} / \sum_i w_i` (thermal
        noise of independent groups); the rest of a member's error,
        :math:`q_i = \sqrt{(1 - \phi_i^2) n_i^2 + s_i^2}` (the clean's error
        on this sky and its sidelobes), is correlated between members by
        :math:`\rho` (`shared_error_correlation`, measured on ``images``), so
        the systematic is :math:`\sqrt{\rho (\sum_i w_i q_i)^2 + (1 - \rho)
        \sum_i w_i^2 q_i^2} / \sum_i w_i`; ``snr`` is the flux over the
        total; ``peak_jy``, ``rms_jy`` and the flags stay the mosaic's (the
        caller sets ``UPPER_LIMIT`` anew). A covered source no member measured cleanly
        keeps the restored mosaic's values and is flagged ``EDGE``
        (incomplete: its mosaic pixels come from the members' outer bands).
        ``meta`` records ``estimator = 'dirty_equivalent'``,
        ``n_from_members`` and ``error_correlation`` (:math:`\rho`).
    """
    used_ids = {image_id(path) for path in used}
    images = list(images)
    rho = shared_error_correlation(
        [t for t in images if len(t) and str(t["image_kind"][0]) == "image"]
    )
    out = mosaic.copy()
    names = np.asarray(out["source_name"]).astype(str)
    row_of = {name: row for row, name in enumerate(names)}
    # per mosaic row: sum w, sum w S, sum w^2 (phi n)^2, sum w q, sum w^2 q^2
    # (q the member's error that is not thermal: the clean's and sidelobes)
    sums = np.zeros((5, len(out)))
    for table in images:
        if not len(table) or str(table["image_kind"][0]) != "image":
            continue
        if image_id(str(table["image_path"][0])) not in used_ids:
            continue
        flux = np.asarray(table["flux_jy"], dtype=np.float64)
        noise = noise_errors(table)
        shared = kept_systematic(table)
        if shared is None:
            shared = np.zeros(len(table))
        rows = np.array(
            [row_of.get(str(n), -1) for n in table["source_name"]], dtype=np.intp
        )
        with np.errstate(invalid="ignore"):
            good = ((np.asarray(table["flags"]) & int(_UNUSABLE)) == 0) & (rows >= 0)
            good &= np.isfinite(flux) & np.isfinite(noise) & (noise > 0)
            good &= np.asarray(table["pb"], dtype=np.float64) > 0
        weight = 1.0 / (noise[good] ** 2 + shared[good] ** 2)
        phi = float(table.meta.get("thermal_fraction", 1.0))
        rest = weight * np.hypot(np.sqrt(1.0 - phi**2) * noise[good], shared[good])
        for k, term in enumerate(
            (
                weight,
                weight * flux[good],
                (weight * phi * noise[good]) ** 2,
                rest,
                rest**2,
            )
        ):
            np.add.at(sums[k], rows[good], term)
    flags = np.asarray(out["flags"]).astype(np.int64)
    on_mosaic = np.isfinite(np.asarray(out["flux_jy"], dtype=np.float64))
    combined = on_mosaic & (sums[0] > 0)
    total = sums[0][combined]
    noise_err = np.sqrt(sums[2][combined]) / total
    # the rest correlated between members by rho (one sky, partly the same
    # clean errors and sidelobes): rho (sum w q)^2 + (1 - rho) sum w^2 q^2
    sys = (
        np.sqrt(rho * sums[3][combined] ** 2 + (1.0 - rho) * sums[4][combined]) / total
    )
    err = np.hypot(noise_err, sys)
    mean = sums[1][combined] / total
    out["flux_jy"][combined] = mean
    out["flux_err_jy"][combined] = err
    out["flux_sys_jy"][combined] = sys
    out["snr"][combined] = mean / err
    flags[on_mosaic & ~combined] |= int(PhotometryFlag.EDGE)
    n_combined = int(combined.sum())
    out["flags"] = flags
    mark_shared_systematic(out)
    out.meta.update(
        estimator="dirty_equivalent",
        n_from_members=n_combined,
        error_correlation=rho,
    )
    log.info(
        "mosaic fluxes from members",
        extra={
            "n_rows": len(out),
            "n_from_members": n_combined,
            "n_used_images": len(used_ids),
            "error_correlation": round(rho, 3),
        },
    )
    return out
