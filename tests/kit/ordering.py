"""Longest tests first: a pytest plugin that remembers how long each test took and starts the slow
ones first in the next run, so the run does not end with one slow test alone on one core.

Every test process adds the durations of the tests it ran (setup, call and teardown) to
`.pytest_cache/routebook-durations.json`, under a lock (test processes and concurrent runs share
the file). The process that controls the run reads it once and hands what it read to the xdist
workers, which must all collect the same order; a run in one process (`-n 0`) keeps the order it
had, where nothing runs beside anything. A test known to take `SLOW_S` or more moves to the
front, the slowest band first; inside a band, and among all other tests, the shuffled order
(pytest-randomly) stays as it was. A test not seen before counts as fast.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

SLOW_S = 1.0
# Bands of duration, slowest first: tests in one band keep their shuffled order among themselves.
_BANDS = (16.0, 8.0, 4.0, 2.0, SLOW_S)
_KNOWN = "routebook_durations"
_known_key = pytest.StashKey[dict[str, float]]()
_id_key = pytest.StashKey[str]()
_spent_key = pytest.StashKey[dict[str, float]]()


def durations_path(config: pytest.Config) -> Path:
    return config.rootpath / ".pytest_cache" / "routebook-durations.json"


def _read(path: Path) -> dict[str, float]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): float(v) for k, v in data.items() if isinstance(v, int | float)}


def _band(seconds: float) -> int:
    """0 for the slowest band, len(_BANDS) for a test under SLOW_S (or not seen before)."""
    for index, bound in enumerate(_BANDS):
        if seconds >= bound:
            return index
    return len(_BANDS)


def pytest_configure(config: pytest.Config) -> None:
    workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
    if workerinput is not None:
        config.stash[_known_key] = workerinput.get(_KNOWN, {})
    else:
        config.stash[_known_key] = _read(durations_path(config))
    config.stash[_spent_key] = {}


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist, in the controller: every worker orders by the same durations, read once."""
    node.workerinput[_KNOWN] = node.config.stash[_known_key]


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> Iterator[None]:
    # Registered after pytest-randomly, this wrapper is entered before its and so resumes after it:
    # the items are shuffled by now. sorted() is stable: inside a band the shuffle stays.
    yield
    known = config.stash[_known_key]
    for item in items:
        item.stash[_id_key] = item.nodeid  # before xdist's loadgroup appends "@group" to it
    if not hasattr(config, "workerinput"):
        return
    items[:] = sorted(items, key=lambda item: _band(known.get(item.nodeid, 0.0)))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(
    item: pytest.Item, nextitem: pytest.Item | None
) -> Generator[None, object, object]:
    started = time.monotonic()
    try:
        return (yield)
    finally:
        key = item.stash.get(_id_key, item.nodeid)
        item.config.stash[_spent_key][key] = time.monotonic() - started


def pytest_sessionfinish(session: pytest.Session) -> None:
    spent = session.config.stash.get(_spent_key, {})
    if not spent:
        return
    path = durations_path(session.config)
    try:
        path.parent.mkdir(exist_ok=True)
        with (path.parent / "routebook-durations.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            merged = {**_read(path), **spent}
            partial = path.with_name(f"{path.name}.{os.getpid()}")
            partial.write_text(json.dumps(merged, indent=0, sort_keys=True))
            os.replace(partial, path)
    except OSError:
        pass  # a read-only checkout: the next run orders as it would have without this file
