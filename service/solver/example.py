"""A small, realistic solvable request (Berlin, 2 depots, 8 stops) for the OpenAPI docs and tests."""

from __future__ import annotations

from typing import Any


def _place(lat: float, lon: float) -> dict[str, float]:
    return {"lat": lat, "lon": lon}


_MORNING = [28800, 43200]  # 08:00–12:00, seconds from the start of the planning day
_AFTERNOON = [43200, 61200]  # 12:00–17:00

EXAMPLE_REQUEST: dict[str, Any] = {
    "depots": [
        {"id": "depot-mitte", "location": _place(52.5219, 13.4132), "time_window": [21600, 72000]},
        {"id": "depot-spandau", "location": _place(52.5351, 13.1990), "time_window": [21600, 72000]},
    ],
    "stops": [
        {
            "id": "kreuzberg",
            "location": _place(52.4986, 13.4030),
            "demand": 4,
            "service_duration": 300,
            "time_window": _MORNING,
        },
        {"id": "prenzlauer-berg", "location": _place(52.5387, 13.4247), "demand": 3, "service_duration": 240},
        {
            "id": "charlottenburg",
            "location": _place(52.5166, 13.3041),
            "demand": 6,
            "service_duration": 420,
            "time_window": _AFTERNOON,
        },
        {"id": "neukoelln", "location": _place(52.4811, 13.4353), "demand": 2, "service_duration": 180},
        {
            "id": "tempelhof",
            "location": _place(52.4702, 13.3853),
            "demand": 5,
            "service_duration": 300,
            "time_window": _MORNING,
        },
        {"id": "wedding", "location": _place(52.5498, 13.3591), "demand": 3, "service_duration": 240},
        {
            "id": "friedrichshain",
            "location": _place(52.5158, 13.4541),
            "demand": 4,
            "service_duration": 300,
            "time_window": _AFTERNOON,
        },
        # Optional: served only when its prize outweighs the detour (in metres).
        {
            "id": "zehlendorf",
            "location": _place(52.4338, 13.2590),
            "demand": 1,
            "service_duration": 120,
            "required": False,
            "prize": 15000,
        },
    ],
    "vehicle_types": [
        {"id": "van", "count": 2, "capacity": 15, "depot": "depot-mitte", "shift": [25200, 64800]},
        {
            "id": "cargo-bike",
            "count": 1,
            "capacity": 6,
            "depot": "depot-spandau",
            "end_depot": "depot-mitte",
            "shift": [28800, 57600],
        },
    ],
    "options": {"speed_kmh": 25},
}

# The richer model: a shipment, route limits, costs, reloads and the cost objective.
EXAMPLE_RICHER_REQUEST: dict[str, Any] = {
    "depots": [{"id": "d1", "location": _place(52.5219, 13.4132), "time_window": [21600, 72000]}],
    "stops": [
        {"id": "s1", "location": _place(52.4986, 13.4030), "demand": 4, "service_duration": 300},
        {"id": "s2", "location": _place(52.5387, 13.4247), "demand": 3, "time_window": _MORNING},
        # Optional: under the cost objective its prize is money (cents), weighed against the detour.
        {"id": "s9", "location": _place(52.5300, 13.4100), "demand": 1, "required": False, "prize": 800},
    ],
    "shipments": [
        {
            "id": "p1",
            "amount": 4,
            "pickup": {
                "location": _place(52.5100, 13.3800),
                "service_duration": 120,
                "time_window": [28800, 36000],
            },
            "delivery": {
                "location": _place(52.4900, 13.4200),
                "service_duration": 180,
                "time_window": [30000, 50400],
            },
        }
    ],
    "vehicle_types": [
        {
            "id": "van",
            "count": 2,
            "capacity": 6,
            "depot": "d1",
            "shift": [25200, 64800],
            "max_distance": 150000,
            "max_duration": 28800,
            "fixed_cost": 5000,
            "cost_per_km": 40,
            "cost_per_hour": 2500,
            "reload_depots": ["d1"],
            "max_reloads": 2,
        }
    ],
    "options": {"objective": "cost", "speed_kmh": 25},
}
