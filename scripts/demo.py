"""`make demo`: a demo user with a session, the playground's example scenarios and one solved plan,
then the playground URL and a dev token. Idempotent: a second run finds the demo and changes nothing.

Development only (the dev issuer). Uses DATABASE_URL, else the embedded development database.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import orjson
from pydantic import ValidationError

from service.config import Settings, get_settings
from service.core.db import Database
from service.core.migrations import upgrade
from service.dev.devdb import database_url
from service.dev.routes import PLAYGROUND, DevTokenCreate, dev_subject, mint_dev_token
from service.main import identity_for
from service.planning.repository import PlanningRepository
from service.providers.dev import DevIssuer
from service.solver.outcome import Progress
from service.solver.process import run_solve
from service.solving.repository import SolutionRepository

EMAIL = "demo@routebook.dev"
SESSION = "Demo: deliveries"
EXAMPLES = {"Berlin, 25 stops": "berlin.json", "E-n22-k4 (CVRP benchmark)": "e-n22-k4.json"}
SOLVE_SECONDS = 3.0


def _example(name: str) -> bytes:
    return (PLAYGROUND / "examples" / name).read_bytes()


async def _ignore(_progress: Progress) -> None:
    return None


async def seed(settings: Settings, url: str) -> str:
    """The demo session's id, created with its scenarios and a solved plan if it is not there yet."""
    db = Database.from_settings(settings, url)
    try:
        user = await identity_for(db, settings).resolve("dev", dev_subject(EMAIL), EMAIL)
        async with db.as_user(user.id) as conn:
            repo = PlanningRepository(conn, workspace=user.id, user=user.id)
            existing = [s for s in await repo.list_sessions(100, None) if s.name == SESSION]
            if existing:
                return str(existing[0].id)
            session = await repo.create_session(SESSION)
            scenarios = []
            for label, file in EXAMPLES.items():
                body = orjson.dumps({"name": label, "request": orjson.loads(_example(file))})
                scenarios.append(await repo.create_scenario(session.id, label, body))
            # One plan already solved, so the playground has a map to draw from the start.
            outcome = await run_solve(
                _example(EXAMPLES["Berlin, 25 stops"]),
                time_limit_s=SOLVE_SECONDS,
                seed=1,
                max_stops=settings.solve_max_stops,
                on_progress=_ignore,
                cancel=asyncio.Event(),
                grace_s=settings.solve_grace_s,
            )
            if outcome.payload is None:
                raise SystemExit(f"the demo solve failed: {outcome.reason}")
            payload = {**outcome.payload, "scenario_version": "1"}
            body = orjson.dumps({"status": "succeeded", "payload": payload})
            await SolutionRepository(conn, workspace=user.id, user=user.id).create(
                scenarios[0].id, "succeeded", body
            )
            return str(session.id)
    finally:
        await db.close()


def main() -> int:
    try:
        settings = get_settings()
    except ValidationError as exc:
        print(f"Invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    if settings.is_production or "dev" not in settings.auth_providers:
        print(
            "make demo needs the dev issuer (AUTH_PROVIDERS including dev, not production).", file=sys.stderr
        )
        return 2
    url, _embedded = database_url(settings)
    upgrade(url)
    session_id = asyncio.run(seed(settings, url))
    issuer = DevIssuer.load_or_create(Path(settings.dev_key_path), settings.dev_issuer)
    token = mint_dev_token(issuer, DevTokenCreate(email=EMAIL, ttl_seconds=12 * 3600)).access_token
    base = f"http://{settings.host}:{settings.port}"
    print(f"Demo ready: session {session_id} of {EMAIL}\n")
    print(f"  Playground:  {base}/dev/playground/   (make run; sign in as {EMAIL})")
    print(f"  Token:       TOKEN={token}")
    print(f'  Try:         curl -H "Authorization: Bearer $TOKEN" {base}/api/v1/sessions')
    return 0


if __name__ == "__main__":
    sys.exit(main())
