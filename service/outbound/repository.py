"""Every statement on the outbound webhook tables, bound to the rows' workspace (RLS underneath).

`OutboundRepository` is a workspace's endpoints and deliveries as one of its members: what the
routes manage. `DeliveryRepository` is a workspace's deliveries with no member: what a solve's end
queues (in the transaction of the status change, so a delivery exists exactly when the change
committed, whoever ended the solve), and what the dispatcher reads and records for one delivery.
The dispatcher's only cross-workspace statements — which deliveries are due, their claim, the purge
of old bodies — are the module functions at the end, run as the dispatcher role
(`Database.as_dispatcher`).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson

from service.core.db import Connection, new_id
from service.core.errors import Conflict
from service.core.pagination import Cursor
from service.core.repository import OwnedRepository, WorkspaceRepository, page
from service.outbound.events import DeliveryStatus, EventType

# Deliveries queued or made due (payload: empty): the dispatcher wakes.
OUTBOUND_CHANNEL = "routebook_outbound"
# A delivery's body (what was signed and sent) is kept this long, then erased; its attempts stay.
BODY_KEPT = timedelta(days=7)
# An event is retried this long after it happened (or after a replay), then it has failed.
RETRY_WINDOW = timedelta(hours=24)
# Deliveries of one workspace under way at once, across every dispatcher: the rest of the slots are
# for other workspaces.
PER_OWNER_IN_FLIGHT = 4
GONE_REASON = "the endpoint answered 410 Gone"

# `events` travels as comma-joined text both ways: no array type for asyncpg to introspect.
_ENDPOINT_COLUMNS = (
    "id, url, array_to_string(events, ',') AS events, enabled, disabled_reason, user_id AS created_by, "
    "created_at, updated_at"
)
_DELIVERY = """
    d.id, d.endpoint_id, d.event_type, d.solution_id, d.status, d.next_attempt_at, d.retry_until,
    d.created_at, CASE WHEN d.body_expires_at > now() THEN d.body END AS body,
    COALESCE((
        SELECT json_agg(json_build_object(
            'attempted_at', a.attempted_at, 'status_code', a.status_code,
            'duration_ms', a.duration_ms, 'error', a.error) ORDER BY a.attempted_at, a.id)
        FROM webhook_attempts a WHERE a.workspace_id = $1 AND a.delivery_id = d.id
    ), '[]')::text AS attempts
"""


@dataclass(slots=True)
class EndpointRecord:
    id: uuid.UUID
    url: str
    events: list[str]
    enabled: bool
    disabled_reason: str | None
    created_by: uuid.UUID
    created_at: datetime
    updated_at: datetime
    secret: str | None = None  # only when just created or rotated


@dataclass(slots=True)
class AttemptRecord:
    attempted_at: datetime
    status_code: int | None
    duration_ms: int
    error: str | None


@dataclass(slots=True)
class DeliveryRecord:
    id: uuid.UUID
    endpoint_id: uuid.UUID
    type: str
    solution_id: uuid.UUID
    status: str
    next_attempt_at: datetime | None
    retry_until: datetime
    created_at: datetime
    payload: dict[str, Any] | None
    attempts: list[AttemptRecord] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Outgoing:
    """What one attempt sends: a pending delivery of an enabled endpoint."""

    delivery_id: uuid.UUID
    url: str
    secret: str
    body: str
    attempts: int
    retry_until: datetime


@dataclass(frozen=True, slots=True)
class Claimed:
    delivery_id: uuid.UUID
    workspace: uuid.UUID


def _endpoint(row: Any, secret: str | None = None) -> EndpointRecord:
    values = dict(row)
    values["events"] = values["events"].split(",")
    return EndpointRecord(**values, secret=secret)


def _delivery(row: Any) -> DeliveryRecord:
    values = dict(row)
    body = values.pop("body")
    attempts = [
        AttemptRecord(
            attempted_at=datetime.fromisoformat(item["attempted_at"]),
            status_code=item["status_code"],
            duration_ms=item["duration_ms"],
            error=item["error"],
        )
        for item in orjson.loads(values.pop("attempts"))
    ]
    return DeliveryRecord(
        **{("type" if name == "event_type" else name): value for name, value in values.items()},
        payload=None if body is None else orjson.loads(body),
        attempts=attempts,
    )


class OutboundRepository(WorkspaceRepository):
    """One workspace's webhook endpoints and their deliveries, as one of its members."""

    # -- endpoints ------------------------------------------------------------------------------

    async def create_endpoint(
        self, url: str, events: Sequence[str], secret: str, *, limit: int
    ) -> EndpointRecord:
        """Conflict when the workspace already has `limit` endpoints (each event is sent to every
        one of them: the cap bounds what one solve's end queues)."""
        # Two registrations at once must not both see room for one: the workspace's count is taken
        # under a lock of its own, held to the end of the transaction.
        await self._conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended('webhook_endpoints:' || $1::uuid::text, 0))",
            self.workspace,
        )
        row = await self._fetchrow_or_none(
            "INSERT INTO webhook_endpoints (id, workspace_id, user_id, url, events, secret) "
            "SELECT $2, $1, $7, $3, string_to_array($4::text, ','), $5 "
            "WHERE (SELECT count(*) FROM webhook_endpoints WHERE workspace_id = $1) < $6 "
            f"RETURNING {_ENDPOINT_COLUMNS}",
            new_id(),
            url,
            ",".join(events),
            secret,
            limit,
            self.user,
        )
        if row is None:
            raise Conflict(
                f"This workspace has {limit} webhook endpoints, the most allowed: "
                "delete one to register another."
            )
        return _endpoint(row, secret)

    async def list_endpoints(self, limit: int, cursor: Cursor | None) -> list[EndpointRecord]:
        sql, args = page(
            f"SELECT {_ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE workspace_id = $1", cursor, 2
        )
        return [_endpoint(row) for row in await self._fetch(sql, *args, limit + 1)]

    async def delete_endpoint(self, endpoint_id: uuid.UUID) -> None:
        """Its deliveries and their attempts go with it (ON DELETE CASCADE)."""
        await self._fetchrow(
            "DELETE FROM webhook_endpoints WHERE workspace_id = $1 AND id = $2 RETURNING id", endpoint_id
        )

    async def rotate_secret(self, endpoint_id: uuid.UUID, secret: str) -> EndpointRecord:
        """Every attempt from now on, retries of earlier deliveries too, is signed with `secret`."""
        row = await self._fetchrow(
            "UPDATE webhook_endpoints SET secret = $3, updated_at = now() "
            f"WHERE workspace_id = $1 AND id = $2 RETURNING {_ENDPOINT_COLUMNS}",
            endpoint_id,
            secret,
        )
        return _endpoint(row, secret)

    # -- deliveries -----------------------------------------------------------------------------

    async def list_deliveries(
        self, endpoint_id: uuid.UUID, limit: int, cursor: Cursor | None
    ) -> list[DeliveryRecord]:
        sql = f"SELECT {_DELIVERY} FROM webhook_deliveries d WHERE d.workspace_id = $1 AND d.endpoint_id = $2"
        rows = await self._children(sql, "webhook_endpoints", endpoint_id, limit, cursor)
        return [_delivery(row) for row in rows]

    async def replay(self, endpoint_id: uuid.UUID, delivery_id: uuid.UUID) -> DeliveryRecord:
        """Send the delivery again, now, with its `webhook-id`, and retry it for another day. 409
        when its body is no longer kept, its endpoint is disabled, or an attempt to send it is
        under way (replayed then, it would be sent twice at once)."""
        # FOR UPDATE: a dispatcher's claim either committed before (and is seen here) or waits for
        # this transaction (SKIP LOCKED: it takes the delivery on a later round).
        row = await self._fetchrow(
            """
            SELECT d.body IS NOT NULL AND d.body_expires_at > now() AS kept, e.enabled,
                COALESCE(d.claimed_until > now(), false) AS claimed
            FROM webhook_deliveries d
            JOIN webhook_endpoints e ON e.workspace_id = d.workspace_id AND e.id = d.endpoint_id
            WHERE d.workspace_id = $1 AND d.endpoint_id = $2 AND d.id = $3
            FOR UPDATE OF d
            """,
            endpoint_id,
            delivery_id,
        )
        if not row["enabled"]:
            raise Conflict("The endpoint is disabled: register it again to receive deliveries.")
        if not row["kept"]:
            raise Conflict("This delivery's body is no longer kept (bodies are erased after 7 days).")
        if row["claimed"]:
            raise Conflict("This delivery is being sent right now: replay it once this attempt has ended.")
        await self._fetch(
            f"""
            UPDATE webhook_deliveries SET status = '{DeliveryStatus.PENDING}', next_attempt_at = now(),
                retry_until = now() + $3::interval, updated_at = now()
            WHERE workspace_id = $1 AND id = $2
            """,
            delivery_id,
            RETRY_WINDOW,
        )
        await self._notify()
        row = await self._fetchrow(
            f"SELECT {_DELIVERY} FROM webhook_deliveries d WHERE d.workspace_id = $1 AND d.id = $2",
            delivery_id,
        )
        return _delivery(row)

    async def _notify(self) -> None:
        await self._conn.execute("SELECT pg_notify($1, '')", OUTBOUND_CHANNEL)


class DeliveryRepository(OwnedRepository):
    """One workspace's deliveries with no member acting: queued by a solve's end (in the
    transaction that ends it, as the worker or as the member who cancelled) and sent by the
    dispatcher (`Database.as_workspace`)."""

    OWNER_COLUMN = "workspace_id"

    def __init__(self, conn: Connection, *, workspace: uuid.UUID) -> None:
        if not isinstance(workspace, uuid.UUID):
            raise TypeError(
                "a DeliveryRepository is bound to its workspace: workspace must be a workspace id"
            )
        super().__init__(conn, owner=workspace)

    async def enqueue(self, event: EventType, solution_id: uuid.UUID, body: str) -> None:
        """A delivery of `body` for each enabled endpoint of the workspace subscribed to `event`, and
        the dispatcher woken — both only once the caller's transaction commits. One statement,
        however many endpoints (most workspaces have none)."""
        await self._fetch(
            f"""
            WITH queued AS (
                INSERT INTO webhook_deliveries (id, workspace_id, endpoint_id, event_type, solution_id,
                    body, body_expires_at, status, next_attempt_at, retry_until)
                SELECT gen_random_uuid(), e.workspace_id, e.id, $2, $3, $4, now() + $5::interval,
                    '{DeliveryStatus.PENDING}', now(), now() + $6::interval
                FROM webhook_endpoints e WHERE e.workspace_id = $1 AND e.enabled AND $2 = ANY(e.events)
                RETURNING 1
            )
            SELECT pg_notify('{OUTBOUND_CHANNEL}', '') FROM (SELECT count(*) AS n FROM queued) q WHERE q.n > 0
            """,
            str(event),
            solution_id,
            body,
            BODY_KEPT,
            RETRY_WINDOW,
        )

    # -- one delivery, for the dispatcher ---------------------------------------------------------

    async def outgoing(self, delivery_id: uuid.UUID) -> Outgoing | None:
        """The delivery to send; None when there is nothing to send (deleted, no longer pending, or
        its endpoint was disabled meanwhile: then it is failed here)."""
        row = await self._fetchrow_or_none(
            f"""
            SELECT CASE WHEN d.body_expires_at > now() THEN d.body END AS body, d.attempts,
                d.retry_until, e.url, e.secret, e.enabled
            FROM webhook_deliveries d
            JOIN webhook_endpoints e ON e.workspace_id = d.workspace_id AND e.id = d.endpoint_id
            WHERE d.workspace_id = $1 AND d.id = $2 AND d.status = '{DeliveryStatus.PENDING}'
            """,
            delivery_id,
        )
        if row is None:
            return None
        if not row["enabled"] or row["body"] is None:
            await self._settle(delivery_id, DeliveryStatus.FAILED, None)
            return None
        return Outgoing(
            delivery_id=delivery_id,
            url=row["url"],
            secret=row["secret"],
            body=row["body"],
            attempts=row["attempts"],
            retry_until=row["retry_until"],
        )

    async def record_attempt(
        self,
        delivery_id: uuid.UUID,
        *,
        attempted_at: datetime,
        status_code: int | None,
        duration_ms: int,
        error: str | None,
        status: DeliveryStatus,
        next_attempt_at: datetime | None,
    ) -> None:
        """One attempt and what follows it: the delivery succeeded, failed, or is retried at
        `next_attempt_at`. Nothing is written for a delivery deleted meanwhile."""
        await self._fetch(
            """
            INSERT INTO webhook_attempts (id, workspace_id, delivery_id, attempted_at, status_code,
                duration_ms, error)
            SELECT $3, d.workspace_id, d.id, $4, $5, $6, $7 FROM webhook_deliveries d
            WHERE d.workspace_id = $1 AND d.id = $2
            """,
            delivery_id,
            new_id(),
            attempted_at,
            status_code,
            duration_ms,
            error,
        )
        await self._settle(delivery_id, status, next_attempt_at, counted=True)

    async def _settle(
        self,
        delivery_id: uuid.UUID,
        status: DeliveryStatus,
        next_attempt_at: datetime | None,
        *,
        counted: bool = False,
    ) -> None:
        await self._fetch(
            f"""
            UPDATE webhook_deliveries SET status = $3, next_attempt_at = $4, claimed_until = NULL,
                attempts = attempts + $5, updated_at = now()
            WHERE workspace_id = $1 AND id = $2 AND status = '{DeliveryStatus.PENDING}'
            """,
            delivery_id,
            str(status),
            next_attempt_at,
            1 if counted else 0,
        )

    async def disable_endpoint_of(self, delivery_id: uuid.UUID, reason: str) -> None:
        """The endpoint said it is gone: disabled, and none of its pending deliveries is sent."""
        await self._fetch(
            f"""
            WITH endpoint AS (
                UPDATE webhook_endpoints e SET enabled = false, disabled_reason = $3, updated_at = now()
                FROM webhook_deliveries d
                WHERE d.workspace_id = $1 AND d.id = $2 AND e.workspace_id = $1 AND e.id = d.endpoint_id
                RETURNING e.id
            )
            UPDATE webhook_deliveries SET status = '{DeliveryStatus.FAILED}', next_attempt_at = NULL,
                claimed_until = NULL, updated_at = now()
            WHERE workspace_id = $1 AND status = '{DeliveryStatus.PENDING}'
                AND endpoint_id IN (SELECT id FROM endpoint)
            """,
            delivery_id,
            reason,
        )


async def erase_workspace_endpoints(conn: Connection, workspace_id: uuid.UUID) -> None:
    """A deleted workspace's endpoints (and so their deliveries and attempts) go, in the caller's
    privileged transaction: nothing is sent for it again."""
    # FORCEd row-level security binds the tables' owner too: admit this workspace's rows first.
    await conn.execute("SELECT set_config('app.workspace_id', $1, true)", str(workspace_id))
    await conn.execute("DELETE FROM webhook_endpoints WHERE workspace_id = $1", workspace_id)


async def erase_owner_endpoints(conn: Connection, user_id: uuid.UUID) -> None:
    """A deleted user's personal workspace's endpoints (its id is theirs), in the identity service's
    tombstone transaction. Endpoints they registered in an organisation's workspace are the
    organisation's, and stay."""
    await erase_workspace_endpoints(conn, user_id)


# -- across workspaces: the dispatcher role only (Database.as_dispatcher) -------------------------------


async def claim_due(
    conn: Connection, *, limit: int, lease: timedelta, per_owner: int = PER_OWNER_IN_FLIGHT
) -> list[Claimed]:
    """Up to `limit` due deliveries, each claimed for `lease` (its next attempt pushed past it, so no
    other dispatcher takes it meanwhile; a dispatcher that dies mid-attempt leaves it to be retried
    once the claim lapses). SKIP LOCKED: dispatchers of several workers never wait for each other.

    Workspaces take turns: every workspace's soonest due delivery comes before anyone's second, and
    a workspace with `per_owner` deliveries under way (claimed here or by another dispatcher) gets
    no more until one ends — one workspace's backlog, or slow receivers, cannot hold every slot."""
    pending = f"status = '{DeliveryStatus.PENDING}'"
    rows = await conn.fetch(
        f"""
        WITH busy AS (
            SELECT workspace_id, count(*) AS n FROM webhook_deliveries
            WHERE {pending} AND claimed_until > now() GROUP BY workspace_id
        ), turns AS (
            SELECT d.id, d.next_attempt_at, COALESCE(b.n, 0)
                + row_number() OVER (PARTITION BY d.workspace_id ORDER BY d.next_attempt_at) AS turn
            FROM webhook_deliveries d LEFT JOIN busy b ON b.workspace_id = d.workspace_id
            WHERE d.{pending} AND d.next_attempt_at <= now()
        )
        UPDATE webhook_deliveries d SET next_attempt_at = now() + $2::interval,
            claimed_until = now() + $2::interval
        WHERE d.id IN (
            SELECT id FROM webhook_deliveries
            WHERE id IN (
                SELECT id FROM turns WHERE turn <= $3 ORDER BY turn, next_attempt_at LIMIT $1
            ) AND {pending} AND next_attempt_at <= now()
            FOR UPDATE SKIP LOCKED
        )
        RETURNING d.id, d.workspace_id
        """,
        limit,
        lease,
        per_owner,
    )
    return [Claimed(row["id"], row["workspace_id"]) for row in rows]


async def purge_bodies(conn: Connection, *, batch: int = 1000) -> int:
    """Erase the bodies of deliveries older than BODY_KEPT (a batch at a time); their count."""
    status = await conn.execute(
        """
        UPDATE webhook_deliveries SET body = NULL, body_expires_at = NULL
        WHERE id IN (
            SELECT id FROM webhook_deliveries WHERE body_expires_at <= now()
            ORDER BY body_expires_at LIMIT $1 FOR UPDATE SKIP LOCKED
        )
        """,
        batch,
    )
    return int(status.split()[-1])
