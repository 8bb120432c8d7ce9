"""`make bench`: a ~20 MB scenario (2,000 stops, a 2,000 × 2,000 duration matrix) through the API,
side by side with what the machine allows without it:

  (a) asyncpg alone: INSERT the JSON text into a JSONB column; SELECT it back as text;
  (b) a bare Starlette endpoint (uvicorn, its own process) returning that selected text;
  (c) the API (uvicorn, one worker): POST /sessions/{id}/scenarios and GET /scenarios/{id}.

(a) and (b) run on a column with PostgreSQL's default storage (pglz compression), the targets'
baseline, and also on one stored as the API's documents are (migration 0015: lz4 where the server
has it, else uncompressed), printed for information: that ratio is what the API's own code costs
beside the same storage.

The API stores a large request's text in the background after the write (migration 0016), and a
GET then sends it instead of having PostgreSQL render the JSONB. The bench waits for that after each
POST (printed: how long it took, and PostgreSQL's CPU for it), so no rendering overlaps a
measurement; the API's GET is timed with the text stored, and again with it set aside, as a GET right
after a write finds it (printed, no target; that GET asks for the text again, which is waited for).

Targets (issue 22): API GET ≤ 0.85 × bare GET (the API's GET time divided by the bare endpoint's:
the bare one decodes the text and encodes it again, the API passes PostgreSQL's bytes through); API
POST ≤ 1.05 × asyncpg INSERT (the POST's time divided by the INSERT's); the API server's peak RSS
growth during a GET ≤ 2 × the payload. Also printed: the API server's CPU seconds per POST and per
GET (user + system, all its threads), a figure a loaded machine disturbs less than wall time, and
PostgreSQL's own CPU seconds per INSERT and per POST (its backends serving the bench's database, when
the server runs on this machine: /proc). Each figure is the median of ROUNDS, alternated so a shared
machine's noise falls on both sides alike. The GETs run on freshly started servers, so the RSS growth
is not hidden by memory a previous POST left behind. Not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from scripts.benchlib import (
    app_environment,
    bench_database,
    cpu_seconds,
    median,
    peak_rss_bytes,
    rss_bytes,
    uvicorn_server,
)
from service.core.db import asyncpg_connect_args

STOPS = 2_000
ROUNDS = 5
MIB = 1024 * 1024
TARGETS = {"get": 0.85, "post": 1.05, "rss": 2.0}
# The twin's tables: PostgreSQL's default storage, and the API's documents' (copied from
# scenarios.original_request by `create_tables`).
TABLES = {"default": "bench_payload", "as_api": "bench_payload_as_api"}


def build_request() -> dict[str, Any]:
    rnd = random.Random(2_000)
    stops = [
        {
            "id": f"stop-{i:04d}",
            "lat": round(rnd.uniform(47.0, 55.0), 6),
            "lon": round(rnd.uniform(5.0, 15.0), 6),
            "service_s": rnd.randint(60, 900),
            "window": [rnd.randint(0, 36_000), rnd.randint(36_000, 72_000)],
        }
        for i in range(STOPS)
    ]
    durations = [[0 if i == j else rnd.randint(30, 20_000) for j in range(STOPS)] for i in range(STOPS)]
    return {"stops": stops, "durations": durations}


# -- (b) the bare endpoint: uvicorn imports this factory in its own process ----------------------


def bare_app() -> Starlette:
    """`uvicorn --factory scripts.bench_payload:bare_app`: SELECT doc::text, return the text."""
    pool: dict[str, asyncpg.Pool] = {}

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        pool["db"] = await asyncpg.create_pool(
            min_size=1, max_size=2, **asyncpg_connect_args(os.environ["BENCH_URL"])
        )
        try:
            yield
        finally:
            await pool["db"].close()

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def document(request: Request) -> Response:
        table = TABLES[request.path_params["storage"]]
        text = await pool["db"].fetchval(
            f"SELECT doc::text FROM {table} WHERE id = $1", int(request.path_params["row"])
        )
        return Response(text, media_type="application/json")

    return Starlette(
        routes=[Route("/health", health), Route("/{storage}/{row:int}", document)], lifespan=lifespan
    )


# -- (a) asyncpg alone -----------------------------------------------------------------------------


def backend_cpu_seconds(pids: list[int]) -> dict[int, float] | None:
    """CPU seconds each of PostgreSQL's backends `pids` has used so far; None when they are not
    processes of this machine (a remote server)."""
    seconds = {}
    for pid in pids:
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() != "postgres":
                return None
            seconds[pid] = cpu_seconds(pid)
        except OSError:
            continue  # ended meanwhile (or not here at all: see below)
    return None if pids and not seconds else seconds


async def backends(url: str) -> list[int]:
    """The backends serving the bench's database (the API's pool), but the one asking."""
    conn = await asyncpg.connect(**asyncpg_connect_args(url))
    try:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return [int(row["pid"]) for row in rows]
    finally:
        await conn.close()


def spent(before: dict[int, float] | None, after: dict[int, float] | None) -> float | None:
    """CPU seconds the backends used between the samples: a backend that started in between counts
    from its start (the pool opened it for the request), one that ended is left out."""
    if before is None or after is None:
        return None
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


async def create_tables(url: str) -> tuple[str, str]:
    """The twin's two tables; returns how the default one and the API's documents are stored."""
    conn = await asyncpg.connect(**asyncpg_connect_args(url))
    try:
        for table in TABLES.values():
            await conn.execute(f"CREATE TABLE {table} (id bigserial PRIMARY KEY, doc jsonb NOT NULL)")
        default = str(await conn.fetchval("SHOW default_toast_compression"))
        return default, await _store_as_api(conn)
    finally:
        await conn.close()


async def _store_as_api(conn: asyncpg.Connection) -> str:
    """Gives the as_api table the storage of scenarios.original_request; returns its name."""
    column = await conn.fetchrow(
        "SELECT attcompression::text, attstorage::text FROM pg_attribute "
        "WHERE attrelid = 'scenarios'::regclass AND attname = 'original_request'"
    )
    assert column is not None, "the database is migrated (bench_database)"
    compression, storage = column
    if compression == "l":
        await conn.execute(f"ALTER TABLE {TABLES['as_api']} ALTER COLUMN doc SET COMPRESSION lz4")
        return "lz4"
    if storage == "e":
        await conn.execute(f"ALTER TABLE {TABLES['as_api']} ALTER COLUMN doc SET STORAGE EXTERNAL")
        return "uncompressed"
    return "as the default"


async def asyncpg_round(url: str, document: str, table: str) -> tuple[float, float, int, float | None]:
    """(insert seconds, select seconds, row id, PostgreSQL's CPU seconds for the INSERT) of one
    INSERT and one SELECT ... ::text."""
    conn = await asyncpg.connect(**asyncpg_connect_args(url))
    try:
        pids = [conn.get_server_pid()]
        cpu = backend_cpu_seconds(pids)
        started = time.perf_counter()
        row = await conn.fetchval(f"INSERT INTO {table} (doc) VALUES ($1::jsonb) RETURNING id", document)
        inserted = time.perf_counter() - started
        insert_cpu = spent(cpu, backend_cpu_seconds(pids))
        started = time.perf_counter()
        text = await conn.fetchval(f"SELECT doc::text FROM {table} WHERE id = $1", row)
        selected = time.perf_counter() - started
        assert len(text) > len(document) // 2
        return inserted, selected, int(row), insert_cpu
    finally:
        await conn.close()


# -- the API's stored text of a scenario's request (service/planning/request_texts.py) --------------


async def _text_statement(url: str, workspace: str, sql: str, scenario_id: str) -> Any:
    """`sql` ($1: the scenario) in the scenario's workspace, as row-level security admits the login role."""
    conn = await asyncpg.connect(**asyncpg_connect_args(url))
    try:
        async with conn.transaction():
            await conn.execute(
                "SELECT set_config('app.user_id', $1, true), set_config('app.workspace_id', $1, true)",
                workspace,
            )
            return await conn.fetchval(sql, uuid.UUID(scenario_id))
    finally:
        await conn.close()


def wait_for_text(url: str, workspace: str, scenario_id: str) -> float:
    """Seconds until the API has stored the scenario's text for its version (after a write, or a read
    that rendered): measured, and waited for so that its rendering never overlaps a measurement."""
    started = time.perf_counter()
    deadline = started + 300
    sql = "SELECT request_text_version IS NOT DISTINCT FROM version FROM scenarios WHERE id = $1"
    while not asyncio.run(_text_statement(url, workspace, sql, scenario_id)):
        if time.perf_counter() > deadline:
            raise SystemExit("the scenario's text was not stored within 300 s")
        time.sleep(0.02)
    return time.perf_counter() - started


def forget_text(url: str, workspace: str, scenario_id: str) -> None:
    """The stored text no longer counts: the next GET renders, as before the text is stored."""
    asyncio.run(
        _text_statement(
            url, workspace, "UPDATE scenarios SET request_text_version = NULL WHERE id = $1", scenario_id
        )
    )


# -- measuring ------------------------------------------------------------------------------------


def timed(call: Callable[[], httpx.Response], expect: int) -> tuple[float, httpx.Response]:
    started = time.perf_counter()
    response = call()
    seconds = time.perf_counter() - started
    if response.status_code != expect:
        raise SystemExit(f"expected {expect}, got {response.status_code}: {response.text[:300]}")
    return seconds, response


def reset_peak(pid: int) -> None:
    """Start a new VmHWM window (Linux: writing 5 to clear_refs resets the peak RSS)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def get_with_rss(client: httpx.Client, url: str, pid: int) -> tuple[float, int, int]:
    """(seconds, RSS growth during the request, body bytes)."""
    reset_peak(pid)
    before = rss_bytes(pid)
    seconds, response = timed(lambda: client.get(url), 200)
    return seconds, peak_rss_bytes(pid) - before, len(response.content)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    rounds = parser.parse_args().rounds

    request = build_request()
    document = orjson.dumps(request).decode()
    body = orjson.dumps({"name": "bench: 2,000 stops", "request": request})
    del request
    payload_mib = len(document) / MIB

    with bench_database() as url:
        env, auth = app_environment(url, "bench-payload")
        env["BENCH_URL"] = url
        default_as, stored_as = asyncio.run(create_tables(url))
        inserts: dict[str, list[float]] = {storage: [] for storage in TABLES}
        selects: dict[str, list[float]] = {storage: [] for storage in TABLES}
        posts: list[float] = []
        bare_rows = dict.fromkeys(TABLES, 0)
        scenario_id = ""
        # POSTs and asyncpg INSERTs, alternated.
        post_cpu: list[float] = []
        get_cpu: list[float] = []
        insert_pg_cpu: dict[str, list[float | None]] = {storage: [] for storage in TABLES}
        post_pg_cpu: list[float | None] = []
        # After each POST: until its text is stored in the background, and PostgreSQL's CPU for it.
        text_waits: list[float] = []
        text_pg_cpu: list[float | None] = []
        workspace = ""
        with uvicorn_server("service.main:app", env) as (port, post_pid), httpx.Client(timeout=300) as client:
            api = f"http://127.0.0.1:{port}/api/v1"
            session = client.post(f"{api}/sessions", json={"name": "bench"}, headers=auth)
            if session.status_code != 201:
                print(f"POST /sessions answered {session.status_code}: {session.text[:300]}", file=sys.stderr)
                return 1
            path = f"{api}/sessions/{session.json()['id']}/scenarios"
            headers = {**auth, "content-type": "application/json"}
            for _ in range(rounds):
                for storage, table in TABLES.items():
                    inserted, selected, bare_rows[storage], pg_cpu = asyncio.run(
                        asyncpg_round(url, document, table)
                    )
                    inserts[storage].append(inserted)
                    selects[storage].append(selected)
                    insert_pg_cpu[storage].append(pg_cpu)
                pids = asyncio.run(backends(url))
                pg_before = backend_cpu_seconds(pids)
                cpu = cpu_seconds(post_pid)
                seconds, created = timed(lambda: client.post(path, content=body, headers=headers), 201)
                post_cpu.append(cpu_seconds(post_pid) - cpu)
                pg_after = backend_cpu_seconds(asyncio.run(backends(url)))
                post_pg_cpu.append(spent(pg_before, pg_after))
                posts.append(seconds)
                scenario_id = created.json()["id"]
                workspace = created.json()["created_by"]  # the personal workspace's id is its user's
                text_waits.append(wait_for_text(url, workspace, scenario_id))
                text_pg_cpu.append(spent(pg_after, backend_cpu_seconds(asyncio.run(backends(url)))))

        # GETs on fresh servers: the bare endpoint and the API, alternated.
        bare_gets: dict[str, list[float]] = {storage: [] for storage in TABLES}
        api_gets: list[float] = []
        rendered_gets: list[float] = []
        bare_growth: list[int] = []
        api_growth: list[int] = []
        with (
            uvicorn_server("scripts.bench_payload:bare_app", env, factory=True) as (bare_port, bare_pid),
            uvicorn_server("service.main:app", env) as (api_port, api_pid),
            httpx.Client(timeout=300) as client,
        ):
            # Warm the connection pools and the token cache with small requests only.
            client.get(f"http://127.0.0.1:{api_port}/api/v1/sessions", headers=auth).raise_for_status()
            bare_urls = {
                storage: f"http://127.0.0.1:{bare_port}/{storage}/{row}" for storage, row in bare_rows.items()
            }
            api_url = f"http://127.0.0.1:{api_port}/api/v1/scenarios/{scenario_id}"
            client.headers.update(auth)
            sizes = {}
            for _ in range(rounds):
                for storage, bare_url in bare_urls.items():
                    seconds, growth, sizes["bare"] = get_with_rss(client, bare_url, bare_pid)
                    bare_gets[storage].append(seconds)
                    if storage == "default":
                        bare_growth.append(growth)
                cpu = cpu_seconds(api_pid)
                seconds, growth, sizes["api"] = get_with_rss(client, api_url, api_pid)
                get_cpu.append(cpu_seconds(api_pid) - cpu)
                api_gets.append(seconds)
                api_growth.append(growth)
                # The same GET before its text is stored (just after a write, or a copy from before
                # migration 0016): PostgreSQL renders. It asks for the text again: waited for.
                forget_text(url, workspace, scenario_id)
                seconds, growth, _ = get_with_rss(client, api_url, api_pid)
                rendered_gets.append(seconds)
                api_growth.append(growth)
                wait_for_text(url, workspace, scenario_id)
            api_peak = peak_rss_bytes(api_pid)

    get_ratio = median(api_gets) / median(bare_gets["default"])
    post_ratio = median(posts) / median(inserts["default"])
    rss_ratio = max(api_growth) / len(document)

    def row(label: str, values: list[float]) -> str:
        return f"  {label:<44} {median(values):7.3f} s   rounds: {', '.join(f'{v:.3f}' for v in values)}"

    print(
        f"bench_payload: {STOPS:,} stops + {STOPS:,}x{STOPS:,} matrix = {payload_mib:.1f} MiB of JSON "
        f"(POST body {len(body) / MIB:.1f} MiB; GET bodies: bare {sizes['bare'] / MIB:.1f} MiB, "
        f"API {sizes['api'] / MIB:.1f} MiB); median of {rounds}; the API's documents: {stored_as}; "
        f"the twin's default column: {default_as}"
    )
    print(row("(a) asyncpg INSERT ($1::jsonb)", inserts["default"]))
    print(row("(a) asyncpg SELECT doc::text", selects["default"]))
    print(row("(b) bare Starlette GET", bare_gets["default"]))
    print(row(f"(a) asyncpg INSERT, column stored {stored_as}", inserts["as_api"]))
    print(row(f"(a) asyncpg SELECT, column stored {stored_as}", selects["as_api"]))
    print(row(f"(b) bare Starlette GET, column stored {stored_as}", bare_gets["as_api"]))
    print(row("(c) API POST /sessions/{id}/scenarios", posts))
    print(row("(c) API GET /scenarios/{id}", api_gets))
    print(row("(c) API GET, its text not stored yet", rendered_gets))
    print(row("(c) after a POST, until its text is stored", text_waits))
    print(
        f"  RSS growth during GET (MiB)        bare: {', '.join(f'{g / MIB:.0f}' for g in bare_growth)}   "
        f"API: {', '.join(f'{g / MIB:.0f}' for g in api_growth)}   (API peak RSS {api_peak / MIB:.0f} MiB)"
    )
    print(
        f"  API server CPU per request (s)      POST {median(post_cpu):.3f}   GET {median(get_cpu):.3f}   "
        "(median; user + system, all threads)"
    )
    insert_pg = {storage: [v for v in values if v is not None] for storage, values in insert_pg_cpu.items()}
    post_pg = [v for v in post_pg_cpu if v is not None]
    if all(len(insert_pg[storage]) == rounds for storage in TABLES) and len(post_pg) == rounds:
        print(
            f"  PostgreSQL CPU per write (s)        INSERT {median(insert_pg['default']):.3f}   "
            f"INSERT stored {stored_as} {median(insert_pg['as_api']):.3f}   POST {median(post_pg):.3f}   "
            f"(median; its backends; POST rounds: {', '.join(f'{v:.3f}' for v in post_pg)})"
        )
    text_pg = [v for v in text_pg_cpu if v is not None]
    if len(text_pg) == rounds:
        print(
            f"  PostgreSQL CPU storing the text (s) {median(text_pg):.3f}   (median, after each POST, "
            "in the background)"
        )
    print(f"  ratio API GET / bare GET            {get_ratio:.2f}   (target <= {TARGETS['get']})")
    print(f"  ratio API POST / asyncpg INSERT     {post_ratio:.2f}   (target <= {TARGETS['post']})")
    print(f"  API RSS growth / payload (worst)    {rss_ratio:.2f}   (target <= {TARGETS['rss']})")
    print(
        f"  the same, the twin's column stored {stored_as} (no target): "
        f"GET {median(api_gets) / median(bare_gets['as_api']):.2f}   "
        f"POST {median(posts) / median(inserts['as_api']):.2f}"
    )
    print(
        f"  GET with its text not stored yet / bare GET (no target): "
        f"{median(rendered_gets) / median(bare_gets['default']):.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
