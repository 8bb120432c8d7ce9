"""`make bench`: does the API's event loop stall while it takes in big documents?

GET /health latency (p50 / p99 / max) measured from a separate process — a small asyncio client
sending one request every ~20 ms on its own keep-alive connection — for SECONDS:

  baseline  the API idle;
  loaded    while CLIENTS concurrent clients (in this process) keep POSTing ~5 MB scenarios
            (`POST /api/v1/sessions/{id}/scenarios` {name, request: stops + duration matrix});
            with --mixed, half of them keep GETting such a scenario (`GET /api/v1/scenarios/{id}`,
            the whole document) instead. `--clients 100 --mixed` is issue 22's case.

/health does no work, so its latency under load is the time the loop spends on other requests'
work between two turns: parsing, validating or copying a document in the loop shows up here.
Target (for the optimisation to come): loaded p99 ≤ 100 ms. Also printed: the POSTs completed and
their statuses. Latency is counted from each request's send to the end of its response.

The load is a `BackgroundLoad` (benchlib): any coroutine function that runs until its stop event is
set and returns its own tally, so another load (e.g. two solves running) plugs into the same probe.
Not a test: nothing here asserts a timing; unexpected statuses end the run with exit 1.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from scripts.benchlib import (
    BackgroundLoad,
    ProbeResult,
    app_environment,
    bench_database,
    cpu_seconds,
    health_under_load,
    http_request,
    idle_load,
    median,
    percentile,
    read_response,
    uvicorn_server,
)

SECONDS = 15.0
CLIENTS = 10
STOPS = 960  # with its 960 x 960 duration matrix: ~5 MB of JSON
INTERVAL = 0.02
TARGET_P99_MS = 100.0
MB = 1_000_000


def build_request(stops: int = STOPS) -> dict[str, Any]:
    """A realistic routing request: stops with service times and windows, and a duration matrix."""
    rnd = random.Random(stops)
    return {
        "depot": {"lat": 52.52, "lon": 13.405},
        "vehicles": [{"id": f"van-{v}", "capacity": 120, "shift": [21_600, 64_800]} for v in range(12)],
        "stops": [
            {
                "id": f"stop-{i:04d}",
                "lat": round(rnd.uniform(47.0, 55.0), 6),
                "lon": round(rnd.uniform(5.0, 15.0), 6),
                "service_s": rnd.randint(60, 900),
                "demand": rnd.randint(1, 12),
                "window": [rnd.randint(0, 36_000), rnd.randint(36_000, 72_000)],
            }
            for i in range(stops)
        ],
        "durations": [[0 if i == j else rnd.randint(30, 20_000) for j in range(stops)] for i in range(stops)],
    }


# -- the background load: concurrent POSTs of big scenarios ---------------------------------------


@dataclass
class PostTally:
    statuses: Counter[int] = field(default_factory=Counter)
    seconds: list[float] = field(default_factory=list)


async def _poster(port: int, request: bytes, stop: asyncio.Event, tally: PostTally) -> None:
    """Request after request (`request`'s bytes: a POST, or a GET) on one keep-alive connection
    until `stop`; a dropped connection is status 0."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while not stop.is_set():
            started = time.perf_counter()
            writer.write(request)
            await writer.drain()
            try:
                status, _ = await read_response(reader)
            except (ConnectionError, asyncio.IncompleteReadError):
                tally.statuses[0] += 1
                return
            tally.statuses[status] += 1
            tally.seconds.append(time.perf_counter() - started)
    finally:
        writer.close()


def post_load(
    port: int,
    path: str,
    headers: dict[str, str],
    body: bytes,
    clients: int,
    *,
    gets: tuple[str, int] | None = None,
) -> BackgroundLoad[dict[str, PostTally]]:
    """`clients` connections each POSTing `body` to `path`, one at a time, until stopped; with
    `gets` (a path, a number of them), that many more connections each GETting that path."""
    post = http_request("POST", path, headers={**headers, "Content-Type": "application/json"}, body=body)
    get = http_request("GET", gets[0], headers=headers) if gets else b""

    async def run(stop: asyncio.Event) -> dict[str, PostTally]:
        tallies = {"POST": PostTally(), "GET": PostTally()}
        clients_of = [(post, tallies["POST"])] * clients + [(get, tallies["GET"])] * (gets[1] if gets else 0)
        await asyncio.gather(*(_poster(port, request, stop, tally) for request, tally in clients_of))
        return {method: tally for method, tally in tallies.items() if tally.statuses or method == "POST"}

    return run


# -- reporting -------------------------------------------------------------------------------------


def latency(values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return f"p50 {percentile(ms, 50):6.1f} ms   p99 {percentile(ms, 99):6.1f} ms   max {max(ms):7.1f} ms"


def probe_line(label: str, probe: ProbeResult) -> str:
    return f"  {label:<8} {latency(probe.seconds)}   ({len(probe.seconds)} requests)"


def create_session(port: int, auth: dict[str, str]) -> str:
    response = httpx.post(
        f"http://127.0.0.1:{port}/api/v1/sessions", json={"name": "bench-loop"}, headers=auth, timeout=30
    )
    response.raise_for_status()
    return str(response.json()["id"])


def create_scenario(port: int, path: str, auth: dict[str, str], body: bytes) -> str:
    """The scenario the GETs of --mixed read."""
    response = httpx.post(
        f"http://127.0.0.1:{port}{path}",
        content=body,
        headers={**auth, "Content-Type": "application/json"},
        timeout=300,
    )
    response.raise_for_status()
    return str(response.json()["id"])


async def measure(
    port: int, pid: int, load: BackgroundLoad[dict[str, PostTally]], seconds: float
) -> tuple[ProbeResult, ProbeResult, dict[str, PostTally], float]:
    """(baseline, loaded, the load's tallies, the API server's CPU share during the loaded phase)."""
    baseline, _ = await health_under_load(port, idle_load, seconds=seconds, warmup=0.0, interval=INTERVAL)
    cpu, started = cpu_seconds(pid), time.perf_counter()
    loaded, tally = await health_under_load(port, load, seconds=seconds, interval=INTERVAL)
    return baseline, loaded, tally, (cpu_seconds(pid) - cpu) / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=SECONDS, help="of each /health measurement")
    parser.add_argument("--clients", type=int, default=CLIENTS)
    parser.add_argument("--stops", type=int, default=STOPS, help="size of the document (960: ~5 MB)")
    parser.add_argument(
        "--mixed", action="store_true", help="half the clients GET a scenario of that size instead of POSTing"
    )
    args = parser.parse_args()
    posters = args.clients - args.clients // 2 if args.mixed else args.clients
    getters = args.clients - posters

    body = orjson.dumps({"name": "bench-loop: big scenario", "request": build_request(args.stops)})
    with bench_database() as url:
        env, auth = app_environment(url, "bench-loop")
        with uvicorn_server("service.main:app", env) as (port, pid):
            print(
                f"bench_loop (uvicorn, 1 worker, uvloop + httptools; API pid {pid}): GET /health every "
                f"{INTERVAL * 1000:.0f} ms from another process, {args.seconds:g} s idle, then {args.seconds:g} s "
                "under load",
                flush=True,
            )
            path = f"/api/v1/sessions/{create_session(port, auth)}/scenarios"
            gets = (
                (f"/api/v1/scenarios/{create_scenario(port, path, auth, body)}", getters) if getters else None
            )
            load = post_load(port, path, auth, body, posters, gets=gets)
            baseline, loaded, tallies, busy = asyncio.run(measure(port, pid, load, args.seconds))

    print(probe_line("baseline", baseline))
    print(probe_line("loaded", loaded))
    print(f"  API server CPU while loaded: {busy:.0%} of one core (user + system, all its threads)")
    for method, tally in tallies.items():
        done = sum(tally.statuses.values())
        print(
            f"  load: {posters if method == 'POST' else getters} clients {method}ing {len(body) / MB:.1f} MB "
            f"scenarios ({args.stops} stops + {args.stops}x{args.stops} matrix): {done} completed, statuses "
            f"{dict(sorted(tally.statuses.items()))}"
            + (f", median {median(tally.seconds):.2f} s each" if tally.seconds else "")
        )
    print(
        f"  loaded /health p99 {percentile(loaded.seconds, 99) * 1000:.1f} ms   (target <= {TARGET_P99_MS:.0f} ms)"
    )
    wrong = [
        f"/health answered {dict(probe.statuses)}"
        for probe in (baseline, loaded)
        if set(probe.statuses) != {200}
    ]
    for method, tally in tallies.items():
        if set(tally.statuses) != {201 if method == "POST" else 200}:
            wrong.append(f"the {method}s answered {dict(tally.statuses)}")
    if wrong:
        print(f"bench_loop: {'; '.join(wrong)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
