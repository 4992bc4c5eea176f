"""Conversion stage: every subband group in a directory to a Measurement Set."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from dsa110_contimg.data_ingestion.grouping import SubbandGroup, find_subband_groups
from dsa110_contimg.data_ingestion.ms_creation import MsProduct, convert_group
from dsa110_contimg.exceptions import PipelineError
from dsa110_contimg.utils.config import ConversionConfig

__all__ = ["ConversionReport", "find_groups", "convert_groups"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class ConversionReport:
    """Outcome of converting a set of groups."""

    products: list[MsProduct] = field(default_factory=list)
    failures: dict[str, PipelineError] = field(default_factory=dict)

    @property
    def ms_paths(self) -> list[Path]:
        """Return the paths of all converted (or already present) MSs."""
        return [p.path for p in self.products]


def find_groups(incoming_dir: Path, cfg: ConversionConfig) -> list[SubbandGroup]:
    """Return the subband groups found in ``incoming_dir``.

    Grouped by the data's own time; files set aside are logged (see
    `find_subband_groups`, which also returns them).
    """
    return find_subband_groups(
        incoming_dir,
        tolerance_s=cfg.group_tolerance_s,
        n_expected=cfg.expected_n_subbands,
    ).groups


def convert_groups(
    groups: list[SubbandGroup],
    ms_dir: Path,
    cfg: ConversionConfig,
    *,
    telescope_name: str | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> ConversionReport:
    """Convert each group; a failing group is reported and the others continue.

    Parameters
    ----------
    groups : list of SubbandGroup
        Groups to convert.
    ms_dir : Path
        Output directory (``paths.ms_stage1_dir``).
    cfg : ConversionConfig
        The ``conversion`` section.
    telescope_name : str, optional
        Overrides ``cfg.ms_telescope_name``.
    progress : callable, optional
        Called as ``progress(done, total, message)`` after each group.
    """
    report = ConversionReport()
    for i, group in enumerate(groups):
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                product = convert_group(
                    group,
                    ms_dir,
                    incomplete_policy=cfg.incomplete_policy,
                    telescope_name=telescope_name or cfg.ms_telescope_name,
                    chan_average=cfg.chan_average,
                    read_workers=cfg.read_workers,
                    overwrite=cfg.overwrite,
                )
            for w in caught:
                log.warning(str(w.message), extra={"group": group.group_id})
            report.products.append(product)
            status = "exists" if product.skipped else "written"
            message = f"{group.group_id}: MS {status}"
        except PipelineError as err:
            report.failures[group.group_id] = err
            log.error(
                "group conversion failed",
                extra={"group": group.group_id, "error": str(err)},
            )
            message = f"{group.group_id}: FAILED ({type(err).__name__}: {err})"
        if progress is not None:
            progress(i + 1, len(groups), message)
    return report
