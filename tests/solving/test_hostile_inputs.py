"""No client input leaves a traceback in the log: the solve surface driven with hostile input, against
`python -m service` processes and a real worker, whose logs are read afterwards.

Each input gets its documented answer (never a 500); the point here is the log, where a traceback
means an exception escaped somewhere a client could make it happen again at will.
"""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import httpx
import orjson

from service.solver.example import EXAMPLE_REQUEST
from tests.kit.instances import benchmark_request, synthetic_request
from tests.kit.server import RunningServer
from tests.kit.sql import SqlAdmin
from tests.kit.waiting import eventually
from tests.kit.worker import WorkerProcess
from tests.planning.conftest import encode
from tests.solving.conftest import API, live_user, parse_events, tracebacks


async def _created(
    http: httpx.AsyncClient, server: RunningServer, path: str, body: Any, auth: dict[str, str]
) -> str:
    response = await http.post(server.url(f"{API}{path}"), json=body, headers=auth)
    assert response.status_code in (201, 202), response.text
    return str(response.json()["id"])


async def _stream_until_open(
    http: httpx.AsyncClient, server: RunningServer, path: str, headers: dict[str, str]
) -> asyncio.Task[bytes]:
    """The stream's whole body, read in a task that is returned once the response has started."""
    opened = asyncio.Event()

    async def read() -> bytes:
        async with http.stream("GET", server.url(f"{API}{path}"), headers=headers) as response:
            assert response.status_code == 200
            opened.set()
            return await response.aread()

    task = asyncio.create_task(read())
    await asyncio.wait_for(opened.wait(), 30)
    return task


async def _raw(server: RunningServer, request: bytes) -> bytes:
    """One request over a raw connection (for what httpx refuses to send), the response's head."""
    reader, writer = await server.connect()
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(4096), 30)
    finally:
        writer.close()


async def test_hostile_input_leaves_no_traceback_in_any_log(
    two_servers: tuple[RunningServer, RunningServer], worker: WorkerProcess, clean_db: SqlAdmin
) -> None:
    a, b = two_servers
    # Answers that were not what they should be; asserted after the logs, which are the point here.
    wrong: list[str] = []

    async def final_event(read: Any) -> str | None:
        """The last event of a stream read by `read()`, or None (noted) if the stream was cut."""
        try:
            events = parse_events((await read()).decode())
        except httpx.TransportError as exc:
            wrong.append(f"a stream was cut: {type(exc).__name__}")
            return None
        return orjson.dumps(events[-1].data).decode() if events and events[-1].event == "status" else None

    async with httpx.AsyncClient(timeout=60) as http:
        auth = await live_user(a, http)
        session = await _created(http, a, "/sessions", {"name": "hostile"}, auth)

        async def scenario(request: Any) -> str:
            return await _created(
                http, a, f"/sessions/{session}/scenarios", {"name": "s", "request": request}, auth
            )

        async def maybe_scenario(request: Any) -> str | None:
            """The new scenario's id, or None when the request was refused at creation (422)."""
            response = await http.post(
                a.url(f"{API}/sessions/{session}/scenarios"),
                content=encode({"name": "s", "request": request}),
                headers={**auth, "content-type": "application/json"},
            )
            assert response.status_code in (201, 422), response.text
            return str(response.json()["id"]) if response.status_code == 201 else None

        async def status(method: str, path: str, *expected: int, **kwargs: Any) -> int:
            """The answer's status; one that is a 5xx, or not among `expected` when given, is noted."""
            response = await http.request(
                method, a.url(f"{API}{path}"), headers={**auth, **kwargs.pop("headers", {})}, **kwargs
            )
            if response.status_code >= 500 or (expected and response.status_code not in expected):
                wrong.append(f"{method} {path} answered {response.status_code}: {response.text[:200]}")
            return response.status_code

        # Last-Event-ID that str.isdigit() accepts and int() refuses, on a final solution's stream.
        quick = await scenario(copy.deepcopy(EXAMPLE_REQUEST))
        pending = await _created(http, a, f"/scenarios/{quick}/solve", {"time_limit_s": 1}, auth)
        await status("POST", f"/solutions/{pending}/cancel")
        for value in (b"\xb2", b"\xb3", b"\xb9", b"\xc2\xb2", b"9" * 40, b"-1"):

            async def resumed(value: bytes = value) -> bytes:
                url = b.url(f"{API}/solutions/{pending}/events")
                headers = [(b"authorization", auth["Authorization"].encode()), (b"last-event-id", value)]
                return (await http.get(url, headers=headers)).content

            if await final_event(resumed) is None:
                wrong.append(f"Last-Event-ID {value!r}: no final status")

        # Solve options of the wrong JSON type, and bodies that are not what they claim.
        options: Any
        for options in ({"time_limit_s": "10"}, {"time_limit_s": True}, {"seed": 1.5}, {"seed": 2**70}, []):
            await status("POST", f"/scenarios/{quick}/solve", 422, json=options)
        for body in (b"\xff\xfe", b"{", b"[" * 5000 + b"]" * 5000, b'{"time_limit_s": NaN}'):
            await status(
                "POST",
                f"/scenarios/{quick}/solve",
                content=body,
                headers={"content-type": "application/json"},
            )

        # Requests that are no solvable request, small and large.
        floats = synthetic_request(300, explicit_matrix=True)
        floats["matrix"] = {
            "distances": [[cell + 0.5 for cell in row] for row in floats["matrix"]["distances"]]
        }
        deep: Any = {}
        for _ in range(900):
            deep = {"x": deep}
        for request in (floats, {"stops": [{"id": "s"}] * 5000}, {"depots": "many"}, deep, {"\u0000": 1}):
            target = await maybe_scenario(request)
            if target is not None:
                await status("POST", f"/scenarios/{target}/solve", 422, json={})

        # Headers and parameters out of shape.
        for if_match in ('"\u0663"', 'W/"1"', '"' + "9" * 40 + '"', ",".join(['"1"'] * 40)):
            await status(
                "PATCH", f"/scenarios/{quick}", json={"name": "x"}, headers={"If-Match": if_match.encode()}
            )
        for query in ("cursor=%FF%FE", "cursor=" + "A" * 600, "limit=\u00b2", "limit=1e3", "cursor=fQ"):
            await status("GET", f"/sessions/{session}/scenarios?{query}")
        await status("GET", f"/solutions/{pending}/events?ticket=" + "x" * 300)
        await status("GET", f"/solutions/{pending}/events?ticket=%00")
        for raw in (
            f"POST {API}/sessions HTTP/1.1\r\nHost: x\r\nContent-Length: \u00b2\r\n\r\n".encode("latin-1"),
            f"GET {API}/solutions/{pending}/events HTTP/1.1\r\nHost: x\r\nLast-Event-ID: \xb2\r\n\r\n".encode(
                "latin-1"
            ),
        ):
            if (await _raw(a, raw)).startswith(b"HTTP/1.1 5"):
                wrong.append(f"{raw[:60]!r} answered 5xx")

        # Deletions under open streams: a running solve's scenario, then a whole session.
        long_running = await scenario(benchmark_request("RC208.vrp"))
        running = await _created(http, a, f"/scenarios/{long_running}/solve", {"time_limit_s": 120}, auth)

        async def has_progress() -> bool:
            body = (await http.get(a.url(f"{API}/solutions/{running}"), headers=auth)).json()
            return bool(body["status"] == "running" and body["progress"])

        await eventually(has_progress, timeout=60)
        stream = await _stream_until_open(http, b, f"/solutions/{running}/events", auth)
        await status("DELETE", f"/scenarios/{long_running}", 204)
        if await final_event(lambda: asyncio.wait_for(stream, 30)) != '{"status":"deleted"}':
            wrong.append("a running solve's deletion did not end its stream with 'deleted'")
        doomed = await _created(http, a, f"/scenarios/{quick}/solve", {"time_limit_s": 1}, auth)
        stream = await _stream_until_open(http, b, f"/solutions/{doomed}/events", auth)
        await status("DELETE", f"/sessions/{session}", 204)
        if await final_event(lambda: asyncio.wait_for(stream, 30)) is None:
            wrong.append("a session's deletion did not end its solve's stream with a status")

        # A client that hangs up mid-stream.
        other = await live_user(a, http)
        session = await _created(http, a, "/sessions", {"name": "hang up"}, other)
        hang = await _created(
            http,
            a,
            f"/sessions/{session}/scenarios",
            {"name": "s", "request": copy.deepcopy(EXAMPLE_REQUEST)},
            other,
        )
        queued = await _created(http, a, f"/scenarios/{hang}/solve", {"time_limit_s": 30}, other)
        stream = await _stream_until_open(http, b, f"/solutions/{queued}/events", other)
        stream.cancel()
        await asyncio.gather(stream, return_exceptions=True)
        await http.post(a.url(f"{API}/solutions/{queued}/cancel"), headers=other)

    records = a.records() + b.records()
    assert tracebacks(records) == [], orjson.dumps(tracebacks(records)[:3]).decode()[:3000]
    assert not [r for r in records if r.get("level") in ("ERROR", "CRITICAL")], [
        r.get("msg") for r in records if r.get("level") in ("ERROR", "CRITICAL")
    ]
    assert "Traceback" not in worker.log()
    assert wrong == []
