"""A fake monotonic clock with the matching `sleep`, for code that takes both (`JWKSCache`)."""

from __future__ import annotations

import asyncio


class FakeClock:
    """`clock()` is the current fake time; `await clock.sleep(s)` moves it on by `s` at once.

    Set `hold` to an unset asyncio.Event to make sleepers wait until it is set (before time moves
    on), e.g. to look at everything that is waiting meanwhile.
    """

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self.sleeps: list[float] = []
        self.hold: asyncio.Event | None = None

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if self.hold is not None:
            await self.hold.wait()
        self.now += max(seconds, 0.0)
        # A real sleep yields to the loop; so does this one, or waiters could starve the fetch.
        await asyncio.sleep(0)
