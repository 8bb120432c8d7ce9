"""`make bench` reads its instances from the repository: every path a benchmark names at module level
exists, so a move of test data cannot leave the benchmarks pointing at nothing (they run outside
the suite, and a missing file showed only there)."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = sorted(path.stem for path in (ROOT / "scripts").glob("bench_*.py"))


@pytest.mark.parametrize("name", BENCHMARKS)
def test_every_path_a_benchmark_names_exists(name: str) -> None:
    module = importlib.import_module(f"scripts.{name}")
    paths = {
        attribute: value
        for attribute, value in vars(module).items()
        if isinstance(value, Path) and value.is_relative_to(ROOT) and value != ROOT
    }
    missing = {attribute: str(value) for attribute, value in paths.items() if not value.exists()}
    assert not missing, missing


def test_the_solve_benchmark_names_its_instance() -> None:
    assert "bench_solve" in BENCHMARKS
    assert importlib.import_module("scripts.bench_solve").RC208.is_file()
