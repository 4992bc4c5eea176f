"""Matplotlib figures without pyplot (no global state, no display needed)."""

from __future__ import annotations

import os
from pathlib import Path

from dsa110_contimg._optional import require

__all__ = ["new_figure", "save_figure"]


def new_figure(
    size_in: tuple[float, float], *, dpi: float = 100.0, constrained: bool = False
):
    """Return a matplotlib Figure with an Agg canvas (``size_in`` in inches).

    ``constrained`` lays out subplots so titles and tick labels do not overlap.
    """
    figure_module = require("matplotlib.figure", "plot")
    agg = require("matplotlib.backends.backend_agg", "plot")
    fig = figure_module.Figure(
        figsize=size_in, dpi=dpi, layout="constrained" if constrained else None
    )
    agg.FigureCanvasAgg(fig)
    return fig


def save_figure(fig, path: Path, *, tight: bool = True) -> Path:
    """Write ``fig`` as PNG through a temporary name; return ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, bbox_inches="tight" if tight else None)
    os.replace(tmp, path)
    return path
