"""A large scenario request's text is stored for its version, in the background, and a read sends
it; a copy for another version, or none, is never read: the read renders the JSONB as before
(service/planning/request_texts.py, migration 0016)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import text

from service.core.db import Database
from service.core.repository import WorkspaceScope
from service.deps import app_state
from service.planning.repository import PlanningRepository
from tests.kit.sql import SqlAdmin, scope_rls_to
from tests.kit.waiting import eventually
from tests.planning.conftest import Caller
from tests.planning.test_payloads import big_request, json_value, new_session, sent
from tests.planning.test_workspace_isolation import Team, team  # noqa: F401 (a fixture)

# Large enough to be read in pieces whichever way the server stores JSONB, and in three of them
# (payloads.PIECE_BYTES is 1 MiB): the stored text is cut where the rendered one was.
LARGE = 2_500_000


@dataclass(frozen=True)
class Copy:
    version: int
    text_version: int | None
    text: bytes | None
    rendered: bytes  # PostgreSQL's text of the current request, rendered now


async def copy_of(db: SqlAdmin, scenario_id: str, workspace: uuid.UUID) -> Copy:
    async with db.transaction() as session:
        await scope_rls_to(session, workspace, workspace)
        row = (
            await session.execute(
                text(
                    "SELECT version, request_text_version, request_text, "
                    "convert_to(COALESCE(request, original_request)::text, 'UTF8') FROM scenarios WHERE id = :id"
                ),
                {"id": uuid.UUID(scenario_id)},
            )
        ).one()
    return Copy(*row)


async def stored(db: SqlAdmin, scenario_id: str, workspace: uuid.UUID) -> Copy:
    """Once the scenario's text is stored for its current version."""

    async def current() -> bool:
        copy = await copy_of(db, scenario_id, workspace)
        return copy.text_version == copy.version

    await eventually(current, timeout=30)
    return await copy_of(db, scenario_id, workspace)


async def set_copy(
    db: SqlAdmin, scenario_id: str, workspace: uuid.UUID, text_: bytes | None, version: int | None
) -> None:
    async with db.transaction() as session:
        await scope_rls_to(session, workspace, workspace)
        await session.execute(
            text("UPDATE scenarios SET request_text = :t, request_text_version = :v WHERE id = :id"),
            {"t": text_, "v": version, "id": uuid.UUID(scenario_id)},
        )
        await session.commit()


async def create(caller: Caller, request: dict[str, Any]) -> str:
    session_id = await new_session(caller)
    created = await caller.call(
        "POST", f"/sessions/{session_id}/scenarios", {"name": "big", "request": request}
    )
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


async def read(caller: Caller, scenario_id: str) -> bytes:
    response = await caller.call("GET", f"/scenarios/{scenario_id}")
    assert response.status_code == 200, response.text
    return response.content


async def test_a_large_write_stores_its_text_and_a_read_sends_it(alice: Caller, clean_db: SqlAdmin) -> None:
    request = big_request(LARGE)
    scenario_id = await create(alice, request)

    copy = await stored(clean_db, scenario_id, alice.user_id)
    assert copy.text == copy.rendered
    assert len(copy.text) > 2 * (1 << 20)
    from_copy = await read(alice, scenario_id)
    assert json_value(from_copy)["request"] == sent(request)

    # Without the copy, the read renders: the same bytes, to the last one.
    await set_copy(clean_db, scenario_id, alice.user_id, None, None)
    assert await read(alice, scenario_id) == from_copy
    # ... and that read asked for the copy again.
    assert (await stored(clean_db, scenario_id, alice.user_id)).text == copy.rendered

    # The read sends the stored text itself, not a rendering: a marker stored for this version
    # is what comes back.
    await set_copy(clean_db, scenario_id, alice.user_id, b'{"marker": true}', copy.version)
    assert json_value(await read(alice, scenario_id))["request"] == {"marker": True}


async def test_a_rename_keeps_the_text_and_a_new_request_drops_it(alice: Caller, clean_db: SqlAdmin) -> None:
    original = big_request(LARGE)
    scenario_id = await create(alice, original)
    first = await stored(clean_db, scenario_id, alice.user_id)

    # A rename: a new version, the same request: the text follows, without rendering again.
    renamed = await alice.call("PATCH", f"/scenarios/{scenario_id}", {"name": "renamed"})
    assert renamed.status_code == 200, renamed.text
    after_rename = await copy_of(clean_db, scenario_id, alice.user_id)
    assert (after_rename.version, after_rename.text_version) == (first.version + 1, first.version + 1)
    assert after_rename.text == first.rendered
    assert json_value(await read(alice, scenario_id))["request"] == sent(original)

    # A new request: the text goes with the write (a marker stands in for it, so that a read of it
    # would show), the read renders the new request at once, and its text is stored after.
    await set_copy(clean_db, scenario_id, alice.user_id, b'{"marker": true}', after_rename.version)
    replacement = big_request(LARGE + 100_000)
    patched = await alice.call("PATCH", f"/scenarios/{scenario_id}", {"request": replacement})
    assert patched.status_code == 200, patched.text
    assert (await copy_of(clean_db, scenario_id, alice.user_id)).text is None
    assert json_value(await read(alice, scenario_id))["request"] == sent(replacement)
    after_patch = await stored(clean_db, scenario_id, alice.user_id)
    assert after_patch.text == after_patch.rendered != first.rendered

    # A reset: the original again, at once.
    await set_copy(clean_db, scenario_id, alice.user_id, b'{"marker": true}', after_patch.version)
    reset = await alice.call("POST", f"/scenarios/{scenario_id}/reset")
    assert reset.status_code == 200, reset.text
    assert json_value(await read(alice, scenario_id))["request"] == sent(original)
    assert (await stored(clean_db, scenario_id, alice.user_id)).text == first.rendered


async def test_a_request_changed_from_outside_the_api_is_never_read_from_its_old_text(
    alice: Caller, clean_db: SqlAdmin
) -> None:
    """A statement that changes the request but not the version (a repair by hand): the trigger of
    migration 0016 drops the text."""
    original = big_request(LARGE)
    scenario_id = await create(alice, original)
    first = await stored(clean_db, scenario_id, alice.user_id)
    async with clean_db.transaction() as session:
        await scope_rls_to(session, alice.user_id)
        await session.execute(
            text(
                """UPDATE scenarios SET request = original_request || '{"repaired": true}' WHERE id = :id"""
            ),
            {"id": uuid.UUID(scenario_id)},
        )
        await session.commit()
    after = await copy_of(clean_db, scenario_id, alice.user_id)
    assert (after.version, after.text_version, after.text) == (first.version, None, None)
    assert json_value(await read(alice, scenario_id))["request"] == sent({**original, "repaired": True})


async def test_a_text_is_stored_only_for_the_version_asked_and_only_when_large(
    alice: Caller, app: FastAPI, clean_db: SqlAdmin
) -> None:
    scenario_id = await create(alice, big_request(LARGE))
    first = await stored(clean_db, scenario_id, alice.user_id)
    await set_copy(clean_db, scenario_id, alice.user_id, None, None)
    renamed = await alice.call("PATCH", f"/scenarios/{scenario_id}", {"name": "renamed"})
    assert renamed.status_code == 200, renamed.text

    planning = WorkspaceScope(app_state(app).db, alice.user_id, alice.user_id, True, PlanningRepository)
    async with planning.writing() as repo:
        # Asked for the version before the rename: the scenario moved on, nothing is stored.
        assert not await repo.store_request_text(uuid.UUID(scenario_id), first.version)
    assert (await copy_of(clean_db, scenario_id, alice.user_id)).text is None
    async with planning.writing() as repo:
        assert await repo.store_request_text(uuid.UUID(scenario_id), first.version + 1)
        # Stored already: not rendered again.
        assert not await repo.store_request_text(uuid.UUID(scenario_id), first.version + 1)

    # A request whose body asks for its text (over 64 KiB) but which is read whole, rendered in the
    # read's own statement: no text is stored for it.
    small = await create(alice, big_request(70_000))
    async with planning.writing() as repo:
        assert not await repo.store_request_text(uuid.UUID(small), 1)
    assert (await copy_of(clean_db, small, alice.user_id)).text is None


async def test_a_write_committed_while_the_text_renders_wins(
    alice: Caller, app: FastAPI, clean_db: SqlAdmin
) -> None:
    """The rendering waits for the row; once the write commits, it finds the version moved on
    (PostgreSQL re-checks the row it waited for) and stores nothing."""
    scenario_id = await create(alice, big_request(LARGE))
    first = await stored(clean_db, scenario_id, alice.user_id)
    await set_copy(clean_db, scenario_id, alice.user_id, None, None)
    planning = WorkspaceScope(app_state(app).db, alice.user_id, alice.user_id, True, PlanningRepository)

    async with clean_db.transaction() as writer:
        await scope_rls_to(writer, alice.user_id)
        await writer.execute(
            text("UPDATE scenarios SET version = version + 1, name = 'written meanwhile' WHERE id = :id"),
            {"id": uuid.UUID(scenario_id)},
        )

        async def store() -> bool:
            async with planning.writing() as repo:
                return await repo.store_request_text(uuid.UUID(scenario_id), first.version)

        storing = asyncio.create_task(store())

        async def waiting_for_the_row() -> bool:
            return await clean_db.waits_on_a_lock("%UPDATE scenarios%SET request_text%")

        await eventually(waiting_for_the_row)
        await writer.commit()
    assert await storing is False
    after = await copy_of(clean_db, scenario_id, alice.user_id)
    assert (after.version, after.text) == (first.version + 1, None)


async def test_a_viewers_read_asks_for_nothing_a_members_does(
    team: Team,  # noqa: F811 (the fixture)
    clean_db: SqlAdmin,
    caplog: pytest.LogCaptureFixture,
) -> None:
    scenario_id = await create(team.alice, big_request(LARGE))
    copy = await stored(clean_db, scenario_id, team.workspace)
    await set_copy(clean_db, scenario_id, team.workspace, None, None)

    # A viewer may not write, so its read renders and asks nothing of the background (which would
    # be refused: a warning, and still no text).
    with caplog.at_level(logging.WARNING, logger="service.planning.request_texts"):
        assert json_value(await read(team.dave, scenario_id))["request"] == json_value(copy.rendered)
        assert await read(team.bob, scenario_id)
        assert (await stored(clean_db, scenario_id, team.workspace)).text == copy.rendered
    assert not caplog.records, caplog.text


async def test_a_failed_rendering_is_logged_without_a_traceback_and_the_next_one_runs(
    alice: Caller, app: FastAPI, clean_db: SqlAdmin, caplog: pytest.LogCaptureFixture
) -> None:
    scenario_id = await create(alice, big_request(LARGE))
    copy = await stored(clean_db, scenario_id, alice.user_id)
    await set_copy(clean_db, scenario_id, alice.user_id, None, None)
    unreachable = Database("postgresql://postgres@127.0.0.1:1/test", max_size=1, acquire_timeout=2.0)
    texts = app_state(app).request_texts

    try:
        with caplog.at_level(logging.WARNING, logger="service.planning.request_texts"):
            failing = WorkspaceScope(unreachable, alice.user_id, alice.user_id, True, PlanningRepository)
            texts.refresh(failing, uuid.UUID(scenario_id), copy.version)
            assert await read(alice, scenario_id)  # asks again, after the one that fails
            assert (await stored(clean_db, scenario_id, alice.user_id)).text == copy.rendered
    finally:
        await unreachable.close()

    failures = [
        record for record in caplog.records if record.getMessage() == "scenario request text not stored"
    ]
    assert len(failures) == 1
    assert failures[0].exc_info is None
    assert failures[0].error == "DatabaseUnavailable"  # type: ignore[attr-defined]
