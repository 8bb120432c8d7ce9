"""`make bench`: do the planning reads and writes stay flat from a thousand scenarios to a million?

Two databases on one server, seeded the same way (COPY, then ANALYZE) and served side by side by two
uvicorn processes (one worker, uvloop, httptools):

  small  --small-rows scenarios (default 1,000)      users = rows / 100, 10 sessions each
  large  --rows scenarios (default 1,000,000)        (10,000 users, 100,000 sessions)

In both, the measured user (a dev-issuer subject) owns one session of DEEP scenarios; every other
scenario belongs to the other sessions in turn, and the rows are created in time order interleaved
across users (so at 1M the measured session's rows lie on as many heap pages as rows, as in life).
Measured, one request at a time on one keep-alive connection, per database:

  list   GET /api/v1/sessions/{id}/scenarios?limit=20             the first page
  deep   the same with the cursor of page DEPTH_PAGES + 1 (next_cursor followed DEPTH_PAGES times)
  get    GET /api/v1/scenarios/{id}
  patch  PATCH /api/v1/scenarios/{id} {"name"}, two names in turn

Requests alternate between the databases in bursts of BURST (which goes first alternates too), so
both see the same moments of a shared, noisy machine. Printed per operation: p50 per database over
every sample, the ratio p50(large) / p50(small) (target ≤ 1.5) and each round's p50s. Then the
EXPLAIN (ANALYZE, BUFFERS) of every statement those requests issue on the large database — produced
by the planning repository itself, in the request's own transaction (`Database.as_user`: the app
role, app.user_id set), and rolled back — checked for Seq Scan, and for a Sort under a list.
Then /users/me throughput with uvicorn --workers 2 against --workers 1 (alternated rounds; the
load generator shares the machine's cores with the servers, so on 2 cores this is a floor).
The last line is `ratio=<the worst p50 ratio of the four operations>`.

Not a test: no timing is asserted. A status other than 200, a user the seeding did not create, or a
plan with a Seq Scan (or a Sort under a keyset list) ends the run with exit 1, after the ratio line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import asyncpg
import httpx
import orjson
import uvloop

from scripts.benchlib import (
    app_environment,
    bench_databases,
    http_request,
    load_requests,
    median,
    percentile,
    read_response,
    uvicorn_server,
)
from service.core.db import Connection, Database, asyncpg_connect_args, new_id
from service.core.pagination import decode_cursor
from service.planning.repository import PlanningRepository

API = "/api/v1"
ROWS = 1_000_000
SMALL_ROWS = 1_000
USERS_PER_100_ROWS = 1
SESSIONS_PER_USER = 10
DEEP = 500  # scenarios in the measured session
PAGE = 20
DEPTH_PAGES = 20  # the deep page is the 21st: 400 rows in
ROUNDS = 5
SAMPLES = 200  # per operation, round and database
WARMUP = 50
BURST = 10  # requests to one database before switching to the other
TARGET = 1.5
SUBJECT = "bench-scale"
COPY_BATCH = 50_000
OPERATIONS = ("list", "deep", "get", "patch")
WORKER_ROUNDS = 4
WORKER_SECONDS = 4.0
WORKER_CONNECTIONS = 32


# -- seeding ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Seeded:
    label: str
    url: str
    rows: int
    users: int
    sessions: int
    user_id: uuid.UUID
    session_id: uuid.UUID
    seconds: float


async def _copy(
    conn: asyncpg.Connection, table: str, columns: Sequence[str], records: Iterator[tuple[Any, ...]]
) -> None:
    batch: list[tuple[Any, ...]] = []
    for record in records:
        batch.append(record)
        if len(batch) >= COPY_BATCH:
            await conn.copy_records_to_table(table, records=batch, columns=list(columns))
            batch = []
    if batch:
        await conn.copy_records_to_table(table, records=batch, columns=list(columns))


async def seed(label: str, url: str, rows: int) -> Seeded:
    """Users, sessions and `rows` scenarios by COPY in one transaction, then ANALYZE."""
    users = max(2, rows * USERS_PER_100_ROWS // 100)
    deep = min(DEEP, rows // 2)
    started = time.perf_counter()
    epoch = datetime(2026, 1, 1, tzinfo=UTC)
    user_ids = [new_id() for _ in range(users)]
    # Session 0 of user 0 is the measured one; sessions are listed user by user.
    session_ids = [new_id() for _ in range(users * SESSIONS_PER_USER)]
    session_owner = [user_ids[index // SESSIONS_PER_USER] for index in range(len(session_ids))]
    document = orjson.dumps({"stops": []}).decode()

    def user_records() -> Iterator[tuple[Any, ...]]:
        for index, user_id in enumerate(user_ids):
            subject = SUBJECT if index == 0 else f"{SUBJECT}-{index}"
            yield (user_id, "dev", subject, f"{subject}@example.com", epoch, epoch)

    def session_records() -> Iterator[tuple[Any, ...]]:
        for index, session_id in enumerate(session_ids):
            at = epoch + timedelta(seconds=index)
            # Each in its owner's personal workspace, whose id is the owner's.
            yield (session_id, session_owner[index], session_owner[index], f"session {index}", at, at)

    def scenario_records() -> Iterator[tuple[Any, ...]]:
        # Time order, interleaved: every stride-th row goes to the measured session, the others to
        # the remaining sessions in turn.
        stride = max(1, rows // deep)
        others = len(session_ids) - 1
        placed_deep = other = 0
        start = epoch + timedelta(days=1)
        for index in range(rows):
            if placed_deep < deep and index % stride == 0:
                session = 0
                placed_deep += 1
            else:
                session = 1 + other % others
                other += 1
            at = start + timedelta(milliseconds=index)
            yield (
                new_id(),
                session_owner[session],
                session_owner[session],
                session_ids[session],
                f"scenario {index}",
                document,
                at,
                at,
            )

    conn = await asyncpg.connect(**asyncpg_connect_args(url))
    try:
        async with conn.transaction():
            # FORCEd row-level security would bind a table-owning login (and COPY FROM refuses a table
            # whose policies apply): lifted for the load in this benchmark's own database only, and
            # restored in the same transaction, so no other transaction ever sees it lifted.
            for table in ("sessions", "scenarios"):
                await conn.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
            await _copy(
                conn,
                "users",
                ("id", "provider", "subject", "email", "created_at", "updated_at"),
                user_records(),
            )
            await _copy(
                conn,
                "sessions",
                ("id", "workspace_id", "user_id", "name", "created_at", "updated_at"),
                session_records(),
            )
            await _copy(
                conn,
                "scenarios",
                (
                    "id",
                    "workspace_id",
                    "user_id",
                    "session_id",
                    "name",
                    "original_request",
                    "created_at",
                    "updated_at",
                ),
                scenario_records(),
            )
            counted = await conn.fetchval("SELECT count(*) FROM scenarios")
            for table in ("sessions", "scenarios"):
                await conn.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        await conn.execute("ANALYZE users, sessions, scenarios")
    finally:
        await conn.close()
    seconds = time.perf_counter() - started
    if counted != rows:
        raise SystemExit(f"{label}: seeded {counted} scenarios, expected {rows}")
    return Seeded(label, url, rows, users, len(session_ids), user_ids[0], session_ids[0], seconds)


# -- the measured requests ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One database's server and the requests of each operation on it."""

    seeded: Seeded
    port: int
    requests: dict[str, list[bytes]]
    scenario_id: str
    deep_cursor: str


def prepare_target(seeded: Seeded, port: int, auth: dict[str, str]) -> Target:
    with httpx.Client(base_url=f"http://127.0.0.1:{port}{API}", headers=auth, timeout=60) as client:
        me = client.get("/users/me")
        me.raise_for_status()
        if uuid.UUID(me.json()["id"]) != seeded.user_id:
            raise SystemExit(
                f"{seeded.label}: /users/me is not the seeded user (provider or subject mismatch)"
            )
        path = f"/sessions/{seeded.session_id}/scenarios?limit={PAGE}"
        page = client.get(path).json()
        for _ in range(DEPTH_PAGES):
            cursor = page["next_cursor"]
            if cursor is None:
                raise SystemExit(f"{seeded.label}: the measured session ends before page {DEPTH_PAGES + 1}")
            page = client.get(f"{path}&cursor={cursor}").json()
        deep_page = page["items"]
        if not deep_page:
            raise SystemExit(f"{seeded.label}: the deep page is empty")
    scenario_id = deep_page[0]["id"]
    json_auth = {**auth, "Content-Type": "application/json"}
    requests = {
        "list": [http_request("GET", f"{API}{path}", headers=auth)],
        "deep": [http_request("GET", f"{API}{path}&cursor={cursor}", headers=auth)],
        "get": [http_request("GET", f"{API}/scenarios/{scenario_id}", headers=auth)],
        "patch": [
            http_request(
                "PATCH",
                f"{API}/scenarios/{scenario_id}",
                headers=json_auth,
                body=orjson.dumps({"name": name}),
            )
            for name in ("scale rename A", "scale rename B")
        ],
    }
    return Target(seeded, port, requests, scenario_id, cursor)


class WrongStatus(Exception):
    pass


async def _send(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes, latencies: list[float]
) -> None:
    sent = time.perf_counter()
    writer.write(request)
    status, body = await read_response(reader)
    latencies.append(time.perf_counter() - sent)
    if status != 200:
        raise WrongStatus(f"{status}: {body[:200]!r}")


async def _interleaved(targets: Sequence[Target], operation: str, count: int) -> list[list[float]]:
    """`count` requests to each target, one keep-alive connection each, in alternating bursts of
    BURST (which target goes first alternates too): both see the same moments of a noisy machine."""
    streams = [await asyncio.open_connection("127.0.0.1", target.port) for target in targets]
    latencies: list[list[float]] = [[] for _ in targets]
    try:
        for burst in range(0, count, BURST):
            order = list(range(len(targets)))
            if (burst // BURST) % 2:
                order.reverse()
            for side in order:
                requests = targets[side].requests[operation]
                reader, writer = streams[side]
                for index in range(burst, min(burst + BURST, count)):
                    await _send(reader, writer, requests[index % len(requests)], latencies[side])
    finally:
        for _, writer in streams:
            writer.close()
    return latencies


def interleaved(targets: Sequence[Target], operation: str, count: int) -> list[list[float]]:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(_interleaved(targets, operation, count))


def compare_latency(
    small: Target, large: Target, operation: str, rounds: int, samples: int
) -> tuple[list[float], list[float], list[tuple[float, float]]]:
    """(small samples, large samples, per-round p50s), after a warm-up of each."""
    interleaved([small, large], operation, WARMUP)
    pooled_small: list[float] = []
    pooled_large: list[float] = []
    per_round: list[tuple[float, float]] = []
    for _ in range(rounds):
        small_latencies, large_latencies = interleaved([small, large], operation, samples)
        pooled_small += small_latencies
        pooled_large += large_latencies
        per_round.append((median(small_latencies), median(large_latencies)))
    return pooled_small, pooled_large, per_round


# -- plans -------------------------------------------------------------------------------------------


class _Explaining:
    """Stands in for the request's connection: EXPLAIN (ANALYZE, BUFFERS) of each statement the
    repository issues, with its parameters, then the statement itself (the repository reads its rows)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self.plans: list[tuple[str, list[str]]] = []

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        plan = await self._conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", *args)
        self.plans.append((" ".join(sql.split()), [row[0] for row in plan]))
        return await self._conn.fetch(sql, *args)


class _Rollback(Exception):
    pass


async def explain_requests(target: Target) -> dict[str, list[tuple[str, list[str]]]]:
    """Each operation's statements and plans, in its own request transaction, rolled back."""
    seeded = target.seeded
    db = Database(seeded.url, max_size=2)
    scenario_id = uuid.UUID(target.scenario_id)
    cursor = decode_cursor(f"scenarios:{seeded.session_id}", target.deep_cursor)
    calls = {
        "list": lambda repo: repo.list_scenarios(seeded.session_id, PAGE, None),
        "deep": lambda repo: repo.list_scenarios(seeded.session_id, PAGE, cursor),
        "get": lambda repo: repo.get_scenario(scenario_id),
        "patch": lambda repo: repo.update_scenario(
            scenario_id, name="scale rename plan", raw_body=None, expected=None
        ),
    }
    plans: dict[str, list[tuple[str, list[str]]]] = {}
    try:
        for operation, call in calls.items():
            explaining: _Explaining | None = None
            with contextlib.suppress(_Rollback):
                async with db.as_user(seeded.user_id) as conn:
                    explaining = _Explaining(conn)
                    await call(
                        PlanningRepository(
                            cast(Connection, explaining), workspace=seeded.user_id, user=seeded.user_id
                        )
                    )
                    raise _Rollback
            assert explaining is not None
            plans[operation] = explaining.plans
    finally:
        await db.close()
    return plans


def plan_problems(operation: str, lines: Sequence[str]) -> list[str]:
    problems = [f"{operation}: {line.strip()}" for line in lines if "Seq Scan" in line]
    if operation in {"list", "deep"}:
        problems += [
            f"{operation}: {line.strip()}" for line in lines if line.strip().startswith(("Sort", "->  Sort"))
        ]
    return problems


# -- /users/me: two server processes against one ---------------------------------------------------


def workers_ratio(env: dict[str, str], auth: dict[str, str], rounds: int, seconds: float) -> float:
    me = http_request("GET", f"{API}/users/me", headers=auth)
    rps: dict[int, list[float]] = {1: [], 2: []}
    for index in range(rounds):
        for workers in (1, 2) if index % 2 == 0 else (2, 1):
            with uvicorn_server("service.main:app", env, workers=workers) as (port, _pid):
                load_requests(port, [[me]] * WORKER_CONNECTIONS, seconds=1.0)  # both workers warm
                result = load_requests(port, [[me]] * WORKER_CONNECTIONS, seconds=seconds)
            if set(result.statuses) != {200}:
                raise WrongStatus(f"/users/me with {workers} worker(s): {dict(result.statuses)}")
            rps[workers].append(result.rps)
    ratios = [two / one for one, two in zip(rps[1], rps[2], strict=True)]
    for workers in (1, 2):
        rounds_text = ", ".join(f"{value:.0f}" for value in rps[workers])
        print(f"  --workers {workers}: {median(rps[workers]):6.0f} req/s (median)   rounds: {rounds_text}")
    value = median(ratios)
    print(
        f"  2 processes / 1: {value:.2f} (median of per-round ratios: "
        + ", ".join(f"{r:.2f}" for r in ratios)
        + f"; {WORKER_CONNECTIONS} keep-alive connections from one load-generator process)"
    )
    return value


# -- main ----------------------------------------------------------------------------------------------


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=ROWS, help="scenarios in the large database")
    parser.add_argument("--small-rows", type=int, default=SMALL_ROWS, help="scenarios in the small database")
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument(
        "--samples", type=int, default=SAMPLES, help="requests per operation, round and database"
    )
    parser.add_argument(
        "--worker-rounds", type=int, default=WORKER_ROUNDS, help="0 skips the --workers comparison"
    )
    args = parser.parse_args()
    needed = 2 * (PAGE * (DEPTH_PAGES + 1) + 1)
    if min(args.rows, args.small_rows) < needed:
        parser.error(f"--rows and --small-rows must be at least {needed} (the measured session's depth)")

    results: dict[str, float] = {}
    problems: list[str] = []
    with bench_databases("scale_small", "scale_large") as (small_url, large_url):
        seeded: dict[str, Seeded] = {}
        for label, url, rows in (("small", small_url, args.small_rows), ("large", large_url, args.rows)):
            seeded[label] = asyncio.run(seed(label, url, rows))
            s = seeded[label]
            print(
                f"seeded {label}: {s.rows:,} scenarios, {s.sessions:,} sessions, {s.users:,} users "
                f"in {s.seconds:.1f} s (COPY + ANALYZE)",
                flush=True,
            )
        small_env, small_auth = app_environment(small_url, SUBJECT)
        large_env, large_auth = app_environment(large_url, SUBJECT)
        with (
            uvicorn_server("service.main:app", small_env) as (small_port, _),
            uvicorn_server("service.main:app", large_env) as (large_port, _),
        ):
            small = prepare_target(seeded["small"], small_port, small_auth)
            large = prepare_target(seeded["large"], large_port, large_auth)
            print(
                f"bench_scale (uvicorn, 1 worker each, uvloop + httptools; one keep-alive connection, one "
                f"request at a time, alternating databases every {BURST}; {args.rounds} rounds of {args.samples} "
                f"requests per database; "
                f"the measured session holds {DEEP} scenarios, the deep page is page {DEPTH_PAGES + 1})",
                flush=True,
            )
            labels = {
                "list": f"GET {API}/sessions/{{id}}/scenarios?limit={PAGE}",
                "deep": f"GET {API}/sessions/{{id}}/scenarios?limit={PAGE}&cursor=<page {DEPTH_PAGES + 1}>",
                "get": f"GET {API}/scenarios/{{id}}",
                "patch": f"PATCH {API}/scenarios/{{id}} {{name}}",
            }
            try:
                for operation in OPERATIONS:
                    small_samples, large_samples, per_round = compare_latency(
                        small, large, operation, args.rounds, args.samples
                    )
                    p50_small, p50_large = median(small_samples), median(large_samples)
                    results[operation] = p50_large / p50_small
                    print(f"  {operation:<6} {labels[operation]}")
                    print(
                        f"    p50 {args.small_rows:,}: {ms(p50_small)}   p50 {args.rows:,}: {ms(p50_large)}   "
                        f"(p90 {ms(percentile(small_samples, 90))} / {ms(percentile(large_samples, 90))})   "
                        f"ratio {results[operation]:.2f} (target <= {TARGET})"
                    )
                    print(
                        "    rounds (small/large p50, ms): "
                        + ", ".join(f"{a * 1000:.2f}/{b * 1000:.2f}" for a, b in per_round),
                        flush=True,
                    )
            except WrongStatus as exc:
                print(f"bench_scale: {exc}", file=sys.stderr)
                return 1

            plans = asyncio.run(explain_requests(large))
            print(
                f"plans on the {args.rows:,}-row database (as the request runs them: app role, app.workspace_id and app.user_id set):"
            )
            for operation in OPERATIONS:
                for sql, lines in plans[operation]:
                    print(f"  [{operation}] {sql}")
                    for line in lines:
                        print(f"      {line}")
                    problems += plan_problems(operation, lines)
            print(
                "plan check: " + ("index scans only, no Sort under the lists" if not problems else "FAILED")
            )
            for problem in problems:
                print(f"  {problem}")

        if args.worker_rounds > 0:
            print(
                f"/users/me throughput, uvicorn --workers 2 vs --workers 1 ({args.worker_rounds} alternated rounds of {WORKER_SECONDS:g} s):"
            )
            try:
                workers_ratio(large_env, large_auth, args.worker_rounds, WORKER_SECONDS)
            except WrongStatus as exc:
                print(f"bench_scale: {exc}", file=sys.stderr)
                return 1

    print(f"ratio={max(results.values()):.2f}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
