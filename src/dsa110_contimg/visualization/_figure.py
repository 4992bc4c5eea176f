"""Matplotlib figures without pyplot (no global state, no display needed)."""

from __future__ import annotations

from pathlib import Path

from dsa110_contimg._optional import require
from dsa110_contimg.utils.storage import publish, temporary_path, writes_product

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


_PNG_COMPRESS_LEVEL = 1


@writes_product("PNG figure")
def save_figure(fig, path: Path, *, tight: bool = True) -> Path:
    """Write ``fig`` as PNG through a unique temporary name; return ``path``.

    The temporary is unique per call, so two workers drawing the same preview
    never collide.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    try:
        # zlib level 1: the same pixels, 2% larger, 4x faster to encode
        fig.savefig(
            tmp,
            format="png",
            bbox_inches="tight" if tight else None,
            pil_kwargs={"compress_level": _PNG_COMPRESS_LEVEL},
        )
        publish(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
