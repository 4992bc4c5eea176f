"""Calibration: calibrators, flagging, CASA solves and application.

The registry of solved tables (validity, provenance) is state:
`dsa110_contimg.state.calibration`.
"""

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
from dsa110_contimg.calibration._flagging import FlagReport, flag_ms, flag_visibilities
from dsa110_contimg.calibration._model import predict_model, write_model_data
from dsa110_contimg.calibration._refant import RefantChoice, choose_refant
from dsa110_contimg.calibration._solve import (
    CalSolution,
    read_gain_table,
    solve_calibration,
)

__all__ = [
    "APPLY_ENGINES",
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
    "CalSolution",
    "apply_calibration",
    "choose_refant",
    "read_gain_table",
    "solve_calibration",
]
