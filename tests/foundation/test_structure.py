"""The house rules that keep the code changeable: no package imports one that imports it back; auth
stops at token → Claims; the solver engine knows no database, HTTP or job; pgqueuer lives behind one
module; only the infrastructure reaches the app's state; and tests assert order, never elapsed time.

Imports inside `if TYPE_CHECKING:` are for the type checker only and never run, so they are no
part of the import graph (service/deps.py names every domain's types that way)."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

SERVICE = Path(__file__).resolve().parents[2] / "service"


def _type_checking_only(tree: ast.AST) -> set[ast.AST]:
    """The import statements under `if TYPE_CHECKING:`."""
    found: set[ast.AST] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) in {"TYPE_CHECKING", "typing.TYPE_CHECKING"}:
            found.update(child for statement in node.body for child in ast.walk(statement))
    return found


def _imports(path: Path) -> list[str]:
    """The modules `path` imports at run time."""
    tree = ast.parse(path.read_text())
    skipped = _type_checking_only(tree)
    names: list[str] = []
    for node in ast.walk(tree):
        if node in skipped:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names += [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        elif isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
    return names


def _package_imports() -> dict[str, set[str]]:
    """service.<package> → the service.<package>s its modules import (top-level modules count as packages)."""
    graph: dict[str, set[str]] = defaultdict(set)
    for path in SERVICE.rglob("*.py"):
        parts = path.relative_to(SERVICE).with_suffix("").parts
        owner = parts[0]
        for name in _imports(path):
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


def test_the_solver_knows_no_database_http_or_job() -> None:
    """The engine is importable and testable alone: request -> PyVRP -> payload, in any process."""
    forbidden = (
        "service.solving",
        "service.planning",
        "service.users",
        "service.core.db",
        "fastapi",
        "asyncpg",
    )
    offenders = [
        f"{path.relative_to(SERVICE)}: {name}"
        for path in (SERVICE / "solver").rglob("*.py")
        for name in _imports(path)
        if name.startswith(forbidden) or name == "service.core"
    ]
    assert not offenders, offenders


def test_only_the_queue_module_touches_pgqueuer() -> None:
    touching = sorted(
        str(path.relative_to(SERVICE))
        for path in SERVICE.rglob("*.py")
        if any(name == "pgqueuer" or name.startswith("pgqueuer.") for name in _imports(path))
    )
    assert touching == ["solving/queue.py"]


def test_the_service_never_waits_with_asyncio_wait_for() -> None:
    """Python 3.11's wait_for returns normally when its task's cancel meets the end of what it waits
    for, and a loop around it then never stops (tests/outbound/test_dispatcher_stop.py shows it):
    asyncio.timeout blocks instead."""
    calling = sorted(
        f"{path.relative_to(SERVICE)}:{node.lineno}"
        for path in SERVICE.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Attribute) and node.attr == "wait_for"
    )
    assert calling == []


def test_only_the_infrastructure_reaches_the_apps_state() -> None:
    """Routes take typed dependencies (service/deps.py); nothing else reads `app.state` itself."""
    offenders = []
    for path in SERVICE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr == "state":
                owner = node.value
                name = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", "")
                if name == "app" and path.relative_to(SERVICE).parts[0] != "core":
                    offenders.append(f"{path.relative_to(SERVICE)}:{node.lineno}")
    assert not offenders, offenders


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


# -- tests assert order and outcome, never elapsed time ----------------------------------------------
TESTS = SERVICE.parent / "tests"
_CLOCKS = {"monotonic", "perf_counter", "time", "monotonic_ns", "perf_counter_ns", "time_ns"}
# Assertions that compare a duration with a bound on purpose, and why each is not a guess about speed.
ALLOWED_DURATION_ASSERTIONS: dict[str, str] = {}


def _reads_a_clock(node: ast.AST) -> bool:
    """`time.monotonic()`, `perf_counter()`, `loop.time()`…: a wall-clock reading."""
    for call in ast.walk(node):
        if isinstance(call, ast.Call):
            func = call.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name in _CLOCKS:
                return True
    return False


def _is_duration(node: ast.AST, durations: set[str]) -> bool:
    """A difference with a clock reading in it, or a name bound to one."""
    for part in ast.walk(node):
        if isinstance(part, ast.BinOp) and isinstance(part.op, ast.Sub) and _reads_a_clock(part):
            return True
        if isinstance(part, ast.Name) and part.id in durations:
            return True
    return False


def _duration_assertions(tree: ast.AST) -> list[tuple[str, int]]:
    found: list[tuple[str, int]] = []
    for function in ast.walk(tree):
        if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        durations: set[str] = set()
        for node in ast.walk(function):
            if isinstance(node, ast.Assign) and _is_duration(node.value, durations):
                durations.update(t.id for t in node.targets if isinstance(t, ast.Name))
        for node in ast.walk(function):
            if isinstance(node, ast.Assert):
                compares = [c for c in ast.walk(node.test) if isinstance(c, ast.Compare)]
                if any(_is_duration(c, durations) for c in compares):
                    found.append((function.name, node.lineno))
    return found


def test_no_test_asserts_elapsed_time() -> None:
    """A bound on how long something took fails on a slower machine, or hides a defect on a faster
    one: tests assert order and outcome (freeze a process, hold a fetch with an event, count calls)."""
    offenders = []
    for path in sorted(TESTS.rglob("*.py")):
        for function, line in _duration_assertions(ast.parse(path.read_text())):
            where = f"{path.relative_to(TESTS.parent)}:{line} ({function})"
            if f"{path.relative_to(TESTS.parent)}::{function}" not in ALLOWED_DURATION_ASSERTIONS:
                offenders.append(where)
    assert not offenders, "elapsed-time assertions:\n" + "\n".join(offenders)


def test_the_elapsed_time_check_recognises_the_usual_spellings() -> None:
    sample = ast.parse(
        "def t():\n"
        "    started = time.monotonic()\n"
        "    assert time.monotonic() - started < 1\n"
        "    elapsed = time.perf_counter() - started\n"
        "    assert elapsed <= 2\n"
        "    waited = loop.time() - started\n"
        "    assert ok and waited < 3\n"
        "    first, second = time.monotonic(), time.monotonic()\n"
        "    assert first <= second\n"  # an order of two readings: allowed
    )
    assert [line for _, line in _duration_assertions(sample)] == [3, 5, 7]
