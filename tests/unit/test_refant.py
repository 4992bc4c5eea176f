"""Reference-antenna choice: configured when good, else from the data."""

from __future__ import annotations

import numpy as np
import pytest

from dsa110_contimg.calibration._refant import AntennaStats, pick_refant
from dsa110_contimg.exceptions import CalibrationError


def _stats(**changes) -> AntennaStats:
    """Eight antennas named like real files; row 0 is a padding row (no antenna)."""
    names = ["", "2", "5", "9", "24", "60", "104", "117"]
    unflagged = np.array([0.0, 0.98, 0.97, 0.99, 0.98, 0.97, 0.99, 0.98])
    instability = np.array([np.nan, 0.10, 0.11, 0.09, 0.10, 0.12, 0.10, 0.11])
    distance = np.array([0.0, 150.0, 120.0, 80.0, 10.0, 300.0, 900.0, 1800.0])
    for index, (frac, inst) in changes.items():
        unflagged[int(index[1:])] = frac
        instability[int(index[1:])] = inst
    return AntennaStats(names, unflagged, instability, distance)


def test_configured_antenna_used_when_present_and_good():
    choice = pick_refant(_stats(), ["9", "24"])
    assert (choice.name, choice.how) == ("9", "configured")
    assert choice.unflagged_fraction == pytest.approx(0.99)


def test_seed_pad_names_on_real_data_choose_from_the_data():
    """The seed's pad001.. match no real antenna: near-centre good antenna instead."""
    choice = pick_refant(_stats(), ["pad001", "pad002", "pad003", "pad004"])
    assert choice.how == "automatic"
    assert choice.name == "24"  # nearest the array centre
    assert "pad001 (not in the MS)" in choice.reason
    assert choice.provenance()["refant_how"] == "automatic"


def test_auto_skips_configuration():
    choice = pick_refant(_stats(), ["auto"])
    assert (choice.name, choice.how) == ("24", "automatic")
    assert "rejected" not in choice.reason


def test_flagged_configured_antenna_falls_back_in_order():
    stats = _stats(a3=(0.0, np.nan))  # "9" dead: all its data flagged
    choice = pick_refant(stats, ["9", "pad001", "5"])
    assert (choice.name, choice.how) == ("5", "fallback")
    assert "9 (unflagged 0.00" in choice.reason
    assert "pad001 (not in the MS)" in choice.reason


def test_partly_flagged_or_unstable_antennas_are_not_good():
    # "24" (nearest the centre) has half its data flagged; "9" has unstable gains
    stats = _stats(a4=(0.5, 0.10), a3=(0.99, 0.5))
    assert pick_refant(stats, ["24"]).how == "automatic"
    choice = pick_refant(stats, ["9"])
    assert choice.how == "automatic"
    assert "instability 0.500" in choice.reason
    # the next nearest good antenna: "5" at 120 m ("9" at 80 m is unstable)
    assert choice.name == "5"


def test_outriggers_are_avoided_when_near_ones_are_good():
    choice = pick_refant(_stats(), [])
    assert choice.distance_m < 500.0


def test_no_usable_antenna_is_a_calibration_error():
    names = ["1", "2"]
    stats = AntennaStats(names, np.zeros(2), np.full(2, np.nan), np.array([0.0, 10.0]))
    with pytest.raises(CalibrationError, match="no antenna has unflagged"):
        pick_refant(stats, ["1"])
