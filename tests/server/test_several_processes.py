"""Two server processes and two solve workers on one database: what one process learns, the other
acts on; a solve queued anywhere is run by either worker, streamed from any server, and stopped by
a cancel sent to any of them."""

from __future__ import annotations

import asyncio
import copy
import signal
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.solver.example import EXAMPLE_REQUEST
from tests.kit import MockProvider
from tests.kit.instances import benchmark_request
from tests.kit.server import RunningServer, running_server
from tests.kit.waiting import eventually
from tests.kit.worker import WorkerProcess, solve_worker
from tests.solving.conftest import parse_events
from tests.webhooks.conftest import clerk_deleted_event, clerk_session_event, clerk_signed, clerk_user_event

API = "/api/v1"


@pytest.fixture(scope="module")
def clerk() -> MockProvider:
    return MockProvider.clerk()


# Both tests on one test process, one after the other, so they share one pair of servers (a start
# is about 1.5 CPU seconds of imports each); each test signs in as users of its own.
pytestmark = pytest.mark.xdist_group("several_processes")


@pytest.fixture(scope="module")
def servers(
    server_env: dict[str, str], clerk: MockProvider, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RunningServer, RunningServer]]:
    # Clerk with its PEM key (networkless: a subprocess cannot be answered by respx), beside dev.
    tmp_path = tmp_path_factory.mktemp("servers")
    env = {
        **server_env,
        "AUTH_PROVIDERS": "dev,clerk",
        "CLERK_ISSUER": clerk.issuer,
        "CLERK_JWT_KEY": clerk.public_pem(),
    }
    with ExitStack() as stack:
        a = stack.enter_context(running_server(env, tmp_path / "a.log"))
        b = stack.enter_context(running_server(env, tmp_path / "b.log"))
        yield a, b


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def me(server: RunningServer, token: str) -> int:
    async with httpx.AsyncClient() as http:
        return (await http.get(server.url(f"{API}/users/me"), headers=bearer(token))).status_code


async def webhook(server: RunningServer, payload: dict[str, Any]) -> None:
    body, headers = clerk_signed(payload)
    async with httpx.AsyncClient() as http:
        response = await http.post(server.url(f"{API}/webhooks/clerk"), content=body, headers=headers)
    assert response.status_code == 204, response.text


async def test_a_deletion_and_a_revocation_through_one_process_are_refused_by_the_other(
    servers: tuple[RunningServer, RunningServer], clerk: MockProvider
) -> None:
    a, b = servers
    deleted, revoked = clerk.token("user_mp_deleted"), clerk.token("user_mp_revoked", sid="sess_mp")
    for token in (deleted, revoked):
        assert await me(a, token) == await me(b, token) == 200  # both processes know (and cache) them
    await webhook(a, clerk_user_event("user_mp_deleted"))
    await webhook(a, clerk_deleted_event("user_mp_deleted"))
    await webhook(a, clerk_session_event("sess_mp", "user_mp_revoked"))
    # The process that received the webhooks refuses at once (it answered after its own listener).
    assert await me(a, deleted) == await me(a, revoked) == 401
    # The other hears it by NOTIFY, delivered at the same commit: its next requests refuse too.
    for token in (deleted, revoked):
        await eventually(lambda token=token: _refused(b, token), timeout=5)


async def _refused(server: RunningServer, token: str) -> bool:
    return await me(server, token) == 401


@pytest.fixture
async def workers(migrated_url: str, tmp_path: Path) -> Any:
    async with (
        solve_worker(migrated_url, tmp_path / "w1", slots=1) as first,
        solve_worker(migrated_url, tmp_path / "w2", slots=1) as second,
    ):
        yield first, second


async def test_solves_queued_on_one_server_run_on_either_worker_and_stream_from_the_other(
    servers: tuple[RunningServer, RunningServer],
    workers: tuple[WorkerProcess, WorkerProcess],
    server_env: dict[str, str],
) -> None:
    a, b = servers
    async with httpx.AsyncClient(timeout=60) as http:
        minted = await http.post(a.url("/dev/token"), json={"email": "multi@example.com"})
        auth = bearer(minted.json()["access_token"])
        session = (await http.post(a.url(f"{API}/sessions"), json={"name": "multi"}, headers=auth)).json()[
            "id"
        ]

        async def scenario(request: dict[str, Any]) -> str:
            created = await http.post(
                a.url(f"{API}/sessions/{session}/scenarios"),
                json={"name": "s", "request": request},
                headers=auth,
            )
            return str(created.json()["id"])

        quick = await scenario(copy.deepcopy(EXAMPLE_REQUEST))

        async def queue_quick() -> str:
            queued = await http.post(
                a.url(f"{API}/scenarios/{quick}/solve"), json={"time_limit_s": 2}, headers=auth
            )
            assert queued.status_code == 202, queued.text
            return str(queued.json()["id"])

        def picked_by(solution: str) -> list[WorkerProcess]:
            return [w for w in workers if solution in w.log()]

        async def picked(solution: str) -> None:
            async def logged() -> bool:
                return bool(picked_by(solution))

            await eventually(logged, timeout=60)

        # Two solves, one on each worker (slots=1 each). The worker holding the first is frozen
        # while the second is queued, so a loaded machine cannot let it finish the first and take
        # the second too before the other worker looks: the second can only go to the other one.
        solutions = [await queue_quick()]
        await picked(solutions[0])
        (holder,) = picked_by(solutions[0])
        holder.signal(signal.SIGSTOP)
        try:
            solutions.append(await queue_quick())
            await picked(solutions[1])
        finally:
            holder.signal(signal.SIGCONT)
        # Both streams open at once, while both solves run (2 s each), so each shows live progress.
        streams = await asyncio.gather(
            *(http.get(b.url(f"{API}/solutions/{s}/events"), headers=auth) for s in solutions)
        )
        for stream in streams:
            events = parse_events(stream.text)
            assert events[-1].data == {"status": "succeeded"}, events[-3:]
            assert any(event.event == "progress" for event in events)
        solvers = {w.pid for w in workers if any(s in w.log() for s in solutions)}
        assert len(solvers) == 2  # each worker ran one

        # A long solve, cancelled through the other server: whichever worker holds it stops.
        slow = await scenario(benchmark_request("RC208.vrp"))
        long_solve = (
            await http.post(b.url(f"{API}/scenarios/{slow}/solve"), json={"time_limit_s": 120}, headers=auth)
        ).json()["id"]

        async def feasible() -> bool:
            body = (await http.get(a.url(f"{API}/solutions/{long_solve}"), headers=auth)).json()
            return bool(body["progress"] and body["progress"]["feasible"])

        await eventually(feasible, timeout=60)
        assert (
            await http.post(a.url(f"{API}/solutions/{long_solve}/cancel"), headers=auth)
        ).status_code == 202
        final = parse_events(
            (await http.get(b.url(f"{API}/solutions/{long_solve}/events"), headers=auth)).text
        )
        assert final[-1].data == {"status": "cancelled"}
        body = (await http.get(a.url(f"{API}/solutions/{long_solve}"), headers=auth)).json()
        assert body["payload"]["feasible"] and body["payload"]["solver"]["runtime_s"] < 120
