"""The in-process evaluator of each alert rule: the operands of its comparisons.

A rule's ``expr`` in ``monitoring/alerts.yml`` is a conjunction of
comparisons ``<figure> <op> <number>``; its evaluator here returns, for each
alert instance (label set), the figures on the left of those comparisons in
the same order. The operators and numbers come from the ``expr`` itself
(`_rules.parse_comparisons`), so thresholds live in one place; a test checks
that each evaluator's operators match its ``expr``. The first operand is the
alert's value (as Prometheus' ``and`` keeps the left-hand side).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from dsa110_contimg.services.alerts._figures import Figures, strip_label

__all__ = ["EVALUATORS", "Evaluator", "Instance"]

Instance = tuple[dict[str, str], tuple[float | None, ...]]
"""An alert instance's labels and the operands of its comparisons."""


@dataclass(frozen=True, slots=True)
class Evaluator:
    """How to evaluate one rule in process.

    Attributes
    ----------
    ops : tuple of str
        The comparison operators of the rule's ``expr``, in order.
    operands : callable
        ``Figures -> list of Instance``.
    metrics : tuple of str
        The metrics its ``expr`` reads (checked against the ``expr``).
    """

    ops: tuple[str, ...]
    operands: Callable[[Figures], list[Instance]]
    metrics: tuple[str, ...]


def _backlog_growing(f: Figures) -> list[Instance]:
    i = f.inputs
    return [({}, (i.backlog_groups, i.backlog_groups - i.backlog_groups_before))]


def _failure_rate(f: Figures) -> list[Instance]:
    counts = f.inputs.jobs_finished_last_hour
    total = sum(counts.values())
    bad = sum(
        n for (_, state), n in counts.items() if state in ("failed", "quarantined")
    )
    return [({}, (bad / total if total else None, float(total)))]


def _no_data(f: Figures) -> list[Instance]:
    last = f.inputs.last_arrival_at
    silence = None if last is None else (f.now - last).total_seconds()
    return [({}, (silence, 1.0 if f.is_observing else 0.0))]


def _realtime_per_worker(f: Figures) -> list[Instance]:
    rtf = f.inputs.realtime_factor
    return [({}, (None if rtf is None else rtf / max(1, f.inputs.n_workers),))]


def _processed_ratio(f: Figures) -> list[Instance]:
    i = f.inputs
    arrived = i.groups_arrived_last_hour
    ratio = i.groups_processed_last_hour / arrived if arrived else None
    return [({}, (ratio, float(arrived)))]


def _calibration_age(f: Figures) -> list[Instance]:
    return [
        ({"dec_strip_deg": strip_label(dec)}, (age,))
        for dec, age in sorted(f.inputs.calibration_age_s.items())
    ]


EVALUATORS: dict[str, Evaluator] = {
    "DSA110BacklogGrowing": Evaluator(
        (">", ">"), _backlog_growing, ("dsa110_backlog_groups",)
    ),
    "DSA110BacklogCritical": Evaluator(
        (">",),
        lambda f: [({}, (float(f.inputs.backlog_groups),))],
        ("dsa110_backlog_groups",),
    ),
    "DSA110RealTimeFactorHigh": Evaluator(
        (">",),
        _realtime_per_worker,
        ("dsa110_realtime_factor", "dsa110_workers"),
    ),
    "DSA110FailureRateHigh": Evaluator(
        (">", ">="), _failure_rate, ("dsa110_jobs_finished_last_hour",)
    ),
    "DSA110DiskLow": Evaluator(
        ("<",),
        lambda f: [({"path": p}, (d.free_ratio,)) for p, d in f.disks.items()],
        ("dsa110_disk_free_ratio",),
    ),
    "DSA110IntakePaused": Evaluator(
        ("==",),
        lambda f: [({}, (1.0 if f.inputs.intake_paused else 0.0,))],
        ("dsa110_intake_paused",),
    ),
    "DSA110CalibrationStale": Evaluator(
        (">",), _calibration_age, ("dsa110_calibration_age_seconds",)
    ),
    "DSA110CalibrationTooOld": Evaluator(
        (">",), _calibration_age, ("dsa110_calibration_age_seconds",)
    ),
    "DSA110NoData": Evaluator(
        (">", "=="),
        _no_data,
        ("dsa110_last_arrival_timestamp_seconds", "dsa110_observing"),
    ),
    "DSA110ProcessingBehindArrivals": Evaluator(
        ("<", ">="),
        _processed_ratio,
        ("dsa110_groups_processed_last_hour", "dsa110_groups_arrived_last_hour"),
    ),
}
