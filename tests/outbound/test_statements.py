"""Every statement on an outbound webhook table that a request or the dispatcher's work on one
delivery sends names its `workspace_id`, like the planning tables' (tests/planning/test_statements.py):
on a PostgreSQL distributed by workspace each routes to one shard. Only the dispatcher role's claim
and purge, which must see every workspace, are exempt."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime

from fastapi import FastAPI

from service.core.db import Database
from service.deps import app_state
from service.outbound.events import DeliveryStatus
from service.outbound.repository import GONE_REASON, DeliveryRepository
from tests.kit.receiver import Receiver
from tests.outbound.conftest import cancelled_solve, deliveries, register
from tests.planning.conftest import Caller
from tests.planning.test_statements import NOT_TABLE_WORK, OWNER

OUTBOUND_TABLE = re.compile(r"\bwebhook_(endpoints|deliveries|attempts)\b")


async def test_every_outbound_statement_names_its_workspace(
    app: FastAPI, alice: Caller, receiver: Receiver, service_db: Database
) -> None:
    db: Database = app_state(app).db
    sent: list[str] = []
    async with db.observe(lambda query: sent.append(query.query)):
        endpoint = await register(alice, receiver.url())
        other = await register(alice, receiver.url("/other"))
        base = f"/webhook-endpoints/{endpoint['id']}"
        await cancelled_solve(alice)  # a member's cancel queues the delivery
        [delivery] = await deliveries(alice, endpoint["id"])
        for method, path in [
            ("GET", "/webhook-endpoints"),
            ("POST", f"{base}/rotate-secret"),
            ("POST", f"{base}/deliveries/{delivery['id']}/replay"),
            ("GET", f"/webhook-endpoints/{uuid.uuid4()}/deliveries"),  # the not-found path checks the parent
            ("POST", f"/webhook-endpoints/{uuid.uuid4()}/rotate-secret"),
            ("DELETE", f"/webhook-endpoints/{other['id']}"),
        ]:
            assert (await alice.call(method, path)).status_code < 500, (method, path)
    # The dispatcher's work on one delivery, through the repository it uses.
    delivery_id = uuid.UUID(delivery["id"])
    async with service_db.observe(lambda query: sent.append(query.query)):
        async with service_db.as_workspace(alice.user_id) as conn:
            repo = DeliveryRepository(conn, workspace=alice.user_id)
            assert await repo.outgoing(delivery_id) is not None
            await repo.record_attempt(
                delivery_id,
                attempted_at=datetime.now(UTC),
                status_code=410,
                duration_ms=1,
                error="gone",
                status=DeliveryStatus.FAILED,
                next_attempt_at=None,
            )
            await repo.disable_endpoint_of(delivery_id, GONE_REASON)
    async with db.observe(lambda query: sent.append(query.query)):
        assert (await alice.call("DELETE", base)).status_code == 204

    table_work = [s for s in sent if OUTBOUND_TABLE.search(s) and not NOT_TABLE_WORK.search(s)]
    assert len(table_work) >= 10, table_work
    unowned = [s for s in table_work if not OWNER.search(s)]
    assert not unowned, unowned
