"""The offload pool: work runs in a worker process; a worker that dies is a 503, then a new pool."""

from __future__ import annotations

import os

import pytest

from service.core.errors import ServiceUnavailable, ValidationFailed
from service.core.offload import Offload


def worker_pid() -> int:
    return os.getpid()


def die() -> None:
    os._exit(3)  # as the OOM killer would: no exception, no cleanup


def refuse() -> None:
    raise ValidationFailed([{"loc": ["body", "name"], "msg": "Field required", "type": "missing"}])


async def test_work_runs_in_another_process_and_a_dead_worker_is_a_503_then_replaced() -> None:
    offload = Offload(workers=1)
    try:
        first = await offload.run(worker_pid)
        assert first != os.getpid()
        with pytest.raises(ServiceUnavailable) as refused:
            await offload.run(die)
        assert refused.value.headers["Retry-After"] == "1"
        replacement = await offload.run(worker_pid)
        assert replacement not in (first, os.getpid())
    finally:
        await offload.close()


async def test_a_validation_error_crosses_the_process_boundary_intact() -> None:
    offload = Offload(workers=1)
    try:
        with pytest.raises(ValidationFailed) as raised:
            await offload.run(refuse)
    finally:
        await offload.close()
    assert (
        raised.value.response().body
        == ValidationFailed([{"loc": ["body", "name"], "msg": "Field required", "type": "missing"}])
        .response()
        .body
    )
