"""Event streams under hostile headers and under deletions: every stream ends with a final `status`
event and a clean end of body, whatever the client sent and whatever happened to the solution."""

from __future__ import annotations

import copy

import pytest

from service.solving.events import last_event_id
from service.solving.example import EXAMPLE_REQUEST
from tests.planning.conftest import Caller
from tests.solving.conftest import new_scenario, parse_events


async def _cancelled_solution(caller: Caller) -> str:
    """A solution that is final already (cancelled while pending: failed), so its stream ends at once."""
    scenario_id = await new_scenario(caller, copy.deepcopy(EXAMPLE_REQUEST))
    queued = await caller.call("POST", f"/scenarios/{scenario_id}/solve", {})
    assert queued.status_code == 202, queued.text
    solution_id = str(queued.json()["id"])
    assert (await caller.call("POST", f"/solutions/{solution_id}/cancel")).status_code == 202
    return solution_id


@pytest.mark.parametrize(
    "last_event_id",
    [
        b"\xb2",  # latin-1 "²": str.isdigit() says yes, int() says no
        b"\xb3",
        b"\xb9",
        b"1\xb2",
        b"-1",
        b"+3",
        b"1_000",
        b"99999999999999999999999",  # beyond any event id a solution can reach
        b"2147483648",
        b"\xc2\xb2",  # "²" in UTF-8
        b"",
    ],
)
async def test_an_unusable_last_event_id_is_treated_as_absent(alice: Caller, last_event_id: bytes) -> None:
    solution_id = await _cancelled_solution(alice)
    response = await alice.call(
        "GET", f"/solutions/{solution_id}/events", headers={"Last-Event-ID": last_event_id}
    )
    assert response.status_code == 200
    events = parse_events(response.text)
    assert [e.event for e in events] == ["status"]
    assert events[0].data == {"status": "failed", "reason": "cancelled before a solution was found"}


async def test_a_usable_last_event_id_still_resumes(alice: Caller) -> None:
    solution_id = await _cancelled_solution(alice)
    response = await alice.call(
        "GET", f"/solutions/{solution_id}/events", headers={"Last-Event-ID": " 2147483647 "}
    )
    assert response.status_code == 200
    assert [e.event for e in parse_events(response.text)] == ["status"]


def test_last_event_id_reads_ascii_decimal_digits_within_range() -> None:
    assert last_event_id("17") == 17
    assert last_event_id(" 17\t") == 17
    assert last_event_id("2147483647") == 2147483647
    for unusable in ("\u0663", "\u00b2", "1\u00b2", "2147483648", "-1", "1.0", "0x10", "", " ", None):
        assert last_event_id(unusable) is None, unusable
