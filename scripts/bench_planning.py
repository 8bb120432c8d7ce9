"""`make bench`: the planning API's small reads and writes against a bare Starlette + asyncpg twin.

Both servers run under uvicorn (one worker, uvloop, httptools), each in its own process, on the same
database for the same user in the same workspace. The twin runs the SAME transaction as the API,
with nothing else:

  BEGIN; SELECT set_config('app.user_id', $1, true), set_config('app.workspace_id', $2, true),
  set_config('role', 'routebook_app', true); <the query>; COMMIT;   then orjson of the rows.

`--workspace organization`: the data is in a workspace the user created (POST /workspaces, its
admin), named on every request by `Routebook-Workspace`, so the API's figures include resolving
that header and checking the membership (cached, as in production); by default the user's personal
workspace (no header).

  list   GET /api/v1/sessions/{id}/scenarios?limit=20 of a session with SCENARIOS small scenarios;
         twin: the keyset SELECT of the first page (limit + 1 rows), as {items, next_cursor}
  get    GET /api/v1/scenarios/{id} of a small scenario; twin: the summary columns plus
         COALESCE(request, original_request)::text, spliced into the JSON
  patch  PATCH /api/v1/scenarios/{id} {"name": ...}, two names in turn, no If-Match; twin: the
         UPDATE ... SET name, version + 1, updated_at RETURNING the summary columns. Each connection
         renames its own scenario: on one shared row the load would measure the row lock's hold time

The twin serves the same paths, so the same request bytes (Authorization header included) go to
both. The API verifies that token on every request (an RS256 token of the dev issuer, then its cache
of verified tokens, the user and the membership, as in production); the twin reads none of it.
Before measuring, the API must refuse the same request with the token's signature altered (401), so
the figures cannot come from a run that skipped the check. Load: keep-alive connections from this process's raw-HTTP generator, whose own CPU per request
is printed beside the servers' (it must stay well below theirs). Per operation, rounds alternate API
and twin (which goes first alternates too); the ratio quoted is the median of per-round API/twin
req/s. Per side: req/s and the server's CPU µs per request (utime + stime of its pid over the round,
divided by the requests served). Target: ratio ≥ 0.8 for each operation. Not a test: nothing here
asserts a timing; a status other than 200 stops the run with exit 1.

`--metrics`: a second API process beside the first, with Prometheus metrics recording
(PROMETHEUS_MULTIPROC_DIR set, as METRICS_PORT makes it), in the same alternated rounds (the order
of the three rotates); both API/twin ratios are printed. Target: the ratio with metrics on at most
3 % below the ratio without.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import os
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import ExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import datetime

import asyncpg
import httpx
import orjson
from asyncpg.pool import PoolConnectionProxy
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from scripts.benchlib import (
    app_environment,
    bench_database,
    cpu_seconds,
    http_request,
    load_requests,
    median,
    uvicorn_server,
)
from service.core.db import asyncpg_connect_args

ROUNDS = 5
SECONDS = 3.0
WARMUP_SECONDS = 1.0
CONNECTIONS = 16
SCENARIOS = 220
PAGE = 20
TARGET = 0.8
METRICS_TARGET = 0.97  # ratio with metrics on / ratio with metrics off
OPERATIONS = ("list", "get", "patch")
API = "/api/v1"

# -- the bare twin: uvicorn imports this factory in its own process -------------------------------

_SCOPE = (
    "SELECT set_config('app.user_id', $1, true), set_config('app.workspace_id', $2, true), "
    "set_config('role', 'routebook_app', true)"
)
# The API's summary columns (ScenarioRecord), written out in each statement.
_LIST = (
    "SELECT id, session_id, name, version, created_at, updated_at, user_id AS created_by FROM scenarios "
    "WHERE workspace_id = $1 AND session_id = $2 ORDER BY created_at DESC, id DESC LIMIT $3"
)
_GET = (
    "SELECT id, session_id, name, version, created_at, updated_at, user_id AS created_by, "
    "COALESCE(request, original_request)::text AS document FROM scenarios WHERE workspace_id = $1 AND id = $2"
)
_PATCH = (
    "UPDATE scenarios SET name = $3, version = version + 1, updated_at = now() "
    "WHERE workspace_id = $1 AND id = $2 "
    "RETURNING id, session_id, name, version, created_at, updated_at, user_id AS created_by"
)


def _json(value: object) -> bytes:
    # asyncpg's UUIDs are its own subclass, which orjson hands to `default`.
    return orjson.dumps(value, default=str)


def _cursor(scope: str, created_at: datetime, item_id: uuid.UUID) -> str:
    """A next_cursor of the API's shape and cost: 8 bytes of HMAC-SHA256, then the position."""
    payload = f"{scope}|{created_at.isoformat()}|{item_id}".encode()
    check = hmac.new(b"bench", payload, hashlib.sha256).digest()[:8]
    return base64.urlsafe_b64encode(check + payload).decode().rstrip("=")


def bare_app() -> Starlette:
    """`uvicorn --factory scripts.bench_planning:bare_app`: the planning transactions and nothing else."""
    pools: dict[str, asyncpg.Pool] = {}
    user_text = os.environ["BENCH_USER_ID"]
    workspace_id = uuid.UUID(os.environ.get("BENCH_WORKSPACE_ID") or user_text)
    workspace_text = str(workspace_id)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # The API's pool: 10 kept, up to 10 more under load.
        pools["db"] = await asyncpg.create_pool(
            min_size=10, max_size=20, **asyncpg_connect_args(os.environ["BENCH_URL"])
        )
        try:
            yield
        finally:
            await pools["db"].close()

    @asynccontextmanager
    async def scoped() -> AsyncIterator[PoolConnectionProxy[asyncpg.Record]]:
        async with pools["db"].acquire() as conn, conn.transaction():
            await conn.execute(_SCOPE, user_text, workspace_text)
            yield conn

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def list_scenarios(request: Request) -> Response:
        session_id: uuid.UUID = request.path_params["session_id"]
        limit = int(request.query_params.get("limit", "50"))
        async with scoped() as conn:
            rows = await conn.fetch(_LIST, workspace_id, session_id, limit + 1)
        items = [dict(row) for row in rows[:limit]]
        last = items[-1] if len(rows) > limit else None
        cursor = _cursor(f"scenarios:{session_id}", last["created_at"], last["id"]) if last else None
        return Response(_json({"items": items, "next_cursor": cursor}), media_type="application/json")

    async def get_scenario(request: Request) -> Response:
        async with scoped() as conn:
            row = await conn.fetchrow(_GET, workspace_id, request.path_params["scenario_id"])
        if row is None:
            return Response(status_code=404)
        fields = dict(row)
        document: str = fields.pop("document")
        body = _json(fields)[:-1] + b',"request":' + document.encode() + b"}"
        return Response(body, media_type="application/json", headers={"ETag": f'"{fields["version"]}"'})

    async def patch_scenario(request: Request) -> Response:
        name = orjson.loads(await request.body())["name"]
        async with scoped() as conn:
            row = await conn.fetchrow(_PATCH, workspace_id, request.path_params["scenario_id"], name)
        if row is None:
            return Response(status_code=404)
        return Response(
            _json(dict(row)), media_type="application/json", headers={"ETag": f'"{row["version"]}"'}
        )

    return Starlette(
        routes=[
            Route("/health", health),
            Route(f"{API}/sessions/{{session_id:uuid}}/scenarios", list_scenarios),
            Route(f"{API}/scenarios/{{scenario_id:uuid}}", get_scenario),
            Route(f"{API}/scenarios/{{scenario_id:uuid}}", patch_scenario, methods=["PATCH"]),
        ],
        lifespan=lifespan,
    )


# -- the data and the requests ----------------------------------------------------------------------


@dataclass(frozen=True)
class Fixture:
    user_id: str
    workspace_id: str
    session_id: str
    scenario_ids: list[str]
    # What every request sends: the token, and the workspace when it is not the personal one.
    headers: dict[str, str]


def create_fixture(port: int, auth: dict[str, str], workspace: str) -> Fixture:
    """One user's session with SCENARIOS small scenarios, created through the API, in their personal
    workspace or (`organization`) in one they create."""
    with httpx.Client(base_url=f"http://127.0.0.1:{port}{API}", headers=auth, timeout=30) as client:
        me = client.get("/users/me")
        me.raise_for_status()
        headers = dict(auth)
        workspace_id = me.json()["id"]  # the personal workspace's id is its user's
        if workspace == "organization":
            created = client.post("/workspaces", json={"name": "bench-planning"})
            created.raise_for_status()
            workspace_id = created.json()["id"]
            headers["Routebook-Workspace"] = workspace_id
            client.headers.update(headers)
        session = client.post("/sessions", json={"name": "bench-planning"})
        session.raise_for_status()
        session_id = session.json()["id"]
        scenario_ids = []
        for index in range(SCENARIOS):
            created = client.post(
                f"/sessions/{session_id}/scenarios",
                json={"name": f"scenario {index:03d}", "request": {"stops": []}},
            )
            created.raise_for_status()
            scenario_ids.append(created.json()["id"])
    return Fixture(me.json()["id"], workspace_id, session_id, scenario_ids, headers)


def forged(headers: dict[str, str]) -> dict[str, str]:
    """The headers with one character of the token's signature changed."""
    token = headers["Authorization"].removeprefix("Bearer ")
    head, payload, signature = token.split(".")
    middle = len(signature) // 2
    changed = "A" if signature[middle] != "A" else "B"
    return {
        **headers,
        "Authorization": f"Bearer {head}.{payload}.{signature[:middle]}{changed}{signature[middle + 1 :]}",
    }


def check_token_is_verified(port: int, fixture: Fixture) -> None:
    """The API answers the list with the token, and refuses it with the signature altered."""
    url = f"http://127.0.0.1:{port}{API}/sessions/{fixture.session_id}/scenarios?limit={PAGE}"
    with httpx.Client(timeout=30) as client:
        if client.get(url, headers=fixture.headers).status_code != 200:
            raise SystemExit("bench_planning: the API refused the bench's token")
        if client.get(url, headers=forged(fixture.headers)).status_code != 401:
            raise SystemExit("bench_planning: the API accepted a token with an altered signature")


@dataclass(frozen=True)
class Operation:
    name: str
    label: str
    per_connection: list[list[bytes]]  # what each keep-alive connection sends, in turn


def operations(fixture: Fixture, connections: int) -> dict[str, Operation]:
    auth = fixture.headers
    listing = http_request("GET", f"{API}/sessions/{fixture.session_id}/scenarios?limit={PAGE}", headers=auth)
    getting = http_request("GET", f"{API}/scenarios/{fixture.scenario_ids[0]}", headers=auth)
    json_auth = {**auth, "Content-Type": "application/json"}

    def renames(scenario_id: str) -> list[bytes]:
        return [
            http_request(
                "PATCH",
                f"{API}/scenarios/{scenario_id}",
                headers=json_auth,
                body=orjson.dumps({"name": name}),
            )
            for name in ("bench rename A", "bench rename B")
        ]

    # The last scenarios renamed, the first one read: the list's first page holds the newest ones.
    patch_targets = fixture.scenario_ids[-connections:]
    return {
        "list": Operation(
            "list", f"GET {API}/sessions/{{id}}/scenarios?limit={PAGE}", [[listing]] * connections
        ),
        "get": Operation("get", f"GET {API}/scenarios/{{id}}", [[getting]] * connections),
        "patch": Operation(
            "patch", f"PATCH {API}/scenarios/{{id}} {{name}}", [renames(target) for target in patch_targets]
        ),
    }


# -- measuring ---------------------------------------------------------------------------------------


class WrongStatus(Exception):
    pass


@dataclass(frozen=True)
class Sample:
    """One side of one round."""

    rps: float
    server_us: float  # server CPU per request
    client_us: float  # this process's (the load generator's) CPU per request


def measure(port: int, pid: int, operation: Operation, side: str, seconds: float) -> Sample:
    me = os.getpid()
    server_before, client_before = cpu_seconds(pid), cpu_seconds(me)
    result = load_requests(port, operation.per_connection, seconds=seconds)
    server_cpu, client_cpu = cpu_seconds(pid) - server_before, cpu_seconds(me) - client_before
    if set(result.statuses) != {200}:
        raise WrongStatus(f"{operation.name}: the {side} server answered {dict(result.statuses)}")
    requests = max(result.requests, 1)
    return Sample(result.rps, server_cpu / requests * 1e6, client_cpu / requests * 1e6)


@dataclass(frozen=True)
class Server:
    side: str
    port: int
    pid: int


def compare(
    operation: Operation, servers: Sequence[Server], rounds: int, seconds: float
) -> dict[str, list[Sample]]:
    """Each server's samples of alternated rounds (the order rotates), after a warm-up of each."""
    for server in servers:
        measure(server.port, server.pid, operation, server.side, WARMUP_SECONDS)
    samples: dict[str, list[Sample]] = {server.side: [] for server in servers}
    for index in range(rounds):
        shift = index % len(servers)
        for server in [*servers[shift:], *servers[:shift]]:
            samples[server.side].append(measure(server.port, server.pid, operation, server.side, seconds))
    return samples


def ratio(api: Sequence[Sample], bare: Sequence[Sample]) -> float:
    """Median of per-round ratios: each round's pair ran back to back, under the same noise."""
    return median([a.rps / b.rps for a, b in zip(api, bare, strict=True)])


def report(operation: Operation, samples: dict[str, list[Sample]]) -> dict[str, float]:
    """Print each side's figures; the ratio of each API side to the twin."""
    bare = samples["bare"]
    print(f"  {operation.name:<6} {operation.label}")
    for side, measured in samples.items():
        rounds = ", ".join(f"{s.rps:.0f}" for s in measured)
        print(
            f"    {side:<8} {median([s.rps for s in measured]):7.0f} req/s   "
            f"server CPU {median([s.server_us for s in measured]):6.0f} µs/req   "
            f"load generator {median([s.client_us for s in measured]):4.0f} µs/req   rounds: {rounds}"
        )
    ratios = {side: ratio(measured, bare) for side, measured in samples.items() if side != "bare"}
    for side, value in ratios.items():
        print(f"    ratio {side}/bare {value:.2f}   (median of per-round ratios; target >= {TARGET})")
    if "API+m" in ratios:
        change = ratios["API+m"] / ratios["API"]
        print(f"    metrics on / off: {change:.3f}   (target >= {METRICS_TARGET}: at most 3 % lower)")
    generator = median([s.client_us for s in bare])
    if generator > 0.5 * median([s.server_us for s in bare]):
        print("    note: the load generator costs over half the bare server's CPU; bare req/s is a floor")
    return ratios


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--seconds", type=float, default=SECONDS, help="per round and side")
    parser.add_argument("--connections", type=int, default=CONNECTIONS)
    parser.add_argument("--operations", default=",".join(OPERATIONS), help="a comma-separated subset")
    parser.add_argument("--metrics", action="store_true", help="also an API with metrics on, side by side")
    parser.add_argument(
        "--workspace",
        choices=("personal", "organization"),
        default="personal",
        help="where the data is: the user's personal workspace, or one they created (sent as Routebook-Workspace)",
    )
    args = parser.parse_args()
    chosen = [name.strip() for name in args.operations.split(",")]
    if unknown := set(chosen) - set(OPERATIONS):
        parser.error(f"unknown operations: {', '.join(sorted(unknown))}")
    if not 1 <= args.connections <= SCENARIOS:
        parser.error(f"--connections must be between 1 and {SCENARIOS}")

    ratios: dict[str, dict[str, float]] = {}
    with bench_database() as url, ExitStack() as stack:
        env, auth = app_environment(url, "bench-planning")
        api_port, api_pid = stack.enter_context(uvicorn_server("service.main:app", env))
        fixture = create_fixture(api_port, auth, args.workspace)
        check_token_is_verified(api_port, fixture)
        servers = [Server("API", api_port, api_pid)]
        if args.metrics:
            directory = stack.enter_context(tempfile.TemporaryDirectory(prefix="routebook-bench-metrics-"))
            metered_env = {**env, "PROMETHEUS_MULTIPROC_DIR": directory}
            servers.append(
                Server("API+m", *stack.enter_context(uvicorn_server("service.main:app", metered_env)))
            )
        bare_env = {
            **env,
            "BENCH_URL": url,
            "BENCH_USER_ID": fixture.user_id,
            "BENCH_WORKSPACE_ID": fixture.workspace_id,
        }
        bare_port, bare_pid = stack.enter_context(
            uvicorn_server("scripts.bench_planning:bare_app", bare_env, factory=True)
        )
        servers.append(Server("bare", bare_port, bare_pid))
        print(
            f"bench_planning ({args.workspace} workspace; uvicorn, 1 worker, uvloop + httptools; "
            f"{args.connections} keep-alive "
            f"connections; {args.rounds} alternated rounds of {args.seconds:g} s per side; "
            + ", ".join(f"{server.side} pid {server.pid}" for server in servers)
            + ("; API+m: the API with metrics on" if args.metrics else "")
            + ")",
            flush=True,
        )
        planned = operations(fixture, args.connections)
        try:
            for name in chosen:
                operation = planned[name]
                ratios[name] = report(operation, compare(operation, servers, args.rounds, args.seconds))
        except WrongStatus as exc:
            print(f"bench_planning: {exc}", file=sys.stderr)
            return 1
    for side in ratios[chosen[0]]:
        print(
            f"planning ({side}, {args.workspace} workspace): "
            + " ".join(f"{name}={value[side]:.2f}" for name, value in ratios.items())
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
