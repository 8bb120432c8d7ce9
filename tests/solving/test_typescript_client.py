"""The OpenAPI document types a real client: TypeScript types generated from a live server's
/openapi.json (openapi-typescript), a program using them through openapi-fetch (clients/typescript/)
checked by `tsc --strict`, then run against that server and a real worker.

npm packages come from the committed package-lock.json (integrity hashes, no registry addresses)
through `npm ci`, skipped when node_modules already holds that lock (a stamp of its hash). Without
`node` on the machine the test is skipped; with it, it runs.

Every test here holds an exclusive lock on clients/typescript/ for its whole run: test processes
and concurrent runs of the suite (CI runs four side by side in one checkout) share node_modules and
the generated files, and `npm ci` starts by deleting node_modules — another run's install must
never pull the compiler out from under a test.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import orjson
import pytest

from tests.kit.server import RunningServer, running_server
from tests.kit.worker import solve_worker

ROOT = Path(__file__).resolve().parents[2]
CLIENT = ROOT / "clients" / "typescript"
BIN = CLIENT / "node_modules" / ".bin"
STAMP = CLIENT / "node_modules" / ".routebook-lock-sha256"
LOCK = CLIENT / ".routebook-test.lock"
NODE = shutil.which("node")

pytestmark = pytest.mark.skipif(
    NODE is None, reason="node is not installed: the TypeScript client is not checked"
)

STOPS = {"kreuzberg", "mitte", "wedding"}  # the request in clients/typescript/src/solve.ts


async def _run(
    *command: str | Path, env: dict[str, str] | None = None, timeout: float = 300
) -> tuple[int, str]:
    """(exit code, stdout and stderr) of a command run in clients/typescript/."""
    process = await asyncio.create_subprocess_exec(
        *map(str, command),
        cwd=CLIENT,
        env={**os.environ, **(env or {})},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout)
    return int(process.returncode or 0), output.decode(errors="replace")


@asynccontextmanager
async def _installed() -> AsyncIterator[None]:
    """node_modules as the lock file says, held exclusively until the block ends."""
    with LOCK.open("a") as lock:
        # Blocking on the lock in a thread keeps this process's event loop (and its servers) alive.
        await asyncio.to_thread(fcntl.flock, lock, fcntl.LOCK_EX)
        try:
            await _install()
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


async def _install() -> None:
    digest = hashlib.sha256((CLIENT / "package-lock.json").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == digest:
        return
    npm = shutil.which("npm")
    assert npm is not None, "node is installed but npm is not"
    code, output = await _run(npm, "ci", "--no-audit", "--no-fund", timeout=600)
    assert code == 0, output[-3000:]
    STAMP.write_text(digest)


def _server_env(migrated_url: str, data_dir: Path) -> dict[str, str]:
    return {
        "ENVIRONMENT": "test",
        "DATABASE_URL": migrated_url,
        "AUTH_PROVIDERS": "dev",
        "DATA_DIR": str(data_dir),
        "LOG_LEVEL": "WARNING",
        "LOG_FORMAT": "json",
        "DB_POOL_SIZE": "2",
    }


async def _token(server: RunningServer) -> str:
    async with httpx.AsyncClient(timeout=30) as http:
        minted = await http.post(server.url("/dev/token"), json={"email": "typed-client@example.com"})
    assert minted.status_code == 200, minted.text
    return str(minted.json()["access_token"])


async def test_a_typed_client_generated_from_the_document_solves_against_a_live_server(
    migrated_url: str, data_dir: Path, tmp_path: Path, clean_db: object
) -> None:
    async with _installed():
        with running_server(_server_env(migrated_url, data_dir), tmp_path / "server.log") as server:
            async with solve_worker(migrated_url, tmp_path / "worker", slots=1):
                code, output = await _run(
                    BIN / "openapi-typescript",
                    server.url("/openapi.json"),
                    "-o",
                    "src/generated/api.d.ts",
                    "--default-non-nullable",
                    "false",
                )
                assert code == 0, output
                code, output = await _run(BIN / "tsc", "--strict", "-p", ".")
                assert code == 0, output  # the program type-checks against the live document
                token = await _token(server)
                code, output = await _run(
                    NODE or "node",
                    "dist/solve.js",
                    env={"ROUTEBOOK_URL": server.url(""), "ROUTEBOOK_TOKEN": token},
                    timeout=120,
                )
                assert code == 0, output
                result = orjson.loads(output.strip().splitlines()[-1])
                async with httpx.AsyncClient(timeout=30) as http:
                    read = await http.get(
                        server.url(f"/api/v1/solutions/{result['solution']}"),
                        headers={"Authorization": f"Bearer {token}"},
                    )
        assert result["status"] == "succeeded"
        assert result["stops"] and set(result["stops"]) <= STOPS
        assert (
            set(result["unassigned"])
            | {stop for route in read.json()["payload"]["routes"] for stop in route["stops"]}
            == STOPS
        )
        assert result["stops"] == read.json()["payload"]["routes"][0]["stops"]
        assert result["unassigned_required"] == read.json()["payload"]["unassigned_required"]
        assert result["scenario_version"] == "1"


async def test_the_generated_types_refuse_what_the_api_refuses(tmp_path: Path) -> None:
    """The types are not `any`: a request of the wrong shape and a status the API never sends fail
    `tsc --strict` (types generated here from the document of an app built in process)."""
    async with _installed():
        from service.config import Settings
        from service.main import create_app

        app = create_app(
            Settings(_env_file=None, environment="test", database_url="postgresql://localhost/x")
        )  # type: ignore[call-arg]
        document = tmp_path / "openapi.json"
        document.write_bytes(orjson.dumps(app.openapi()))
        generated = tmp_path / "api.d.ts"
        code, output = await _run(
            BIN / "openapi-typescript", document, "-o", generated, "--default-non-nullable", "false"
        )
        assert code == 0, output
        wrong = tmp_path / "wrong.ts"
        wrong.write_text(
            'import type { components } from "./api.js";\n'
            'export const request: components["schemas"]["SolveRequest"] = {\n'
            '  depots: [{ id: "d", location: { lat: 52.5, lon: 13.4 } }],\n'
            '  stops: [{ id: "s", location: { lat: 52.5, lon: 13.4 }, demand: "3" }],\n'
            '  vehicle_types: [{ id: "van", count: 1, capacity: 10, depot: "d" }],\n'
            "};\n"
            'export const status: components["schemas"]["SolutionSummary"]["status"] = "done";\n'
        )
        code, output = await _run(
            BIN / "tsc",
            "--strict",
            "--noEmit",
            "--skipLibCheck",
            "--module",
            "nodenext",
            "--moduleResolution",
            "nodenext",
            wrong,
        )
        assert code != 0
        assert "wrong.ts(4," in output and "wrong.ts(7," in output, output
