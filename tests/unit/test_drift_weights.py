"""Known-truth tests of the weighted drift-scan beam (`drift_track_cards`).

The image of a drift scan is the weighted sum of its integrations and
channels, so its primary beam is the Airy beam averaged with those weights:
an integration that is flagged or missing must not count, and the track must
keep its cadence across a gap.
"""

from __future__ import annotations

import numpy as np
import pytest
from astropy.wcs import WCS

from dsa110_contimg.exceptions import InputDataError
from dsa110_contimg.mosaic import (
    DriftTrack,
    drift_track_cards,
    primary_beam_at,
    primary_beam_key,
)
from dsa110_contimg.telescope.beam_models import airy_beam, drift_averaged_beam

STEP_S = 12.884901888
T0 = 60100.25
FREQS = np.linspace(1.31e9, 1.499e9, 96)


def _times(index):
    return T0 + np.asarray(index, dtype=float) * STEP_S / 86400.0


def _track(cards, dec=30.0):
    return DriftTrack.from_header({"DSAPTDEC": dec, **cards})


def test_a_gap_keeps_the_cadence_and_gets_zero_weight():
    # integrations 3 and 4 missing, a jitter of 0.2 s on the others
    index = np.array([0, 1, 2, 5, 6, 7])
    times = _times(index) + np.array([0, 0.2, -0.1, 0.1, 0, -0.2]) / 86400.0
    cards = drift_track_cards(times, np.ones(6), FREQS, np.ones(FREQS.size))
    assert cards["DSANTIME"] == 8
    assert cards["DSADTSEC"] == pytest.approx(STEP_S, abs=0.3)
    weights = [cards[f"DSATW{i:03d}"] for i in range(1, 9)]
    assert weights == [1, 1, 1, 0, 0, 1, 1, 1]


def test_channel_weights_follow_the_trapezoid_rule_and_the_flags():
    times = _times(range(24))
    even = drift_track_cards(times, np.ones(24), FREQS, np.ones(FREQS.size))
    w = np.array([even[f"DSAFW{i:03d}"] for i in range(1, 9)])
    assert w[0] == pytest.approx(0.5 * w[3], rel=0.1)  # 96 channels: 0.537
    assert np.allclose(w[1:-1], 1.0, atol=0.01)
    upper = np.where(FREQS > 1.405e9, 1.0, 0.0)
    half = drift_track_cards(times, np.ones(24), FREQS, upper)
    w = np.array([half[f"DSAFW{i:03d}"] for i in range(1, 9)])
    assert np.all(w[:3] == 0) and np.all(w[5:7] > 0.99)


def test_weighted_beam_equals_the_mean_over_the_unflagged_integrations():
    times = _times(range(24))
    flagged = np.r_[np.zeros(10), np.ones(14)]  # first 10 integrations lost
    cards = drift_track_cards(times, flagged, FREQS, np.ones(FREQS.size))
    track = _track(cards)
    centre_ra, centre_dec = track.beam_centres_deg()
    ra = centre_ra.mean() + np.array([-1.6, -0.8, 0.0, 0.8, 1.6])
    dec = np.full(5, 30.3)
    got = primary_beam_at(track, ra, dec)
    # direct truth: the Airy beam at each kept pointing and beam frequency,
    # the frequencies weighted by the trapezoid rule
    fw = np.array([cards[f"DSAFW{i:03d}"] for i in range(1, 9)])
    truth = drift_averaged_beam(
        ra, dec, centre_ra[10:], centre_dec[10:], track.freqs_hz(), freq_weights=fw
    )
    assert np.allclose(got, truth, rtol=1e-12)
    equal = primary_beam_at(
        DriftTrack(30.0, track.start_mjd, track.step_s, 24, 1.31e9, 1.499e9), ra, dec
    )
    # losing the leading 10 integrations moves the beam by 1.7 min of RA:
    # tens of percent at the half-power points
    assert np.max(np.abs(got / equal - 1)) > 0.1


def test_equal_weights_give_the_unweighted_beam():
    ra, dec = np.array([10.0, 11.0]), np.array([30.0, 31.0])
    p_ra = np.linspace(10.0, 11.0, 6)
    f = np.linspace(1.31e9, 1.5e9, 8)
    plain = drift_averaged_beam(ra, dec, p_ra, 30.0, f)
    sep = np.hypot((ra[:, None] - p_ra) * np.cos(np.deg2rad(30.0)), dec[:, None] - 30)
    approx = airy_beam(np.deg2rad(sep)[..., None], f).mean(axis=(1, 2))
    assert np.allclose(plain, approx, rtol=1e-3)
    weighted = drift_averaged_beam(
        ra, dec, p_ra, 30.0, f, time_weights=np.full(6, 3.0), freq_weights=np.ones(8)
    )
    assert np.allclose(plain, weighted, rtol=1e-14)


@pytest.mark.parametrize(
    "weights", [np.ones(5), -np.ones(6), np.zeros(6), np.r_[np.nan, np.ones(5)]]
)
def test_bad_weights_are_refused(weights):
    with pytest.raises(ValueError, match="time_weights"):
        drift_averaged_beam(
            [10.0], [30.0], np.linspace(10, 11, 6), 30.0, [1.4e9], time_weights=weights
        )


def test_headers_without_weights_and_with_broken_weights():
    cards = drift_track_cards(_times(range(6)), np.ones(6), FREQS, np.ones(96))
    base = {k: v for k, v in cards.items() if not k.startswith(("DSATW", "DSAFW"))}
    assert _track(base).time_weights is None  # an image of an earlier version
    broken = dict(cards)
    del broken["DSATW004"]
    with pytest.raises(InputDataError, match="DSATW"):
        _track(broken)
    zero = {**cards, **{f"DSATW{i:03d}": 0.0 for i in range(1, 7)}}
    with pytest.raises(InputDataError, match="not usable"):
        _track(zero)


def test_all_flagged_leaves_equal_weights_out():
    cards = drift_track_cards(_times(range(6)), np.zeros(6), FREQS, np.zeros(96))
    assert not any(k.startswith(("DSATW", "DSAFW")) for k in cards)


def test_the_map_key_changes_with_the_weights():
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---SIN", "DEC--SIN"]
    wcs.wcs.cdelt = [-0.01, 0.01]
    wcs.wcs.crval = [10.0, 30.0]
    times = _times(range(6))
    a = _track(drift_track_cards(times, np.ones(6), FREQS, np.ones(96)))
    b = _track(drift_track_cards(times, np.r_[0, np.ones(5)], FREQS, np.ones(96)))
    assert primary_beam_key(wcs, (64, 64), a) != primary_beam_key(wcs, (64, 64), b)


def test_per_row_time_stamps_of_one_integration_are_one_integration():
    # another writer's MS: the rows of an integration differ by microseconds
    base = _times(range(6))
    jitter = np.linspace(-1e-6, 1e-6, 50) / 86400.0
    times = (base[:, None] + jitter[None, :]).ravel()
    cards = drift_track_cards(times, np.ones(times.size), FREQS, np.ones(96))
    assert cards["DSANTIME"] == 6
    assert cards["DSADTSEC"] == pytest.approx(STEP_S, rel=1e-6)
    assert all(cards[f"DSATW{i:03d}"] == 1.0 for i in range(1, 7))


def test_image_time_is_the_weighted_mean_of_its_integrations():
    times = _times(range(24))
    even = _track(drift_track_cards(times, np.ones(24), FREQS, np.ones(FREQS.size)))
    assert even.mean_mjd == pytest.approx(even.mid_mjd, abs=1e-9)
    assert even.mean_mjd == pytest.approx(times.mean(), abs=1e-8)
    # the first half flagged: the fluxes are of the second half's epoch
    late = np.r_[np.zeros(12), np.ones(12)]
    track = _track(drift_track_cards(times, late, FREQS, np.ones(FREQS.size)))
    assert track.mid_mjd == pytest.approx(even.mid_mjd, abs=1e-9)
    assert track.mean_mjd == pytest.approx(times[12:].mean(), abs=1e-8)
    assert (track.mean_mjd - track.mid_mjd) * 86400 == pytest.approx(
        6 * STEP_S, abs=0.5
    )
