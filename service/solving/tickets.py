"""Stream tickets: a browser's EventSource cannot send an Authorization header, so an SPA holding its
token in memory asks for a ticket (with its token) and opens the stream with `?ticket=…`.

A ticket is random (256 bits), valid for TICKET_TTL seconds, for one solution of one workspace and
the member who asked for it, and
redeemed once: it is deleted as it is used. Only its SHA-256 is stored, and the access log never
records query strings, so a ticket is nowhere to be read back.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import timedelta

from service.core.db import Connection, Database, utcnow

TICKET_TTL = timedelta(seconds=60)


def _hash(ticket: str) -> bytes:
    return hashlib.sha256(ticket.encode("utf-8", "surrogatepass")).digest()


async def issue(conn: Connection, workspace_id: uuid.UUID, user_id: uuid.UUID, solution_id: uuid.UUID) -> str:
    """A new ticket for `solution_id` (the caller has read it in the workspace), in their transaction."""
    ticket = secrets.token_urlsafe(32)
    await conn.execute(
        "INSERT INTO stream_tickets (ticket_hash, workspace_id, user_id, solution_id, expires_at) "
        "VALUES ($1, $2, $3, $4, $5)",
        _hash(ticket),
        workspace_id,
        user_id,
        solution_id,
        utcnow() + TICKET_TTL,
    )
    return ticket


async def redeem(db: Database, ticket: str, solution_id: uuid.UUID) -> tuple[uuid.UUID, uuid.UUID] | None:
    """The ticket's (workspace, user), if it is live and for `solution_id`; it can never be redeemed
    again. The user's membership is for the caller to check again: it may have ended since."""
    if not ticket or len(ticket) > 128:
        return None
    # Privileged: a ticket is presented without a token; only the ticket says whose it is.
    async with db.privileged() as conn:
        # Expired tickets go too: the table stays as small as the last minute's streams.
        await conn.execute("DELETE FROM stream_tickets WHERE expires_at < now()")
        row = await conn.fetchrow(
            "DELETE FROM stream_tickets WHERE ticket_hash = $1 AND solution_id = $2 AND expires_at >= now() "
            "RETURNING workspace_id, user_id",
            _hash(ticket),
            solution_id,
        )
    if row is None:
        return None
    return uuid.UUID(bytes=row["workspace_id"].bytes), uuid.UUID(bytes=row["user_id"].bytes)
