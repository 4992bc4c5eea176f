"""Tests of the layered pipeline configuration loader."""

from __future__ import annotations

from pathlib import Path

import pydantic
import pytest

from dsa110_contimg.exceptions import ConfigError
from dsa110_contimg.utils.config_loader import (
    ImagingConfig,
    PathsConfig,
    PipelineConfig,
    config_hash,
    find_config_dir,
    load_pipeline_config,
    render_config_schema,
)

NO_ENV: dict[str, str] = {}


def _write(tmp_path: Path, text: str, name: str = "pipeline.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("environment", "n_antennas", "image_size"),
    [
        ("development", 48, (2500, 2500)),
        ("production", 96, (5000, 5000)),
        ("testing", 24, (1280, 1280)),
    ],
)
def test_load_each_environment(
    environment: str, n_antennas: int, image_size: tuple[int, int]
) -> None:
    config = load_pipeline_config(environment=environment, env=NO_ENV)
    assert config.environment == environment
    assert config.simulation.n_antennas == n_antennas
    assert config.imaging.image_size == image_size


def test_default_environment_comes_from_env_var() -> None:
    assert load_pipeline_config(env={"DSA110_ENV": "testing"}).environment == "testing"
    assert load_pipeline_config(env=NO_ENV).environment == "development"


def test_production_matches_seed_values() -> None:
    config = load_pipeline_config(environment="production", env=NO_ENV)
    assert config.imaging.cell_size == "3arcsec"
    assert config.imaging.threshold_jy() == pytest.approx(1e-3)
    assert config.calibration.gcal_refant == "auto"  # real antennas are "1".."117"
    assert config.services.mosaic_overlap_min == 10
    assert config.logging.format == "json"


def test_fast_profile_images_the_production_field_in_coarser_pixels() -> None:
    production = load_pipeline_config(environment="production", env=NO_ENV)
    profile = find_config_dir(env=NO_ENV) / "profiles" / "fast.yaml"
    fast = load_pipeline_config(profile, environment="production", env=NO_ENV)
    field = [
        n * production.imaging.cell_size_arcsec() for n in production.imaging.image_size
    ]
    assert [
        n * fast.imaging.cell_size_arcsec() for n in fast.imaging.image_size
    ] == field
    assert fast.imaging.cell_size_arcsec() == 2 * production.imaging.cell_size_arcsec()
    # only the pixels change: every other key is production's
    changed = {
        f"{section}.{key}"
        for section, values in fast.model_dump().items()
        if isinstance(values, dict)
        for key, value in values.items()
        if value != production.model_dump()[section][key]
    }
    assert changed == {"imaging.image_size", "imaging.cell_size"}
    assert fast.imaging.gridder == "wgridder"  # production's w-gridder, 1e-3
    assert fast.imaging.wgridder_accuracy == pytest.approx(1e-3)


def test_explicit_file_without_environment(tmp_path: Path) -> None:
    path = _write(tmp_path, "imaging:\n  niter: 123\n")
    config = load_pipeline_config(path, env=NO_ENV)
    assert config.imaging.niter == 123
    assert config.simulation.n_antennas == PipelineConfig().simulation.n_antennas


def test_explicit_file_over_environment(tmp_path: Path) -> None:
    path = _write(tmp_path, "imaging:\n  niter: 9\n")
    config = load_pipeline_config(path, environment="testing", env=NO_ENV)
    assert config.imaging.niter == 9
    assert config.imaging.image_size == (1280, 1280)  # deep merge keeps the overlay


def test_env_var_override() -> None:
    env = {
        "DSA110__IMAGING__NITER": "7",
        "DSA110__SIMULATION__MISSING_SUBBANDS": "[1, 2]",
    }
    config = load_pipeline_config(environment="testing", env=env)
    assert config.imaging.niter == 7
    assert config.simulation.missing_subbands == [1, 2]


def test_overrides_win_over_env_vars() -> None:
    config = load_pipeline_config(
        environment="testing",
        env={"DSA110__IMAGING__NITER": "7"},
        overrides={"imaging.niter": 100, "services.max_workers": 3},
    )
    assert config.imaging.niter == 100
    assert config.services.max_workers == 3


def test_unknown_key_names_path_and_suggestion(tmp_path: Path) -> None:
    path = _write(tmp_path, "imaging:\n  nitre: 5\n")
    with pytest.raises(ConfigError) as info:
        load_pipeline_config(path, env=NO_ENV)
    message = str(info.value)
    assert "imaging.nitre" in message
    assert "imaging.niter" in message
    assert str(path) in message
    assert "cell_size" in message  # lists the valid keys


def test_unknown_env_var_key() -> None:
    with pytest.raises(ConfigError, match=r"DSA110__IMAGNG__NITER"):
        load_pipeline_config(environment="testing", env={"DSA110__IMAGNG__NITER": "1"})


def test_unknown_override_key() -> None:
    with pytest.raises(ConfigError, match=r"imaging\.nitre"):
        load_pipeline_config(environment="testing", overrides={"imaging.nitre": 1})


def test_wrong_type_names_key_value_and_type(tmp_path: Path) -> None:
    path = _write(tmp_path, "imaging:\n  niter: lots\n")
    with pytest.raises(ConfigError) as info:
        load_pipeline_config(path, env=NO_ENV)
    message = str(info.value)
    assert "imaging.niter" in message
    assert "'lots'" in message
    assert "expected int" in message


def test_cross_field_rule(tmp_path: Path) -> None:
    path = _write(tmp_path, "services:\n  mosaic_overlap_min: 60\n")
    with pytest.raises(ConfigError, match="mosaic_overlap_min"):
        load_pipeline_config(path, env=NO_ENV)


def test_missing_file_names_path_and_environments(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_pipeline_config(path, env=NO_ENV)
    assert str(path) in str(info.value)
    assert "production" in str(info.value)


def test_missing_environment() -> None:
    with pytest.raises(ConfigError, match=r"staging\.yaml.*development"):
        load_pipeline_config(environment="staging", env=NO_ENV)


def test_yaml_syntax_error_names_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "imaging:\n  niter: 5\n  threads: [1\n")
    with pytest.raises(ConfigError, match=r"line \d+"):
        load_pipeline_config(path, env=NO_ENV)


def test_relative_paths_resolved_against_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_pipeline_config(environment="testing", env=NO_ENV)
    assert config.paths.images_dir == tmp_path / "data" / "images"
    assert config.paths.catalog_path is None


def test_paths_resolved_keeps_absolute(tmp_path: Path) -> None:
    paths = PathsConfig(log_dir=tmp_path / "abs").resolved(Path("/base"))
    assert paths.log_dir == tmp_path / "abs"
    assert paths.data_dir == Path("/base/data")


def test_config_dir_from_env_var(tmp_path: Path) -> None:
    (tmp_path / "environments").mkdir()
    _write(tmp_path / "environments", "environment: lab\n", name="lab.yaml")
    env = {"DSA110_CONFIG_DIR": str(tmp_path), "DSA110_ENV": "lab"}
    assert find_config_dir(env=env) == tmp_path
    assert load_pipeline_config(env=env).environment == "lab"


def test_schema_file_in_sync() -> None:
    schema_path = (
        find_config_dir(env=NO_ENV) / "schemas" / "pipeline_config.schema.json"
    )
    assert schema_path.read_text(encoding="utf-8") == render_config_schema(), (
        "run scripts/generate_config_schema.py"
    )


def _sections() -> list[type[pydantic.BaseModel]]:
    sections: list[type[pydantic.BaseModel]] = [PipelineConfig]
    for field in PipelineConfig.model_fields.values():
        if isinstance(field.annotation, type) and issubclass(
            field.annotation, pydantic.BaseModel
        ):
            sections.append(field.annotation)
    return sections


@pytest.mark.parametrize("model", _sections(), ids=lambda m: m.__name__)
def test_every_field_documented(model: type[pydantic.BaseModel]) -> None:
    undocumented = [
        name
        for name, field in model.model_fields.items()
        if not (field.description and field.description.strip())
    ]
    assert not undocumented
    assert model.model_config.get("frozen") is True
    assert model.model_config.get("extra") == "forbid"


def test_defaults_valid_and_frozen() -> None:
    config = PipelineConfig()
    with pytest.raises(pydantic.ValidationError):
        config.imaging.niter = 1  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError):
        config.environment = "x"  # type: ignore[misc]


def test_config_hash_stable_and_sensitive() -> None:
    base = PipelineConfig()
    assert config_hash(base) == config_hash(PipelineConfig())
    assert len(config_hash(base)) == 16
    changed = PipelineConfig(imaging=ImagingConfig(niter=1))
    assert config_hash(changed) != config_hash(base)


def test_threshold_and_cell_size_helpers() -> None:
    assert ImagingConfig(threshold="1mJy").threshold_jy() == pytest.approx(0.001)
    assert ImagingConfig(threshold="50uJy").threshold_jy() == pytest.approx(5e-5)
    assert ImagingConfig(cell_size="6arcsec").cell_size_arcsec() == pytest.approx(6)
    assert ImagingConfig(cell_size="0.1deg").cell_size_arcsec() == pytest.approx(360)
    assert ImagingConfig(cell_size="1arcmin").cell_size_arcsec() == pytest.approx(60)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("threshold", "1 furlong"),
        ("cell_size", "3 parsec"),
        ("image_size", [8, 8]),
        ("robust", 3.0),
    ],
)
def test_imaging_rejects_bad_values(key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=f"imaging.{key}"):
        load_pipeline_config(
            environment="testing", env=NO_ENV, overrides={f"imaging.{key}": value}
        )


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("n_chan_per_subband", 5),
        ("start_time", "yesterday"),
        ("missing_subbands", [16]),
        ("n_antennas", 4),
    ],
)
def test_simulation_rejects_bad_values(key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=f"simulation.{key}"):
        load_pipeline_config(
            environment="testing", env=NO_ENV, overrides={f"simulation.{key}": value}
        )


def test_seed_path_re_exports_the_config_package() -> None:
    from dsa110_contimg.utils import config, config_loader

    seed_names = {
        "load_pipeline_config",
        "PipelineConfig",
        "ImagingConfig",
        "MosaicConfig",
        "PhotometryConfig",
        "VariabilityConfig",
        "SimulationConfig",
        "parse_flux_jy",
        "parse_angle_arcsec",
        "ENV_PREFIX",
        "config_hash",
        "render_config_schema",
    }
    assert seed_names <= set(config_loader.__all__)
    for name in config_loader.__all__:
        assert getattr(config_loader, name) is getattr(config, name), name


def test_production_cleans_with_gain_025_and_niter_2000() -> None:
    """The full-size lever of perf_wsclean_levers_5.md: the depth of 5000
    components at gain 0.1 in 2000 at 0.25; the other environments keep 0.1."""
    imaging = load_pipeline_config(environment="production", env=NO_ENV).imaging
    assert (imaging.gain, imaging.niter, imaging.mgain) == (0.25, 2000, 0.9)
    for environment in ("development", "testing"):
        config = load_pipeline_config(environment=environment, env=NO_ENV)
        assert config.imaging.gain == 0.1
