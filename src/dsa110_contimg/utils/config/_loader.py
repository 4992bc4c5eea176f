"""Read, merge and validate the layered pipeline configuration.

:func:`load_pipeline_config` merges, later layers winning: code defaults <
``config/environments/<env>.yaml`` < an explicit YAML file < ``DSA110__SECTION__KEY``
environment variables < dotted ``overrides``. Every problem (missing file,
YAML syntax, unknown key, wrong type) is raised as
:class:`~dsa110_contimg.exceptions.ConfigError` with the dotted key
path and the layer it came from.
"""

from __future__ import annotations

import difflib
import os
import re
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ValidationError

from dsa110_contimg.exceptions import ConfigError
from dsa110_contimg.utils.config._model import DEFAULT_ENVIRONMENT
from dsa110_contimg.utils.config._pipeline import PipelineConfig

__all__ = [
    "ENV_PREFIX",
    "ENV_NAME_VAR",
    "CONFIG_DIR_VAR",
    "find_config_dir",
    "available_environments",
    "load_pipeline_config",
]

ENV_PREFIX = "DSA110__"
"""Prefix of variables that override config keys (``DSA110__IMAGING__NITER=7``)."""

ENV_NAME_VAR = "DSA110_ENV"
"""Environment variable that picks the overlay in ``config/environments``."""

CONFIG_DIR_VAR = "DSA110_CONFIG_DIR"
"""Environment variable that points at the ``config`` directory."""

_ENV_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")

_Tree = dict[str, Any]


def find_config_dir(*, env: Mapping[str, str] | None = None) -> Path:
    """Locate the ``config`` directory.

    Parameters
    ----------
    env : mapping, optional
        Environment variables; default ``os.environ``.

    Returns
    -------
    Path
        ``$DSA110_CONFIG_DIR`` if set; else the first ``config`` directory
        holding ``environments/`` found walking up from this module (the repo
        root in a source checkout); else ``./config``.
    """
    env = os.environ if env is None else env
    if env.get(CONFIG_DIR_VAR):
        return Path(env[CONFIG_DIR_VAR]).expanduser()
    for parent in Path(__file__).resolve().parents:
        if (parent / "config" / "environments").is_dir():
            return parent / "config"
    return Path.cwd() / "config"


def available_environments(config_dir: Path) -> list[str]:
    """Return the overlay names in ``<config_dir>/environments``, sorted."""
    return sorted(p.stem for p in (config_dir / "environments").glob("*.yaml"))


def _read_yaml(path: Path, *, config_dir: Path) -> _Tree:
    if not path.is_file():
        names = ", ".join(available_environments(config_dir)) or "none"
        msg = (
            f"config file {path} does not exist; environments available in "
            f"{config_dir / 'environments'}: {names}"
        )
        raise ConfigError(msg)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err)
        msg = f"YAML syntax error in {path}{where}: {problem}; fix the file"
        raise ConfigError(msg) from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        kind = type(data).__name__
        msg = f"config file {path} must hold a mapping of sections, got a {kind}"
        raise ConfigError(msg)
    return data


def _deep_merge(base: _Tree, layer: Mapping[str, Any]) -> _Tree:
    merged = dict(base)
    for key, value in layer.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = dict(value) if isinstance(value, Mapping) else value
    return merged


def _record_sources(
    tree: Mapping[str, Any], label: str, sources: dict[str, str], prefix: str = ""
) -> None:
    for key, value in tree.items():
        path = f"{prefix}{key}"
        sources[path] = label
        if isinstance(value, Mapping):
            _record_sources(value, label, sources, f"{path}.")


def _unknown_key_message(
    parts: list[str], depth: int, model: type[BaseModel], source: str | None
) -> str:
    key = ".".join(str(p) for p in parts[: depth + 1])
    section = ".".join(str(p) for p in parts[:depth]) or "<top level>"
    valid = list(model.model_fields)
    close = difflib.get_close_matches(str(parts[depth]), valid, n=1)
    hint = (
        f" Did you mean '{'.'.join([*map(str, parts[:depth]), close[0]])}'?"
        if close
        else ""
    )
    origin = f" (from {source})" if source else ""
    return (
        f"unknown key '{key}'{origin}. Valid keys of '{section}': "
        f"{', '.join(valid)}.{hint}"
    )


def _check_key_path(parts: list[str], source: str) -> None:
    model: type[BaseModel] = PipelineConfig
    for depth, part in enumerate(parts):
        if part not in model.model_fields:
            raise ConfigError(_unknown_key_message(parts, depth, model, source))
        annotation = model.model_fields[part].annotation
        is_section = isinstance(annotation, type) and issubclass(annotation, BaseModel)
        if depth < len(parts) - 1 and not is_section:
            msg = (
                f"'{'.'.join(parts[: depth + 1])}' (from {source}) is a value, not a "
                f"section, so '{'.'.join(parts)}' does not exist"
            )
            raise ConfigError(msg)
        if is_section:
            model = typing.cast(type[BaseModel], annotation)


def _nest(parts: list[str], value: Any) -> _Tree:
    tree: Any = value
    for part in reversed(parts):
        tree = {part: tree}
    return typing.cast(_Tree, tree)


def _parse_env_value(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _env_layers(env: Mapping[str, str]) -> list[tuple[_Tree, str]]:
    layers = []
    for name in sorted(env):
        if not name.upper().startswith(ENV_PREFIX):
            continue
        parts = [p.lower() for p in name[len(ENV_PREFIX) :].split("__")]
        label = f"environment variable {name}"
        if not all(parts):
            msg = f"malformed {label}; use {ENV_PREFIX}SECTION__KEY=value"
            raise ConfigError(msg)
        _check_key_path(parts, label)
        layers.append((_nest(parts, _parse_env_value(env[name])), label))
    return layers


def _override_layers(overrides: Mapping[str, Any]) -> list[tuple[_Tree, str]]:
    layers = []
    for key, value in overrides.items():
        parts = str(key).split(".")
        label = f"override '{key}'"
        _check_key_path(parts, label)
        layers.append((_nest(parts, value), label))
    return layers


def _describe_type(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe_type(a) for a in args)
    if annotation is type(None):
        return "null"
    if isinstance(annotation, type) and origin is None:
        return annotation.__name__
    return str(annotation).replace("typing.", "").replace("pathlib.", "")


def _error_line(error: Mapping[str, Any], sources: Mapping[str, str]) -> str:
    parts = [str(p) for p in error["loc"]]
    model: type[BaseModel] = PipelineConfig
    field: Any = None
    for depth, part in enumerate(parts):
        if field is not None:
            break
        if part not in model.model_fields:
            if error["type"] == "extra_forbidden":
                source = sources.get(".".join(parts[: depth + 1]))
                return _unknown_key_message(parts, depth, model, source)
            break
        annotation = model.model_fields[part].annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
        else:
            field = model.model_fields[part]
    key = ".".join(parts) or "<top level>"
    source = next(
        (
            sources[p]
            for n in range(len(parts), 0, -1)
            if (p := ".".join(parts[:n])) in sources
        ),
        None,
    )
    origin = f" (from {source})" if source else ""
    if field is None:
        return f"invalid section '{key}'{origin}: {error['msg']}"
    expected = _describe_type(field.annotation)
    return (
        f"invalid value for '{key}'{origin}: {error['input']!r} ({error['msg']}); "
        f"expected {expected}"
    )


def _validate(tree: _Tree, sources: Mapping[str, str]) -> PipelineConfig:
    try:
        return PipelineConfig.model_validate(tree)
    except ValidationError as err:
        lines = [_error_line(e, sources) for e in err.errors()]
        msg = "invalid pipeline configuration:\n  - " + "\n  - ".join(lines)
        raise ConfigError(msg) from err


def load_pipeline_config(
    config_path: str | Path | None = None,
    *,
    environment: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> PipelineConfig:
    """Load, merge and validate the pipeline configuration.

    Parameters
    ----------
    config_path : str or Path, optional
        A YAML file laid over the environment overlay. When given without
        `environment`, no overlay is read and the file is laid over the code
        defaults.
    environment : str, optional
        Overlay ``config/environments/<environment>.yaml`` to read. Default:
        ``$DSA110_ENV``, else ``"development"`` (only when `config_path` is
        not given).
    overrides : mapping, optional
        Dotted keys and values that win over every other layer, e.g.
        ``{"imaging.niter": 100}``.
    env : mapping, optional
        Environment variables; default ``os.environ``. ``DSA110__SECTION__KEY``
        entries set ``section.key`` (values parsed as YAML, so ``"4"`` is an
        int and ``"[1, 2]"`` a list); ``DSA110_ENV`` and ``DSA110_CONFIG_DIR``
        pick the overlay and the config directory.

    Returns
    -------
    PipelineConfig
        The validated, frozen configuration, with ``paths`` made absolute.

    Raises
    ------
    ConfigError
        A file is missing or is not valid YAML, a key is unknown (the message
        gives the dotted path, its source and the valid keys) or a value has
        the wrong type or range.

    Notes
    -----
    Layers, later winning: code defaults < environment overlay < `config_path`
    < ``DSA110__*`` variables < `overrides`; mappings are deep-merged.

    Relative entries of ``paths`` (and ``variability.store_dir``) are
    resolved against the current working directory at load time, whichever
    layer set them, so a relative path means
    the same thing as it does on the operator's command line. Run services from
    the directory the paths are meant relative to (usually the repo root) or
    use absolute paths.
    """
    env = os.environ if env is None else env
    config_dir = find_config_dir(env=env)
    layers: list[tuple[_Tree, str]] = []
    if environment is not None or config_path is None:
        name = environment or env.get(ENV_NAME_VAR) or DEFAULT_ENVIRONMENT
        layers.append((_read_environment(name, config_dir), f"environment '{name}'"))
    if config_path is not None:
        path = Path(config_path).expanduser()
        layers.append((_read_yaml(path, config_dir=config_dir), str(path)))
    layers += _env_layers(env)
    layers += _override_layers(overrides or {})
    tree: _Tree = {}
    sources: dict[str, str] = {}
    for layer, label in layers:
        tree = _deep_merge(tree, layer)
        _record_sources(layer, label, sources)
    config = _validate(tree, sources)
    cwd = Path.cwd()
    store_dir = config.variability.store_dir.expanduser()
    variability = config.variability.model_copy(
        update={"store_dir": store_dir if store_dir.is_absolute() else cwd / store_dir}
    )
    return config.model_copy(
        update={"paths": config.paths.resolved(cwd), "variability": variability}
    )


def _read_environment(name: str, config_dir: Path) -> _Tree:
    if not _ENV_NAME_RE.match(name):
        names = ", ".join(available_environments(config_dir)) or "none"
        msg = f"invalid environment name {name!r}; available: {names}"
        raise ConfigError(msg)
    path = config_dir / "environments" / f"{name}.yaml"
    return {"environment": name, **_read_yaml(path, config_dir=config_dir)}
