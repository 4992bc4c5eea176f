"""Typed responses of the HTTP API (pydantic), in the OpenAPI schema.

Where `dsa110_contimg.tables` declares a table (the job queue, the
light-curve store, the variability results) the model's fields are built from
its columns by `table_model`, with the column's meaning and unit as the
field's description; the other models mirror the state-database tables of
``state/schema``. Floats that are NaN or infinite are sent as ``null``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, create_model

from dsa110_contimg.tables import JOBS, LIGHTCURVE_STORE, VARIABILITY_RESULTS, TableSpec

__all__ = [
    "ActionResult",
    "BacklogPoint",
    "BlockDetail",
    "BlockModel",
    "CalSolutionModel",
    "DiskModel",
    "FootprintModel",
    "HealthCheckModel",
    "HealthReport",
    "ImageDetail",
    "IntakeModel",
    "JobEventModel",
    "JobModel",
    "LightcurveModel",
    "LightcurvePoint",
    "MosaicMemberModel",
    "Page",
    "PendingModel",
    "ProductModel",
    "QualityModel",
    "QueueModel",
    "RejectedFileModel",
    "SourceModel",
    "VariabilityModel",
    "clean",
    "table_model",
]

T = TypeVar("T")

_PYTHON_TYPES = {"str": str, "bool": bool, "int32": int, "int64": int, "float64": float}


def clean(value: Any) -> Any:
    """Return ``value`` with NaN/inf floats as None and numpy scalars as Python ones."""
    if isinstance(value, Mapping):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        try:
            value = value.item()
        except (TypeError, ValueError):
            return value
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def table_model(
    spec: TableSpec,
    model_name: str,
    *,
    names: Iterable[str] | None = None,
    overrides: Mapping[str, tuple[Any, Any]] | None = None,
    doc: str | None = None,
) -> type[BaseModel]:
    """Return a pydantic model with one optional field per column of ``spec``.

    Parameters
    ----------
    spec : TableSpec
        The declared table.
    model_name : str
        Name of the model (and of its OpenAPI schema).
    names : iterable of str, optional
        Only these columns (default all, in file order).
    overrides : mapping, optional
        ``name -> (type, FieldInfo)`` replacing a column's field (e.g. a JSON
        text column sent decoded).
    doc : str, optional
        The model's docstring; default the table's title.
    """
    fields: dict[str, Any] = {}
    for name in spec.subset(names) if names is not None else spec.names:
        column = spec[name]
        if overrides and name in overrides:
            fields[name] = overrides[name]
            continue
        unit = f" ({column.unit})" if column.unit else ""
        description = " ".join(column.description.split()) + unit
        fields[name] = (
            _PYTHON_TYPES[column.dtype] | None,
            Field(None, description=description),
        )
    model = create_model(model_name, __doc__=doc or spec.title, **fields)
    return model


class Page(BaseModel, Generic[T]):
    """One page of a listing.

    ``next_offset`` is the offset of the next page, None on the last one;
    ``next_cursor`` (the listings that page by key) is the ``after`` of the
    next page, None on the last one.
    """

    items: list[T]
    total: int = Field(description="Rows the filter matches, all pages together.")
    limit: int = Field(description="Page size asked for.")
    offset: int = Field(description="Rows skipped before this page.")
    next_offset: int | None = Field(description="Offset of the next page, or null.")
    next_cursor: str | None = Field(
        None,
        description="Keyset paging: pass as 'after' for the next page (it starts "
        "after this page's last row, whatever was added meanwhile); null on the "
        "last page and for listings that page by offset only.",
    )


JobModel = table_model(
    JOBS,
    "Job",
    overrides={
        "payload_json": (
            dict[str, Any] | None,
            Field(None, description="the job's inputs (decoded JSON)"),
        ),
        "result_json": (
            dict[str, Any] | None,
            Field(None, description="the job's outputs when done (decoded JSON)"),
        ),
    },
)

LightcurvePoint = table_model(
    LIGHTCURVE_STORE,
    "LightcurvePoint",
    doc="One measurement of a source's light curve (light-curve store row).",
)

VariabilityModel = table_model(
    VARIABILITY_RESULTS,
    "VariabilityResult",
    doc="Variability statistics and the ESE search of one source.",
)


class JobEventModel(BaseModel):
    """One state change of a job (table ``job_events``)."""

    id: int
    job_id: int
    kind: str
    key: str
    from_state: str | None
    to_state: str
    reason: str
    worker: str | None
    error_class: str | None
    created_at: str


class IntakeModel(BaseModel):
    """Whether intake runs: the free-disk guard and the operator's hold."""

    open: bool = Field(description="New groups are enqueued and converted.")
    disk: dict[str, Any] = Field(description="The ``intake`` flag (disk guard).")
    hold: dict[str, Any] | None = Field(
        description="The operator's ``intake_hold`` flag, or null if never set."
    )


class BacklogPoint(BaseModel):
    """The backlog at one time (`state.figures.backlog_series`)."""

    time: str = Field(description="UTC ISO 8601 time of the sample")
    backlog: int = Field(description="jobs queued by then and not finished by then")
    pending_groups: int = Field(description="the convert_group ones among them")


class PendingModel(BaseModel):
    """The pending jobs now."""

    n_runnable: int = Field(description="pending jobs whose not_before_at has passed")
    oldest_data_time_iso: str | None
    oldest_created_at: str | None


class QueueModel(BaseModel):
    """Jobs by kind and state, the runnable backlog and the intake state."""

    by_kind: dict[str, dict[str, int]] = Field(description="kind -> state -> count")
    backlog: PendingModel
    intake: IntakeModel


class RejectedFileModel(BaseModel):
    """A raw file set aside by intake (table ``rejected_files``)."""

    id: int
    path: str
    kind: str
    reason: str
    group_id: str | None
    size_bytes: int | None
    first_seen_at: str
    updated_at: str
    resolved_at: str | None


class HealthCheckModel(BaseModel):
    """One health check (`services.health.HealthCheck`)."""

    name: str
    status: str = Field(description="healthy, warning or unhealthy")
    error_message: str | None
    details: dict[str, Any]


class HealthReport(BaseModel):
    """Every health check and the worst status."""

    status: str = Field(description="The worst status of the checks.")
    checks: list[HealthCheckModel]


class ProductModel(BaseModel):
    """A file a block produced (table ``products``)."""

    id: int
    block_id: str
    kind: str = Field(description="image, pbcor, preview, mosaic, photometry, ...")
    path: str
    group_id: str | None
    created_at: str
    exists: bool = Field(description="The file is still on disk.")
    size_bytes: int | None = Field(description="File size (bytes), null if absent.")


class QualityModel(BaseModel):
    """The quality gates of one image (table ``image_quality``)."""

    id: int
    block_id: str
    image_path: str
    passed: bool
    reason: str | None
    rms_jy: float | None = Field(description="measured rms (Jy/beam)")
    thermal_rms_jy: float | None = Field(description="radiometer rms (Jy/beam)")
    expected_rms_jy: float | None = Field(description="expected rms (Jy/beam)")
    rms_ratio: float | None = Field(description="rms / expected")
    peak_jy: float | None = Field(description="peak (Jy/beam)")
    min_jy: float | None = Field(description="minimum (Jy/beam)")
    dynamic_range: float | None
    negative_ratio: float | None
    peak_growth: float | None
    hit_niter: int | None
    n_attempts: int
    created_at: str


class MosaicMemberModel(BaseModel):
    """An image planned into a mosaic (table ``mosaic_members``)."""

    id: int
    block_id: str
    mosaic_path: str
    image_path: str
    status: str = Field(
        description="used, missing, corrupt, empty, incomplete, rejected"
    )
    detail: str | None
    created_at: str


class BlockModel(BaseModel):
    """A processing block that has products."""

    block_id: str
    n_products: int
    n_images: int
    n_mosaics: int
    first_product_at: str
    last_product_at: str
    success: bool | None = Field(description="Outcome of its newest block_metrics row.")
    processing_time_s: float | None = Field(description="Its wall time (s).")


class BlockDetail(BlockModel):
    """A block with its products, image quality, mosaic members and job."""

    products: list[ProductModel]
    quality: list[QualityModel]
    mosaic_members: list[MosaicMemberModel]
    job: JobModel | None  # type: ignore[valid-type]


class ImageDetail(BaseModel):
    """An image or mosaic: its product row, FITS header, quality, links."""

    product: ProductModel
    header: dict[str, Any] = Field(description="FITS primary header cards.")
    shape: list[int] = Field(description="Data shape (numpy order).")
    quality: QualityModel | None
    mosaic_members: list[MosaicMemberModel]
    preview_url: str
    fits_url: str


class FootprintModel(BaseModel):
    """Where on the sky an image or mosaic lies (from its FITS header)."""

    product_id: int
    block_id: str
    kind: str = Field(description="image or mosaic")
    ra_deg: float = Field(description="RA of the image centre (deg)")
    dec_deg: float = Field(description="Dec of the image centre (deg)")
    width_deg: float = Field(description="extent along RA at the centre (deg)")
    height_deg: float = Field(description="extent along Dec (deg)")
    pointing_dec_deg: float | None = Field(description="strip of the pointing (deg)")
    mjd_obs: float | None = Field(description="start of the data (UTC MJD)")
    date_obs: str | None = Field(description="start of the data (UTC ISO)")


class DiskModel(BaseModel):
    """Disk use of one data directory (its filesystem)."""

    directory: str
    exists: bool
    total_bytes: int | None
    used_bytes: int | None
    free_bytes: int | None
    free_fraction: float | None


class SourceModel(BaseModel):
    """A catalogue source, with its light-curve statistics when stored."""

    source_name: str
    ra_deg: float | None = Field(description="ICRS right ascension (deg)")
    dec_deg: float | None = Field(description="ICRS declination (deg)")
    catalog_flux_jy: float | None = Field(description="catalogue flux density (Jy)")
    separation_deg: float | None = Field(
        None, description="Distance from the cone centre (deg), cone searches only."
    )
    n_epochs: int | None = Field(description="usable measurements stored")
    eta: float | None
    v: float | None
    is_variable: bool | None
    ese_candidate: bool | None


class LightcurveModel(BaseModel):
    """A source's light curve, oldest first."""

    source_name: str
    n_points: int
    points: list[LightcurvePoint]  # type: ignore[valid-type]


class CalSolutionModel(BaseModel):
    """A calibration solution (table ``cal_solutions``) and its validity."""

    model_config = ConfigDict(extra="ignore")

    id: int
    calibrator: str
    group_id: str
    ms_path: str
    bandpass_table: str
    gain_table: str
    refant: str
    dec_strip_deg: float = Field(description="declination strip (deg)")
    transit_mjd: float = Field(description="calibrator transit (UTC MJD)")
    valid_from_mjd: float = Field(description="validity start (UTC MJD)")
    valid_to_mjd: float = Field(description="validity end (UTC MJD)")
    quality: dict[str, Any] = Field(description="solution quality (decoded JSON)")
    solved_at: str
    n_applied: int = Field(description="MSs this solution was applied to")
    valid_now: bool = Field(description="The server's time is inside the validity.")
    age_h: float = Field(description="Server time minus transit (hours).")


class ActionResult(BaseModel):
    """What an operator action did."""

    action: str
    ok: bool
    detail: str
    job: JobModel | None = None  # type: ignore[valid-type]
    intake: IntakeModel | None = None


def page(
    items: list,
    total: int,
    limit: int,
    offset: int,
    *,
    next_cursor: str | None = None,
    by_cursor: bool = False,
) -> dict[str, Any]:
    """Return a `Page` body for ``items`` of ``total``.

    ``by_cursor``: the page was asked for with ``after`` (its offset in the
    listing is unknown): ``next_offset`` is null, clients follow
    ``next_cursor``.
    """
    following = offset + len(items)
    return {
        "items": items,
        "total": total,
        "limit": limit,
        "offset": offset,
        "next_offset": following if following < total and not by_cursor else None,
        "next_cursor": next_cursor,
    }
