"""Calibration QA plots: bandpass, gains against time, flagged fractions.

`plot_bandpass`, `plot_gains` and `plot_flag_fractions` draw from arrays;
`write_calibration_plots` reads a solve's CASA tables and writes all three
PNGs next to them.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike

from dsa110_contimg._optional import require
from dsa110_contimg.visualization._figure import new_figure, save_figure

__all__ = [
    "plot_bandpass",
    "plot_gains",
    "plot_flag_fractions",
    "read_cal_table",
    "write_calibration_plots",
]

_POL_NAMES = ("X", "Y")


def _masked(values: ArrayLike, flags: ArrayLike) -> np.ndarray:
    out = np.array(values, dtype=np.complex128)
    out[np.asarray(flags, dtype=bool)] = np.nan
    return out


def _antenna_colours(n: int):
    cm = require("matplotlib.cm", "plot")
    return cm.viridis(np.linspace(0.0, 1.0, max(n, 1)))


def plot_bandpass(
    gains: ArrayLike,
    flags: ArrayLike,
    freq_hz: ArrayLike,
    path: Path,
    *,
    antenna_names: Sequence[str],
    title: str,
) -> Path:
    """Plot bandpass amplitude and phase against frequency, one line per antenna.

    Parameters
    ----------
    gains : array_like of complex, shape (n_ant, n_chan, n_pol)
        Bandpass solutions.
    flags : array_like of bool, same shape
        Flagged solutions (not drawn).
    freq_hz : array_like, shape (n_chan,)
        Channel frequencies (Hz).
    path : Path
        Output PNG.
    antenna_names : sequence of str
        One name per antenna row (the legend lists them when there are <= 12).
    title : str
        Figure title.
    """
    data = _masked(gains, flags)
    freq_mhz = np.asarray(freq_hz, dtype=float) / 1e6
    n_ant, _, n_pol = data.shape
    fig = new_figure((6.0 * n_pol, 7.0), constrained=True)
    axes = fig.subplots(2, n_pol, sharex=True, squeeze=False)
    colours = _antenna_colours(n_ant)
    for p in range(n_pol):
        for a in range(n_ant):
            label = antenna_names[a] if p == 0 and n_ant <= 12 else None
            axes[0, p].plot(
                freq_mhz, np.abs(data[a, :, p]), color=colours[a], lw=0.8, label=label
            )
            axes[1, p].plot(
                freq_mhz,
                np.degrees(np.angle(data[a, :, p])),
                ".",
                color=colours[a],
                ms=2,
            )
        pol = _POL_NAMES[p] if p < len(_POL_NAMES) else str(p)
        axes[0, p].set_title(f"pol {pol}: amplitude")
        axes[1, p].set_title(f"pol {pol}: phase")
        axes[1, p].set_xlabel("frequency (MHz)")
        axes[1, p].set_ylim(-180, 180)
    axes[0, 0].set_ylabel("|B|")
    axes[1, 0].set_ylabel("phase (deg)")
    if n_ant <= 12:
        axes[0, 0].legend(fontsize="x-small", ncol=2)
    fig.suptitle(f"{title}: bandpass, {n_ant} antennas (colour = antenna index)")
    return save_figure(fig, path)


def plot_gains(
    times_mjd: ArrayLike,
    antenna: ArrayLike,
    gains: ArrayLike,
    flags: ArrayLike,
    path: Path,
    *,
    antenna_names: Sequence[str],
    title: str,
) -> Path:
    """Plot gain amplitude and phase against time, one line per antenna.

    Parameters
    ----------
    times_mjd : array_like, shape (n_row,)
        Solution times (MJD).
    antenna : array_like of int, shape (n_row,)
        Antenna index of each row.
    gains, flags : array_like, shape (n_row, n_chan, n_pol)
        Complex gains and their flags; channels are averaged.
    path : Path
        Output PNG.
    antenna_names : sequence of str
        Names by antenna index.
    title : str
        Figure title.
    """
    data = _masked(gains, flags)
    with warnings.catch_warnings():  # fully flagged rows: "mean of empty slice"
        warnings.simplefilter("ignore", RuntimeWarning)
        per_row = np.nanmean(data, axis=1)  # (n_row, n_pol)
    times = np.asarray(times_mjd, dtype=float)
    ant = np.asarray(antenna, dtype=int)
    minutes = (times - times.min()) * 1440.0 if times.size else times
    fig = new_figure((11.0, 7.0), constrained=True)
    axes = fig.subplots(2, 1, sharex=True)
    ids = np.unique(ant)
    colours = _antenna_colours(len(ids))
    for colour, a in zip(colours, ids, strict=True):
        rows = np.flatnonzero(ant == a)
        order = rows[np.argsort(times[rows])]
        for p in range(per_row.shape[1]):
            style = "o-" if p == 0 else "s--"
            axes[0].plot(
                minutes[order],
                np.abs(per_row[order, p]),
                style,
                ms=3,
                color=colour,
                lw=0.7,
            )
            axes[1].plot(
                minutes[order],
                np.degrees(np.angle(per_row[order, p])),
                style,
                ms=3,
                color=colour,
                lw=0.7,
            )
    axes[0].set_ylabel("|G|")
    axes[1].set_ylabel("phase (deg)")
    axes[1].set_ylim(-180, 180)
    start = ""
    if times.size:
        time_module = require("astropy.time", "plot")
        start = time_module.Time(times.min(), format="mjd").isot[:19]
    axes[1].set_xlabel(f"minutes after {start} UTC")
    names = ", ".join(antenna_names[i] for i in ids[:6] if i < len(antenna_names))
    more = ", ..." if len(ids) > 6 else ""
    fig.suptitle(
        f"{title}: gains, {len(ids)} antennas ({names}{more}); pol X o-, pol Y s--"
    )
    return save_figure(fig, path)


def plot_flag_fractions(
    per_antenna: Mapping[str, float],
    per_subband: Mapping[int | str, float],
    path: Path,
    *,
    title: str,
) -> Path:
    """Bar charts of the flagged fraction per antenna and per subband.

    Parameters
    ----------
    per_antenna : mapping
        Antenna name -> flagged fraction (0..1).
    per_subband : mapping
        Subband index -> flagged fraction (0..1).
    path : Path
        Output PNG.
    title : str
        Figure title.
    """
    fig = new_figure((max(8.0, 0.14 * len(per_antenna) + 2.0), 7.0), constrained=True)
    axes = fig.subplots(2, 1)
    names = list(per_antenna)
    axes[0].bar(
        range(len(names)), [100 * per_antenna[n] for n in names], color="tab:red"
    )
    axes[0].set_xticks(range(len(names)), names, rotation=90, fontsize="x-small")
    axes[0].set_ylabel("flagged (%)")
    axes[0].set_title("per antenna")
    bands = sorted(per_subband, key=lambda k: int(k))
    axes[1].bar(
        [int(b) for b in bands],
        [100 * per_subband[b] for b in bands],
        color="tab:orange",
    )
    axes[1].set_xlabel("subband")
    axes[1].set_ylabel("flagged (%)")
    axes[1].set_title("per subband")
    fig.suptitle(f"{title}: flagged fraction")
    return save_figure(fig, path)


def read_cal_table(table_path: Path) -> dict[str, np.ndarray]:
    """Return a CASA calibration table's solutions, frequencies and antenna names.

    Returns
    -------
    dict
        ``ANTENNA1``, ``TIME`` (s, MJD seconds), ``CPARAM`` (n_row, n_chan,
        n_pol), ``FLAG``, ``CHAN_FREQ`` (Hz, of the first spectral window) and
        ``NAME`` (antenna names by index).
    """
    tables = require("casacore.tables", "casa")
    with tables.table(str(table_path), ack=False) as tab:
        out = {k: tab.getcol(k) for k in ("ANTENNA1", "TIME", "CPARAM", "FLAG")}
    with tables.table(f"{table_path}/SPECTRAL_WINDOW", ack=False) as spw:
        out["CHAN_FREQ"] = spw.getcol("CHAN_FREQ")[0]
    with tables.table(f"{table_path}/ANTENNA", ack=False) as ant:
        out["NAME"] = np.asarray(ant.getcol("NAME"))
    return out


def _names(table: Mapping[str, np.ndarray]) -> list[str]:
    return [str(n) or f"ant{i}" for i, n in enumerate(table["NAME"])]


def write_calibration_plots(
    bandpass_table: Path,
    gain_table: Path,
    *,
    flag_report: Mapping[str, Mapping] | None = None,
    title: str,
) -> dict[str, Path]:
    """Write the QA plots of one solve next to its tables.

    Parameters
    ----------
    bandpass_table, gain_table : Path
        The solve's CASA tables (``<prefix>.B``, ``<prefix>.G``).
    flag_report : mapping, optional
        ``per_antenna`` and ``per_subband`` flagged fractions of the solved MS.
    title : str
        Title prefix (e.g. the calibrator and group).

    Returns
    -------
    dict
        ``bandpass``, ``gains`` and (with a flag report) ``flags`` -> PNG path
        (``<prefix>.bandpass.png``, ``<prefix>.gains.png``, ``<prefix>.flags.png``).
    """
    bandpass_table, gain_table = Path(bandpass_table), Path(gain_table)
    stem = bandpass_table.with_suffix("")
    bp = read_cal_table(bandpass_table)
    order = np.argsort(bp["ANTENNA1"], kind="stable")
    names = _names(bp)
    out = {
        "bandpass": plot_bandpass(
            bp["CPARAM"][order],
            bp["FLAG"][order],
            bp["CHAN_FREQ"],
            stem.with_name(stem.name + ".bandpass.png"),
            antenna_names=[names[i] for i in bp["ANTENNA1"][order]],
            title=title,
        )
    }
    gt = read_cal_table(gain_table)
    out["gains"] = plot_gains(
        gt["TIME"] / 86400.0,
        gt["ANTENNA1"],
        gt["CPARAM"],
        gt["FLAG"],
        stem.with_name(stem.name + ".gains.png"),
        antenna_names=_names(gt),
        title=title,
    )
    if flag_report is not None:
        out["flags"] = plot_flag_fractions(
            flag_report["per_antenna"],
            flag_report["per_subband"],
            stem.with_name(stem.name + ".flags.png"),
            title=title,
        )
    return out
