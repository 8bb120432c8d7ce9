"""Helpers for the outbound webhook tests: callers on an app that may deliver to 127.0.0.1, a real
receiver, the real dispatcher run in the test's loop, and solves that end without a worker."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import io
import ipaddress
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from fastapi import FastAPI

from service.config import Settings
from service.core.db import Database
from service.outbound.addresses import IPAddress, Resolver, system_resolver
from service.outbound.dispatcher import Dispatcher
from service.solver.example import EXAMPLE_REQUEST
from tests.conftest import AppFactory
from tests.kit.receiver import Receiver, running_receiver
from tests.kit.waiting import eventually

# The caller fixtures resolve `app` from the requesting test's own conftest.
from tests.planning.conftest import Caller, alice, bob, http, sign_in  # noqa: F401
from tests.solving.conftest import new_scenario, worker  # noqa: F401 (the shared solve worker fixture)

EVENTS = ["solution.succeeded", "solution.failed", "solution.cancelled"]


def resolving_to(*addresses: str) -> Resolver:
    """A resolver that answers every name with `addresses` (an IP literal is never resolved)."""

    async def resolve(host: str, port: int) -> list[IPAddress]:
        return [ipaddress.ip_address(address) for address in addresses]

    return resolve


@pytest.fixture
async def app(app_factory: AppFactory) -> AsyncIterator[FastAPI]:
    """The app as development runs it: webhooks may go to loopback addresses and http://."""
    async with app_factory(outbound_webhook_allow_private=True) as application:
        yield application


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with running_receiver() as running:
        yield running


@pytest.fixture
def dispatcher_settings(settings_for: Callable[..., Settings]) -> Settings:
    """What the worker would read: private addresses allowed (the receiver is on 127.0.0.1), and
    retries a few hundredths of a second apart rather than seconds."""
    return settings_for(outbound_webhook_allow_private=True, outbound_webhook_retry_base_s=0.02)


@contextlib.asynccontextmanager
async def dispatching(
    settings: Settings, db: Database, resolver: Resolver = system_resolver
) -> AsyncIterator[Dispatcher]:
    """The worker's dispatcher, in this loop, polling often (no listener here: the worker test
    covers the wake-up by NOTIFY)."""
    dispatcher = Dispatcher(settings, db, resolver=resolver, poll_s=0.05)
    task = asyncio.create_task(dispatcher.run())
    try:
        yield dispatcher
    finally:
        task.cancel()
        # Bounded, with every task's stack on failure: a dispatcher that does not stop would
        # otherwise hang the test process with nothing said about where it waits.
        done, _ = await asyncio.wait({task}, timeout=STOP_S)
        if not done:
            pytest.fail(f"the dispatcher did not stop within {STOP_S} s of its cancel:\n{task_stacks()}")
        with contextlib.suppress(asyncio.CancelledError):
            await task


STOP_S = 30.0


def task_stacks() -> str:
    """Every task of the running loop with its stack, for a failure message."""
    out = io.StringIO()
    for task in asyncio.all_tasks():
        print(f"--- {task.get_name()}", file=out)
        task.print_stack(file=out)
    return out.getvalue()


async def register(caller: Caller, url: str, events: list[str] | None = None) -> dict[str, Any]:
    response = await caller.call("POST", "/webhook-endpoints", {"url": url, "events": events or EVENTS})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def cancelled_solve(caller: Caller) -> str:
    """A solve queued and cancelled before any worker ran it: it ends `failed` (solution.failed)."""
    scenario_id = await new_scenario(caller, copy.deepcopy(EXAMPLE_REQUEST))
    queued = await caller.call("POST", f"/scenarios/{scenario_id}/solve", {})
    assert queued.status_code == 202, queued.text
    solution_id = str(queued.json()["id"])
    cancelled = await caller.call("POST", f"/solutions/{solution_id}/cancel")
    assert cancelled.status_code == 202, cancelled.text
    return solution_id


async def deliveries(caller: Caller, endpoint_id: str) -> list[dict[str, Any]]:
    response = await caller.call("GET", f"/webhook-endpoints/{endpoint_id}/deliveries")
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def until_delivery(
    caller: Caller, endpoint_id: str, *statuses: str, timeout: float = 30
) -> dict[str, Any]:
    """The endpoint's newest delivery once its status is one of `statuses`."""
    found: dict[str, Any] = {}

    async def reached() -> bool:
        nonlocal found
        items = await deliveries(caller, endpoint_id)
        found = items[0] if items else {}
        return bool(items) and found["status"] in statuses

    await eventually(reached, timeout=timeout, every=0.05)
    return found


async def until_received(receiver: Receiver, count: int, timeout: float = 30) -> None:
    async def arrived() -> bool:
        return len(receiver.received) >= count

    await eventually(arrived, timeout=timeout, every=0.02)


async def until_attempted(
    caller: Caller, endpoint_id: str, attempts: int, timeout: float = 30
) -> dict[str, Any]:
    """The endpoint's newest delivery once it has been attempted at least `attempts` times."""
    found: dict[str, Any] = {}

    async def reached() -> bool:
        nonlocal found
        items = await deliveries(caller, endpoint_id)
        found = items[0] if items else {}
        return bool(items) and len(found["attempts"]) >= attempts

    await eventually(reached, timeout=timeout, every=0.05)
    return found
