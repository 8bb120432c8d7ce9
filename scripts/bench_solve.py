"""`make bench`: solving through the API (uvicorn + one worker process) against PyVRP called directly.

Two instances, the same seed and the same time limit (--time-limit, default 5 s) on every side:
RC208 (Solomon VRPTW, 100 stops, explicit matrix, `request_from_vrplib(..., round_func="dimacs")`)
and `synthetic_request(1000)` (1,000 lat/lon stops, great-circle matrix built by the solver).

  (a)  direct  `service.solver.solver.solve()` in a separate, warmed-up process (a spawned
               ProcessPoolExecutor): the service's own clock (it starts before the matrices and
               PyVRP's set-up), without queue, database, HTTP or progress reporting;
  (a') pyvrp   plain `pyvrp.solve(data, MaxRuntime(T), seed)` in that process: PyVRP's own clock,
               which starts at the first iteration, after its initial construction;
  (b)  API     a real uvicorn server (service.main:app) and one real worker process
               (`python -m service.worker`, SOLVE_WORKERS=2) on one database: the scenario is POSTed
               once; each round POSTs /scenarios/{id}/solve and follows GET /solutions/{id}/events
               (SSE) until its `status` event, then GETs the solution for its payload.

Within a round the sides take turns (the order rotates), so the drift of a shared machine falls on
all of them alike. PyVRP is deterministic for a seed and a number of iterations, so on a loaded
machine the distance depends on the iterations a side managed within the limit, i.e. on the CPU it
got: each side's iterations and solver CPU seconds are printed (for (b), the worker's solver
process, sampled from /proc every 50 ms), and each API solve is replayed in the direct process as
plain PyVRP for exactly its iteration count: the same distance means the API ran the same search.

Printed, per instance, then one summary line per target:

- distance ratio (b)/(a), the median of per-round ratios (target <= 1.01), and (b)/(a');
- overhead: wall time from sending POST solve to reading the `status` event, minus the time limit,
  p50 (target <= 0.5 s). The stream is pushed (the worker's NOTIFY), so waiting on it adds one
  event's delivery, milliseconds; polling GET /solutions/{id} every P s would add ~P/2. Split by
  the solution's timestamps (PostgreSQL `now()` of each transaction, this host's clock): POST to
  created_at, pickup, the worker's work around the search (started_at->finished_at minus the
  payload's runtime_s), PyVRP past the limit (runtime_s minus the limit: its last iteration, or
  the exhaustive search of a new best, cannot be interrupted) and finished_at to the event;
- pickup latency: `started_at - created_at` read from the database (created_at: the POST's
  transaction start; started_at: the worker's `running` transaction start), p50 over every API
  solve plus --pickups short solves of the small example request, each queued to the idle worker
  after a random pause (target <= 200 ms); beside it, POST sent -> started_at (same host clock);
  the event stream cannot show it: it sends nothing for `running` until the first progress write;
- matrix build for 2,000 lat/lon stops: `measure_matrix_build(2000)`, median of 5 (target <= 1 s);
- the reasons pass (why a stop is unassigned) on 2,000 lat/lon stops: `measure_reasons(2000)`, the
  checks before the solve and the pricing of 200 left-out optional stops after it, median of 5 (CPU
  seconds of the one process), as a share of the overhead target above (target <= 5 %);
- /health p50/p99/max from a separate process (benchlib.health_under_load), idle and while two
  lanes keep one 1,000-stop solve each running (target p99 <= 100 ms).

Then the solve request's check, before any worker runs (`--sections checks` runs only this part):

- refusal against acceptance: checking a 2,000-stop request with a 2,001 x 2,001 distance matrix
  (valid) beside the same request holding floats, and holding negative integers, in the matrix
  (each cell an error): seconds and peak memory growth (parse included) of `parse_solve_request`
  in a fresh process, and the wall time of `POST /solve` (202 against 422) through the server,
  side by side in each round (target: refusing costs no more than accepting, per MiB, ratio <= 1);
- another user's latency during a large check: user B's `POST /solve` of a 5-stop request, alone,
  and sent again and again (one at a time) for as long as user A has CHECK_LOAD large invalid
  solves of 2,000 stops in flight: one whose check costs what a valid one does (an unknown depot),
  and the float matrix (p50 / p90 / max over the rounds; the max is the figure to watch).

Then re-solving from a plan (`--sections warm`, the engine in this process, no server): the
1,000-stop synthetic instance is solved without its last WARM_NEW stops (the earlier plan); with
them added, it is solved again at the same time limit and seed, cold and warm (from the earlier
plan's routes), taking turns, one pair per round. Printed: the distance ratio warm/cold (p50 and per
round) and the seconds (on the service's clock, read from the progress reports, 0.25 s apart) each
side took to reach the cold solve's final distance.

Then VROOM (`--sections vroom`, not run by default: ~10 minutes on a quiet machine), the engine a team
would pick instead, through pyvroom (a dev dependency) on RC208, a 200-stop and a 1,000-stop random
CVRP (`random_cvrp`: x/y plane, rounded Euclidean) and the 2,000-stop lat/lon instance, at VROOM's
exploration levels 1, 3 and 5, each in a fresh process killed after VROOM_TIMEOUT_S (a level that
does not finish skips the higher ones). Both engines get the same problem (scripts/vroomlib.py: the
solver's own integer matrices, vehicles, capacities, shifts, time windows, service durations, and the
least total distance as the objective). After each VROOM run the API solves the same scenario with
`time_limit_s` = VROOM's wall time rounded to whole seconds (at least 1, the API's smallest), and
each pair is printed: VROOM's distance, wall and CPU time, Routebook's distance, its time limit, its
wall time from POST solve to the status event, and the ratio Routebook / VROOM (target <= 1 in every
pair). Both distances are recomputed from the routes and the matrix and must equal the engines' own
figures. VROOM runs on --vroom-threads threads (default 1, as the solver searches on one core), at the
solver processes' niceness (SOLVER_NICENESS), so that neither gets more of a shared CPU; its
wall time, and so Routebook's budget, grows with the machine's load: quote `uptime` beside it.

Not a test: nothing here asserts a timing. A solve that does not succeed, or an unexpected HTTP
status, ends the run with exit 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import math
import multiprocessing
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import numpy as np
import orjson

from scripts.benchlib import (
    DEV_ISSUER,
    ROOT,
    BackgroundLoad,
    ProbeResult,
    app_environment,
    bench_database,
    cpu_seconds,
    health_under_load,
    idle_load,
    peak_rss_bytes,
    percentile,
    uvicorn_server,
)
from scripts.vroomlib import Instance, VroomRun, VroomTimeout, run_vroom
from service.core.db import asyncpg_connect_args

ROUNDS = 3
TIME_LIMIT_S = 5
SEED = 1
PICKUPS = 10
HEALTH_SECONDS = 15.0
HEALTH_INTERVAL_S = 0.02
MATRIX_STOPS = 2000
SYNTHETIC_STOPS = 1000
CHECK_STOPS = 2000
CHECK_LOAD = 4  # A's large solves in flight while B's small one is timed
SMALL_STOPS = 5
WARM_NEW = 20  # stops added to the 1,000-stop instance after its earlier plan
VROOM_LEVELS = (1, 3, 5)
VROOM_TIMEOUT_S = 120
VROOM_CVRP_STOPS = (200, 1000)
RC208 = ROOT / "tests" / "kit" / "data" / "RC208.vrp"
API = "/api/v1"

TARGET_RATIO = 1.01
TARGET_OVERHEAD_S = 0.5
TARGET_PICKUP_MS = 200.0
TARGET_MATRIX_S = 1.0
TARGET_REASONS_SHARE = 0.05  # of TARGET_OVERHEAD_S
TARGET_HEALTH_P99_MS = 100.0
TARGET_REFUSAL_RATIO = 1.0


class BenchFailed(Exception):
    """A solve or a request did not do what the benchmark needs: the run stops with exit 1."""


# -- (a) PyVRP called directly, in a separate process ---------------------------------------------


@dataclass(frozen=True)
class DirectRun:
    distance: int
    feasible: bool
    iterations: int
    runtime_s: float  # the solver's own figure
    wall_s: float  # the whole call in the child: parse, matrices, set-up, search, payload
    cpu_s: float  # the child's CPU time over the same span


def _warm() -> None:
    """Run once in the direct process: the imports fall before the first measurement."""
    import pyvrp  # noqa: F401

    import service.solver.solver  # noqa: F401


def direct_solve(
    document: bytes, time_limit_s: float, seed: int, mode: str, iterations: int = 0
) -> DirectRun:
    """One solve in this (pool) process: `solve` is the service's solve(), `pyvrp` plain PyVRP with
    MaxRuntime, `replay` plain PyVRP for exactly `iterations` iterations (no clock at all)."""
    import pyvrp
    from pyvrp.stop import MaxIterations, MaxRuntime

    from service.solver.matrix import build_matrices
    from service.solver.problem import build_problem
    from service.solver.request import parse_solve_request
    from service.solver.solver import solve

    started, cpu = time.perf_counter(), time.process_time()
    request = parse_solve_request(orjson.loads(document), max_stops=1_000_000)
    if mode == "solve":
        outcome = solve(
            request,
            time_limit_s=time_limit_s,
            seed=seed,
            on_progress=lambda _: None,
            should_stop=lambda: False,
        )
        if outcome.payload is None:
            raise BenchFailed(f"direct solve {outcome.status}: {outcome.reason}")
        solver = outcome.payload["solver"]
        return DirectRun(
            distance=outcome.payload["distance"],
            feasible=outcome.payload["feasible"],
            iterations=solver["iterations"],
            runtime_s=solver["runtime_s"],
            wall_s=time.perf_counter() - started,
            cpu_s=time.process_time() - cpu,
        )
    problem = build_problem(request, *build_matrices(request))
    stop = MaxIterations(iterations) if mode == "replay" else MaxRuntime(time_limit_s)
    result = pyvrp.solve(problem.data, stop=stop, seed=seed, collect_stats=False)
    return DirectRun(
        distance=result.best.distance(),
        feasible=result.best.is_feasible(),
        iterations=result.num_iterations,
        runtime_s=result.runtime,
        wall_s=time.perf_counter() - started,
        cpu_s=time.process_time() - cpu,
    )


# -- re-solving from a plan: warm against cold --------------------------------------------------


@dataclass
class Traced:
    distance: int
    # (seconds on the service's clock, best feasible distance so far) per progress report.
    trace: list[tuple[float, int]]

    def reached(self, distance: int) -> float | None:
        return next((elapsed for elapsed, best in self.trace if best <= distance), None)


def traced_solve(document: dict[str, Any], time_limit_s: float, seed: int, routes: Any = None) -> Traced:
    from service.solver.pins import Replan
    from service.solver.request import parse_solve_request
    from service.solver.solver import solve

    trace: list[tuple[float, int]] = []

    def progress(report: Any) -> None:
        if report.best_distance is not None:
            trace.append((report.elapsed_s, report.best_distance))

    outcome = solve(
        parse_solve_request(document, max_stops=1_000_000),
        time_limit_s=time_limit_s,
        seed=seed,
        on_progress=progress,
        should_stop=lambda: False,
        replan=None if routes is None else Replan([], routes),
    )
    if outcome.payload is None or not outcome.payload["feasible"]:
        raise BenchFailed(f"warm/cold solve {outcome.status}: {outcome.reason}")
    return Traced(outcome.payload["distance"], trace)


def measure_warm(args: argparse.Namespace) -> list[str]:
    from tests.kit.instances import synthetic_request

    full = synthetic_request(SYNTHETIC_STOPS)
    earlier = {**full, "stops": full["stops"][:-WARM_NEW]}
    print(
        f"bench_solve warm ({SYNTHETIC_STOPS} stops, {WARM_NEW} added after the earlier plan; time limit "
        f"{args.time_limit} s, {args.rounds} rounds)",
        flush=True,
    )
    from service.solver.request import parse_solve_request
    from service.solver.solver import solve

    plan = solve(
        parse_solve_request(earlier, max_stops=1_000_000),
        time_limit_s=args.time_limit,
        seed=args.seed,
        on_progress=lambda _: None,
        should_stop=lambda: False,
    ).payload
    if plan is None:
        raise BenchFailed("the earlier plan failed")
    ratios: list[float] = []
    lines = []
    for round_ in range(args.rounds):
        seed = args.seed + round_
        sides = ["cold", "warm"] if round_ % 2 == 0 else ["warm", "cold"]
        runs = {
            side: traced_solve(full, args.time_limit, seed, plan["routes"] if side == "warm" else None)
            for side in sides
        }
        cold, warm = runs["cold"], runs["warm"]
        ratios.append(warm.distance / cold.distance)
        reach_warm, reach_cold = warm.reached(cold.distance), cold.reached(cold.distance)
        lines.append(
            f"round {round_ + 1}: cold {cold.distance} m, warm {warm.distance} m, ratio {ratios[-1]:.4f}; "
            f"cold's final distance reached by warm at "
            f"{'never' if reach_warm is None else f'{reach_warm:.2f} s'}, by cold at "
            f"{'?' if reach_cold is None else f'{reach_cold:.2f} s'}"
        )
        print(f"  {lines[-1]}", flush=True)
    headline = (
        f"warm/cold distance ratio at {args.time_limit} s, {SYNTHETIC_STOPS} stops: p50 {p50(ratios):.4f}"
    )
    return [headline, *lines]


# -- (b) through the API and a worker --------------------------------------------------------------


@contextlib.contextmanager
def solve_worker(env: dict[str, str], *, slots: int) -> Iterator[tuple[int, Path]]:
    """(pid, log path) of `python -m service.worker` with `slots` solves at once, until the block ends.

    Ready once it logs so, which it does after warming its fork server up (PyVRP imported)."""
    log_path = Path(tempfile.mkdtemp(prefix="routebook-bench-worker-")) / "worker.log"
    environment = {
        **os.environ,
        **env,
        "SOLVE_WORKERS": str(slots),
        "LOG_LEVEL": "INFO",
        "LOG_FORMAT": "json",
    }
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "service.worker"],
            cwd=ROOT,
            env=environment,
            stdout=log_file,
            stderr=log_file,
        )
    try:
        deadline = time.monotonic() + 90
        while "ready (" not in log_path.read_text(errors="replace"):
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the worker did not start:\n{log_path.read_text(errors='replace')[-2000:]}")
            time.sleep(0.05)
        yield process.pid, log_path
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def children(pid: int) -> set[int]:
    """The processes whose parent is `pid` (from /proc/<pid>/task/*/children); empty once it is gone."""
    found: set[int] = set()
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                found.update(map(int, (task / "children").read_text().split()))
    return found


class SolverCpu:
    """CPU seconds of the solver processes the worker starts while this block runs (the children of
    its fork server), sampled from /proc every SAMPLE_S: a process's last sample falls at most that
    long before it exits, so a 5 s solve is under-counted by at most ~1 %. A sample reads two or
    three small files, so the sampling itself costs well under 1 % of a core."""

    SAMPLE_S = 0.05

    def __init__(self, worker_pid: int) -> None:
        self._worker = worker_pid
        self._servers: set[int] = set()
        self._seen: dict[int, float] = {}
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> SolverCpu:
        self._servers = children(self._worker)  # the fork server, started at the worker's warm-up
        self._task = asyncio.create_task(self._sample())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _sample(self) -> None:
        while True:
            for server in self._servers:
                for pid in children(server):
                    with contextlib.suppress(OSError, IndexError, ValueError):
                        self._seen[pid] = max(self._seen.get(pid, 0.0), cpu_seconds(pid))
            await asyncio.sleep(self.SAMPLE_S)

    @property
    def seconds(self) -> float:
        return sum(self._seen.values())


@dataclass(frozen=True)
class ApiRun:
    distance: int
    feasible: bool
    iterations: int
    runtime_s: float
    wall_s: float  # POST solve sent -> final status event read
    post_s: float  # POST solve sent -> its 202 read
    # From the solution's row (epoch seconds on this host's clock), and the client's send time.
    sent_at: float
    created_at: float
    started_at: float
    finished_at: float
    final_at: float
    cpu_s: float  # of the worker's solver process, sampled
    routes: list[tuple[str, list[str]]] = field(default_factory=list)  # (vehicle type, stop ids)

    @property
    def pickup_s(self) -> float:
        return self.started_at - self.created_at

    @property
    def client_pickup_s(self) -> float:
        return self.started_at - self.sent_at


_TIMES = (
    "SELECT extract(epoch FROM created_at)::float8 AS created_at, extract(epoch FROM started_at)::float8 "
    "AS started_at, extract(epoch FROM finished_at)::float8 AS finished_at FROM solutions "
    "WHERE user_id = $1 AND id = $2"
)


class Api:
    """One user's calls to the API server, and reads of its solutions' timestamps."""

    def __init__(self, port: int, auth: dict[str, str], db: asyncpg.Connection, worker_pid: int) -> None:
        self.worker_pid = worker_pid
        self.base = f"http://127.0.0.1:{port}"
        self.client = httpx.AsyncClient(base_url=self.base, headers=auth, timeout=120)
        self.db = db
        self.user_id: uuid.UUID | None = None
        self.session_id = ""

    async def call(self, method: str, path: str, expect: int, body: Any = None) -> Any:
        response = await self.client.request(method, API + path, json=body)
        if response.status_code != expect:
            raise BenchFailed(f"{method} {path} answered {response.status_code}: {response.text[:300]}")
        return response.json()

    async def start(self) -> None:
        self.user_id = uuid.UUID((await self.call("GET", "/users/me", 200))["id"])
        self.session_id = (await self.call("POST", "/sessions", 201, {"name": "bench-solve"}))["id"]

    async def scenario(self, name: str, document: dict[str, Any]) -> tuple[str, bytes]:
        """(id, the request as the API stores and returns it) of a new scenario."""
        created = await self.call(
            "POST", f"/sessions/{self.session_id}/scenarios", 201, {"name": name, "request": document}
        )
        stored = (await self.call("GET", f"/scenarios/{created['id']}", 200))["request"]
        if stored != document:
            print(f"  note: {name}: the stored request differs from the one sent", file=sys.stderr)
        return created["id"], orjson.dumps(stored)

    async def queue(self, scenario_id: str, time_limit_s: int, seed: int) -> str:
        body = {"time_limit_s": time_limit_s, "seed": seed}
        return str((await self.call("POST", f"/scenarios/{scenario_id}/solve", 202, body))["id"])

    async def final_status(self, solution_id: str, stop: asyncio.Event | None = None) -> str:
        """Follow the event stream until its `status` event; if `stop` is set first, cancel the solve."""
        follow = asyncio.create_task(self._follow(solution_id))
        if stop is None:
            return await follow
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait({follow, stopped}, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if not follow.done():
            with contextlib.suppress(BenchFailed):  # 409: it finished meanwhile
                await self.call("POST", f"/solutions/{solution_id}/cancel", 202)
        return await follow

    async def _follow(self, solution_id: str) -> str:
        event = ""
        async with self.client.stream("GET", f"{API}/solutions/{solution_id}/events") as response:
            if response.status_code != 200:
                raise BenchFailed(f"the event stream answered {response.status_code}")
            async for line in response.aiter_lines():
                if line.startswith("event:"):
                    event = line.partition(":")[2].strip()
                elif line.startswith("data:") and event == "status":
                    return str(orjson.loads(line.partition(":")[2])["status"])
        raise BenchFailed(f"the event stream of {solution_id} ended without a status")

    async def times(self, solution_id: str) -> asyncpg.Record:
        # As the owner under row-level security, whether or not this login bypasses it.
        async with self.db.transaction():
            await self.db.execute(
                "SELECT set_config('app.user_id', $1, true), set_config('app.workspace_id', $1, true)",
                str(self.user_id),
            )
            row = await self.db.fetchrow(_TIMES, self.user_id, uuid.UUID(solution_id))
        if row is None:
            raise BenchFailed(f"solution {solution_id} is not in the database")
        return row

    async def solve(self, scenario_id: str, time_limit_s: int, seed: int) -> ApiRun:
        async with SolverCpu(self.worker_pid) as cpu:
            sent_at, started = time.time(), time.perf_counter()
            solution_id = await self.queue(scenario_id, time_limit_s, seed)
            post_s = time.perf_counter() - started
            status = await self.final_status(solution_id)
            wall_s, final_at = time.perf_counter() - started, time.time()
        if status != "succeeded":
            raise BenchFailed(f"solve {solution_id} ended {status}")
        payload = (await self.call("GET", f"/solutions/{solution_id}", 200))["payload"]
        row = await self.times(solution_id)
        return ApiRun(
            distance=payload["distance"],
            feasible=payload["feasible"],
            iterations=payload["solver"]["iterations"],
            runtime_s=payload["solver"]["runtime_s"],
            wall_s=wall_s,
            post_s=post_s,
            sent_at=sent_at,
            created_at=row["created_at"],
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            final_at=final_at,
            cpu_s=cpu.seconds,
            routes=[(route["vehicle_type"], route["stops"]) for route in payload["routes"]],
        )


# -- the background load for /health: two solves running at once ------------------------------------


@dataclass
class SolveTally:
    statuses: Counter[str] = field(default_factory=Counter)
    busy_s: list[float] = field(default_factory=list)  # per lane: seconds with a solve in flight
    seconds: float = 0.0  # the load's whole duration


def two_solves(api: Api, scenario_id: str, time_limit_s: int, seed: int) -> BackgroundLoad[SolveTally]:
    """Two lanes, each queueing a solve as soon as its previous one ended, until stopped (in-flight
    solves are then cancelled, so the load ends within a second or so)."""

    async def lane(stop: asyncio.Event, tally: SolveTally) -> None:
        busy = 0.0
        while not stop.is_set():
            started = time.perf_counter()
            solution_id = await api.queue(scenario_id, time_limit_s, seed)
            tally.statuses[await api.final_status(solution_id, stop)] += 1
            busy += time.perf_counter() - started
        tally.busy_s.append(busy)

    async def run(stop: asyncio.Event) -> SolveTally:
        tally, started = SolveTally(), time.perf_counter()
        await asyncio.gather(lane(stop, tally), lane(stop, tally))
        tally.seconds = time.perf_counter() - started
        return tally

    return run


# -- the measurement -----------------------------------------------------------------------------


@dataclass
class InstanceResult:
    name: str
    direct: list[DirectRun] = field(default_factory=list)
    pyvrp: list[DirectRun] = field(default_factory=list)
    api: list[ApiRun] = field(default_factory=list)
    # Plain PyVRP for exactly the iterations each API solve did: equal distances mean the API ran
    # the same search, and a different distance comes from the iterations done in the time limit.
    replays: list[DirectRun] = field(default_factory=list)


@dataclass
class Results:
    time_limit_s: int
    instances: list[InstanceResult]
    pickups: list[ApiRun]
    baseline: ProbeResult
    loaded: ProbeResult
    tally: SolveTally


def instances() -> dict[str, dict[str, Any]]:
    from tests.kit.instances import synthetic_request
    from tests.kit.vrplib_io import request_from_vrplib

    return {
        "RC208": request_from_vrplib(RC208, round_func="dimacs"),
        f"{SYNTHETIC_STOPS} lat/lon": synthetic_request(SYNTHETIC_STOPS),
    }


async def measure(
    args: argparse.Namespace, port: int, auth: dict[str, str], url: str, worker_pid: int
) -> Results:
    from service.solver.example import EXAMPLE_REQUEST

    loop = asyncio.get_running_loop()
    db = await asyncpg.connect(**asyncpg_connect_args(url))
    api = Api(port, auth, db, worker_pid)
    try:
        await api.start()
        documents = {name: await api.scenario(name, document) for name, document in instances().items()}
        results = [InstanceResult(name) for name in documents]
        with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
            await loop.run_in_executor(pool, _warm)
            for round_ in range(args.rounds):
                for result, (scenario_id, document) in zip(results, documents.values(), strict=True):
                    sides = ["direct", "pyvrp", "api"]
                    shift = round_ % len(sides)
                    for side in sides[shift:] + sides[:shift]:
                        if side == "api":
                            solved = await api.solve(scenario_id, args.time_limit, args.seed)
                            result.api.append(solved)
                            result.replays.append(
                                await loop.run_in_executor(
                                    pool, direct_solve, document, 0.0, args.seed, "replay", solved.iterations
                                )
                            )
                        else:
                            run = await loop.run_in_executor(
                                pool, direct_solve, document, float(args.time_limit), args.seed,
                                "solve" if side == "direct" else side,
                            )  # fmt: skip
                            (result.direct if side == "direct" else result.pyvrp).append(run)
                        await asyncio.sleep(0.5)  # the worker idle again before the next queueing
                print(f"  round {round_ + 1}/{args.rounds} done", flush=True)
        # Pickup on an idle worker: short solves of the small example, each after a random pause so
        # that queueing falls anywhere within the worker's 1 s idle poll.
        example_id, _ = await api.scenario("example", EXAMPLE_REQUEST)
        pickups = []
        for _ in range(args.pickups):
            await asyncio.sleep(random.uniform(0.3, 1.3))
            pickups.append(await api.solve(example_id, 1, args.seed))
        baseline, _ = await health_under_load(
            port, idle_load, seconds=args.health_seconds, warmup=0.0, interval=HEALTH_INTERVAL_S
        )
        load_id = documents[f"{SYNTHETIC_STOPS} lat/lon"][0]
        loaded, tally = await health_under_load(
            port,
            two_solves(api, load_id, args.time_limit, args.seed),
            seconds=args.health_seconds,
            interval=HEALTH_INTERVAL_S,
        )
        return Results(args.time_limit, results, pickups, baseline, loaded, tally)
    finally:
        await api.client.aclose()
        await db.close()


# -- VROOM at its exploration levels against the API given the same wall time ---------------------


@dataclass(frozen=True)
class VroomPair:
    instance: str
    vroom: VroomRun | VroomTimeout
    api: ApiRun | None = None  # None when VROOM did not finish in time
    vroom_distance: int = 0  # recomputed from VROOM's routes and the matrix
    api_distance: int = 0  # recomputed from the API's routes and the matrix

    @property
    def ratio(self) -> float:
        return self.api_distance / self.vroom_distance if self.vroom_distance else math.nan


def random_cvrp(stops: int, *, seed: int = 0) -> dict[str, Any]:
    """`stops` deliveries uniform on a 1,000 x 1,000 plane around a central depot (rounded Euclidean
    distances), demands 1-9, vans of 50, with ~1.7 times the vans the demand needs."""
    rng = np.random.default_rng(seed)
    x, y = rng.uniform(0, 1000, stops), rng.uniform(0, 1000, stops)
    demand = rng.integers(1, 10, stops)
    return {
        "depots": [{"id": "depot", "location": {"x": 500.0, "y": 500.0}}],
        "stops": [
            {"id": f"c{i}", "location": {"x": float(x[i]), "y": float(y[i])}, "demand": int(demand[i])}
            for i in range(stops)
        ],
        "vehicle_types": [{"id": "van", "count": stops // 6 + 1, "capacity": 50, "depot": "depot"}],
    }


def vroom_instances() -> list[Instance]:
    from tests.kit.instances import synthetic_request
    from tests.kit.vrplib_io import request_from_vrplib

    return [
        Instance.of("RC208", request_from_vrplib(RC208, round_func="dimacs")),
        *(Instance.of(f"CVRP {stops}", random_cvrp(stops)) for stops in VROOM_CVRP_STOPS),
        Instance.of(f"{MATRIX_STOPS} lat/lon", synthetic_request(MATRIX_STOPS)),
    ]


def api_time_limit(vroom_wall_s: float) -> int:
    """The API takes whole seconds (at least 1): VROOM's wall time, rounded to the nearest."""
    return max(1, round(vroom_wall_s))


async def measure_vroom(
    args: argparse.Namespace, port: int, auth: dict[str, str], url: str, worker_pid: int
) -> list[VroomPair]:
    loop = asyncio.get_running_loop()
    db = await asyncpg.connect(**asyncpg_connect_args(url))
    api = Api(port, auth, db, worker_pid)
    pairs: list[VroomPair] = []
    try:
        await api.start()
        for instance in vroom_instances():
            scenario_id, _ = await api.scenario(instance.name, instance.document)
            for level in VROOM_LEVELS:
                vroom = await loop.run_in_executor(
                    None,
                    functools.partial(
                        run_vroom, instance, level, threads=args.vroom_threads, timeout_s=VROOM_TIMEOUT_S
                    ),
                )
                if isinstance(vroom, VroomTimeout):
                    pairs.append(VroomPair(instance.name, vroom))
                    print(
                        f"  {instance.name}: VROOM level {level} did not finish in {VROOM_TIMEOUT_S} s",
                        flush=True,
                    )
                    break  # a higher level explores more: it would not finish either
                if vroom.unassigned or not instance.served_once(vroom.routes):
                    raise BenchFailed(f"{instance.name}: VROOM level {level} left stops unassigned")
                await asyncio.sleep(0.5)  # VROOM's process gone before the API's solve starts
                solved = await api.solve(scenario_id, api_time_limit(vroom.wall_s), args.seed)
                if not solved.feasible or not instance.served_once(solved.routes):
                    raise BenchFailed(f"{instance.name}: the API's solve is infeasible or leaves stops out")
                pair = VroomPair(
                    instance.name,
                    vroom,
                    solved,
                    vroom_distance=instance.distance(vroom.routes),
                    api_distance=instance.distance(solved.routes),
                )
                if pair.vroom_distance != vroom.cost or pair.api_distance != solved.distance:
                    raise BenchFailed(
                        f"{instance.name}: a recomputed distance differs from the engine's own "
                        f"(VROOM {pair.vroom_distance} against {vroom.cost}, "
                        f"API {pair.api_distance} against {solved.distance})"
                    )
                pairs.append(pair)
                print(f"  {vroom_line(pair)}", flush=True)
        return pairs
    finally:
        await api.client.aclose()
        await db.close()


def vroom_line(pair: VroomPair) -> str:
    vroom, api = pair.vroom, pair.api
    if isinstance(vroom, VroomTimeout):
        return f"{pair.instance:<14} level {vroom.level}  VROOM did not finish within {vroom.timeout_s:.0f} s"
    assert api is not None  # a pair with VROOM's run has the API's
    return (
        f"{pair.instance:<14} level {vroom.level}  VROOM {pair.vroom_distance:>9} in {vroom.wall_s:6.2f} s "
        f"(CPU {vroom.cpu_s:6.2f})   Routebook {pair.api_distance:>9} at time_limit_s "
        f"{api_time_limit(vroom.wall_s):>3} (POST -> status {api.wall_s:6.2f} s, {api.iterations} iterations)"
        f"   ratio {pair.ratio:.4f}"
    )


def report_vroom(pairs: list[VroomPair], threads: int) -> list[str]:
    print(
        f"  VROOM {version('pyvroom')} ({threads} thread{'s' if threads > 1 else ''}) against Routebook "
        "through the API, distances recomputed from the matrix (Routebook / VROOM <= 1 is ahead)"
    )
    for pair in pairs:
        print(f"    {vroom_line(pair)}")
    ratios = [pair.ratio for pair in pairs if pair.api is not None]
    worst = max(ratios, default=math.nan)
    return [
        "Routebook / VROOM        "
        + ", ".join(f"{pair.instance} L{pair.vroom.level} {pair.ratio:.4f}" for pair in pairs if pair.api)
        + f"   target <= 1 in every pair: {verdict(worst <= 1)}"
    ]


# -- the solve request's check: what a refusal costs, and who waits for it -----------------------


def check_documents() -> dict[str, bytes]:
    """A valid 2,000-stop request with its distance matrix, and two of the same size that are not:
    every matrix cell a float, every cell negative; and A's invalid one (an unknown depot, found
    only once everything else was checked)."""
    from tests.kit.instances import synthetic_request

    valid = synthetic_request(CHECK_STOPS, explicit_matrix=True)
    distances = valid["matrix"]["distances"]
    valid["matrix"] = {"distances": distances}
    floats = {**valid, "matrix": {"distances": [[cell + 0.5 for cell in row] for row in distances]}}
    negative = {**valid, "matrix": {"distances": [[-cell - 1 for cell in row] for row in distances]}}
    unknown = {**valid, "vehicle_types": [{**valid["vehicle_types"][0], "depot": "nowhere"}]}
    return {
        "valid": orjson.dumps(valid),
        "floats": orjson.dumps(floats),
        "negative": orjson.dumps(negative),
        "unknown depot": orjson.dumps(unknown),
    }


def check_in_process(document: bytes) -> tuple[float, int, int]:
    """(seconds, peak RSS growth in bytes, errors) of checking `document` as a solve request; run in
    a fresh process each time, so the peak is this check's own."""
    from service.solver.request import SolveRequestInvalid, parse_solve_request

    # VmHWM, not getrusage's ru_maxrss: Linux carries the parent's peak across the spawn's exec.
    before = peak_rss_bytes(os.getpid())
    started = time.perf_counter()
    try:
        parse_solve_request(orjson.loads(document), max_stops=CHECK_STOPS)
        errors = 0
    except SolveRequestInvalid as exc:
        errors = len(exc.errors)
    seconds = time.perf_counter() - started
    return seconds, peak_rss_bytes(os.getpid()) - before, errors


@dataclass
class CheckResults:
    sizes: dict[str, int]
    # Per case: in-process (seconds, peak bytes) per round; API POST /solve seconds per round.
    local: dict[str, list[tuple[float, int]]] = field(default_factory=dict)
    api: dict[str, list[float]] = field(default_factory=dict)
    idle_b: list[float] = field(default_factory=list)
    # B's latencies while A's solves of each kind of document are in flight.
    loaded_b: dict[str, list[float]] = field(default_factory=dict)
    a_statuses: Counter[int] = field(default_factory=Counter)


async def _solve_status(api: Api, scenario_id: str) -> tuple[int, float]:
    started = time.perf_counter()
    response = await api.client.post(f"{API}/scenarios/{scenario_id}/solve", json={"time_limit_s": 1})
    elapsed = time.perf_counter() - started
    if response.status_code == 202:
        # No worker runs yet: cancelling a pending solve ends it at once, and frees its slot.
        await api.call("POST", f"/solutions/{response.json()['id']}/cancel", 202)
    return response.status_code, elapsed


async def measure_checks(
    args: argparse.Namespace, port: int, auth: dict[str, str], other: dict[str, str]
) -> CheckResults:
    loop = asyncio.get_running_loop()
    documents = check_documents()
    results = CheckResults(sizes={name: len(body) for name, body in documents.items()})
    a = Api(port, auth, None, 0)  # type: ignore[arg-type]  # no database reads in this part
    b = Api(port, other, None, 0)  # type: ignore[arg-type]
    try:
        await a.start()
        await b.start()
        scenarios = {}
        for name, body in documents.items():
            created = await a.client.post(
                f"{API}/sessions/{a.session_id}/scenarios",
                content=b'{"name": "' + name.encode() + b'", "request": ' + body + b"}",
                headers={"content-type": "application/json"},
            )
            if created.status_code != 201:
                raise BenchFailed(f"scenario {name} answered {created.status_code}: {created.text[:300]}")
            scenarios[name] = created.json()["id"]
        from tests.kit.instances import synthetic_request

        small = (
            await b.call(
                "POST",
                f"/sessions/{b.session_id}/scenarios",
                201,
                {"name": "small", "request": synthetic_request(SMALL_STOPS)},
            )
        )["id"]
        expected = {"valid": 202, "floats": 422, "negative": 422, "unknown depot": 422}
        cases = ["valid", "floats", "negative"]
        for round_ in range(args.rounds):
            shift = round_ % len(cases)
            for name in cases[shift:] + cases[:shift]:
                with ProcessPoolExecutor(
                    max_workers=1, mp_context=multiprocessing.get_context("spawn"), max_tasks_per_child=1
                ) as pool:
                    seconds, peak, _ = await loop.run_in_executor(pool, check_in_process, documents[name])
                results.local.setdefault(name, []).append((seconds, peak))
                status, elapsed = await _solve_status(a, scenarios[name])
                if status != expected[name]:
                    raise BenchFailed(f"POST solve of {name} answered {status}")
                results.api.setdefault(name, []).append(elapsed)
            # B alone, then B while A's large invalid solves are being checked.
            for _ in range(3):
                status, elapsed = await _solve_status(b, small)
                if status != 202:
                    raise BenchFailed(f"B's solve answered {status}")
                results.idle_b.append(elapsed)
            for heavy in ("unknown depot", "floats"):
                load = [asyncio.create_task(_solve_status(a, scenarios[heavy])) for _ in range(CHECK_LOAD)]
                # B solves again and again, one at a time, for as long as any of A's is in flight.
                while not all(task.done() for task in load):
                    status, elapsed = await _solve_status(b, small)
                    if status != 202:
                        raise BenchFailed(f"B's solve during A's checks answered {status}")
                    results.loaded_b.setdefault(heavy, []).append(elapsed)
                for finished in await asyncio.gather(*load):
                    results.a_statuses[finished[0]] += 1
            print(f"  checks: round {round_ + 1}/{args.rounds} done", flush=True)
        return results
    finally:
        await a.client.aclose()
        await b.client.aclose()


def report_checks(results: CheckResults) -> list[str]:
    mib = 1024 * 1024
    print(
        f"  the solve request's check ({CHECK_STOPS} stops, a {CHECK_STOPS + 1}² distance matrix; rounds separated by /)"
    )
    for name, runs in results.local.items():
        print(
            f"    {name:<9} {results.sizes[name] / mib:5.1f} MiB   in process {'/'.join(f'{s:.2f}' for s, _ in runs)} s, "
            f"peak +{'/'.join(f'{p / mib:.0f}' for _, p in runs)} MiB   POST /solve {'/'.join(f'{s:.2f}' for s in results.api[name])} s"
        )
    # Per MiB: the invalid documents are larger than the valid one (floats and minus signs), and the
    # target compares documents of the same size.
    size = results.sizes
    valid_local = p50([s for s, _ in results.local["valid"]]) / size["valid"]
    valid_api = p50(results.api["valid"]) / size["valid"]
    ratios = {
        name: (
            p50([s for s, _ in runs]) / size[name] / valid_local,
            p50(results.api[name]) / size[name] / valid_api,
        )
        for name, runs in results.local.items()
        if name != "valid"
    }
    worst = max(max(pair) for pair in ratios.values())
    idle = p50(results.idle_b)
    print(f"    B's 5-stop POST /solve alone: p50 {ms(idle)} ms")
    for heavy, latencies in results.loaded_b.items():
        print(
            f"    ... while A has {CHECK_LOAD} solves of '{heavy}' in flight: p50 {ms(p50(latencies))} ms, "
            f"p90 {ms(percentile(latencies, 90))} ms, max {ms(max(latencies))} ms ({len(latencies)} solves)"
        )
    print(f"    A's answers {dict(results.a_statuses)}")
    return [
        "refusal / acceptance     "
        + ", ".join(
            f"{name} x{local:.2f} in process, x{api:.2f} POST" for name, (local, api) in ratios.items()
        )
        + f" (per MiB)   target <= {TARGET_REFUSAL_RATIO:.0f}: {verdict(worst <= TARGET_REFUSAL_RATIO)}",
        "B's solve during A's     "
        + ", ".join(f"'{heavy}' max {ms(max(latencies))} ms" for heavy, latencies in results.loaded_b.items())
        + f" (alone p50 {ms(idle)} ms): the longest B waited for another user's check",
    ]


# -- reporting -------------------------------------------------------------------------------------


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f}"


def p50(values: list[float]) -> float:
    # NaN when nothing could be measured (e.g. a ratio of iterations when a short limit on a large
    # instance left the direct side no iteration at all): printed as nan, never a crash.
    return statistics.median(values) if values else math.nan


def verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def side_line(label: str, runs: list[DirectRun] | list[ApiRun]) -> str:
    return (
        f"    {label:<19} distance {'/'.join(str(r.distance) for r in runs)}   iterations "
        f"{'/'.join(str(r.iterations) for r in runs)}   CPU {'/'.join(f'{r.cpu_s:.1f}' for r in runs)} s   "
        f"runtime {'/'.join(f'{r.runtime_s:.2f}' for r in runs)} s   wall {'/'.join(f'{r.wall_s:.2f}' for r in runs)} s"
    )


def report(results: Results, matrix_s: float, reasons_s: float) -> list[str]:
    """Prints the details; returns the summary lines (one per target)."""
    limit = results.time_limit_s
    ratios: dict[str, float] = {}
    notes: list[str] = []
    overheads: dict[str, float] = {}
    for item in results.instances:
        pairs = list(zip(item.direct, item.api, strict=True))
        ratio = p50([b.distance / a.distance for a, b in pairs])
        ratios[item.name] = ratio
        print(f"  {item.name} (rounds separated by /)")
        print(side_line("(a)  direct solve()", item.direct))
        print(side_line("(a') plain pyvrp", item.pyvrp))
        print(side_line("(b)  API + worker", item.api))
        if not all(r.feasible for r in item.direct + item.pyvrp) or not all(r.feasible for r in item.api):
            print("    note: some solutions are infeasible")
        raw = p50([b.distance / a.distance for a, b in zip(item.pyvrp, item.api, strict=True)])
        iterations = p50([b.iterations / a.iterations for a, b in pairs if a.iterations])
        cpu = p50([b.cpu_s / a.cpu_s for a, b in pairs if a.cpu_s])
        same = sum(r.distance == b.distance for r, b in zip(item.replays, item.api, strict=True))
        notes.append(
            f"{item.name}: iterations x{iterations:.2f}, CPU x{cpu:.2f}, replays equal {same}/{len(item.api)}"
        )
        print(
            f"    distance ratio (b)/(a) {ratio:.4f}   (b)/(a') {raw:.4f}   iterations (b)/(a) {iterations:.2f}   "
            f"solver CPU (b)/(a) {cpu:.2f}   (medians of per-round ratios)"
        )
        print(
            f"    replay: plain PyVRP for (b)'s iteration count gave (b)'s distance in {same} of {len(item.api)} "
            f"rounds ({'/'.join(str(r.distance) for r in item.replays)})"
        )
        overhead = [r.wall_s - limit for r in item.api]
        overheads[item.name] = p50(overhead)
        service = [r.wall_s - r.runtime_s for r in item.api]
        print(
            f"    overhead (POST solve -> status event) - {limit} s: p50 {p50(overhead):.3f} s   "
            f"({'/'.join(f'{o:.3f}' for o in overhead)}); without PyVRP's overrun: p50 {p50(service):.3f} s"
        )
        print(
            "    split, p50 ms: POST->created_at "
            f"{ms(p50([r.created_at - r.sent_at for r in item.api]))} | pickup {ms(p50([r.pickup_s for r in item.api]))}"
            f" | worker around the search {ms(p50([r.finished_at - r.started_at - r.runtime_s for r in item.api]))}"
            f" | PyVRP past the limit {ms(p50([r.runtime_s - limit for r in item.api]))}"
            f" | finished_at->event {ms(p50([r.final_at - r.finished_at for r in item.api]))}"
            f"   (POST solve answered in {ms(p50([r.post_s for r in item.api]))})"
        )
    api_runs = [run for item in results.instances for run in item.api] + results.pickups
    pickups = [r.pickup_s for r in api_runs]
    client = [r.client_pickup_s for r in api_runs]
    print(
        f"  pickup, started_at - created_at from the database, {len(api_runs)} solves queued to an idle worker: "
        f"p50 {ms(p50(pickups))} ms, max {ms(max(pickups))} ms"
    )
    slowest = max(api_runs, key=lambda r: r.pickup_s)
    print(
        f"    ms: {', '.join(ms(p) for p in pickups)}   (the slowest one's POST solve answered in "
        f"{ms(slowest.post_s)} ms: its commit is inside the pickup)"
    )
    print(f"    POST sent -> started_at: p50 {ms(p50(client))} ms, max {ms(max(client))} ms")
    print(f"  matrix build, {MATRIX_STOPS} lat/lon stops: {matrix_s:.3f} s (median of 5)")
    print(f"  reasons pass, {MATRIX_STOPS} lat/lon stops: {reasons_s * 1000:.1f} ms CPU (median of 5)")
    for label, probe in (("idle", results.baseline), ("2 solves", results.loaded)):
        values = [s * 1000 for s in probe.seconds]
        print(
            f"  /health {label:<9} p50 {percentile(values, 50):6.1f} ms   p99 {percentile(values, 99):6.1f} ms   "
            f"max {max(values):7.1f} ms   ({len(values)} requests)"
        )
    tally = results.tally
    print(
        f"    load: two lanes of {SYNTHETIC_STOPS}-stop solves ({limit} s), in flight "
        f"{' and '.join(f'{b:.1f}' for b in tally.busy_s)} s of {tally.seconds:.1f} s; ended {dict(tally.statuses)} "
        "(the last ones cancelled: failed if before a first solution)"
    )
    health_p99 = percentile(results.loaded.seconds, 99) * 1000
    return [
        f"distance ratio (b)/(a)   {', '.join(f'{n} {r:.4f}' for n, r in ratios.items())}   "
        f"target <= {TARGET_RATIO}: {verdict(max(ratios.values()) <= TARGET_RATIO)}   ({'; '.join(notes)})",
        f"overhead p50             {', '.join(f'{n} {o:.3f} s' for n, o in overheads.items())}   "
        f"target <= {TARGET_OVERHEAD_S} s: {verdict(max(overheads.values()) <= TARGET_OVERHEAD_S)}",
        f"pickup latency p50       {ms(p50(pickups))} ms (max {ms(max(pickups))})   target <= {TARGET_PICKUP_MS:.0f} ms: "
        f"{verdict(p50(pickups) * 1000 <= TARGET_PICKUP_MS)}",
        f"matrix build {MATRIX_STOPS} stops  {matrix_s:.3f} s   target <= {TARGET_MATRIX_S:.0f} s: "
        f"{verdict(matrix_s <= TARGET_MATRIX_S)}",
        f"reasons pass {MATRIX_STOPS} stops  {reasons_s * 1000:.1f} ms = "
        f"{reasons_s / TARGET_OVERHEAD_S:.1%} of the {TARGET_OVERHEAD_S} s overhead budget   target <= "
        f"{TARGET_REASONS_SHARE:.0%}: {verdict(reasons_s <= TARGET_REASONS_SHARE * TARGET_OVERHEAD_S)}",
        f"/health p99, 2 solves    {health_p99:.1f} ms   target <= {TARGET_HEALTH_P99_MS:.0f} ms: "
        f"{verdict(health_p99 <= TARGET_HEALTH_P99_MS)}",
    ]


def run_sections(args: argparse.Namespace, sections: set[str]) -> tuple[list[str], Results | None]:
    """Run the chosen sections: (the summary lines, the solve section's results if it ran)."""
    from service.providers.dev import DevIssuer
    from tests.kit.instances import measure_matrix_build, measure_reasons

    matrix_s = measure_matrix_build(MATRIX_STOPS) if "solve" in sections else 0.0
    reasons_s = measure_reasons(MATRIX_STOPS) if "solve" in sections else 0.0
    app = "service.main:app"
    summary: list[str] = []
    results: Results | None = None
    # The warm section alone needs only the engine: no database, no server.
    if sections & {"checks", "solve", "vroom"}:
        with bench_database() as url:
            env, auth = app_environment(url, "bench-solve")
            token = DevIssuer.load_or_create(Path(env["DATA_DIR"]) / "dev-issuer.pem", DEV_ISSUER).mint(
                subject="bench-solve-b", email="bench-solve-b@example.com", ttl_seconds=3600
            )
            with uvicorn_server(app, env) as (port, pid):
                if "checks" in sections:
                    # Before any worker starts: the checks are the request path's alone.
                    print(f"bench_solve checks ({app}, pid {pid}; {args.rounds} rounds)", flush=True)
                    checks = asyncio.run(
                        measure_checks(args, port, auth, {"Authorization": f"Bearer {token}"})
                    )
                    summary += report_checks(checks)
                if "solve" in sections:
                    with solve_worker(env, slots=2) as (worker, _log):
                        print(
                            f"bench_solve ({app}, pid {pid}; worker pid {worker}, 2 slots; seed {args.seed}, time limit "
                            f"{args.time_limit} s, {args.rounds} rounds; /health every {HEALTH_INTERVAL_S * 1000:.0f} ms for "
                            f"{args.health_seconds:g} s)",
                            flush=True,
                        )
                        results = asyncio.run(measure(args, port, auth, url, worker))
                if "vroom" in sections:
                    with solve_worker(env, slots=1) as (worker, _log):
                        print(
                            f"bench_solve vroom ({app}, pid {pid}; worker pid {worker}; seed {args.seed}; levels "
                            f"{', '.join(map(str, VROOM_LEVELS))}, each within {VROOM_TIMEOUT_S} s)",
                            flush=True,
                        )
                        pairs = asyncio.run(measure_vroom(args, port, auth, url, worker))
                        summary += report_vroom(pairs, args.vroom_threads)
    if "warm" in sections:
        summary += measure_warm(args)
    if results is not None:
        summary = report(results, matrix_s, reasons_s) + summary
    return summary, results


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--time-limit", type=int, default=TIME_LIMIT_S, help="seconds, of every solve")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="per instance and side")
    parser.add_argument(
        "--pickups", type=int, default=PICKUPS, help="extra short solves for the pickup latency"
    )
    parser.add_argument("--health-seconds", type=float, default=HEALTH_SECONDS)
    parser.add_argument(
        "--sections",
        default="checks,solve,warm",
        help="comma list: checks (the solve request's check), solve (solving through the API), warm "
        "(re-solving from a plan against solving cold), vroom (VROOM at its exploration levels against "
        "the API given VROOM's wall time; not in the default list: it takes ~10 minutes)",
    )
    parser.add_argument(
        "--vroom-threads",
        type=int,
        default=1,
        help="VROOM's threads (default 1: the solver searches on one core too)",
    )
    args = parser.parse_args()
    sections = set(args.sections.split(","))
    if args.rounds < 1 or args.time_limit < 1 or args.vroom_threads < 1:
        parser.error("--rounds, --time-limit and --vroom-threads must be at least 1")
    if not sections or sections - {"checks", "solve", "warm", "vroom"}:
        parser.error("--sections: checks, solve, warm and/or vroom")

    try:
        summary, results = run_sections(args, sections)
    except BenchFailed as exc:
        print(f"bench_solve: {exc}", file=sys.stderr)
        return 1
    print("  summary")
    for line in summary:
        print(f"    {line}")
    probes = (results.baseline, results.loaded) if results is not None else ()
    wrong = [f"/health answered {dict(probe.statuses)}" for probe in probes if set(probe.statuses) != {200}]
    if wrong:
        print(f"bench_solve: {'; '.join(wrong)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
