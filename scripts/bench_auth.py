"""`make bench`: requests/s of GET /health against GET /api/v1/users/me with a valid RS256 token.

Both run on the same uvicorn process (one worker, uvloop, httptools), alternated in rounds so the
noise of a shared machine falls on both alike. The token is reused, as an SPA does within a
token's lifetime. Target: /users/me ≥ 0.9 × /health.

Beside req/s, each endpoint's CPU time per request in the server process (its user + system time
over the round, divided by the requests it answered): what the server spends, whatever else the
machine runs. Their quotient (/health's CPU per request over /users/me's) is the ratio req/s would
show on a quiet machine, where the server is the bottleneck.

`--against DIR`: the same rounds against a second server running the code of another checkout
(a worktree of main, say), alternated with this one's; both are printed, before and after side by
side.

`--metrics`: the same rounds against two processes side by side, one with Prometheus metrics
recording (PROMETHEUS_MULTIPROC_DIR set, as METRICS_PORT makes it) and one without, in alternated
order; both ratios are printed, and each endpoint's req/s with metrics on as a share of off.
Target: the ratio with metrics on at most 3 % below the ratio without.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from scripts.benchlib import ROOT, app_environment, bench_database, cpu_seconds, load, median, uvicorn_server

ROUNDS = 6
SECONDS = 3.0
TARGET = 0.9
METRICS_TARGET = 0.97  # ratio with metrics on / ratio with metrics off
HEALTH, ME = "/health", "/api/v1/users/me"


@dataclass
class Endpoint:
    rps: list[float] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)  # server CPU per request, per round


@dataclass
class Server:
    label: str
    port: int
    pid: int
    health: Endpoint = field(default_factory=Endpoint)
    me: Endpoint = field(default_factory=Endpoint)

    def round(self, auth: dict[str, str], seconds: float) -> None:
        for path, endpoint, headers in ((HEALTH, self.health, None), (ME, self.me, auth)):
            before = cpu_seconds(self.pid)
            result = load(self.port, path, headers=headers, seconds=seconds)
            endpoint.rps.append(result.rps)
            endpoint.cpu_us.append((cpu_seconds(self.pid) - before) / result.requests * 1e6)

    def ratio(self) -> float:
        # Each round measures both endpoints back to back, so its ratio is the least disturbed by the
        # drift of a shared machine; the median of those ratios is the figure to quote.
        return median([m / h for m, h in zip(self.me.rps, self.health.rps, strict=True)])

    def cpu_ratio(self) -> float:
        return median([h / m for m, h in zip(self.me.cpu_us, self.health.cpu_us, strict=True)])

    def report(self, heading: str | None) -> None:
        if heading:
            print(heading)
        for name, endpoint in (("GET /health          ", self.health), ("GET /api/v1/users/me ", self.me)):
            rounds = ", ".join(f"{r:.0f}" for r in endpoint.rps)
            print(
                f"  {name}   {median(endpoint.rps):9.0f} req/s   CPU {median(endpoint.cpu_us):6.1f} µs/request"
                f"   rounds: {rounds}"
            )
        extra = median([m - h for m, h in zip(self.me.cpu_us, self.health.cpu_us, strict=True)])
        print(
            f"  ratio users/me : health  {self.ratio():.2f}   (median of per-round ratios; target >= {TARGET})"
        )
        print(
            f"  by CPU per request       {self.cpu_ratio():.2f}   (/health's over /users/me's; "
            f"/users/me costs {extra:.1f} µs more)"
        )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--seconds", type=float, default=SECONDS, help="per round and endpoint")
    sides = parser.add_mutually_exclusive_group()
    sides.add_argument("--metrics", action="store_true", help="compare metrics off and on, side by side")
    sides.add_argument(
        "--against", type=Path, metavar="DIR", help="compare with the code of another checkout, side by side"
    )
    args = parser.parse_args()
    with bench_database() as url, ExitStack() as stack:
        env, auth = app_environment(url, "bench-auth")
        servers: list[Server] = []

        def start(label: str, server_env: dict[str, str], root: Path = ROOT) -> None:
            port, pid = stack.enter_context(uvicorn_server("service.main:app", server_env, root=root))
            servers.append(Server(label, port, pid))

        if args.metrics:
            directory = stack.enter_context(tempfile.TemporaryDirectory(prefix="routebook-bench-metrics-"))
            start("metrics off", env)
            start("metrics on", {**env, "PROMETHEUS_MULTIPROC_DIR": directory})
        elif args.against:
            start(f"this checkout ({ROOT})", env)
            start(f"against ({args.against.resolve()})", env, args.against.resolve())
        else:
            start("", env)
        for server in servers:
            warm = load(server.port, ME, headers=auth, seconds=1.0)
            if warm.statuses != {200}:
                print(f"/users/me answered {sorted(warm.statuses)}; is the token valid?", file=sys.stderr)
                return 1
            load(server.port, HEALTH, seconds=1.0)
        for index in range(args.rounds):
            # Which process goes first alternates: neither always gets the fresher machine.
            for server in servers if index % 2 == 0 else reversed(servers):
                server.round(auth, args.seconds)
    print(
        f"bench_auth (uvicorn, 1 worker, uvloop + httptools; median of {args.rounds} alternated rounds of "
        f"{args.seconds:g} s)"
    )
    for server in servers:
        server.report(f"  {server.label}:" if server.label else None)
    if args.metrics:
        off, on = servers
        for name, by_side in (("/health", (off.health, on.health)), ("/users/me", (off.me, on.me))):
            share = median([b / a for a, b in zip(by_side[0].rps, by_side[1].rps, strict=True)])
            print(f"  {name:<10} req/s with metrics on / off: {share:.3f}   (median of per-round shares)")
        change = on.ratio() / off.ratio()
        print(
            f"  ratio with metrics on / off: {change:.3f}   (target >= {METRICS_TARGET}: at most 3 % lower)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
