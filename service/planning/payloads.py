"""A scenario with its request, written and read whole.

Writing from a body that carries the request: PostgreSQL parses the body once, and our check of it
runs meanwhile (service/core/document_writes.py). Reading: a small request comes whole with the
summary; a large one is read in its transfer's turn, PostgreSQL's text of it in pieces of
PIECE_BYTES, one row each, and goes out as it came (`SplicedJSONResponse`): neither the driver nor
the response ever holds the document in one buffer, which would cost its size again (and a copy of
it on the event loop). That text is the one stored for the scenario's version when there is one,
else PostgreSQL renders it; a large write or a rendering read asks for it to be stored
(service/planning/request_texts.py).

The statements take the name from PostgreSQL's parse, as sent; the check then gives the name as the
model normalises it (surrounding whitespace stripped), and a name that differs is corrected in the
same transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from contextlib import AbstractAsyncContextManager, AsyncExitStack

from starlette.responses import Response

from service.core.bodies import BodyPolicy, SplicedJSONResponse
from service.core.document_writes import DocumentWrite, document_write
from service.core.preconditions import etag
from service.core.rendering import dumps
from service.core.repository import WorkspaceScope
from service.planning.repository import PlanningRepository, ScenarioRecord
from service.planning.request_texts import REFRESH_AFTER_WRITE_BYTES, RequestTexts
from service.planning.schemas import ScenarioFields, ScenarioPatchFields

# Large enough that a piece's row costs little beside its bytes, small enough that one piece is a
# short copy on the event loop.
PIECE_BYTES = 1 << 20

read_scenario_body = document_write(ScenarioFields, "request", required=True)
read_scenario_patch = document_write(ScenarioPatchFields, "request", required=False)


async def create_scenario(
    planning: WorkspaceScope[PlanningRepository],
    texts: RequestTexts,
    session_id: uuid.UUID,
    body: DocumentWrite[ScenarioFields],
) -> ScenarioRecord:
    async with body.written(planning.writing) as repo:
        record = await repo.create_scenario_from_body(session_id, body.raw)
        name = (await body.fields()).name
        if record.name != name:
            record = await repo.correct_scenario_name(record.id, name)
    request_written(planning, texts, record, len(body.raw))
    return record


async def update_scenario(
    planning: WorkspaceScope[PlanningRepository],
    texts: RequestTexts,
    scenario_id: uuid.UUID,
    body: DocumentWrite[ScenarioPatchFields],
    expected: Collection[int] | None,
) -> ScenarioRecord:
    async with body.written(planning.writing) as repo:
        record = await repo.update_scenario_from_body(scenario_id, body.raw, expected)
        name = (await body.fields()).name
        if name is not None and record.name != name:
            record = await repo.correct_scenario_name(record.id, name)
    request_written(planning, texts, record, len(body.raw))
    return record


def request_written(
    planning: WorkspaceScope[PlanningRepository], texts: RequestTexts, record: ScenarioRecord, size: int
) -> None:
    """After a committed write of `size` bytes: a request large enough to be read in pieces gets its
    text stored for the new version, in the background (a rename's small body asks for nothing: the
    text it had follows it, and a scenario without one gets it at its next large read)."""
    if size > REFRESH_AFTER_WRITE_BYTES:
        texts.refresh(planning, record.id, record.version)


async def read_scenario(
    planning: WorkspaceScope[PlanningRepository],
    bodies: BodyPolicy,
    texts: RequestTexts,
    scenario_id: uuid.UUID,
) -> Response:
    async with planning.transaction() as repo:
        record, whole = await repo.get_scenario_whole(scenario_id)
    if whole is not None:
        return _scenario_response(record, [whole], bodies.transfer_slot(len(whole)))
    # A large request. PostgreSQL renders tens of megabytes of text for it, as heavy as sending
    # them: a GET flood rendering on every pooled connection at once left the server's own loop
    # waiting for a CPU. So the transfer's turn is taken before the statement, outside any
    # transaction (no pooled connection waits for a turn), and the response keeps it until sent.
    turn = AsyncExitStack()
    await turn.enter_async_context(bodies.large_transfer_slot())
    try:
        async with planning.transaction() as repo:
            record, pieces, stored = await repo.get_scenario_pieces(scenario_id, PIECE_BYTES)
    except BaseException:
        await turn.aclose()
        raise
    if not stored:  # rendered: its next reads send the stored text, once stored
        texts.refresh(planning, record.id, record.version)
    return _scenario_response(record, pieces, turn)


def _scenario_response(
    record: ScenarioRecord, pieces: list[bytes], sending: AbstractAsyncContextManager[object]
) -> Response:
    # The summary's members are the record's, rendered as its list page renders them (no model).
    return SplicedJSONResponse(
        dumps(record), "request", pieces, headers={"ETag": etag(record.version)}, sending=sending
    )
