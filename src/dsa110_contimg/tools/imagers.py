"""Imager registry: ``IMAGERS`` maps ``imaging.backend`` names to adapters.

`ImagingParams` holds the backend-neutral imaging keys; each backend maps
them onto its own options (the table is in `dsa110_contimg.tools.tclean`
and the README). The types live in `dsa110_contimg.tools._imager_types`
(re-exported here), so the adapters do not import this module.
"""

from __future__ import annotations

from dsa110_contimg.exceptions import ConfigError
from dsa110_contimg.tools._imager_types import ImageProduct, Imager, ImagingParams
from dsa110_contimg.tools.fake import FakeImager
from dsa110_contimg.tools.tclean import TcleanImager
from dsa110_contimg.tools.wsclean import WscleanImager

__all__ = ["ImagingParams", "ImageProduct", "Imager", "IMAGERS", "get_imager"]

IMAGERS: dict[str, type] = {
    "wsclean": WscleanImager,
    "tclean": TcleanImager,
    "fake": FakeImager,
}
"""Imaging backends by ``imaging.backend`` name (``fake``: tests and demos only)."""


def get_imager(backend: str, *, binary: str | None = None) -> Imager:
    """Return the imager registered under ``backend``.

    Parameters
    ----------
    backend : str
        A key of `IMAGERS` (``imaging.backend``).
    binary : str, optional
        The backend's executable: the WSClean binary (``wsclean``) or the
        Python interpreter that has casatasks (``tclean``); default found on
        PATH / this interpreter. For ``fake``: the sky catalogue CSV.

    Raises
    ------
    ConfigError
        The backend is unknown.
    """
    try:
        factory = IMAGERS[backend]
    except KeyError as err:
        msg = f"imaging.backend {backend!r} is unknown; choose one of {sorted(IMAGERS)}"
        raise ConfigError(msg) from err
    return factory(binary=binary)
