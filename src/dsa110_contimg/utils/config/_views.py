"""Frozen views of a config section: the keyword arguments of a value object.

A stage hands its section to a library value object (``ImagingParams``,
``ObservationSpec``, ``EseGrid``) through :func:`section_values`, which takes
every field of the object that the section configures, by name. Nothing is
copied by hand, so a key added to both is passed on without another edit, and
the object's own defaults (kept for standalone use) must equal the section's
(``tests/unit/test_config_defaults.py`` checks every such pair).
"""

from __future__ import annotations

import dataclasses

from pydantic import BaseModel

__all__ = ["section_values", "shared_fields"]


def shared_fields(
    section: type[BaseModel], target: type, *, prefix: str = ""
) -> dict[str, str]:
    """Return ``{target field: section key}`` for the fields both declare.

    Parameters
    ----------
    section : type of pydantic.BaseModel
        A config section model, e.g. ``ImagingConfig``.
    target : dataclass type
        The value object the section configures.
    prefix : str
        Prefix of the section's keys for this object (``"ese_"`` for the
        ESE grid in ``variability``).

    Returns
    -------
    dict of str to str
        Each dataclass field of `target` whose ``prefix + name`` is a key of
        `section`, mapped to that key.
    """
    keys = section.model_fields
    return {
        field.name: prefix + field.name
        for field in dataclasses.fields(target)
        if prefix + field.name in keys
    }


def section_values(
    section: BaseModel, target: type, *, prefix: str = ""
) -> dict[str, object]:
    """Return the section's values of the fields it shares with `target`.

    Parameters
    ----------
    section : pydantic.BaseModel
        A loaded config section.
    target : dataclass type
        The value object to build, e.g. ``ImagingParams``.
    prefix : str
        Prefix of the section's keys for this object (see `shared_fields`).

    Returns
    -------
    dict of str to object
        Keyword arguments for `target`; lists become tuples, as frozen
        dataclasses hold them.
    """
    values: dict[str, object] = {}
    for name, key in shared_fields(type(section), target, prefix=prefix).items():
        value = getattr(section, key)
        values[name] = tuple(value) if isinstance(value, list) else value
    return values
