"""Two plans side by side: their totals, and where each stop went from the first to the second.

A function of the two payloads' JSON text alone (picklable in and out), so a large pair is compared
in a worker process exactly as a small one is inline.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

from service.core.errors import Conflict
from service.solving.plan_reading import Number, Plan, PlanUnreadable, Route, read_plan


def _plan(document: bytes, which: str) -> Plan:
    try:
        return read_plan(orjson.loads(document))
    except (PlanUnreadable, orjson.JSONDecodeError) as exc:
        raise Conflict(f"The {which} solution's payload is not a plan ({exc}).") from None


def _kpi(a: Number | None, b: Number | None) -> list[Number | None]:
    return [a, b, None if a is None or b is None else b - a]


def compare(first: bytes, second: bytes) -> dict[str, Any]:
    """The comparison of plan `first` (a) with plan `second` (b), as the API's `Comparison`."""
    a, b = _plan(first, "first"), _plan(second, "second")
    return {
        "kpis": {
            "distance": _kpi(a.distance, b.distance),
            "duration": _kpi(a.duration, b.duration),
            "cost": _kpi(a.cost, b.cost),
            "routes": _kpi(len(a.routes), len(b.routes)),
            "unassigned": _kpi(len(a.unassigned), len(b.unassigned)),
        },
        "stops": _changes(a.placed_stops(), b.placed_stops()),
        "shipments": _changes(a.placed_shipments(), b.placed_shipments()),
    }


def _changes(
    before: Iterator[tuple[str, Route, int]], after: Iterator[tuple[str, Route, int]]
) -> dict[str, Any]:
    """What moved, was added or dropped, and how many stayed, from `before`'s places to `after`'s."""
    then = {item: (route.vehicle_type, route.vehicle, position) for item, route, position in before}
    moved: list[dict[str, Any]] = []
    added: list[str] = []
    unchanged = 0
    served_after: set[str] = set()
    for item, route, position in after:
        served_after.add(item)
        now = (route.vehicle_type, route.vehicle, position)
        was = then.get(item)
        if was is None:
            added.append(item)
        elif was == now:
            unchanged += 1
        else:
            moved.append({"id": item, "from": _place(was), "to": _place(now)})
    dropped = [item for item in then if item not in served_after]
    return {"moved": moved, "added": added, "dropped": dropped, "unchanged": unchanged}


def _place(where: tuple[str, int, int]) -> dict[str, Any]:
    vehicle_type, vehicle, position = where
    return {"vehicle_type": vehicle_type, "vehicle": vehicle, "position": position}
