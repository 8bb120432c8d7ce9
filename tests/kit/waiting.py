"""Waiting on a condition (never on a fixed sleep): poll it until it holds or the time is up."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

# How long one check may go on past the timeout before it counts as hung.
HUNG_CHECK_S = 30.0


async def eventually(
    check: Callable[[], Awaitable[bool]], *, timeout: float = 10.0, every: float = 0.02
) -> None:
    """Return once `check()` is true; AssertionError after `timeout` seconds.

    A check that never returns (a request waiting on something that will not come) fails too, with
    the place it waited in the traceback, rather than hanging the test process until CI's limit.
    """
    deadline = time.monotonic() + timeout
    try:
        async with asyncio.timeout(timeout + HUNG_CHECK_S):
            while not await check():
                if time.monotonic() > deadline:
                    raise AssertionError(f"condition not met within {timeout} s")
                await asyncio.sleep(every)
    except TimeoutError as exc:
        raise AssertionError(f"a check did not return within {timeout + HUNG_CHECK_S} s") from exc


def until(check: Callable[[], bool], *, timeout: float = 10.0, every: float = 0.05) -> None:
    """`eventually` for code outside an event loop (starting and stopping processes)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(every)
