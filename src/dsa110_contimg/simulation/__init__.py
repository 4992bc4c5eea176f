"""DSA-110 simulator: drift-scan subband groups with known truth."""

from dsa110_contimg.simulation._ese_profiles import ese_profile
from dsa110_contimg.simulation._lightcurves import (
    SimulatedLightcurves,
    simulate_ese_grid,
    simulate_lightcurves,
)
from dsa110_contimg.simulation._observation import (
    ObservationSpec,
    SimulatedGroup,
    SimulationResult,
    simulate_observation,
)
from dsa110_contimg.simulation._predict import predict_visibilities
from dsa110_contimg.simulation._sky import make_sky
from dsa110_contimg.simulation._truth import TruthComparison, compare_to_truth

__all__ = [
    "ObservationSpec",
    "SimulatedGroup",
    "SimulationResult",
    "simulate_observation",
    "predict_visibilities",
    "make_sky",
    "SimulatedLightcurves",
    "ese_profile",
    "simulate_ese_grid",
    "simulate_lightcurves",
    "TruthComparison",
    "compare_to_truth",
]
