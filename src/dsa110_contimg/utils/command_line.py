"""What every command-line program of the pipeline shares: options, config, errors.

The ``dsa110-contimg`` commands (`dsa110_contimg.cli`) and the stream program
(``python -m dsa110_contimg.services``) take the same options, resolve the
configuration and set up logging the same way, and turn a `PipelineError` into
the same message and exit status. It all lives here, below both, so neither
program imports the other:

- `common_options`: ``--config``, ``--env``, ``--set``, ``-q`` and ``-v``
  (every command); `data_options`: ``--incoming-dir``, ``--catalog`` and
  ``--output-dir`` (``process``, ``stream``); `UTC_TIME`, the type of an ISO
  UTC time option.
- `load_config`: the configuration of a command from those options, with
  logging configured.
- `translate_errors`: the one error translator. `Command` and `Group` apply it
  to every command they run, so a `PipelineError` prints
  ``Error: <ErrorClass>: <message>`` and exits 1, whether the command runs
  under the ``dsa110-contimg`` group or alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from dsa110_contimg.exceptions import PipelineError

__all__ = [
    "CASA_LOG_NAME",
    "LOG_FILE_NAME",
    "UTC_TIME",
    "Command",
    "Group",
    "common_options",
    "data_options",
    "echo",
    "load_config",
    "translate_errors",
    "verbosity",
]

_PATH_LAYOUT = {
    "data_dir": ".",
    "incoming_dir": "incoming",
    "log_dir": "logs",
    "ms_stage1_dir": "ms",
    "cal_tables_dir": "cal_tables",
    "images_dir": "images",
    "mosaics_dir": "mosaics",
    "products_dir": "products",
    "state_db": "pipeline.sqlite3",
}
_OTHER_LAYOUT = {"variability.store_dir": "lightcurves"}


LOG_FILE_NAME = "dsa110-contimg.log"
"""The log file under ``paths.log_dir`` when ``logging.file`` is not set."""
CASA_LOG_NAME = "casa.log"
"""CASA's own log, under ``paths.log_dir``."""


# -- errors -------------------------------------------------------------------


@contextmanager
def translate_errors() -> Iterator[None]:
    """Turn a `PipelineError` into a `click.ClickException` (exit status 1).

    The message is ``<ErrorClass>: <message>``; click prints it as
    ``Error: ...`` on stderr. Other exceptions (click's own usage errors,
    `SystemExit`) pass unchanged.
    """
    try:
        yield
    except PipelineError as err:
        msg = f"{type(err).__name__}: {err}"
        raise click.ClickException(msg) from err


class Command(click.Command):
    """A click command that runs under `translate_errors`."""

    def invoke(self, ctx: click.Context):
        with translate_errors():
            return super().invoke(ctx)


class Group(click.Group):
    """A click group whose commands and sub-groups are `Command` and `Group`."""

    command_class = Command
    group_class = type  # sub-groups are of this class too

    def invoke(self, ctx: click.Context):
        with translate_errors():
            return super().invoke(ctx)


# -- options ------------------------------------------------------------------


def verbosity() -> int:
    """Return -1 for ``-q``, 1 for ``-v``, 0 otherwise (current command)."""
    ctx = click.get_current_context(silent=True)
    return int(ctx.meta.get("dsa110_verbosity", 0)) if ctx is not None else 0


def _set_verbosity(value: int):
    def callback(ctx: click.Context, _param, flag: bool) -> None:
        if flag:
            ctx.meta["dsa110_verbosity"] = value

    return callback


def echo(message: str) -> None:
    """Print a progress line on stderr unless ``-q`` was given."""
    if verbosity() >= 0:
        click.echo(message, err=True)


class _UtcTime(click.ParamType):
    """An ISO-8601 UTC time, checked when the command line is parsed."""

    name = "ISO_UTC_TIME"

    def convert(self, value, param, ctx):
        from astropy.time import Time

        if not isinstance(value, str):
            return value
        try:
            Time(value, format="isot", scale="utc")
        except ValueError:
            self.fail(
                f"{value!r} is not an ISO UTC time; use e.g. 2023-06-01T00:00:00",
                param,
                ctx,
            )
        return value


UTC_TIME = _UtcTime()


def common_options(func: Callable) -> Callable:
    """Add ``--config``, ``--env``, ``--set``, ``-q`` and ``-v`` to a command.

    The command receives ``config_path``, ``env`` and ``sets``; pass them to
    `load_config`.
    """
    func = click.option(
        "-v",
        "--verbose",
        is_flag=True,
        expose_value=False,
        callback=_set_verbosity(1),
        help="Show DEBUG records on the console (and in the log file).",
    )(func)
    func = click.option(
        "-q",
        "--quiet",
        is_flag=True,
        expose_value=False,
        callback=_set_verbosity(-1),
        help="Console: warnings, errors and the final summary only.",
    )(func)
    func = click.option(
        "--set",
        "sets",
        multiple=True,
        metavar="SECTION.KEY=VALUE",
        help="Override one config value (repeatable).",
    )(func)
    func = click.option(
        "--env",
        default=None,
        help="Environment overlay: development, production or testing "
        "(default: DSA110_ENV or development).",
    )(func)
    func = click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False),
        default=None,
        help="YAML config file.",
    )(func)
    return func


def data_options(*, incoming_must_exist: bool) -> Callable[[Callable], Callable]:
    """Add ``--incoming-dir``, ``--catalog`` and ``--output-dir`` (process, stream)."""

    def decorate(func):
        func = click.option(
            "--output-dir",
            type=click.Path(file_okay=False),
            default=None,
            help="Put every product (and the state database) under this directory.",
        )(func)
        func = click.option(
            "--catalog",
            type=click.Path(dir_okay=False, exists=True),
            required=True,
            help="Catalogue CSV: name, ra_deg, dec_deg, flux_jy[, spectral_index, "
            "ref_freq_hz].",
        )(func)
        return click.option(
            "--incoming-dir",
            type=click.Path(file_okay=False, exists=incoming_must_exist),
            required=True,
            help="Directory of raw *_sbNN.hdf5 files"
            + ("." if incoming_must_exist else " (created if missing)."),
        )(func)

    return decorate


# -- configuration --------------------------------------------------------------


def load_config(
    config_path: str | None,
    env: str | None,
    sets: tuple[str, ...],
    output_dir: str | None = None,
    extra: dict | None = None,
    *,
    log_to_file: bool = True,
):
    """Resolve the configuration and set up logging for a command.

    Parameters
    ----------
    config_path, env, sets
        The values of ``--config``, ``--env`` and ``--set`` (`common_options`).
    output_dir
        ``--output-dir``: every path the pipeline writes goes under it.
    extra
        Further overrides (dotted key -> value), applied last.
    log_to_file
        Commands that only read (``health``, ``status``, ``config show``) pass
        False: they write no log file and create no directory.

    Returns
    -------
    PipelineConfig
        The resolved configuration.
    """
    from dsa110_contimg.utils.config import load_pipeline_config
    from dsa110_contimg.utils.logging import configure_logging

    overrides: dict[str, object] = {}
    base = None
    if output_dir is not None:
        # Every path the pipeline writes goes under the output directory.
        base = Path(output_dir).resolve()
        overrides.update({f"paths.{k}": str(base / v) for k, v in _PATH_LAYOUT.items()})
        overrides.update({f"{k}": str(base / v) for k, v in _OTHER_LAYOUT.items()})
    for item in sets:
        key, sep, value = item.partition("=")
        if not sep:
            msg = f"--set expects section.key=value, got {item!r}"
            raise click.UsageError(msg)
        import yaml

        overrides[key.strip()] = yaml.safe_load(value)
    overrides.update(extra or {})
    config = load_pipeline_config(config_path, environment=env, overrides=overrides)
    log_file = config.logging.file
    if base is not None and log_file is not None and not log_file.is_absolute():
        config = config.model_copy(
            update={
                "logging": config.logging.model_copy(update={"file": base / log_file})
            }
        )
    level = config.logging.level
    console = {-1: "WARNING", 0: level, 1: "DEBUG"}[verbosity()]
    log_dir = Path(config.paths.log_dir)
    log_file = config.logging.file or log_dir / LOG_FILE_NAME
    configure_logging(
        "DEBUG" if verbosity() > 0 else level,
        fmt=config.logging.format,
        log_file=log_file if log_to_file else None,
        console_level=console,
        casa_log=log_dir / CASA_LOG_NAME if log_to_file else None,
    )
    return config
