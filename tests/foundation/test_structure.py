"""The house rules that keep the code changeable: no package imports one that imports it back, and
auth stops at token → Claims."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

SERVICE = Path(__file__).resolve().parents[2] / "service"


def _package_imports() -> dict[str, set[str]]:
    """service.<package> → the service.<package>s its modules import (top-level modules count as packages)."""
    graph: dict[str, set[str]] = defaultdict(set)
    for path in SERVICE.rglob("*.py"):
        parts = path.relative_to(SERVICE).with_suffix("").parts
        owner = parts[0]
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            for name in names:
                if name.startswith("service."):
                    target = name.split(".")[1]
                    if target != owner:
                        graph[owner].add(target)
    return graph


def test_no_package_imports_one_that_imports_it_back() -> None:
    graph = _package_imports()
    packages = {p.name for p in SERVICE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    cycles = []

    def visit(start: str, node: str, path: list[str]) -> None:
        for nxt in graph.get(node, ()):
            if nxt == start:
                cycles.append([*path, nxt])
            elif nxt not in path and nxt in packages:
                visit(start, nxt, [*path, nxt])

    for package in sorted(packages):
        visit(package, package, [package])
    assert not cycles, cycles


def test_auth_imports_nothing_of_users_or_providers() -> None:
    assert not _package_imports()["auth"] & {"users", "providers", "planning", "webhooks", "solving"}


async def test_mounted_routers_keep_their_prefix_and_dependencies() -> None:
    from fastapi import APIRouter, Depends, FastAPI, HTTPException
    from httpx import ASGITransport, AsyncClient

    from service.main import mount

    async def gate() -> None:
        raise HTTPException(status_code=401)

    router = APIRouter(prefix="/api/x", dependencies=[Depends(gate)])

    @router.get("/thing")
    async def thing() -> dict[str, str]:
        return {"ok": "yes"}

    open_router = APIRouter(prefix="/open")

    @open_router.get("/thing")
    async def open_thing() -> dict[str, str]:
        return {"ok": "yes"}

    app = FastAPI()
    mount(app, router)
    mount(app, open_router)
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://t") as client:
        assert (await client.get("/api/x/thing")).status_code == 401  # the router's dependency ran
        assert (await client.get("/open/thing")).json() == {"ok": "yes"}
        assert (await client.get("/thing")).status_code == 404  # the prefix is kept
    assert {"/api/x/thing", "/open/thing"} <= set(app.openapi()["paths"])
