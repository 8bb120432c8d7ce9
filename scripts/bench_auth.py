"""`make bench`: requests/s of GET /health against GET /api/v1/users/me with a valid RS256 token.

Both run on the same uvicorn process (one worker, uvloop, httptools), alternated in rounds so the
noise of a shared machine falls on both alike. The token is reused, as an SPA does within a
token's lifetime. Target: /users/me ≥ 0.8 × /health.
"""

from __future__ import annotations

import sys

from scripts.benchlib import app_environment, bench_database, load, median, uvicorn_server

ROUNDS = 6
SECONDS = 3.0
TARGET = 0.8


def main() -> int:
    with bench_database() as url:
        env, auth = app_environment(url, "bench-auth")
        with uvicorn_server("service.main:app", env) as (port, _pid):
            warm = load(port, "/api/v1/users/me", headers=auth, seconds=1.0)
            if warm.statuses != {200}:
                print(f"/users/me answered {sorted(warm.statuses)}; is the token valid?", file=sys.stderr)
                return 1
            load(port, "/health", seconds=1.0)
            health: list[float] = []
            me: list[float] = []
            for _ in range(ROUNDS):
                health.append(load(port, "/health", seconds=SECONDS).rps)
                me.append(load(port, "/api/v1/users/me", headers=auth, seconds=SECONDS).rps)
    # Each round measures both endpoints back to back, so its ratio is the least disturbed by the
    # drift of a shared machine; the median of those ratios is the figure to quote.
    ratio = median([m / h for m, h in zip(me, health, strict=True)])
    print(
        f"bench_auth (uvicorn, 1 worker, uvloop + httptools; median of {ROUNDS} alternated rounds of {SECONDS:.0f} s)"
    )
    print(
        f"  GET /health             {median(health):9.0f} req/s   rounds: {', '.join(f'{r:.0f}' for r in health)}"
    )
    print(f"  GET /api/v1/users/me    {median(me):9.0f} req/s   rounds: {', '.join(f'{r:.0f}' for r in me)}")
    print(f"  ratio users/me : health  {ratio:.2f}   (median of per-round ratios; target >= {TARGET})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
