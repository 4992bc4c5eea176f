"""Settings shared by every config section model."""

from __future__ import annotations

from pydantic import ConfigDict

__all__ = ["FROZEN", "DEFAULT_ENVIRONMENT"]

FROZEN = ConfigDict(frozen=True, extra="forbid")
"""Sections are immutable and reject unknown keys."""

DEFAULT_ENVIRONMENT = "development"
"""Overlay read when neither ``environment`` nor ``$DSA110_ENV`` names one."""
