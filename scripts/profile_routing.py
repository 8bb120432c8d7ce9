"""In-process CPU per request of the planning bench's three operations, route index on and off.

The app runs in this process (no server, no sockets): each request is one ASGI call, its body read
and its response collected, so the figure is the app's own CPU per request (time.process_time),
with none of uvicorn's and none of a load generator's. Rounds alternate the router's own scan and
the RouteIndex (service/core/route_index.py) on the same app and the same rows, so the difference
is the matching. `--profile [KEY]`: a cProfile of the indexed requests instead, sorted by KEY (cumulative).

`--matching`: the matching alone, no database: each route's handle replaced by a no-op, the CPU per
dispatch of the bench's three requests (and /users/me) through the router's scan and the index.

  .venv/bin/python -m scripts.profile_routing [--workspace organization] [--requests N] [--rounds R]
  .venv/bin/python -m scripts.profile_routing --matching
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from scripts.benchlib import bench_database
from service.config import Settings
from service.core.route_index import install_route_index, uninstall_route_index
from service.deps import app_state
from service.main import create_app

API = "/api/v1"


def scope_for(method: str, path: str, headers: dict[str, str]) -> dict[str, Any]:
    raw_path, _, query = path.partition("?")
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000),
        "root_path": "",
        "path": raw_path,
        "raw_path": raw_path.encode(),
        "query_string": query.encode(),
        "headers": [(name.lower().encode(), value.encode()) for name, value in headers.items()],
        "state": {},
    }


async def call(app: Any, method: str, path: str, headers: dict[str, str], body: bytes = b"") -> int:
    status = 0
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            await asyncio.sleep(3600)
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    scope = scope_for(method, path, headers)
    if body:
        scope["headers"].append((b"content-type", b"application/json"))
        scope["headers"].append((b"content-length", str(len(body)).encode()))
    await app(scope, receive, send)
    return status


async def run(url: str, workspace: str, requests: int, rounds: int, profile: str | None) -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="routebook-profile-"))
    settings = Settings(
        _env_file=None,
        environment="development",
        database_url=url,
        auth_providers=["dev"],
        data_dir=data_dir,
        log_level="WARNING",
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        issuer = app_state(app).dev_issuer
        assert issuer is not None  # AUTH_PROVIDERS=dev
        token = issuer.mint(subject="profile", email="profile@example.com")
        headers = {"Authorization": f"Bearer {token}", "Host": "127.0.0.1:8000"}
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=f"http://test{API}") as client:
            assert (await client.get("/users/me", headers=headers)).status_code == 200
            if workspace == "organization":
                created = await client.post("/workspaces", json={"name": "profile"}, headers=headers)
                headers["Routebook-Workspace"] = created.json()["id"]
            session = (await client.post("/sessions", json={"name": "p"}, headers=headers)).json()
            scenarios = []
            for index in range(40):
                created = await client.post(
                    f"/sessions/{session['id']}/scenarios",
                    json={"name": f"scenario {index:03d}", "request": {"stops": []}},
                    headers=headers,
                )
                scenarios.append(created.json()["id"])
        names = [orjson.dumps({"name": "first"}), orjson.dumps({"name": "second"})]
        operations = {
            "list": ("GET", f"{API}/sessions/{session['id']}/scenarios?limit=20", None),
            "get": ("GET", f"{API}/scenarios/{scenarios[0]}", None),
            "patch": ("PATCH", f"{API}/scenarios/{scenarios[1]}", names),
        }

        async def loop(name: str, count: int) -> float:
            method, path, bodies = operations[name]
            start = time.process_time()
            for number in range(count):
                body = bodies[number % 2] if bodies else b""
                status = await call(app, method, path, headers, body)
                assert status == 200, (name, status)
            return (time.process_time() - start) / count * 1e6

        for name in operations:  # warm-up: caches, statements, the first-call costs
            await loop(name, 200)
        if profile:
            profiler = cProfile.Profile()
            profiler.enable()
            for name in operations:
                await loop(name, requests)
            profiler.disable()
            pstats.Stats(profiler).sort_stats(profile).print_stats(60)
            return
        figures: dict[tuple[str, bool], list[float]] = {}
        for round_number in range(rounds):
            for indexed in (round_number % 2 == 0, round_number % 2 == 1):
                if indexed:
                    install_route_index(app.router)
                else:
                    uninstall_route_index(app.router)
                for name in operations:
                    figures.setdefault((name, indexed), []).append(await loop(name, requests))
        print(f"in-process CPU us per request ({workspace} workspace; {rounds} rounds x {requests})")
        for name in operations:
            scanned = statistics.median(figures[(name, False)])
            indexed_us = statistics.median(figures[(name, True)])
            print(
                f"  {name:6} scan {scanned:7.1f}   index {indexed_us:7.1f}   "
                f"saved {scanned - indexed_us:6.1f}"
            )


async def matching(requests: int, rounds: int) -> None:
    settings = Settings(
        _env_file=None,
        environment="test",
        database_url="postgresql+asyncpg://unused@127.0.0.1:5432/unused",
        auth_providers=["dev"],
        data_dir=Path(tempfile.mkdtemp(prefix="routebook-profile-")),
    )
    router = create_app(settings).router

    async def handled(scope: Any, receive: Any, send: Any) -> None:
        return None

    for route in router.routes:
        route.handle = handled  # type: ignore[method-assign]
    install_route_index(router)
    indexed: Any = router.middleware_stack
    scan: Any = router.app
    some = "0193a0c4-5a3e-7b52-9f1e-3c1a2b4d5e6f"
    cases = [
        ("GET", f"{API}/sessions/{some}/scenarios"),
        ("GET", f"{API}/scenarios/{some}"),
        ("PATCH", f"{API}/scenarios/{some}"),
        ("GET", f"{API}/users/me"),
    ]
    print(f"matching alone, CPU us per dispatch (best of {rounds} x {requests})")
    for method, path in cases:
        best = {}
        for name, app in (("scan", scan), ("index", indexed)):
            runs = []
            for _ in range(rounds):
                start = time.process_time()
                for _ in range(requests):
                    await app(scope_for(method, path, {}), None, None)
                runs.append((time.process_time() - start) / requests * 1e6)
            best[name] = min(runs)
        print(f"  {method:5} {path[:44]:44} scan {best['scan']:6.2f}   index {best['index']:6.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workspace", choices=("personal", "organization"), default="personal")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--matching", action="store_true", help="the matching alone, no database")
    parser.add_argument(
        "--profile", nargs="?", const="cumulative", help="cProfile instead, sorted by this key"
    )
    args = parser.parse_args()
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    if args.matching:
        asyncio.run(matching(args.requests, args.rounds))
        return
    with bench_database() as url:
        asyncio.run(run(url, args.workspace, args.requests, args.rounds, args.profile))


if __name__ == "__main__":
    main()
