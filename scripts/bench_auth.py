"""`make bench`: requests/s of GET /health against GET /api/v1/users/me with a valid RS256 token.

Both run on the same uvicorn process (one worker, uvloop, httptools), alternated in rounds so the
noise of a shared machine falls on both alike. The token is reused, as an SPA does within a
token's lifetime. Target: /users/me ≥ 0.8 × /health.

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

from scripts.benchlib import app_environment, bench_database, load, median, uvicorn_server

ROUNDS = 6
SECONDS = 3.0
TARGET = 0.8
METRICS_TARGET = 0.97  # ratio with metrics on / ratio with metrics off


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--seconds", type=float, default=SECONDS, help="per round and endpoint")
    parser.add_argument("--metrics", action="store_true", help="compare metrics off and on, side by side")
    args = parser.parse_args()
    sides = ("off", "on") if args.metrics else ("off",)
    health: dict[str, list[float]] = {side: [] for side in sides}
    me: dict[str, list[float]] = {side: [] for side in sides}
    with bench_database() as url, ExitStack() as stack:
        env, auth = app_environment(url, "bench-auth")
        ports: dict[str, int] = {}
        for side in sides:
            side_env = env
            if side == "on":
                directory = stack.enter_context(
                    tempfile.TemporaryDirectory(prefix="routebook-bench-metrics-")
                )
                side_env = {**env, "PROMETHEUS_MULTIPROC_DIR": directory}
            ports[side], _pid = stack.enter_context(uvicorn_server("service.main:app", side_env))
        for port in ports.values():
            warm = load(port, "/api/v1/users/me", headers=auth, seconds=1.0)
            if warm.statuses != {200}:
                print(f"/users/me answered {sorted(warm.statuses)}; is the token valid?", file=sys.stderr)
                return 1
            load(port, "/health", seconds=1.0)
        for index in range(args.rounds):
            # Which process goes first alternates: neither always gets the fresher machine.
            for side in sides if index % 2 == 0 else tuple(reversed(sides)):
                health[side].append(load(ports[side], "/health", seconds=args.seconds).rps)
                me[side].append(load(ports[side], "/api/v1/users/me", headers=auth, seconds=args.seconds).rps)
    print(
        f"bench_auth (uvicorn, 1 worker, uvloop + httptools; median of {args.rounds} alternated rounds of "
        f"{args.seconds:g} s)"
    )
    # Each round measures both endpoints back to back, so its ratio is the least disturbed by the
    # drift of a shared machine; the median of those ratios is the figure to quote.
    ratios: dict[str, float] = {}
    for side in sides:
        ratios[side] = median([m / h for m, h in zip(me[side], health[side], strict=True)])
        label = f"  metrics {side}:" if args.metrics else ""
        if label:
            print(label)
        for name, values in (("GET /health          ", health[side]), ("GET /api/v1/users/me ", me[side])):
            print(f"  {name}   {median(values):9.0f} req/s   rounds: {', '.join(f'{r:.0f}' for r in values)}")
        print(
            f"  ratio users/me : health  {ratios[side]:.2f}   (median of per-round ratios; target >= {TARGET})"
        )
    if args.metrics:
        for name, by_side in (("/health", health), ("/users/me", me)):
            share = median([on / off for on, off in zip(by_side["on"], by_side["off"], strict=True)])
            print(f"  {name:<10} req/s with metrics on / off: {share:.3f}   (median of per-round shares)")
        change = ratios["on"] / ratios["off"]
        print(
            f"  ratio with metrics on / off: {change:.3f}   (target >= {METRICS_TARGET}: at most 3 % lower)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
