"""The planning routes write their records with orjson, not through their response models: the bytes
must be exactly those the models would write (members, order, timestamps, ids), and the version
must stay out of the body."""

from __future__ import annotations

import uuid
from dataclasses import asdict
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from asyncpg.pgproto.pgproto import UUID as AsyncpgUUID

from service.core.bodies import SplicedJSONResponse
from service.core.pagination import Paged
from service.core.rendering import dumps
from service.planning.repository import ScenarioRecord, SessionRecord
from service.planning.schemas import ScenarioPage, ScenarioRead, ScenarioSummary, SessionPage, SessionRead

MOMENTS = [
    datetime(2026, 12, 7, 9, 30, 5, 120000, tzinfo=UTC),
    datetime(2026, 12, 7, 9, 30, 5, tzinfo=UTC),  # no fraction: written without one
    datetime(2026, 12, 7, 9, 30, 5, 1, tzinfo=UTC),
    datetime(1970, 1, 1, tzinfo=UTC),
]


def _id(index: int) -> uuid.UUID:
    # What asyncpg hands back: its own subclass of uuid.UUID.
    return AsyncpgUUID(str(uuid.UUID(int=index * 7919 + 1)))


def _scenario(index: int, moment: datetime) -> ScenarioRecord:
    return ScenarioRecord(
        _id(index), _id(1000 + index), f"scénario «{index}»", moment, moment + timedelta(days=1), _id(7), 3
    )


@pytest.mark.parametrize("moment", MOMENTS)
def test_a_record_is_written_as_its_model(moment: datetime) -> None:
    scenario = _scenario(1, moment)
    assert dumps(scenario) == ScenarioSummary.model_validate(scenario).model_dump_json().encode()
    session = SessionRecord(_id(2), "a session", moment, moment, _id(3), 9)
    assert dumps(session) == SessionRead.model_validate(session).model_dump_json().encode()
    assert b"version" not in dumps(scenario) + dumps(session)
    assert (scenario.version, session.version) == (3, 9)


@pytest.mark.parametrize("cursor", [None, "b64cursor"])
def test_a_page_is_written_as_its_model(cursor: str | None) -> None:
    scenarios = Paged([_scenario(index, MOMENTS[index % len(MOMENTS)]) for index in range(5)], cursor)
    assert (
        dumps(scenarios)
        == ScenarioPage.model_validate(scenarios, from_attributes=True).model_dump_json().encode()
    )
    sessions = Paged([SessionRecord(_id(9), "s", MOMENTS[0], MOMENTS[1], _id(3), 1)], cursor)
    assert (
        dumps(sessions)
        == SessionPage.model_validate(sessions, from_attributes=True).model_dump_json().encode()
    )


def test_a_scenario_with_its_request_is_written_as_its_model() -> None:
    # GET /scenarios/{id}: the record's JSON with the request spliced in, as ScenarioRead writes it.
    scenario = _scenario(4, MOMENTS[0])
    request = b'{"stops": [{"id": "a", "demand": 1.5}], "vehicles": []}'
    spliced = SplicedJSONResponse(dumps(scenario), "request", [request[:20], request[20:]])
    model = ScenarioRead.model_validate({**asdict(scenario), "request": orjson.loads(request)})
    assert orjson.loads(b"".join(spliced.parts)) == orjson.loads(model.model_dump_json())
    assert b"".join(spliced.parts).startswith(dumps(scenario)[:-1] + b',"request":')


def test_a_value_json_cannot_hold_is_an_error() -> None:
    with pytest.raises(TypeError):
        dumps({"when": object()})
