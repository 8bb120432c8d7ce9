"""Large transfers through the event loop take turns, and a turn is only leased: a client that sends
or reads slowly must not keep the others waiting."""

from __future__ import annotations

import asyncio

import pytest

from service.core import bodies
from service.core.bodies import BodyPolicy
from service.core.offload import Offload


def policy(slots: asyncio.Semaphore) -> BodyPolicy:
    # The offload pool starts its processes on first use: never, here.
    return BodyPolicy(
        inline_max_bytes=10,
        offload=Offload(1),
        large_writes=asyncio.Semaphore(1),
        wait_s=5.0,
        large_transfers=slots,
    )


async def test_a_transfer_slot_is_given_back_when_its_lease_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bodies, "TRANSFER_LEASE_S", 0.0)
    slots = asyncio.Semaphore(1)
    async with policy(slots).transfer_slot(11):
        assert slots.locked()
        await slots.acquire()  # a slow transfer's lease ended: another one gets its turn
        slots.release()
    # Given back once, not twice: the count is where it started.
    assert not slots.locked()
    await slots.acquire()
    assert slots.locked()


async def test_small_transfers_take_no_slot() -> None:
    slots = asyncio.Semaphore(1)
    await slots.acquire()
    async with policy(slots).transfer_slot(10):
        assert slots.locked()
