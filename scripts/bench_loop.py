"""`make bench`: does the API's event loop stall while it takes in big documents?

GET /health latency (p50 / p99 / max) measured from a separate process — a small asyncio client
sending one request every ~20 ms on its own keep-alive connection — for SECONDS of probing:

  baseline  the API idle;
  loaded    while CLIENTS concurrent clients keep POSTing ~5 MB scenarios
            (`POST /api/v1/sessions/{id}/scenarios` {name, request: stops + duration matrix});
            with --mixed, half of them keep GETting such a scenario (`GET /api/v1/scenarios/{id}`,
            the whole document) instead. `--clients 100 --mixed` is issue 22's case (default pool,
            default settings; target: loaded p99 <= 100 ms).

/health does no work, so its latency under load is the time the loop spends on other requests'
work between two turns — or the time the API process waits for a CPU, which on a 2-core machine
running the load generator and PostgreSQL beside it can be most of it. So that the figure can be
read, the bench also shows where the time went:

- The load generator runs in its own process (scripts/loadgen.py, uvloop): each connection sends
  prebuilt request bytes and counts the response's bytes without keeping or parsing them, so it
  costs a few percent of a core (printed), not the server's share. `--generators process,inproc`
  adds a phase with the generator the bench first had (connections in this process, asyncio's own
  loop, each response read whole) against the same server, to compare.
- The API runs as scripts/looplag.py's wrapper: the app unchanged plus a sampler on its loop (a
  5 ms sleep, again and again) recording how late each wake-up was and what the loop's thread did
  meanwhile, from the kernel's accounting (/proc/thread-self/schedstat): time on a CPU (the loop
  running callbacks), time runnable but waiting for a CPU (other processes ran), the rest (the GIL,
  blocking calls). Printed: the lag's p50/p99/max, the thread's CPU time between two wake-ups (the
  longest the loop itself was busy, whatever the machine's load), and how the late wake-ups split.
- The probe records the time it itself waited for a CPU during each request.
- CPU shares over the phase: the API process (and with its worker processes), the PostgreSQL
  backends of the bench's database (if PostgreSQL runs on this machine), the generator, the whole
  machine, and the kernel's CPU pressure (share of the time some runnable task waited for a CPU).

The API, the probe and the generator run at the same niceness (printed). `--api-nice N` runs the
API and the probe at another (e.g. -10), the generator and PostgreSQL staying at theirs: a diagnosis
of how much of the latency is waiting for a CPU. `--slow-callbacks MS` serves on asyncio's own loop
in debug mode, which logs each callback longer than MS: a diagnosis too, not the issue's case.

Latency is counted from each request's send to the end of its response; under load the probe's
SECONDS stretch, since a late answer delays the next request. Also printed: the requests completed
and their statuses. Not a test: nothing here asserts a timing; unexpected statuses end the run
with exit 1. The load is a `BackgroundLoad` (benchlib): any coroutine function that runs until its
stop event is set and returns its own tally, so another load plugs into the same probe.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson

from scripts.benchlib import (
    BackgroundLoad,
    ProbeResult,
    app_environment,
    backend_cpu_seconds,
    bench_database,
    cpu_seconds,
    health_under_load,
    http_request,
    idle_load,
    machine_cpu_seconds,
    median,
    percentile,
    read_response,
    renice_tree,
    tree_cpu_seconds,
    uvicorn_server,
)
from scripts.loadgen import GeneratorResult, SpawnedLoad
from scripts.looplag import PATH as LAG_PATH
from scripts.looplag import SAMPLE_S, SLOW_CALLBACK_ENV

SECONDS = 15.0
CLIENTS = 10
STOPS = 960  # with its 960 x 960 duration matrix: ~5 MB of JSON
INTERVAL = 0.02
LATE_S = 0.05  # a probe request or a loop wake-up this late is broken down
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


# -- the loaded phases: which generator, and what the server's loop and the machine did meanwhile -----


GENERATORS = ("process", "inproc")


@dataclass
class Phase:
    label: str
    probe: ProbeResult
    tallies: dict[str, PostTally]
    lag: list[tuple[float, float, float]]  # the server's loop: (lag, cpu, queued) per wake-up
    server_cpu: float  # shares of one core over the phase
    server_tree_cpu: float
    generator_cpu: float
    database_cpu: float  # the PostgreSQL backends of the bench's database
    machine_busy: float  # of all cores
    cpu_pressure: float | None  # share of the time some runnable task waited for a CPU
    seconds: float  # the probe's (it stretches under load)


def loop_lag(port: int) -> list[tuple[float, float, float, float]]:
    """The server's lag samples since the previous call (scripts/looplag.py)."""
    response = httpx.get(f"http://127.0.0.1:{port}{LAG_PATH}", timeout=30)
    response.raise_for_status()
    return [(woke, lag, cpu, queued) for woke, lag, cpu, queued in response.json()]


def cpu_pressure_us() -> float | None:
    """Microseconds so far in which some runnable task waited for a CPU (PSI), if the kernel has it."""
    try:
        line = Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except OSError:
        return None
    return float(line.rsplit("total=", 1)[1])


def to_tallies(result: GeneratorResult) -> dict[str, PostTally]:
    return {label: PostTally(tally.statuses, tally.seconds) for label, tally in result.tallies.items()}


async def phase(
    label: str,
    port: int,
    pid: int,
    database: str,
    load: BackgroundLoad[Any],
    seconds: float,
    generator_cpu: Any,
    nice: int | None,
) -> Phase:
    """One probe of `seconds` beside `load`, with the server's lag samples and the CPU meanwhile."""
    await asyncio.to_thread(loop_lag, port)  # start a new series
    pressure, machine, before = cpu_pressure_us(), machine_cpu_seconds(), backend_cpu_seconds(database)
    cpu, tree, generator, started = (
        cpu_seconds(pid),
        tree_cpu_seconds(pid),
        generator_cpu(),
        time.perf_counter(),
    )
    probe, tally = await health_under_load(
        port, load, seconds=seconds, warmup=0.0 if label == "baseline" else 1.0, interval=INTERVAL, nice=nice
    )
    wall = time.perf_counter() - started
    machine_now, pressure_now = machine_cpu_seconds(), cpu_pressure_us()
    database_s = sum(cpu - before.get(pid, 0.0) for pid, cpu in backend_cpu_seconds(database).items())
    generator_s = tally.cpu_s if isinstance(tally, GeneratorResult) else generator_cpu() - generator
    # The wake-ups while the probe ran (not those while the load drained).
    lag = [
        (lag, cpu, queued)
        for woke, lag, cpu, queued in await asyncio.to_thread(loop_lag, port)
        if probe.started <= woke <= probe.ended
    ]
    return Phase(
        label,
        probe,
        to_tallies(tally) if isinstance(tally, GeneratorResult) else (tally or {}),
        lag,
        (cpu_seconds(pid) - cpu) / wall,
        (tree_cpu_seconds(pid) - tree) / wall,
        generator_s / wall,
        database_s / wall,
        (machine_now[0] - machine[0]) / (machine_now[1] - machine[1]),
        None if pressure is None or pressure_now is None else (pressure_now - pressure) / 1e6 / wall,
        probe.ended - probe.started,
    )


async def measure(
    port: int,
    pid: int,
    database: str,
    groups: list[tuple[str, bytes, int]],
    seconds: float,
    generators: list[str],
    nice: int | None,
) -> list[Phase]:
    """The baseline, then one loaded phase per generator, against the same server."""
    own = time.process_time
    phases = [await phase("baseline", port, pid, database, idle_load, seconds, own, nice)]
    for generator in generators:
        if generator == "inproc":
            load = inproc_load(port, groups)
            phases.append(await phase("inproc", port, pid, database, load, seconds, own, nice))
        else:
            async with SpawnedLoad(port, groups) as spawned:
                phases.append(await phase("process", port, pid, database, spawned.run, seconds, own, nice))
        await asyncio.sleep(2.0)  # the server's queues drain before the next phase
    return phases


def inproc_load(port: int, groups: list[tuple[str, bytes, int]]) -> BackgroundLoad[dict[str, PostTally]]:
    """The generator this bench had first: the connections in the bench's own process (asyncio's
    loop, StreamReader buffers, each response body read whole). Kept to compare with."""

    async def run(stop: asyncio.Event) -> dict[str, PostTally]:
        tallies = {label: PostTally() for label, _, _ in groups}
        await asyncio.gather(
            *(
                _poster(port, request, stop, tallies[label])
                for label, request, connections in groups
                for _ in range(connections)
            )
        )
        return tallies

    return run


def lag_lines(phase: Phase) -> list[str]:
    if not phase.lag:
        return ["    server loop: no samples"]
    lags = [lag for lag, _, _ in phase.lag]
    lines = [
        f"    server loop lag (a {SAMPLE_S * 1000:.0f} ms sleep's overshoot, in the API process): {latency(lags)}",
        # CPU time, not wall time: what the loop itself spent between two wake-ups, whatever else ran.
        f"    server loop busy between two wake-ups (its thread's CPU time):     "
        f"{latency([cpu for _, cpu, _ in phase.lag])}",
    ]
    late = [sample for sample in phase.lag if sample[0] >= LATE_S]
    if late:
        wall = sum(lag + SAMPLE_S for lag, _, _ in late)
        cpu = sum(c for _, c, _ in late)
        queued = sum(q for _, _, q in late)
        lines.append(
            f"    its {len(late)} wake-ups >= {LATE_S * 1000:.0f} ms late ({wall * 1000:.0f} ms in all): loop thread "
            f"on a CPU {cpu / wall:.0%}, runnable but waiting for a CPU {queued / wall:.0%}, "
            f"other (asleep, GIL, blocking calls) {max(0.0, 1 - (cpu + queued) / wall):.0%}"
        )
        worst = sorted(phase.lag, reverse=True)[:5]
        lines.append(
            "    worst wake-ups (lag / on CPU / waiting for a CPU, ms): "
            + ", ".join(f"{lag * 1000:.0f}/{c * 1000:.0f}/{q * 1000:.0f}" for lag, c, q in worst)
        )
    return lines


def probe_lines(phase: Phase) -> list[str]:
    probe = phase.probe
    lines = [probe_line(phase.label, probe)]
    slow = [(s, q) for s, q in zip(probe.seconds, probe.queued, strict=False) if s >= LATE_S]
    if slow:
        total, queued = sum(s for s, _ in slow), sum(q for _, q in slow)
        lines.append(
            f"    probe's {len(slow)} requests >= {LATE_S * 1000:.0f} ms: the probe itself waiting for a CPU "
            f"{queued / total:.0%} of their time"
        )
    lines += lag_lines(phase)
    pressure = (
        ""
        if phase.cpu_pressure is None
        else f", some task waiting for a CPU {phase.cpu_pressure:.0%} of the time"
    )
    lines.append(
        f"    CPU (share of one core): API process {phase.server_cpu:.0%} (with its worker processes "
        f"{phase.server_tree_cpu:.0%}), its PostgreSQL backends {phase.database_cpu:.0%}, load generator "
        f"{phase.generator_cpu:.0%}; machine "
        f"{phase.machine_busy:.0%} busy ({os.cpu_count()} cores){pressure}"
    )
    return lines


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
    parser.add_argument(
        "--generators",
        default="process",
        help="comma-separated loaded phases, in order, against the same server: process (the load in "
        "its own process, scripts/loadgen.py), inproc (in this process, as the bench first did)",
    )
    parser.add_argument(
        "--api-nice",
        type=int,
        help="run the API process (its threads, and the worker processes it starts) and the probe at "
        "this niceness, the load generator and PostgreSQL staying at theirs: a diagnosis of how much of "
        "the latency is waiting for a CPU (below 0 needs CAP_SYS_NICE)",
    )
    parser.add_argument(
        "--slow-callbacks",
        type=float,
        metavar="MS",
        help="a diagnosis, not the issue's case: serve on asyncio's own loop in debug mode, which logs "
        "every callback that ran longer than MS (with the task and where it stood)",
    )
    args = parser.parse_args()
    generators = args.generators.split(",")
    if not set(generators) <= set(GENERATORS):
        parser.error(f"--generators: each one of {', '.join(GENERATORS)}")
    posters = args.clients - args.clients // 2 if args.mixed else args.clients
    getters = args.clients - posters

    body = orjson.dumps({"name": "bench-loop: big scenario", "request": build_request(args.stops)})
    with bench_database() as url:
        env, auth = app_environment(url, "bench-loop")
        if args.slow_callbacks is not None:
            env[SLOW_CALLBACK_ENV] = str(args.slow_callbacks)
        loop = "uvloop" if args.slow_callbacks is None else "asyncio"
        with uvicorn_server("scripts.looplag:sampled_app", env, factory=True, loop=loop) as (port, pid):
            if args.api_nice is not None:
                renice_tree(pid, args.api_nice)
            print(
                f"bench_loop (uvicorn, 1 worker, {loop} + httptools; API pid {pid}, nice "
                f"{os.getpriority(os.PRIO_PROCESS, pid)}, the probe's "
                f"{os.getpriority(os.PRIO_PROCESS, 0) if args.api_nice is None else args.api_nice}; this "
                f"process's and the generator's nice {os.getpriority(os.PRIO_PROCESS, 0)}): GET /health every {INTERVAL * 1000:.0f} ms from another "
                f"process, {args.seconds:g} s idle, then {args.seconds:g} s under load per generator",
                flush=True,
            )
            path = f"/api/v1/sessions/{create_session(port, auth)}/scenarios"
            post = http_request("POST", path, headers={**auth, "Content-Type": "application/json"}, body=body)
            groups = [("POST", post, posters)]
            if getters:
                scenario = create_scenario(port, path, auth, body)
                groups.append(
                    ("GET", http_request("GET", f"/api/v1/scenarios/{scenario}", headers=auth), getters)
                )
            database = url.rsplit("/", 1)[1].split("?", 1)[0]
            phases = asyncio.run(
                measure(port, pid, database, groups, args.seconds, generators, args.api_nice)
            )

    wrong = []
    for current in phases:
        for line in probe_lines(current):
            print(line)
        for method, tally in current.tallies.items():
            done = sum(tally.statuses.values())
            print(
                f"    load: {posters if method == 'POST' else getters} clients {method}ing {len(body) / MB:.1f} MB "
                f"scenarios ({args.stops} stops + {args.stops}x{args.stops} matrix): {done} completed "
                f"({done / current.seconds:.1f}/s over the probe's {current.seconds:.0f} s), statuses "
                f"{dict(sorted(tally.statuses.items()))}"
                + (f", median {median(tally.seconds):.2f} s each" if tally.seconds else "")
            )
            if set(tally.statuses) != {201 if method == "POST" else 200}:
                wrong.append(f"the {method}s of {current.label} answered {dict(tally.statuses)}")
        if set(current.probe.statuses) != {200}:
            wrong.append(f"/health answered {dict(current.probe.statuses)} in {current.label}")
    for current in phases[1:]:
        print(
            f"  loaded ({current.label}) /health p99 {percentile(current.probe.seconds, 99) * 1000:.1f} ms, max "
            f"{max(current.probe.seconds) * 1000:.1f} ms   (target <= {TARGET_P99_MS:.0f} ms); server loop lag p99 "
            f"{percentile([lag for lag, _, _ in current.lag] or [0.0], 99) * 1000:.1f} ms"
        )
    if wrong:
        print(f"bench_loop: {'; '.join(wrong)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
