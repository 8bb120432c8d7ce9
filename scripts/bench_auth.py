"""`make bench`: requests/s of GET /health against GET /api/v1/users/me with a valid RS256 token.

Both run on the same uvicorn process (one worker, uvloop, httptools), alternated in rounds so the
noise of a shared machine falls on both alike. The token is reused, as an SPA does within a
token's lifetime. Target: /users/me ≥ 0.75 × /health.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from scripts.benchlib import bench_database, load, median, uvicorn_server
from service.auth.dev_issuer import DevIssuer

ROUNDS = 3
SECONDS = 4.0
TARGET = 0.75
DEV_ISSUER = "urn:routebook:dev"


def main() -> int:
    data_dir = Path(tempfile.mkdtemp(prefix="routebook-bench-auth-"))
    with bench_database() as url:
        env = {
            "ENVIRONMENT": "development",
            "DATABASE_URL": url,
            "AUTH_PROVIDERS": "dev",
            "DEV_ISSUER": DEV_ISSUER,
            "DATA_DIR": str(data_dir),
            "LOG_LEVEL": "WARNING",
            "LOG_FORMAT": "json",
        }
        issuer = DevIssuer.load_or_create(data_dir / "dev-issuer.pem", DEV_ISSUER)
        token = issuer.mint(subject="bench-user", email="bench@example.com", ttl_seconds=3600)
        auth = {"Authorization": f"Bearer {token}"}
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
    ratio = median(me) / median(health)
    print(f"bench_auth (uvicorn, 1 worker, uvloop + httptools; median of {ROUNDS} rounds of {SECONDS:.0f} s)")
    print(
        f"  GET /health             {median(health):9.0f} req/s   rounds: {', '.join(f'{r:.0f}' for r in health)}"
    )
    print(f"  GET /api/v1/users/me    {median(me):9.0f} req/s   rounds: {', '.join(f'{r:.0f}' for r in me)}")
    print(f"  ratio users/me : health  {ratio:.2f}   (target >= {TARGET})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
