"""The README's first five minutes work as written: its shell blocks run, in order, in one bash
session against a real `python -m service` and a real solve worker on a freshly migrated database
— with nothing changed but the port (`PORT`, which the README reads) — and each step's answer
looks like the excerpt the README shows after it. So the README cannot drift from the service.

The blocks are the ```sh fences under "## The first five minutes"; a fence preceded by an HTML
comment starting `<!-- not run` (`make run` itself: this test starts its own server) is skipped.
The ```json and ```text fences after a block are its answers: a JSON excerpt must match an object
the block printed (the same members, and the same values but for ids, times, tokens and tickets);
each line of a text excerpt must be a line the block printed (numbers and ids aside; a line with
`…` stands for lines left out).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url

from service.core.db import asyncpg_connect_args
from service.core.migrations import upgrade
from tests.kit.server import running_server
from tests.kit.worker import solve_worker

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
SECTION = "## The first five minutes"
SKIP_MARK = "<!-- not run"
SCRIPT_TIMEOUT_S = 300

_FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z$")
_OPAQUE = re.compile(r"^[A-Za-z0-9_\-.]{32,}$")  # access tokens, stream tickets


@dataclass
class Step:
    script: str
    answers: list[tuple[str, str]] = field(default_factory=list)  # (language, excerpt)
    output: str = ""


def first_five_minutes(markdown: str) -> list[Step]:
    """The section's runnable blocks, each with the answer excerpts that follow it."""
    start = markdown.index(SECTION)
    end = markdown.find("\n## ", start + len(SECTION))
    section = markdown[start : end if end != -1 else len(markdown)]
    steps: list[Step] = []
    for fence in _FENCE.finditer(section):
        language, body = fence.group(1), fence.group(2)
        preceding = section[: fence.start()].rstrip("\n").rsplit("\n", 1)[-1]
        if language == "sh":
            if not preceding.startswith(SKIP_MARK):
                steps.append(Step(body))
        elif steps and language in {"json", "text"}:
            steps[-1].answers.append((language, body))
    return steps


def _normalised(line: str) -> str:
    return _NUMBER.sub("N", _UUID.sub("ID", line.rstrip()))


def _json_objects(text: str) -> list[Any]:
    """Every JSON object printed in `text`, wherever it starts (answers need not end a line)."""
    decoder = json.JSONDecoder()
    found, position = [], text.find("{")
    while position != -1:
        try:
            value, end = decoder.raw_decode(text, position)
        except json.JSONDecodeError:
            position = text.find("{", position + 1)
            continue
        found.append(value)
        position = text.find("{", end)
    return found


def _varies(value: Any) -> bool:
    """A value that differs on every run: an id, a time, a token, a ticket, or one cut short."""
    return isinstance(value, str) and bool(
        _UUID.fullmatch(value) or _TIMESTAMP.match(value) or _OPAQUE.match(value) or value.endswith("…")
    )


def _matches(excerpt: Any, printed: Any) -> bool:
    if not isinstance(printed, dict) or set(printed) != set(excerpt):
        return False
    return all(
        _varies(value)
        or (_matches(value, printed[key]) if isinstance(value, dict) else printed[key] == value)
        for key, value in excerpt.items()
    )


def check_answers(step: Step) -> None:
    printed = _json_objects(step.output)
    lines = {_normalised(line) for line in step.output.splitlines()}
    for language, excerpt in step.answers:
        if language == "json":
            shown = json.loads(excerpt)
            assert any(_matches(shown, value) for value in printed), (
                f"the README shows {excerpt!r} after\n{step.script}\nbut it printed\n{step.output}"
            )
        else:
            for line in excerpt.splitlines():
                if line.strip() and "…" not in line:
                    assert _normalised(line) in lines, (
                        f"the README shows the line {line!r} after\n{step.script}\nbut it printed\n{step.output}"
                    )


def bash_script(steps: list[Step]) -> str:
    """One session, stopping at the first command that fails or the first unset variable; each
    step's output between markers."""
    parts = ["set -eu"]
    for number, step in enumerate(steps):
        parts += [f"printf '\\n<<<step {number}>>>\\n'", step.script]
    parts.append("printf '\\n<<<end>>>\\n'")
    return "\n".join(parts) + "\n"


def split_output(output: str, steps: list[Step]) -> None:
    for number, step in enumerate(steps):
        begin = f"\n<<<step {number}>>>\n"
        after = f"\n<<<step {number + 1}>>>\n" if number + 1 < len(steps) else "\n<<<end>>>\n"
        step.output = output.split(begin, 1)[1].split(after, 1)[0]


async def _admin(url: str) -> asyncpg.Connection:
    args = asyncpg_connect_args(url)
    args.update(database="postgres", user=args["user"] or "postgres", timeout=10)
    return await asyncpg.connect(**args)


@pytest.fixture
async def fresh_database(migrated_url: str) -> AsyncIterator[str]:
    """A new database on the test server, migrated from nothing as `make run` migrates it."""
    name = f"{make_url(migrated_url).database}_readme_{uuid.uuid4().hex[:8]}"
    admin = await _admin(migrated_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = make_url(migrated_url).set(database=name).render_as_string(hide_password=False)
    try:
        await asyncio.to_thread(upgrade, url)
        yield url
    finally:
        admin = await _admin(migrated_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def _run_bash(script: str, port: int) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        "bash",
        "-c",
        script,
        cwd=ROOT,
        env={**os.environ, "PORT": str(port)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), SCRIPT_TIMEOUT_S)
    except TimeoutError:
        process.kill()
        output, _ = await process.communicate()
        return -1, output.decode(errors="replace")
    return int(process.returncode or 0), output.decode(errors="replace")


async def _solutions(base: str, email: str) -> list[dict[str, Any]]:
    """Every solution of the README's user, read through the API as that user."""
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        minted = await http.post("/dev/token", json={"email": email})
        assert minted.status_code == 200, minted.text
        http.headers["Authorization"] = f"Bearer {minted.json()['access_token']}"
        found = []
        for session in (await http.get("/api/v1/sessions")).json()["items"]:
            scenarios = await http.get(f"/api/v1/sessions/{session['id']}/scenarios")
            for scenario in scenarios.json()["items"]:
                listed = await http.get(f"/api/v1/scenarios/{scenario['id']}/solutions")
                for summary in listed.json()["items"]:
                    found.append((await http.get(f"/api/v1/solutions/{summary['id']}")).json())
        return found


def test_the_first_five_minutes_are_runnable_blocks_without_jq() -> None:
    steps = first_five_minutes(README.read_text())
    assert len(steps) >= 5, [step.script for step in steps]
    scripts = "\n".join(step.script for step in steps)
    assert not re.search(r"\bjq\b", scripts), "the README promises curl and Python only"
    assert "make run" not in scripts  # the server is the test's; `make run` is marked as not run
    assert all(step.answers for step in steps), "every step shows what its answer looks like"


async def test_the_first_five_minutes_run_as_written(fresh_database: str, tmp_path: Path) -> None:
    steps = first_five_minutes(README.read_text())
    env = {
        "ENVIRONMENT": "test",
        "DATABASE_URL": fresh_database,
        "AUTH_PROVIDERS": "dev",
        "DATA_DIR": str(tmp_path / "data"),
        "LOG_LEVEL": "WARNING",
        "LOG_FORMAT": "json",
        "DB_POOL_SIZE": "2",
    }
    with running_server(env, tmp_path / "server.log") as server:
        async with solve_worker(fresh_database, tmp_path / "worker", slots=1):
            code, output = await _run_bash(bash_script(steps), server.port)
            assert code == 0, f"a step failed (exit {code}); the session printed:\n{output}"
            users = await _users(fresh_database)
            assert len(users) == 1, users
            solutions = await _solutions(server.url(""), users[0])
    split_output(output, steps)
    for step in steps:
        check_answers(step)
    # The solve the README watches succeeded and its routes were read; the one it cancels while it
    # runs ended cancelled (a cancel that came too early or too late would have ended otherwise).
    assert sorted(s["status"] for s in solutions) == ["cancelled", "succeeded"], solutions
    solved = next(s for s in solutions if s["status"] == "succeeded")
    assert solved["payload"]["routes"]
    read = [
        step
        for step in steps
        if all(", ".join(route["stops"]) in step.output for route in solved["payload"]["routes"])
    ]
    assert read, f"no step printed the routes {solved['payload']['routes']}:\n{output}"


async def _users(url: str) -> list[str]:
    """The emails of every user in the database (the README signs in once)."""
    conn = await asyncpg.connect(**asyncpg_connect_args(url), timeout=10)
    try:
        return [row["email"] for row in await conn.fetch("SELECT email FROM users")]
    finally:
        await conn.close()
