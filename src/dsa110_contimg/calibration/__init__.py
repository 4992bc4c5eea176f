"""Calibration: calibrators, flagging, CASA solves and application.

The registry of solved tables (validity, provenance) is state:
`dsa110_contimg.state.calibration`.

The names are re-exported lazily (each from its topic module on first use),
so flagging or applying does not import the calibrator catalogue and sky
model code (astropy coordinates, scipy.special: ~0.5 s per process).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "APPLY_ENGINES": "_apply",
    "apply_calibration": "_apply",
    "recorded_calibration": "_apply",
    "Calibrator": "_calibrators",
    "CalibratorTransit": "_calibrators",
    "find_transits": "_calibrators",
    "load_calibrators": "_calibrators",
    "transit_time": "_calibrators",
    "FlagReport": "_flagging",
    "flag_ms": "_flagging",
    "flag_visibilities": "_flagging",
    "predict_model": "_model",
    "write_model_data": "_model",
    "RefantChoice": "_refant",
    "choose_refant": "_refant",
    "CalSolution": "_solve",
    "read_gain_table": "_solve",
    "solve_calibration": "_solve",
}

__all__ = [
    "APPLY_ENGINES",
    "apply_calibration",
    "recorded_calibration",
    "Calibrator",
    "CalibratorTransit",
    "find_transits",
    "load_calibrators",
    "transit_time",
    "FlagReport",
    "flag_ms",
    "flag_visibilities",
    "predict_model",
    "write_model_data",
    "RefantChoice",
    "choose_refant",
    "CalSolution",
    "read_gain_table",
    "solve_calibration",
]

if TYPE_CHECKING:
    from dsa110_contimg.calibration._apply import (
        APPLY_ENGINES,
        apply_calibration,
        recorded_calibration,
    )
    from dsa110_contimg.calibration._calibrators import (
        Calibrator,
        CalibratorTransit,
        find_transits,
        load_calibrators,
        transit_time,
    )
    from dsa110_contimg.calibration._flagging import (
        FlagReport,
        flag_ms,
        flag_visibilities,
    )
    from dsa110_contimg.calibration._model import predict_model, write_model_data
    from dsa110_contimg.calibration._refant import RefantChoice, choose_refant
    from dsa110_contimg.calibration._solve import (
        CalSolution,
        read_gain_table,
        solve_calibration,
    )


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        msg = f"module {__name__!r} has no attribute {name!r}"
        raise AttributeError(msg)
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
