"""Config section of the state database backend (``database``)."""

from __future__ import annotations

from pydantic import BaseModel, Field, field_validator

from dsa110_contimg.utils.config._model import FROZEN

__all__ = ["DatabaseConfig"]

_SCHEMES = ("sqlite:///", "postgresql://", "postgresql+psycopg://", "postgres://")


class DatabaseConfig(BaseModel):
    """Where the pipeline state lives: an SQLite file (default) or PostgreSQL."""

    model_config = FROZEN

    url: str | None = Field(
        None,
        description=(
            "State database URL: sqlite:///path or "
            "postgresql+psycopg://user@host:port/dbname; null = the SQLite "
            "file paths.state_db (URL)."
        ),
    )

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(_SCHEMES):
            msg = (
                f"database.url {value!r} has an unknown scheme; use sqlite:///path "
                "or postgresql+psycopg://user@host:port/dbname (or null for "
                "paths.state_db)"
            )
            raise ValueError(msg)
        return value
