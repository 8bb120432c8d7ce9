"""Waiting on a condition (never on a fixed sleep): poll it until it holds or the time is up."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


async def eventually(
    check: Callable[[], Awaitable[bool]], *, timeout: float = 10.0, every: float = 0.02
) -> None:
    """Return once `check()` is true; AssertionError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(every)


def until(check: Callable[[], bool], *, timeout: float = 10.0, every: float = 0.05) -> None:
    """`eventually` for code outside an event loop (starting and stopping processes)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(every)
