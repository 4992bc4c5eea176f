"""The start of a simulated observation whose first group holds a calibrator's transit.

Benchmarks and calibration tests simulate a group with a calibrator (3C286 by
default) transiting in its middle, so the calibrator is at the centre of the
primary beam for half the group either side.
"""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["transit_centred_start"]


def transit_centred_start(
    n_times: int, *, calibrator: str = "3C286", day: str = "2023-06-01"
) -> datetime:
    """Return the start time (UTC) that centres ``calibrator``'s transit.

    Parameters
    ----------
    n_times : int
        Integrations per group (each `dsa110.INTEGRATION_TIME_S` long).
    calibrator : str
        A name from `dsa110_contimg.calibration.load_calibrators`.
    day : str
        The calibrator's first transit on or after this date's 00:00 UTC.

    Raises
    ------
    KeyError
        ``calibrator`` is not in the calibrator list (the message names them).
    """
    from astropy import units as u
    from astropy.time import Time

    from dsa110_contimg.calibration import load_calibrators, transit_time
    from dsa110_contimg.telescope import dsa110

    calibrators = {c.name: c for c in load_calibrators()}
    if calibrator not in calibrators:
        msg = f"no calibrator {calibrator!r}; known: {', '.join(sorted(calibrators))}"
        raise KeyError(msg)
    transit = transit_time(
        calibrators[calibrator].ra_deg, Time(f"{day}T00:00:00", scale="utc")
    )
    start = transit - 0.5 * n_times * dsa110.INTEGRATION_TIME_S * u.s
    return start.to_datetime(timezone=UTC)
