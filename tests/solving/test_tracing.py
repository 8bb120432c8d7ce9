"""Traces: one trace from `POST …/solve` through the queue into the worker and its solver process,
recorded by the SDK's in-memory exporter from a real app, a real PostgreSQL and a real solve (the
worker runs in this process, so one exporter sees both sides); and nothing recorded that a client
sent. With no OTEL_* variables, nothing is installed at all."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest
from fastapi import FastAPI
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from service.config import Settings
from service.core import tracing
from service.core.db import Database
from service.core.observability import JsonFormatter
from service.main import create_app
from service.solver.example import EXAMPLE_REQUEST
from service.solving.worker import SolveWorker
from tests.conftest import AppFactory, client_for
from tests.kit.worker import ROOT, solve_worker
from tests.planning.conftest import Caller, sign_in
from tests.solving.conftest import new_scenario, until_status

SOLVE_ROUTE = "/api/v1/scenarios/{scenario_id}/solve"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing installed for this test, every span exported as it ends."""
    exporter = InMemorySpanExporter()
    tracing.install(exporter, service_name="routebook-test", batch=False)
    try:
        yield exporter
    finally:
        tracing.uninstall()


@pytest.fixture
async def app(spans: InMemorySpanExporter, app_factory: AppFactory) -> AsyncIterator[FastAPI]:
    """The app, built once tracing is on (the factory adds the tracing middleware only then)."""
    async with app_factory() as application:
        yield application


@contextlib.asynccontextmanager
async def in_process_worker(settings: Settings) -> AsyncIterator[SolveWorker]:
    """A solve worker on this event loop: its spans go to the same exporter as the app's."""
    db = Database.from_settings(settings)
    worker = SolveWorker(settings, db)
    running = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        worker.stop()
        await running
        await db.close()


def _traced_request(tag: str) -> dict[str, Any]:
    """The example request, its stops renamed to ids no span could hold by chance."""
    request = copy.deepcopy(EXAMPLE_REQUEST)
    for stop in request["stops"]:
        stop["id"] = f"{stop['id']}-{tag}"
    return request


def _one(found: list[ReadableSpan], name: str) -> ReadableSpan:
    named = [span for span in found if span.name == name]
    assert len(named) == 1, [span.name for span in found]
    return named[0]


def _parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def _recorded_text(span: ReadableSpan) -> list[str]:
    """Everything a span would export as text: its name, attributes, events, links, resource."""
    texts = [span.name, *(str(value) for value in (span.attributes or {}).values())]
    texts += [str(value) for value in span.resource.attributes.values()]
    for event in span.events:
        texts += [event.name, *(str(value) for value in (event.attributes or {}).values())]
    for link in span.links:
        texts += [str(value) for value in (link.attributes or {}).values()]
    return texts


async def test_a_solve_is_one_trace_from_the_request_to_the_solver_process(
    app: FastAPI,
    spans: InMemorySpanExporter,
    settings_for: Callable[..., Settings],
) -> None:
    tag = uuid.uuid4().hex[:12]
    async with client_for(app) as http:
        alice: Caller = await sign_in(app, http, f"tracer-{tag}")
        request = _traced_request(tag)
        scenario_id = await new_scenario(alice, request)
        async with in_process_worker(settings_for(solve_workers=1)):
            queued = await alice.call("POST", f"/scenarios/{scenario_id}/solve", {"time_limit_s": 1})
            assert queued.status_code == 202, queued.text
            solution_id = queued.json()["id"]
            solved = await until_status(alice, solution_id, "succeeded", "failed", "cancelled")
        assert solved["status"] == "succeeded", solved
    tracing.flush()
    found = list(spans.get_finished_spans())

    server = _one(found, f"POST {SOLVE_ROUTE}")
    enqueue = _one(found, "enqueue solve")
    solve = _one(found, "solve")
    process = _one(found, "solver process")
    write = _one(found, "write result")

    assert server.kind is SpanKind.SERVER
    assert server.attributes is not None
    assert server.attributes["http.route"] == SOLVE_ROUTE
    assert server.attributes["http.request.method"] == "POST"
    assert server.attributes["http.response.status_code"] == 202
    # The chain: request → enqueue → (the queue) → solve → its solver process and its final write.
    assert server.parent is None
    assert _parent_of(enqueue) == server.context.span_id
    assert _parent_of(solve) == enqueue.context.span_id
    assert solve.parent is not None and solve.parent.is_remote  # carried by the job, not in memory
    assert _parent_of(process) == solve.context.span_id
    assert _parent_of(write) == solve.context.span_id
    trace_id = server.context.trace_id
    assert {span.context.trace_id for span in (enqueue, solve, process, write)} == {trace_id}
    assert (enqueue.kind, solve.kind) == (SpanKind.PRODUCER, SpanKind.CONSUMER)
    assert solve.attributes is not None and solve.attributes["routebook.solution.id"] == solution_id
    assert solve.attributes["routebook.solve.outcome"] == "succeeded"
    # The process's span is its own timing, within the solve's.
    assert process.attributes is not None and process.attributes["routebook.solver.reported"] is True
    assert solve.start_time is not None and process.start_time is not None
    assert solve.end_time is not None and process.end_time is not None
    assert solve.start_time <= process.start_time <= process.end_time <= solve.end_time
    assert write.attributes is not None and write.attributes["routebook.write.accepted"] is True

    # Database spans from the asyncpg instrumentation, inside the request and the solve.
    statements = [span for span in found if span.kind is SpanKind.CLIENT]
    assert any(_parent_of(span) == server.context.span_id for span in statements)
    assert any(_parent_of(span) == enqueue.context.span_id for span in statements)
    assert any(_parent_of(span) == write.context.span_id for span in statements)
    # Only spans of some trace: the worker's idle polls and heartbeats are not exported.
    assert all(span.parent is not None for span in statements)

    # Nothing a client sent: not the token, not the e-mail, no value of the request document.
    token = alice.headers["Authorization"].removeprefix("Bearer ")
    secrets = {token, f"tracer-{tag}@example.com", tag, *(stop["id"] for stop in request["stops"])}
    secrets |= {str(alice.user_id)}  # the caller's id is written into SQL text: masked there
    leaks = [
        (span.name, text)
        for span in found
        for text in _recorded_text(span)
        if any(secret in text for secret in secrets)
    ]
    assert not leaks, leaks
    # Server spans are named by route templates: no raw path (a scenario's id) in any name.
    assert not [span.name for span in found if scenario_id in span.name or solution_id in span.name]


async def test_a_server_span_names_the_route_template_and_a_404_only_its_method(
    app: FastAPI, spans: InMemorySpanExporter
) -> None:
    async with client_for(app) as http:
        alice = await sign_in(app, http, "alice")
        missing = uuid.uuid4()
        assert (await alice.call("GET", f"/scenarios/{missing}")).status_code == 404
        assert (await http.get("/no/such/path?secret=x")).status_code == 404
    tracing.flush()
    servers = [span for span in spans.get_finished_spans() if span.kind is SpanKind.SERVER]
    names = [span.name for span in servers]
    assert "GET /api/v1/scenarios/{scenario_id}" in names
    assert names[-1] == "GET"  # no route matched: the method alone, no http.route
    assert servers[-1].attributes is not None and "http.route" not in servers[-1].attributes
    assert not [span for span in servers if any(str(missing) in text for text in _recorded_text(span))]


async def test_a_worker_process_continues_the_trace_its_job_carries(
    app: FastAPI, spans: InMemorySpanExporter, migrated_url: str, tmp_path: Path
) -> None:
    """The real thing across processes: `python -m service.worker`, tracing to its console, picks up
    the traceparent the request put in the job."""
    async with client_for(app) as http:
        alice = await sign_in(app, http, "alice")
        scenario_id = await new_scenario(alice, EXAMPLE_REQUEST)
        async with solve_worker(migrated_url, tmp_path, OTEL_TRACES_EXPORTER="console") as worker:
            queued = await alice.call("POST", f"/scenarios/{scenario_id}/solve", {"time_limit_s": 1})
            assert queued.status_code == 202, queued.text
            await until_status(alice, queued.json()["id"], "succeeded")
        # Stopped (SIGTERM): the worker flushed its spans to its output as it exited.
    tracing.flush()
    enqueue = _one(list(spans.get_finished_spans()), "enqueue solve")
    printed = worker.log()
    assert f'"trace_id": "0x{enqueue.context.trace_id:032x}"' in printed
    assert f'"parent_id": "0x{enqueue.context.span_id:016x}"' in printed  # the solve's parent
    for name in ("solve", "solver process", "write result"):
        assert f'"name": "{name}"' in printed
    assert '"service.name": "routebook-worker"' in printed


@pytest.mark.parametrize("module", ["service", "service.worker"])
def test_an_unsupported_exporter_stops_the_process_at_start(module: str, migrated_url: str) -> None:
    environ = {**os.environ, "DATABASE_URL": migrated_url, "ENVIRONMENT": "test", "AUTH_PROVIDERS": "dev"}
    environ["OTEL_TRACES_EXPORTER"] = "zipkin"
    ended = subprocess.run(
        [sys.executable, "-m", module], env=environ, cwd=ROOT, capture_output=True, timeout=60, check=False
    )
    assert ended.returncode != 0
    assert b"OTEL_TRACES_EXPORTER: zipkin is not supported" in ended.stderr, ended.stderr[-2000:]


def test_a_json_log_line_names_the_trace_it_was_written_in(spans: InMemorySpanExporter) -> None:
    record = logging.makeLogRecord({"msg": "inside", "levelname": "INFO", "name": "routebook"})
    with tracing.span("work") as span:
        inside = orjson.loads(JsonFormatter().format(record))
    assert inside["trace_id"] == format(span.get_span_context().trace_id, "032x")
    assert "trace_id" not in orjson.loads(JsonFormatter().format(record))  # outside any span


def _without_otel(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [name for name in os.environ if name.startswith("OTEL_")]:
        monkeypatch.delenv(name)


async def test_with_no_otel_variables_nothing_is_installed(
    monkeypatch: pytest.MonkeyPatch, settings: Settings, clean_db: object
) -> None:
    _without_otel(monkeypatch)
    assert not tracing.enabled()
    app = create_app(settings)
    assert not tracing.enabled()
    middleware = [entry.cls for entry in app.user_middleware]
    assert tracing.TracingMiddleware not in middleware
    assert not tracing.configure_from_env("routebook-worker")  # the worker's start, likewise
    # asyncpg is not patched: its methods are its own functions, not the instrumentation's wrappers.
    assert not hasattr(asyncpg.Connection.fetch, "__wrapped__")
    assert tracing.inject() == {}
    with tracing.span("anything") as span:
        assert not span.is_recording()
    async with app.router.lifespan_context(app), client_for(app) as http:
        assert (await http.get("/health")).status_code == 200
    assert not tracing.enabled()


@pytest.mark.parametrize(
    ("environ", "exporters"),
    [
        ({}, []),
        ({"OTEL_SERVICE_NAME": "routebook"}, []),  # a name alone sends nothing anywhere
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, ["otlp"]),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, ["otlp"]),
        ({"OTEL_TRACES_EXPORTER": "console"}, ["console"]),
        ({"OTEL_TRACES_EXPORTER": "otlp,console"}, ["otlp", "console"]),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, []),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, []),
    ],
)
def test_the_otel_variables_choose_the_exporters(environ: dict[str, str], exporters: list[str]) -> None:
    assert tracing.requested_exporters(environ) == exporters


@pytest.mark.parametrize(
    "environ",
    [
        {"OTEL_TRACES_EXPORTER": "zipkin"},
        {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc"},
    ],
)
def test_an_exporter_this_service_cannot_run_is_refused(environ: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="not supported"):
        tracing.requested_exporters(environ)


def test_configuring_from_the_environment_installs_an_exporter_and_instruments_asyncpg() -> None:
    assert not tracing.enabled()
    try:
        assert tracing.configure_from_env("routebook-test", {"OTEL_TRACES_EXPORTER": "console"})
        assert tracing.enabled()
        assert hasattr(asyncpg.Connection.fetch, "__wrapped__")
    finally:
        tracing.uninstall()
    assert not tracing.enabled()
    assert not hasattr(asyncpg.Connection.fetch, "__wrapped__")
