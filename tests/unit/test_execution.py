"""The execution backend's configuration and local path (no cluster needed)."""

from __future__ import annotations

import asyncio
from concurrent.futures import Future, ThreadPoolExecutor

import pytest
from pydantic import ValidationError

from dsa110_contimg.exceptions import ConfigError
from dsa110_contimg.pipeline._execution import (
    _PRIORITY,
    DaskExecutor,
    job_priority,
    make_executor,
    run_stage,
    stage_key,
)
from dsa110_contimg.services._pool import CapturingExecutor
from dsa110_contimg.utils.config import ExecutionConfig, PipelineConfig, config_hash


def test_defaults_are_the_local_pool():
    config = PipelineConfig()
    assert config.execution.backend == "local"
    assert config.execution.resources["image"] == {
        "CASA": 1,
        "IMAGER_SLOTS": 1,
        "MEMORY_GB": 4,
    }
    executor = make_executor(config)
    try:
        assert type(executor).__name__ == "ProcessPoolExecutor"
    finally:
        executor.shutdown()


def test_dask_needs_an_address_and_known_stages():
    with pytest.raises(ValidationError, match="scheduler_address"):
        ExecutionConfig(backend="dask")
    with pytest.raises(ValidationError, match="unknown stage"):
        ExecutionConfig(resources={"imaging": {"CASA": 1}})


def test_unreachable_scheduler_is_a_config_error():
    settings = ExecutionConfig(
        backend="dask", scheduler_address="tcp://127.0.0.1:9", connect_timeout_s=1
    )
    with pytest.raises(ConfigError, match="scheduler_address"):
        DaskExecutor(settings)


def test_execution_section_does_not_change_the_config_hash():
    local = PipelineConfig()
    dask = PipelineConfig(
        execution=ExecutionConfig(backend="dask", scheduler_address="tcp://h:8786")
    )
    assert config_hash(local) == config_hash(dask)
    assert config_hash(local) != config_hash(
        PipelineConfig(imaging={"niter": local.imaging.niter + 1})
    )


def test_stage_key_and_priority_context():
    assert stage_key("image", "drift_20230601T000000_00") == (
        "image-drift_20230601T000000_00"
    )
    assert _PRIORITY.get() is None
    with job_priority(5):
        assert _PRIORITY.get() == 5
        with job_priority(0):
            assert _PRIORITY.get() == 0
        assert _PRIORITY.get() == 5
    assert _PRIORITY.get() is None


class _KeyedExecutor(ThreadPoolExecutor):
    """Records the stage keys it is given (stands in for DaskExecutor)."""

    def __init__(self) -> None:
        super().__init__(max_workers=1)
        self.keys: list[str] = []

    def submit_stage(self, stage, product_id, fn, /, *args) -> Future:
        self.keys.append(stage_key(stage, product_id))
        return self.submit(fn, *args)


def test_run_stage_uses_stage_keys_through_the_capturing_wrapper():
    inner = _KeyedExecutor()
    capture = CapturingExecutor(inner)

    def fail(path: str) -> None:
        msg = f"{path} broke"
        raise OSError(msg)

    async def go() -> tuple[int, BaseException]:
        ok = await run_stage(capture, "image", "g1", pow, 2, 5)
        try:
            await run_stage(capture, "mosaic", "block_x", fail, "/ms/a.ms")
        except OSError as err:
            return ok, err
        msg = "no error"
        raise AssertionError(msg)

    with inner:
        ok, err = asyncio.run(go())
    assert ok == 32 and "broke" in str(err)
    assert inner.keys == ["image-g1", "mosaic-block_x"]
    assert "/ms/a.ms" in capture.errors  # still recorded for the block job


def test_run_stage_on_a_plain_executor():
    with ThreadPoolExecutor(1) as pool:
        assert asyncio.run(run_stage(pool, "image", "g1", pow, 3, 2)) == 9
