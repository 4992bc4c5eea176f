"""`transit_centred_start`: the first group's middle is the calibrator's transit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from astropy.time import Time

from dsa110_contimg.calibration import load_calibrators
from dsa110_contimg.calibration._calibrators import _location
from dsa110_contimg.telescope import dsa110
from dsa110_contimg.testing.calibrator_transit import transit_centred_start


@pytest.mark.parametrize(("name", "n_times"), [("3C286", 24), ("3C48", 6)])
def test_the_calibrator_transits_in_the_middle_of_the_first_group(name, n_times):
    start = transit_centred_start(n_times, calibrator=name)
    assert start.utcoffset() == timedelta(0)
    half = timedelta(seconds=0.5 * n_times * dsa110.INTEGRATION_TIME_S)
    assert start + half >= datetime(2023, 6, 1, tzinfo=UTC)  # the day's first
    assert start + half < datetime(2023, 6, 2, tzinfo=UTC)
    middle = Time(start + half, location=_location())
    ra = next(c.ra_deg for c in load_calibrators() if c.name == name)
    hour_angle_deg = (middle.sidereal_time("apparent").deg - ra + 180.0) % 360 - 180
    assert abs(hour_angle_deg) * 240.0 < 1.0  # within 1 s of transit


def test_an_unknown_calibrator_names_the_known_ones():
    with pytest.raises(KeyError, match="3C286"):
        transit_centred_start(6, calibrator="3C999")
