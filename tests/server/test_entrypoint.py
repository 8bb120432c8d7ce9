"""`python -m service` bounds every wait and every count (real subprocesses, raw sockets).

Each bound is checked against a deadline far above it (the machine is shared and slow): without
the bound the wait would be unbounded, so a deadline failing means the bound is missing.
"""

from __future__ import annotations

import asyncio
import signal

import httpx
import orjson
import pytest

from tests.kit.server import RunningServer
from tests.kit.waiting import eventually, until
from tests.server.conftest import ServerFactory

SLACK = 20.0  # seconds on top of a bound before we call it missing
HEALTH = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), SLACK)
    status_line, *header_lines = head.decode().split("\r\n")[:-2]
    headers = {name.lower(): value.strip() for name, _, value in (h.partition(":") for h in header_lines)}
    body = await asyncio.wait_for(reader.readexactly(int(headers.get("content-length", "0"))), SLACK)
    return int(status_line.split()[1]), headers, body


async def closed_by_server(reader: asyncio.StreamReader, within: float) -> bool:
    """True when the server closes the connection (EOF or reset) within `within` seconds."""
    try:
        return await asyncio.wait_for(reader.read(), within) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


async def test_a_connection_that_never_sends_a_request_is_closed(serve: ServerFactory) -> None:
    with serve(TIMEOUT_REQUEST_HEADERS="1", TIMEOUT_KEEP_ALIVE="60") as server:
        silent, _ = await server.connect()
        dribbling, dribbler = await server.connect()
        dribbler.write(b"GET /health HTTP/1.1\r\nHost: 127")  # and never the rest
        await dribbler.drain()
        served, client = await server.connect()
        client.write(HEALTH)
        status, _, _ = await read_response(served)

        assert await closed_by_server(silent, 1 + SLACK)
        assert await closed_by_server(dribbling, 1 + SLACK)
        # A kept-alive connection is governed by TIMEOUT_KEEP_ALIVE (60 s), not the headers clock.
        assert status == 200
        client.write(HEALTH)
        assert (await read_response(served))[0] == 200
        client.close()


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"POST /api/v1/sessions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: twelve\r\n\r\n",
        "GET /api/v1/séssions HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode(),
        b"NOT HTTP AT ALL\r\n\r\n",
    ],
    ids=["content-length-not-a-number", "raw-non-ascii-url", "garbage"],
)
async def test_a_request_that_is_not_http_is_a_problem_400_and_the_server_goes_on(
    shared_server: RunningServer, request_bytes: bytes
) -> None:
    reader, writer = await shared_server.connect()
    writer.write(request_bytes)
    status, headers, body = await read_response(reader)
    assert status == 400 and headers["content-type"] == "application/problem+json"
    problem = orjson.loads(body)
    assert problem["status"] == 400 and problem["detail"] == "The request is not valid HTTP."
    assert headers["x-request-id"]
    assert await closed_by_server(reader, SLACK)
    async with httpx.AsyncClient() as http:
        assert (await http.get(shared_server.url("/health"))).status_code == 200


async def test_a_head_over_64_kib_is_a_problem_431_and_the_server_goes_on(serve: ServerFactory) -> None:
    with serve(TIMEOUT_REQUEST_HEADERS="60") as server:
        reader, writer = await server.connect()
        writer.write(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n")
        status, headers, body = await read_response(reader)
        assert status == 431 and headers["content-type"] == "application/problem+json"
        assert orjson.loads(body)["status"] == 431 and headers["x-request-id"]
        assert await closed_by_server(reader, SLACK)

        # A header that never ends is cut off, not buffered until the deadline (60 s here): the
        # server closes the connection, and writing 64 MiB to it fails long before the end.
        _, writer = await server.connect()
        writer.write(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Endless: ")
        written = 0
        try:
            for _ in range(256):
                writer.write(b"a" * 262_144)
                await asyncio.wait_for(writer.drain(), SLACK)
                written += 1
        except ConnectionError:
            pass
        assert written < 256
        writer.close()

        reader, writer = await server.connect()
        writer.write(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Fits: " + b"a" * 30_000 + b"\r\n\r\n")
        assert (await read_response(reader))[0] == 200
        writer.close()


async def test_over_the_concurrency_limit_is_a_problem_503_and_the_server_recovers(
    serve: ServerFactory,
) -> None:
    with serve(LIMIT_CONCURRENCY="2", TIMEOUT_KEEP_ALIVE="60") as server:
        # Two connections, each served once and kept alive: the limit is exact (uvicorn's own
        # check would already refuse the second).
        held = [await server.connect() for _ in range(2)]
        for reader, writer in held:
            writer.write(HEALTH)
            assert (await read_response(reader))[0] == 200

        reader, writer = await server.connect()
        writer.write(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Request-ID: over-the-limit\r\n\r\n")
        status, headers, body = await read_response(reader)
        assert status == 503
        assert headers["content-type"] == "application/problem+json"
        assert headers["retry-after"] == "1" and headers["connection"] == "close"
        assert headers["x-request-id"] == "over-the-limit"
        problem = orjson.loads(body)
        assert problem["status"] == 503 and "concurrency limit" in problem["detail"]
        assert await closed_by_server(reader, SLACK)
        assert [r["status"] for r in server.access("over-the-limit")] == [503]

        for _, held_writer in held:
            held_writer.close()
            await held_writer.wait_closed()

        async def recovered() -> bool:
            async with httpx.AsyncClient() as http:
                return (await http.get(server.url("/health"), timeout=5)).status_code == 200

        await eventually(recovered, timeout=SLACK)


async def test_sigterm_during_a_slow_upload_exits_within_the_grace(serve: ServerFactory) -> None:
    grace = 2
    with serve(TIMEOUT_GRACEFUL_SHUTDOWN=str(grace)) as server:
        reader, writer = await server.connect()
        writer.write(
            b"POST /api/v1/webhooks/clerk HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000000\r\nExpect: 100-continue\r\n\r\n"
        )
        # uvicorn answers 100 Continue when the app first waits for the body: the upload is in
        # the app now, and this client will never finish it.
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), SLACK)
        assert interim.startswith(b"HTTP/1.1 100 ")
        writer.write(b'{"type": "user.updated", "data": "')
        await writer.drain()

        server.process.send_signal(signal.SIGTERM)
        until(lambda: server.process.poll() is not None, timeout=grace + SLACK)
        # The cut-off upload is told to retry: a problem 503, not uvicorn's text/plain 500.
        status, headers, body = await read_response(reader)
        assert status == 503 and headers["content-type"] == "application/problem+json"
        assert headers["retry-after"] == "1" and orjson.loads(body)["status"] == 503

        log = server.log_text()
        assert "timeout graceful shutdown exceeded" in log
        assert "Application shutdown complete." in log  # the lifespan closed the pools
        writer.close()


async def test_several_workers_serve_and_stop_together(serve: ServerFactory) -> None:
    with serve(args=("--workers", "2")) as server:
        until(lambda: server.log_text().count("Application startup complete.") == 2, timeout=SLACK * 3)
        assert (await asyncio.to_thread(httpx.get, server.url("/health"))).status_code == 200
        server.process.send_signal(signal.SIGTERM)
        until(lambda: server.process.poll() is not None, timeout=SLACK * 2)
        assert server.log_text().count("Application shutdown complete.") == 2


def dev_token_status(server: RunningServer, forwarded_for: str) -> int:
    response = httpx.post(
        server.url("/dev/token"),
        json={"email": "proxy@example.com"},
        headers={"X-Forwarded-For": forwarded_for},
    )
    return response.status_code


async def test_forwarded_headers_are_believed_only_when_enabled(serve: ServerFactory) -> None:
    # /dev/token mints for loopback clients only: it shows which client address the app saw.
    with serve() as server:
        assert dev_token_status(server, "203.0.113.9") == 200  # the header is ignored by default
    with serve(PROXY_HEADERS="true", FORWARDED_ALLOW_IPS="127.0.0.1") as server:
        assert dev_token_status(server, "203.0.113.9") == 403  # from a trusted proxy: believed
        assert dev_token_status(server, "127.0.0.1") == 200
    with serve(PROXY_HEADERS="true", FORWARDED_ALLOW_IPS="192.0.2.1") as server:
        assert dev_token_status(server, "203.0.113.9") == 200  # from an untrusted peer: ignored
