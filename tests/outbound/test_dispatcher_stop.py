"""The dispatcher stops when it is cancelled, even when the cancel meets its wake-up.

Python 3.11's asyncio.wait_for returns normally when its task is cancelled in the same turn of the
loop as the awaited thing ends: a dispatcher waiting for work with wait_for was woken and cancelled
at once (a delivery ending as the worker shut down) and then ran on forever, so the worker never
stopped. Its waits are asyncio.timeout blocks now (service/core/notify.py says why).
"""

from __future__ import annotations

import asyncio
import contextlib

from service.config import Settings
from service.core.db import Database
from service.outbound.dispatcher import Dispatcher
from tests.kit.waiting import eventually


async def test_a_cancel_that_meets_a_wake_up_stops_the_dispatcher(
    dispatcher_settings: Settings, service_db: Database
) -> None:
    dispatcher = Dispatcher(dispatcher_settings, service_db, poll_s=3600)
    task = asyncio.create_task(dispatcher.run())
    wake = dispatcher._wake  # the dispatcher's own wake-up, as a delivery's end or a NOTIFY sets it

    async def waiting() -> bool:
        return bool(wake._waiters)  # type: ignore[attr-defined]  # parked on its wake-up

    try:
        await eventually(waiting)
        wake.set()  # the wait ends...
        task.cancel()  # ...in the same turn of the loop as the cancel arrives
        done, _ = await asyncio.wait({task}, timeout=30)
        assert task in done, "the dispatcher ran on after its cancel"
        assert task.cancelled()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait({task}, timeout=30)


async def test_the_dispatcher_stops_when_cancelled_while_it_waits(
    dispatcher_settings: Settings, service_db: Database
) -> None:
    dispatcher = Dispatcher(dispatcher_settings, service_db, poll_s=3600)
    task = asyncio.create_task(dispatcher.run())

    async def waiting() -> bool:
        return bool(dispatcher._wake._waiters)  # type: ignore[attr-defined]

    await eventually(waiting)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=30)
    assert task in done and task.cancelled()
