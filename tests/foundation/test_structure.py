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
