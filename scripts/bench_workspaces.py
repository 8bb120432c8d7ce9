"""`make bench`: how long a membership change takes to reach another instance of the API.

Two API processes (uvicorn, one worker each) on one database. Alice creates a Routebook-managed
workspace on instance A and adds Bob; Bob reads the workspace's sessions on instance B (with
`Routebook-Workspace`) until B has his membership cached. Then, per round:

  removal   Alice removes Bob on A (`DELETE …/members/{bob}`, the store call and its NOTIFY in one
            transaction); meanwhile Bob asks B again and again (one keep-alive connection, one request
            at a time). Measured: from A's 204 to B's first 404 (B's cached membership dropped by the
            announcement), and from the moment the DELETE was sent.
  re-add    Alice adds Bob again on A; from A's 200 to B's first 200.

Printed: median, 95th percentile and maximum over the rounds. Target: removal ≤ 1 s (the figure
that matters is the maximum). Not a test: nothing here asserts a timing; an unexpected status stops
the run with exit 1.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx

from scripts.benchlib import DEV_ISSUER, app_environment, bench_database, median, percentile, uvicorn_server

ROUNDS = 30
TARGET_S = 1.0
API = "/api/v1"


class WrongStatus(Exception):
    pass


@dataclass
class Round:
    removal_after_ack_s: float
    removal_after_send_s: float
    readd_after_ack_s: float
    polls: int


def dev_token(data_dir: str, name: str) -> dict[str, str]:
    from service.providers.dev import DevIssuer

    token = DevIssuer.load_or_create(Path(data_dir) / "dev-issuer.pem", DEV_ISSUER).mint(
        subject=name, email=f"{name}@example.com", ttl_seconds=3600
    )
    return {"Authorization": f"Bearer {token}"}


def expect(response: httpx.Response, *statuses: int) -> httpx.Response:
    if response.status_code not in statuses:
        raise WrongStatus(
            f"{response.request.method} {response.request.url.path}: {response.status_code} {response.text}"
        )
    return response


async def until_status(
    client: httpx.AsyncClient, path: str, headers: dict[str, str], status: int
) -> tuple[float, int]:
    """(when B first answered `status`, how many requests it took)."""
    polls = 0
    while True:
        response = await client.get(path, headers=headers)
        polls += 1
        if response.status_code == status:
            return time.perf_counter(), polls
        expect(response, 200, 404)


async def run(
    port_a: int, port_b: int, alice: dict[str, str], bob: dict[str, str], rounds: int
) -> list[Round]:
    async with (
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port_a}", timeout=10) as a,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port_b}", timeout=10) as b,
    ):
        workspace = expect(
            await a.post(f"{API}/workspaces", json={"name": "bench"}, headers=alice), 201
        ).json()["id"]
        bob_id = expect(await b.get(f"{API}/users/me", headers=bob), 200).json()["id"]
        member = f"{API}/workspaces/{workspace}/members/{bob_id}"
        in_workspace = {**bob, "Routebook-Workspace": workspace}
        sessions = f"{API}/sessions?limit=1"
        expect(await a.put(member, json={"role": "member"}, headers=alice), 200)
        await until_status(b, sessions, in_workspace, 200)
        results = []
        for _ in range(rounds):
            for _ in range(3):  # B serves Bob from its cache
                expect(await b.get(sessions, headers=in_workspace), 200)
            poller = asyncio.create_task(until_status(b, sessions, in_workspace, 404))
            sent = time.perf_counter()
            expect(await a.delete(member, headers=alice), 204)
            acknowledged = time.perf_counter()
            refused_at, polls = await poller
            expect(await a.put(member, json={"role": "member"}, headers=alice), 200)
            added = time.perf_counter()
            admitted_at, _ = await until_status(b, sessions, in_workspace, 200)
            results.append(
                Round(
                    removal_after_ack_s=max(refused_at - acknowledged, 0.0),
                    removal_after_send_s=refused_at - sent,
                    readd_after_ack_s=max(admitted_at - added, 0.0),
                    polls=polls,
                )
            )
        return results


def describe(label: str, values: list[float]) -> str:
    return (
        f"  {label:<28} median {median(values) * 1000:7.1f} ms   p95 {percentile(values, 95) * 1000:7.1f} ms   "
        f"max {max(values) * 1000:7.1f} ms"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    args = parser.parse_args()
    with bench_database() as url, ExitStack() as stack:
        env, alice = app_environment(url, "bench-workspaces-alice")
        bob = dev_token(env["DATA_DIR"], "bench-workspaces-bob")
        port_a, pid_a = stack.enter_context(uvicorn_server("service.main:app", env))
        port_b, pid_b = stack.enter_context(uvicorn_server("service.main:app", env))
        print(
            f"bench_workspaces: membership propagation between two API instances (A pid {pid_a}, "
            f"B pid {pid_b}, one database), {args.rounds} rounds",
            flush=True,
        )
        try:
            rounds = asyncio.run(run(port_a, port_b, alice, bob, args.rounds))
        except WrongStatus as exc:
            print(f"bench_workspaces: {exc}", file=sys.stderr)
            return 1
    removal = [r.removal_after_ack_s for r in rounds]
    print(describe("removal, after A's 204", removal))
    print(describe("removal, after DELETE sent", [r.removal_after_send_s for r in rounds]))
    print(describe("re-add, after A's 200", [r.readd_after_ack_s for r in rounds]))
    print(f"  requests to B per removal: median {median([float(r.polls) for r in rounds]):.0f}")
    print(
        f"workspaces: removal propagation max={max(removal) * 1000:.1f} ms (target <= {TARGET_S * 1000:.0f} ms)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
