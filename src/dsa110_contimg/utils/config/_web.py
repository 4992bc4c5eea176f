"""Config section of the HTTP API server (``dsa110-contimg serve``)."""

from __future__ import annotations

from pydantic import BaseModel, Field, field_validator

from dsa110_contimg.utils.config._model import FROZEN

__all__ = ["WebConfig"]


class WebConfig(BaseModel):
    """The HTTP API: where it listens, the operator token and request limits."""

    model_config = FROZEN

    host: str = Field(
        "127.0.0.1",
        description="Address the server binds to; localhost unless an operator "
        "chooses otherwise (address).",
    )
    port: int = Field(8080, ge=1, le=65535, description="TCP port (port number).")
    operator_token_env: str = Field(
        "DSA110_OPERATOR_TOKEN",
        description="Environment variable holding the bearer token that operator "
        "actions (requeue, pause/resume intake) require; unset or empty = "
        "actions refused (variable name).",
    )
    max_body_bytes: int = Field(
        65536,
        ge=0,
        description="Largest request body accepted; larger ones get 413 (bytes).",
    )
    action_rate_per_min: int = Field(
        30,
        ge=1,
        description="Operator actions one client address may send per minute; "
        "more get 429 (count).",
    )
    page_limit_max: int = Field(
        1000, ge=1, description="Largest page size a listing returns (rows)."
    )
    figures_window_h: float = Field(
        1.0,
        gt=0,
        description="Default window of the metrics figures and of /metrics (hours).",
    )

    @field_validator("operator_token_env")
    @classmethod
    def _check_env_name(cls, value: str) -> str:
        if not value or not value.replace("_", "a").isalnum() or value[0].isdigit():
            msg = (
                f"operator_token_env {value!r} must be an environment variable "
                "name (letters, digits, underscores; not starting with a digit)"
            )
            raise ValueError(msg)
        return value
