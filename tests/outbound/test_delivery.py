"""Outbound webhooks are delivered to a real receiver, signed per Standard Webhooks (checked with
the `standardwebhooks` verifier), retried with the same webhook-id, stopped by a 410, replayed on
request, and queued in the very transaction that ends the solve."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import orjson
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from service.config import Settings
from service.core.db import Database
from service.deps import app_state
from service.outbound import addresses, dispatcher
from service.outbound.addresses import IPAddress
from service.outbound.events import EventType
from service.outbound.repository import DeliveryRepository, OutboundRepository, claim_due, purge_bodies
from service.outbound.routes import new_secret
from service.solver.example import EXAMPLE_REQUEST
from service.solving.repository import NotStarted, SolutionRepository
from tests.kit.receiver import Receiver
from tests.kit.sql import SqlAdmin
from tests.kit.waiting import eventually
from tests.kit.worker import WorkerProcess
from tests.outbound.conftest import (
    EVENTS,
    cancelled_solve,
    deliveries,
    dispatching,
    register,
    resolving_to,
    until_attempted,
    until_delivery,
    until_received,
)
from tests.planning.conftest import Caller
from tests.solving.conftest import new_scenario, until_status


def verified(secret: str, received: object) -> dict[str, object]:
    """The body, once `standardwebhooks` has verified its signature (it raises otherwise)."""
    body: bytes = received.body  # type: ignore[attr-defined]
    headers: dict[str, str] = received.headers  # type: ignore[attr-defined]
    payload: dict[str, object] = Webhook(secret).verify(body, headers)
    return payload


async def test_a_solve_that_ends_sends_exactly_one_signed_delivery(
    alice: Caller, worker: WorkerProcess, receiver: Receiver
) -> None:
    endpoint = await register(alice, receiver.url(), ["solution.succeeded"])
    assert endpoint["secret"].startswith("whsec_")
    scenario_id = await new_scenario(alice, copy.deepcopy(EXAMPLE_REQUEST))
    queued = await alice.call("POST", f"/scenarios/{scenario_id}/solve", {"time_limit_s": 1})
    assert queued.status_code == 202, queued.text
    solution_id = queued.json()["id"]
    solved = await until_status(alice, solution_id, "succeeded", "failed")
    assert solved["status"] == "succeeded"

    # The worker's dispatcher sends it; it is recorded as delivered only after the receiver answered.
    delivery = await until_delivery(alice, endpoint["id"], "succeeded", "failed")
    assert delivery["status"] == "succeeded"
    assert len(receiver.received) == 1
    received = receiver.received[0]
    payload = verified(endpoint["secret"], received)
    assert payload["type"] == "solution.succeeded"
    data = payload["data"]
    assert isinstance(data, dict)
    assert data["solution_id"] == solution_id and data["scenario_id"] == scenario_id
    assert data["status"] == "succeeded" and isinstance(data["distance"], int)
    assert received.headers["webhook-id"] == delivery["id"]
    assert received.headers["webhook-signature"].startswith("v1,")
    assert received.headers["content-type"] == "application/json"
    assert [attempt["status_code"] for attempt in delivery["attempts"]] == [204]
    assert delivery["attempts"][0]["error"] is None and delivery["attempts"][0]["duration_ms"] >= 0
    assert delivery["payload"] == orjson.loads(received.body)


async def test_a_receiver_that_fails_twice_gets_one_success_and_the_same_webhook_id(
    alice: Caller, receiver: Receiver, service_db: Database, dispatcher_settings: Settings
) -> None:
    receiver.answers = [500, 503]
    endpoint = await register(alice, receiver.url())
    solution_id = await cancelled_solve(alice)

    async with dispatching(dispatcher_settings, service_db):
        delivery = await until_delivery(alice, endpoint["id"], "succeeded", "failed")
    assert delivery["status"] == "succeeded"
    assert len(receiver.received) == 3
    assert {r.headers["webhook-id"] for r in receiver.received} == {delivery["id"]}
    for received in receiver.received:
        payload = verified(endpoint["secret"], received)
        assert payload["type"] == "solution.failed"
        assert payload["data"] == {
            "solution_id": solution_id,
            "scenario_id": payload["data"]["scenario_id"],  # type: ignore[index]
            "status": "failed",
        }
    attempts = delivery["attempts"]
    assert [a["status_code"] for a in attempts] == [500, 503, 204]
    assert [a["error"] for a in attempts] == ["status", "status", None]
    assert [a["attempted_at"] for a in attempts] == sorted(a["attempted_at"] for a in attempts)


async def test_410_disables_the_endpoint_and_nothing_more_is_sent(
    alice: Caller, receiver: Receiver, service_db: Database, dispatcher_settings: Settings
) -> None:
    receiver.default = 410
    endpoint = await register(alice, receiver.url())
    await cancelled_solve(alice)
    async with dispatching(dispatcher_settings, service_db):
        delivery = await until_delivery(alice, endpoint["id"], "succeeded", "failed")
        assert delivery["status"] == "failed"
        assert [a["error"] for a in delivery["attempts"]] == ["gone"]
        listed = (await alice.call("GET", "/webhook-endpoints")).json()["items"]
        assert listed[0]["enabled"] is False and "410" in listed[0]["disabled_reason"]

        await cancelled_solve(alice)  # another event: no delivery for a disabled endpoint
        assert len(await deliveries(alice, endpoint["id"])) == 1
        replay = await alice.call(
            "POST", f"/webhook-endpoints/{endpoint['id']}/deliveries/{delivery['id']}/replay"
        )
        assert replay.status_code == 409
    assert len(receiver.received) == 1


async def test_rotating_the_secret_signs_later_deliveries_with_the_new_one(
    alice: Caller, receiver: Receiver, service_db: Database, dispatcher_settings: Settings
) -> None:
    endpoint = await register(alice, receiver.url())
    rotated = await alice.call("POST", f"/webhook-endpoints/{endpoint['id']}/rotate-secret")
    assert rotated.status_code == 200, rotated.text
    new_secret = rotated.json()["secret"]
    assert new_secret.startswith("whsec_") and new_secret != endpoint["secret"]
    listed = (await alice.call("GET", "/webhook-endpoints")).json()["items"]
    assert "secret" not in listed[0]  # shown only at creation and rotation

    await cancelled_solve(alice)
    async with dispatching(dispatcher_settings, service_db):
        await until_delivery(alice, endpoint["id"], "succeeded")
    verified(new_secret, receiver.received[0])
    with pytest.raises(WebhookVerificationError):
        verified(endpoint["secret"], receiver.received[0])


async def test_a_replay_sends_again_with_the_same_webhook_id(
    alice: Caller, receiver: Receiver, service_db: Database, dispatcher_settings: Settings
) -> None:
    endpoint = await register(alice, receiver.url())
    await cancelled_solve(alice)
    async with dispatching(dispatcher_settings, service_db):
        first = await until_delivery(alice, endpoint["id"], "succeeded")
        replay = await alice.call(
            "POST", f"/webhook-endpoints/{endpoint['id']}/deliveries/{first['id']}/replay"
        )
        assert replay.status_code == 202, replay.text
        assert replay.json()["id"] == first["id"]
        await until_received(receiver, 2)
        again = await until_delivery(alice, endpoint["id"], "succeeded")
    assert [r.headers["webhook-id"] for r in receiver.received] == [first["id"], first["id"]]
    assert receiver.received[0].body == receiver.received[1].body
    verified(endpoint["secret"], receiver.received[1])
    assert len(again["attempts"]) == 2


async def test_bodies_older_than_a_week_are_purged_and_can_no_longer_be_replayed(
    alice: Caller, receiver: Receiver, service_db: Database, clean_db: SqlAdmin
) -> None:
    endpoint = await register(alice, receiver.url())
    await cancelled_solve(alice)
    [delivery] = await deliveries(alice, endpoint["id"])
    assert delivery["payload"]["type"] == "solution.failed"
    async with clean_db.transaction() as session:
        await session.execute(
            text("UPDATE webhook_deliveries SET body_expires_at = now() - interval '1 second'")
        )
    async with service_db.as_dispatcher() as conn:
        assert await purge_bodies(conn) == 1
    [delivery] = await deliveries(alice, endpoint["id"])
    assert delivery["payload"] is None
    replay = await alice.call(
        "POST", f"/webhook-endpoints/{endpoint['id']}/deliveries/{delivery['id']}/replay"
    )
    assert replay.status_code == 409


async def test_the_delivery_is_queued_only_if_the_status_change_commits(
    alice: Caller, receiver: Receiver, service_db: Database, clean_db: SqlAdmin
) -> None:
    await register(alice, receiver.url())
    scenario_id = await new_scenario(alice, copy.deepcopy(EXAMPLE_REQUEST))
    queued = await alice.call("POST", f"/scenarios/{scenario_id}/solve", {})
    solution_id = uuid.UUID(queued.json()["id"])

    class RolledBack(Exception):
        pass

    with pytest.raises(RolledBack):
        async with service_db.as_user(alice.user_id) as conn:
            assert await SolutionRepository(conn, workspace=alice.user_id, user=alice.user_id).abandon(
                solution_id, "lost"
            )
            raise RolledBack
    async with clean_db.transaction() as session:
        count = (await session.execute(text("SELECT count(*) FROM webhook_deliveries"))).scalar_one()
        status = (
            await session.execute(text("SELECT status FROM solutions WHERE id = :id"), {"id": solution_id})
        ).scalar_one()
    assert (count, status) == (0, "pending")

    async with service_db.as_user(alice.user_id) as conn:
        assert await SolutionRepository(conn, workspace=alice.user_id, user=alice.user_id).abandon(
            solution_id, "lost"
        )
    async with clean_db.transaction() as session:
        rows = (await session.execute(text("SELECT event_type, solution_id FROM webhook_deliveries"))).all()
    assert [tuple(row) for row in rows] == [("solution.failed", solution_id)]


async def test_only_subscribed_enabled_endpoints_get_a_delivery(
    alice: Caller, bob: Caller, receiver: Receiver
) -> None:
    succeeded_only = await register(alice, receiver.url(), ["solution.succeeded"])
    failed_only = await register(alice, receiver.url(), ["solution.failed"])
    bobs = await register(bob, receiver.url())
    await cancelled_solve(alice)
    assert await deliveries(alice, succeeded_only["id"]) == []
    [delivery] = await deliveries(alice, failed_only["id"])
    assert delivery["type"] == "solution.failed" and delivery["status"] == "pending"
    assert datetime.fromisoformat(delivery["retry_until"]) > datetime.now(UTC)
    assert await deliveries(bob, bobs["id"]) == []


async def test_a_solve_cancelled_while_running_sends_solution_cancelled_with_its_distance(
    alice: Caller, receiver: Receiver, service_db: Database
) -> None:
    endpoint = await register(alice, receiver.url(), ["solution.cancelled"])
    scenario_id = await new_scenario(alice, copy.deepcopy(EXAMPLE_REQUEST))
    solution_id = uuid.UUID((await alice.call("POST", f"/scenarios/{scenario_id}/solve", {})).json()["id"])
    # What the worker does for a run stopped by a cancel that kept its best solution so far.
    async with service_db.as_user(alice.user_id) as conn:
        repo = SolutionRepository(conn, workspace=alice.user_id, user=alice.user_id)
        started = await repo.start(solution_id)
        assert not isinstance(started, NotStarted)
        payload = {"feasible": True, "distance": 4321, "routes": [], "unassigned": []}
        assert await repo.finish(
            solution_id, started.attempts, "cancelled", payload=payload, reason=None, progress=None
        )
    [delivery] = await deliveries(alice, endpoint["id"])
    assert delivery["type"] == "solution.cancelled"
    assert delivery["payload"]["data"] == {
        "solution_id": str(solution_id),
        "scenario_id": scenario_id,
        "status": "cancelled",
        "distance": 4321,
    }


@contextlib.asynccontextmanager
async def held_receiver() -> AsyncIterator[tuple[int, list[dict[str, str]], asyncio.Event]]:
    """A receiver that answers 204 only once `release` is set: an attempt stays under way."""
    heard: list[dict[str, str]] = []
    release = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        lines = [line.split(":", 1) for line in head.split("\r\n")[1:] if ":" in line]
        headers = {name.strip().lower(): value.strip() for name, value in lines}
        await reader.readexactly(int(headers["content-length"]))
        heard.append(headers)
        await release.wait()
        writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], heard, release
    finally:
        release.set()
        server.close()
        await server.wait_closed()


async def test_a_delivery_being_sent_cannot_be_replayed_until_the_attempt_ends(
    alice: Caller, service_db: Database, dispatcher_settings: Settings
) -> None:
    """Replayed while under way it would be claimed twice, and sent twice at once."""
    async with held_receiver() as (port, heard, release):
        endpoint = await register(alice, f"http://127.0.0.1:{port}/held")
        await cancelled_solve(alice)
        async with dispatching(dispatcher_settings, service_db):

            async def under_way() -> bool:
                return len(heard) == 1

            await eventually(under_way, timeout=30, every=0.02)
            [delivery] = await deliveries(alice, endpoint["id"])
            replay_path = f"/webhook-endpoints/{endpoint['id']}/deliveries/{delivery['id']}/replay"
            refused = await alice.call("POST", replay_path)
            assert refused.status_code == 409, refused.text
            assert refused.headers["content-type"] == "application/problem+json"
            assert "being sent" in refused.json()["detail"]

            release.set()
            await until_delivery(alice, endpoint["id"], "succeeded")
            assert (await alice.call("POST", replay_path)).status_code == 202
            again = await until_attempted(alice, endpoint["id"], 2)
            await until_delivery(alice, endpoint["id"], "succeeded")
    assert len(heard) == 2 and len(again["attempts"]) == 2
    assert {headers["webhook-id"] for headers in heard} == {delivery["id"]}


async def test_a_url_httpx_refuses_is_recorded_and_retried_until_retry_until(
    alice: Caller, service_db: Database, dispatcher_settings: Settings, clean_db: SqlAdmin
) -> None:
    """Registered before httpx's check existed (IDNA 2003, not 2008): each attempt is recorded,
    rather than the delivery being tried again forever, unrecorded, as its claim lapses."""
    async with service_db.as_user(alice.user_id) as conn:
        outbound = OutboundRepository(conn, workspace=alice.user_id, user=alice.user_id)
        endpoint = await outbound.create_endpoint("http://\u2603.test:9/", EVENTS, new_secret(), limit=20)
    await cancelled_solve(alice)
    async with dispatching(dispatcher_settings, service_db, resolving_to("127.0.0.1")):
        retried = await until_attempted(alice, str(endpoint.id), 2)
        assert retried["status"] == "pending"
        async with clean_db.transaction() as session:
            await session.execute(text("UPDATE webhook_deliveries SET retry_until = now()"))
        failed = await until_delivery(alice, str(endpoint.id), "failed")
    assert {attempt["error"] for attempt in failed["attempts"]} == {"address_refused"}


async def test_any_exception_of_an_attempt_is_recorded_as_protocol(
    app: FastAPI, alice: Caller, receiver: Receiver, service_db: Database, dispatcher_settings: Settings
) -> None:
    async def broken(host: str, port: int) -> list[IPAddress]:
        raise RuntimeError("a resolver bug")

    app_state(app).webhook_targets.resolver = resolving_to("127.0.0.1")
    endpoint = await register(alice, receiver.url(host="hooks.routebook.invalid"))
    await cancelled_solve(alice)
    async with dispatching(dispatcher_settings, service_db, broken):
        delivery = await until_attempted(alice, endpoint["id"], 2)
    assert [attempt["error"] for attempt in delivery["attempts"][:2]] == ["protocol", "protocol"]
    assert delivery["status"] == "pending" and receiver.received == []


async def test_resolving_the_host_counts_within_the_attempts_timeout(
    app: FastAPI,
    alice: Caller,
    receiver: Receiver,
    service_db: Database,
    dispatcher_settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A resolver that never answers ends the attempt at TIMEOUT_S, as `timeout`."""
    monkeypatch.setattr(dispatcher, "TIMEOUT_S", 0.2)
    monkeypatch.setattr(addresses, "RESOLVE_TIMEOUT_S", 3600.0)

    async def silent(host: str, port: int) -> list[IPAddress]:
        await asyncio.Event().wait()
        raise AssertionError("never answers")

    app_state(app).webhook_targets.resolver = resolving_to("127.0.0.1")
    endpoint = await register(alice, receiver.url(host="hooks.routebook.invalid"))
    await cancelled_solve(alice)
    async with dispatching(dispatcher_settings, service_db, silent):
        delivery = await until_attempted(alice, endpoint["id"], 1)
    assert delivery["attempts"][0]["error"] == "timeout"


async def test_an_internationalised_host_is_delivered_to(
    app: FastAPI, alice: Caller, receiver: Receiver, service_db: Database, dispatcher_settings: Settings
) -> None:
    """Resolved, checked and connected to in its ASCII form (what httpx sends as Host)."""
    app_state(app).webhook_targets.resolver = resolving_to("127.0.0.1")
    endpoint = await register(alice, receiver.url("/idn", host="b\u00fccher.routebook.invalid"))
    await cancelled_solve(alice)
    async with dispatching(dispatcher_settings, service_db, resolving_to("127.0.0.1")):
        delivery = await until_delivery(alice, endpoint["id"], "succeeded", "failed")
    assert delivery["status"] == "succeeded", delivery["attempts"]
    [received] = receiver.received
    assert received.headers["host"] == f"xn--bcher-kva.routebook.invalid:{receiver.port}"


async def test_the_last_retry_comes_at_retry_until_rather_than_never(
    alice: Caller,
    receiver: Receiver,
    service_db: Database,
    dispatcher_settings: Settings,
    clean_db: SqlAdmin,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A retry drawn past retry_until is moved to it: the delivery is not given up early."""
    monkeypatch.setattr(dispatcher, "retry_delay", lambda base_s, attempts: dispatcher.MAX_DELAY_S)
    receiver.default = 500
    endpoint = await register(alice, receiver.url())
    await cancelled_solve(alice)
    async with clean_db.transaction() as session:
        await session.execute(
            text("UPDATE webhook_deliveries SET retry_until = now() + interval '10 minutes'")
        )
    async with dispatching(dispatcher_settings, service_db):
        delivery = await until_attempted(alice, endpoint["id"], 1)
    assert delivery["status"] == "pending"
    assert delivery["next_attempt_at"] == delivery["retry_until"]


async def _queue(db: Database, workspace: uuid.UUID, count: int) -> None:
    async with db.as_workspace(workspace) as conn:
        repo = DeliveryRepository(conn, workspace=workspace)
        for _ in range(count):
            await repo.enqueue(EventType.SOLUTION_FAILED, uuid.uuid4(), "{}")


async def test_workspaces_take_turns_when_deliveries_are_claimed(
    alice: Caller, bob: Caller, receiver: Receiver, service_db: Database
) -> None:
    """The backlog of Alice's personal workspace, queued first, does not hold every slot: a delivery
    of Bob's is among the first claimed, and Alice's workspace gets no more than its share in
    flight."""
    await register(alice, receiver.url())
    await register(bob, receiver.url())
    await _queue(service_db, alice.user_id, 10)
    await _queue(service_db, bob.user_id, 1)
    async with service_db.as_dispatcher() as conn:
        first = await claim_due(conn, limit=2, lease=timedelta(minutes=1), per_owner=3)
    assert sorted(str(c.workspace) for c in first) == sorted([str(alice.user_id), str(bob.user_id)])
    async with service_db.as_dispatcher() as conn:
        more = await claim_due(conn, limit=10, lease=timedelta(minutes=1), per_owner=3)
    # Alice had one under way: two more make three; Bob has nothing left due.
    assert [c.workspace for c in more] == [alice.user_id, alice.user_id]


async def test_a_body_past_its_expiry_is_not_shown_nor_replayed_before_the_purge(
    alice: Caller, receiver: Receiver, clean_db: SqlAdmin
) -> None:
    endpoint = await register(alice, receiver.url())
    await cancelled_solve(alice)
    async with clean_db.transaction() as session:
        await session.execute(text("UPDATE webhook_deliveries SET body_expires_at = now()"))
    [delivery] = await deliveries(alice, endpoint["id"])
    assert delivery["payload"] is None
    replay = await alice.call(
        "POST", f"/webhook-endpoints/{endpoint['id']}/deliveries/{delivery['id']}/replay"
    )
    assert replay.status_code == 409


async def test_the_dispatcher_role_may_erase_a_body_but_never_write_one(
    alice: Caller, receiver: Receiver, service_db: Database
) -> None:
    endpoint = await register(alice, receiver.url())
    await cancelled_solve(alice)
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        async with service_db.as_dispatcher() as conn:
            await conn.execute("UPDATE webhook_deliveries SET body = '{\"forged\": true}'")
    [delivery] = await deliveries(alice, endpoint["id"])
    assert delivery["payload"]["type"] == "solution.failed"
    async with service_db.as_dispatcher() as conn:
        await conn.execute("UPDATE webhook_deliveries SET body = NULL, body_expires_at = NULL")
    assert (await deliveries(alice, endpoint["id"]))[0]["payload"] is None
