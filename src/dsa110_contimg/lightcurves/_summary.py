"""Per-source running sums of calibrated fluxes, updated one epoch at a time.

The sums are those of the VAST variability metrics (Mooley et al. 2016): the
count, the inverse-variance weights and the weighted and unweighted first and
second moments. Each source's moments are taken about a fixed shift
``shift_jy`` (its first flux seen), which keeps the differences that eta and V
need from cancelling catastrophically for bright, well-measured sources.
Adding an epoch and removing it again are exact inverses up to rounding, so an
epoch can be re-processed without re-reading any other epoch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = ["SUM_FIELDS", "RunningSums", "usable_rows"]

SUM_FIELDS = ("n", "sum_w", "sum_wf", "sum_wf2", "sum_f", "sum_f2")
"""Names of the moment columns (all about ``shift_jy``; ``w = 1 / err**2``)."""


def usable_rows(
    flux_jy: NDArray[np.float64],
    flux_err_jy: NDArray[np.float64],
    flags: NDArray[np.integer],
    *,
    exclude_flags: int,
) -> NDArray[np.bool_]:
    """Return the mask of measurements that enter calibration and metrics.

    Parameters
    ----------
    flux_jy, flux_err_jy : ndarray, shape (n,)
        Flux densities and their errors, Jy.
    flags : ndarray of int, shape (n,)
        Photometry flag bits.
    exclude_flags : int
        Rows with any of these bits set are not usable.

    Returns
    -------
    ndarray of bool, shape (n,)
        Finite flux, finite positive error and none of ``exclude_flags`` set.
    """
    with np.errstate(invalid="ignore"):
        return (
            np.isfinite(flux_jy)
            & np.isfinite(flux_err_jy)
            & (flux_err_jy > 0)
            & ((np.asarray(flags, dtype=np.int64) & int(exclude_flags)) == 0)
        )


@dataclass(slots=True, eq=False)
class RunningSums:
    """Moments of every source's calibrated light curve, sorted by name.

    Parameters
    ----------
    source_name : ndarray of str, shape (n_src,)
        Source names, sorted ascending and unique.
    shift_jy : ndarray, shape (n_src,)
        Value the moments are taken about, Jy.
    n, sum_w, sum_wf, sum_wf2, sum_f, sum_f2 : ndarray, shape (n_src,)
        Count, sum of weights (Jy^-2), weighted sums of ``f - shift`` (Jy^-1)
        and of its square (dimensionless), and unweighted sums of ``f - shift``
        (Jy) and of its square (Jy^2).
    """

    source_name: NDArray[np.str_]
    shift_jy: NDArray[np.float64]
    n: NDArray[np.float64]
    sum_w: NDArray[np.float64]
    sum_wf: NDArray[np.float64]
    sum_wf2: NDArray[np.float64]
    sum_f: NDArray[np.float64]
    sum_f2: NDArray[np.float64]

    @classmethod
    def empty(cls) -> RunningSums:
        """Return sums with no sources."""
        zeros = np.zeros(0)
        return cls(np.zeros(0, dtype=str), zeros, *(zeros.copy() for _ in SUM_FIELDS))

    def __len__(self) -> int:
        """Return the number of sources."""
        return int(self.source_name.size)

    def index_of(self, names: NDArray[np.str_]) -> NDArray[np.intp]:
        """Return each name's row, or -1 for names without one."""
        if len(self) == 0:
            return np.full(np.shape(names), -1, dtype=np.intp)
        idx = np.searchsorted(self.source_name, names)
        idx = np.minimum(idx, len(self) - 1)
        return np.where(self.source_name[idx] == names, idx, -1)

    def update(
        self,
        source_name: NDArray[np.str_],
        flux_jy: NDArray[np.float64],
        flux_err_jy: NDArray[np.float64],
        *,
        sign: float = 1.0,
    ) -> None:
        """Add (``sign=+1``) or remove (``sign=-1``) measurements in place.

        Parameters
        ----------
        source_name : ndarray of str, shape (n,)
            Source of each measurement.
        flux_jy, flux_err_jy : ndarray, shape (n,)
            Usable calibrated flux densities and errors, Jy.
        sign : float
            +1 to add the measurements, -1 to remove measurements that were
            added before with exactly the same values.
        """
        names = np.asarray(source_name, dtype=str)
        if names.size == 0:
            return
        if sign > 0:
            self._add_sources(names, np.asarray(flux_jy, dtype=np.float64))
        idx = self.index_of(names)
        if np.any(idx < 0):
            msg = "cannot remove measurements of sources that have no running sums"
            raise ValueError(msg)
        f = np.asarray(flux_jy, dtype=np.float64) - self.shift_jy[idx]
        w = 1.0 / np.square(np.asarray(flux_err_jy, dtype=np.float64))
        n_src = len(self)
        for field, values in (
            ("n", np.ones_like(f)),
            ("sum_w", w),
            ("sum_wf", w * f),
            ("sum_wf2", w * f * f),
            ("sum_f", f),
            ("sum_f2", f * f),
        ):
            total = getattr(self, field)
            total += sign * np.bincount(idx, weights=values, minlength=n_src)
        if sign < 0:
            self._drop_empty()

    def _add_sources(self, names: NDArray[np.str_], flux_jy: NDArray) -> None:
        unique, first = np.unique(names, return_index=True)
        new = self.index_of(unique) < 0
        if not np.any(new):
            return
        name = np.concatenate([self.source_name, unique[new]])
        order = np.argsort(name, kind="stable")
        self.source_name = name[order]
        self.shift_jy = np.concatenate([self.shift_jy, flux_jy[first[new]]])[order]
        for field in SUM_FIELDS:
            values = np.concatenate([getattr(self, field), np.zeros(int(new.sum()))])
            setattr(self, field, values[order])

    def _drop_empty(self) -> None:
        keep = self.n > 0.5
        if np.all(keep):
            return
        self.source_name = self.source_name[keep]
        self.shift_jy = self.shift_jy[keep]
        for field in SUM_FIELDS:
            setattr(self, field, getattr(self, field)[keep])

    def weighted_mean_jy(self) -> NDArray[np.float64]:
        """Return each source's inverse-variance weighted mean flux, Jy."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.shift_jy + self.sum_wf / self.sum_w
