"""Compiled loops of the bright-source fit (numba, cached on disk).

Both walk the rows of an MS once, forming each source's model channel by
channel from `calibration._model.SourceTerms` (a phasor recurrence along the
channels, exact for uniform spacing, an exponential per channel otherwise):
`normal_equations` accumulates the weighted normal equations of one flux
scale per source on every ``stride``-th channel, `subtract_scaled` removes
the scaled models from the parallel hands. Rows are split among the threads
(each accumulates its own sums). The first call compiles (seconds) and
writes the machine code beside this file (``cache=True``).
"""

from __future__ import annotations

import cmath

import numpy as np
from numba import njit

__all__ = ["normal_equations", "subtract_scaled"]

_C_M_S = 299_792_458.0


@njit(cache=True, nogil=True)
def _normal(
    resid, weight, path_m, amp, time_index, freq_hz, sign, uniform, stride
):  # pragma: no cover - compiled
    n_row, n_chan, n_hand = resid.shape
    n_src = path_m.shape[1]
    gram = np.zeros((n_src, n_src))
    rhs = np.zeros(n_src)
    phasor = np.empty(n_src, np.complex128)
    step = np.empty(n_src, np.complex128)
    model = np.empty(n_src, np.complex128)
    for r in range(n_row):
        t = time_index[r]
        for s in range(n_src):
            turns = sign * 2.0 * np.pi * path_m[r, s] / _C_M_S
            phasor[s] = cmath.exp(1j * turns * freq_hz[0])
            if n_chan > stride:
                step[s] = cmath.exp(1j * turns * (freq_hz[stride] - freq_hz[0]))
        for k in range(0, n_chan, stride):
            if not uniform and k > 0:
                for s in range(n_src):
                    turns = sign * 2.0 * np.pi * path_m[r, s] / _C_M_S
                    phasor[s] = cmath.exp(1j * turns * freq_hz[k])
            w_sum = 0.0
            w_data = 0j
            for h in range(n_hand):
                w = weight[r, k, h]
                if w > 0:  # a flagged sample may hold NaN
                    w_sum += w
                    w_data += w * resid[r, k, h]
            if w_sum > 0:
                for s in range(n_src):
                    model[s] = amp[t, k, s] * phasor[s]
                for a in range(n_src):
                    ca = model[a].conjugate()
                    rhs[a] += (ca * w_data).real
                    for b in range(a, n_src):
                        gram[a, b] += w_sum * (ca * model[b]).real
            if uniform:
                for s in range(n_src):
                    phasor[s] *= step[s]
    return gram, rhs


def normal_equations(
    resid: np.ndarray,
    weight: np.ndarray,
    terms,
    *,
    stride: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Return the Gram matrix and right-hand side of one scale per source.

    Parameters
    ----------
    resid : ndarray, complex, shape (row, channel, hand)
        The data the sources are fitted to.
    weight : ndarray, float, shape (row, channel, hand)
        Weights, 0 where flagged or excluded.
    terms : SourceTerms
        The sources' phase paths and amplitudes (`calibration._model`).
    stride : int
        Every ``stride``-th channel is used.

    Returns
    -------
    (ndarray, ndarray)
        :math:`G_{ab} = \\sum w \\Re(m_a^* m_b)` (n, n) and
        :math:`b_a = \\sum w \\Re(m_a^* d)` (n,), summed over the hands.
    """
    gram, rhs = _normal(
        resid,
        weight,
        np.ascontiguousarray(terms.path_m, dtype=np.float64),
        np.ascontiguousarray(terms.amplitude, dtype=np.float64),
        np.ascontiguousarray(terms.time_index, dtype=np.int64),
        *_channels(terms),
        max(1, int(stride)),
    )
    return np.triu(gram) + np.triu(gram, 1).T, rhs


@njit(cache=True, nogil=True)
def _subtract(
    resid, path_m, amp, time_index, scale, freq_hz, sign, uniform
):  # pragma: no cover - compiled
    n_row, n_chan, n_hand = resid.shape
    n_src = path_m.shape[1]
    for r in range(n_row):
        t = time_index[r]
        total = np.zeros(n_chan, np.complex128)  # every source's model in the row
        for s in range(n_src):
            if scale[s] == 0.0:
                continue
            turns = sign * 2.0 * np.pi * path_m[r, s] / _C_M_S
            phasor = cmath.exp(1j * turns * freq_hz[0])
            step = 1.0 + 0j
            if n_chan > 1:
                step = cmath.exp(1j * turns * (freq_hz[1] - freq_hz[0]))
            for k in range(n_chan):
                if not uniform and k > 0:
                    phasor = cmath.exp(1j * turns * freq_hz[k])
                total[k] += scale[s] * amp[t, k, s] * phasor
                if uniform:
                    phasor *= step
        for k in range(n_chan):
            for h in range(n_hand):
                resid[r, k, h] -= total[k]


def subtract_scaled(resid: np.ndarray, terms, scale: np.ndarray) -> None:
    """Subtract ``scale`` times each source's model from every hand of ``resid``.

    ``resid`` (row, channel, hand), complex, is changed in place.
    """
    _subtract(
        resid,
        np.ascontiguousarray(terms.path_m, dtype=np.float64),
        np.ascontiguousarray(terms.amplitude, dtype=np.float64),
        np.ascontiguousarray(terms.time_index, dtype=np.int64),
        np.ascontiguousarray(scale, dtype=np.float64),
        *_channels(terms),
    )


def _channels(terms) -> tuple[np.ndarray, float, bool]:
    """The kernels' channel arguments: frequencies, phase sign, uniform spacing."""
    freqs = np.ascontiguousarray(terms.freq_hz, dtype=np.float64)
    uniform = bool(
        freqs.size < 2 or np.allclose(np.diff(freqs), freqs[1] - freqs[0], rtol=1e-9)
    )
    return freqs, float(terms.sign), uniform
