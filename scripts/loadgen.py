"""A load generator in its own process, cheap enough that a benchmark measures the server, not it.

Each connection sends one prebuilt HTTP/1.1 request (bytes built once, by the parent), waits for
the response and sends it again, until told to stop. The response is read by an asyncio Protocol
that parses only the status line and Content-Length and then counts the body's bytes as they come,
discarding them: no StreamReader buffer, no copy, no JSON. The request's bytes go to the transport
as they are (uvloop keeps a reference; nothing is copied). Per request the process does a few
Python calls whatever the body's size: moving the bytes is the kernel's work.

Why a process of its own, and why so frugal: in the benchmark's own process (asyncio's own loop,
each response gathered in a StreamReader buffer, whose 64 KiB limit pauses and resumes the socket
again and again, and copied out whole), each 5 MB GET of the issue's case took 1.6 to 1.9 times
as long (median) against the same server: the server sends a document in one of a few transfer
slots, and a slow reader holds its slot longer, so the generator, not the server, set the pace,
and the server was measured under less load than the issue's case.

Used by the parent as `async with SpawnedLoad(port, groups) as load:` — the child imports, connects
every connection, and says it is ready — then `await load.run(stop)` (a benchlib.BackgroundLoad)
starts the requests and, once `stop` is set, lets each connection finish its request in flight and
returns each group's tally: statuses (0: the connection dropped), seconds per request, and the
generator's own CPU seconds meanwhile.

The child speaks over its stdin and stdout: `go` and `stop` lines in, `ready` and one JSON tally
line out.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, cast

# -- the child --------------------------------------------------------------------------------------


class _Exchange(asyncio.Protocol):
    """One keep-alive connection; `send()` → the response's status once its body has all come."""

    def __init__(self, request: bytes) -> None:
        self.request = request
        self.head = bytearray()
        self.remaining = -1  # the body's bytes still to come; -1 while the head is being read
        self.status = 0
        self.done: asyncio.Future[int] | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        self.transport = cast(asyncio.Transport, transport)

    def send(self) -> asyncio.Future[int]:
        assert self.transport is not None
        self.head.clear()
        self.remaining = -1
        self.done = asyncio.get_running_loop().create_future()
        if self.transport.is_closing():
            self.done.set_result(0)
        else:
            self.transport.write(self.request)
        return self.done

    def data_received(self, data: bytes) -> None:
        if self.remaining < 0:
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            lines = bytes(self.head[:end]).split(b"\r\n")
            self.status = int(lines[0].split()[1])
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            self.remaining = length - (len(self.head) - end - 4)
            self.head.clear()
        else:
            self.remaining -= len(data)
        if self.remaining <= 0 and self.done is not None and not self.done.done():
            self.done.set_result(self.status)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_result(0)


async def _client(
    port: int, request: bytes, connected: asyncio.Queue[None], go: asyncio.Event, stop: asyncio.Event,
    tally: dict[str, Any],
) -> None:  # fmt: skip
    loop = asyncio.get_running_loop()
    try:
        transport, exchange = await loop.create_connection(lambda: _Exchange(request), "127.0.0.1", port)
    except OSError:
        tally["statuses"][0] += 1
        return
    finally:
        connected.put_nowait(None)
    try:
        await go.wait()
        while not stop.is_set():
            started = time.perf_counter()
            status = await exchange.send()
            tally["statuses"][status] += 1
            if status == 0:
                return
            tally["seconds"].append(time.perf_counter() - started)
    finally:
        transport.close()


async def _child(port: int, groups: list[tuple[str, bytes, int]]) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    go, stop, connected = asyncio.Event(), asyncio.Event(), asyncio.Queue[None]()
    tallies: dict[str, dict[str, Any]] = {
        label: {"statuses": Counter(), "seconds": []} for label, _, _ in groups
    }
    clients = [
        asyncio.ensure_future(_client(port, request, connected, go, stop, tallies[label]))
        for label, request, connections in groups
        for _ in range(connections)
    ]
    for _ in clients:
        await connected.get()  # connected, or counted as status 0
    print("ready", flush=True)
    await reader.readline()  # go
    cpu = time.process_time()
    go.set()
    await reader.readline()  # stop (or the parent gone)
    stop.set()
    await asyncio.gather(*clients, return_exceptions=True)
    cpu = time.process_time() - cpu
    groups_out = {
        label: {"statuses": dict(tally["statuses"]), "seconds": tally["seconds"]}
        for label, tally in tallies.items()
    }
    print(json.dumps({"groups": groups_out, "cpu_s": cpu}), flush=True)


def main() -> None:
    import uvloop

    # The parent's directory: plan.json ({port, groups: [[label, connections]]}) and each group's
    # request bytes in a file named by its position.
    folder = Path(sys.argv[1])
    plan = json.loads((folder / "plan.json").read_text())
    groups = [
        (label, (folder / str(index)).read_bytes(), connections)
        for index, (label, connections) in enumerate(plan["groups"])
    ]
    shutil.rmtree(folder)
    uvloop.run(_child(plan["port"], groups))


# -- the parent -------------------------------------------------------------------------------------


@dataclass
class Tally:
    statuses: Counter[int] = field(default_factory=Counter)
    seconds: list[float] = field(default_factory=list)


@dataclass
class GeneratorResult:
    tallies: dict[str, Tally]
    cpu_s: float  # the generator's CPU (user + system) between go and stop


class SpawnedLoad:
    """`groups`: (label, request bytes, connections) — see the module's docstring."""

    def __init__(self, port: int, groups: list[tuple[str, bytes, int]]) -> None:
        self.port = port
        self.groups = groups
        self.process: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def __aenter__(self) -> SpawnedLoad:
        folder = Path(tempfile.mkdtemp(prefix="loadgen-"))
        for index, (_, request, _) in enumerate(self.groups):
            (folder / str(index)).write_bytes(request)
        plan = {"port": self.port, "groups": [[label, connections] for label, _, connections in self.groups]}
        (folder / "plan.json").write_text(json.dumps(plan))
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "scripts.loadgen", str(folder),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert self.process.stdout is not None
        if await self.process.stdout.readline() != b"ready\n":
            raise SystemExit("the load generator did not start")
        return self

    async def run(self, stop: asyncio.Event) -> GeneratorResult:
        assert self.process is not None and self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(b"go\n")
        await self.process.stdin.drain()
        await stop.wait()
        self.process.stdin.write(b"stop\n")
        await self.process.stdin.drain()
        result = json.loads(await self.process.stdout.readline())
        return GeneratorResult(
            {
                label: Tally(Counter({int(k): v for k, v in tally["statuses"].items()}), tally["seconds"])
                for label, tally in result["groups"].items()
            },
            result["cpu_s"],
        )

    async def __aexit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.terminate()
            await self.process.wait()


if __name__ == "__main__":
    main()
