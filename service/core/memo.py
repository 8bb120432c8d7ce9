"""`Derived`: a value computed from a few objects, kept while the same objects come back.

For what the request path builds from objects that caches hand out again and again (the caller from
a token's verified claims and its user; a response body from the caller and its workspace): a
lookup is one dictionary read and one tuple comparison, cheaper than building the value again. The
caches that hold the sources decide how long they live; once one of them hands out a new object
(verified or read again), the value is derived afresh from it.
"""

from __future__ import annotations

from typing import Generic, TypeVar

V = TypeVar("V")


class Derived(Generic[V]):
    """Up to `size` values, each by the tuple of objects it was derived from (oldest dropped first).

    Kept by the id of the first object, with the objects themselves: while an entry holds them none
    of their ids can be reused, and a hit needs the same objects (or equal ones) again.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._by_first: dict[int, tuple[tuple[object, ...], V]] = {}

    def get(self, sources: tuple[object, ...]) -> V | None:
        known = self._by_first.get(id(sources[0]))
        # Tuple equality tries identity first: for the same objects this is one pointer comparison each.
        if known is not None and known[0] == sources:
            return known[1]
        return None

    def put(self, sources: tuple[object, ...], value: V) -> None:
        key = id(sources[0])
        if key not in self._by_first and len(self._by_first) >= self._size:
            self._by_first.pop(next(iter(self._by_first)))  # the oldest
        self._by_first[key] = (sources, value)
