"""The OpenAPI document tells the truth: schemathesis drives every operation of the real app.

The app is the one `create_app` builds, with its lifespan, the test PostgreSQL and a dev-issuer
token (global role `admin`, so the admin listing answers too), called in process over ASGI. For
each operation schemathesis sends its coverage cases (boundary values, each parameter and member
negated, missing auth, methods the path does not serve) and a bounded number of generated ones,
positive and negative, derandomized so every run sends the same requests; every response must pass
the checks in CHECKS. Any failure fails the test with the request to reproduce it.

Generated ids name nothing, so on their own they would test little but 404s (the coverage phase
sends those): in generated cases a hook swaps every well-formed id for one of a session → scenario →
solution chain made for that operation alone (a DELETE of one chain cannot starve another
operation), and mixes real provider names into the webhook receiver's. After the run, each
operation in MUST_SUCCEED must have answered 2xx at least once, so the test notices if it stops
reaching real resources.

Operations are taken from the document, so ones added later are covered without touching this
file. A `text/event-stream` operation gets the generated ids only (401/404/422 and their problem
documents are checked): a live stream of a real solution lasts until its solve ends, and its events
belong to the solving tests. The request timeout bounds any stream that does not end.
"""

from __future__ import annotations

import collections
import ipaddress
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import settings
from schemathesis.python import asgi as schemathesis_asgi

from service.config import Settings
from service.deps import app_state
from service.main import create_app
from tests.conftest import truncate_all
from tests.kit.sql import SqlAdmin

# Fuzzed cases per operation, on top of the coverage phase's fixed set.
MAX_EXAMPLES = 10
SEED = 20261202
API = "/api/v1"


@schemathesis.check
def every_response_is_ours(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case
) -> None:
    """What the built-in checks skip for their probes (a method the path does not serve, a body in
    an undeclared media type) and what holds for every response anyway: its status is documented
    for the operation (405 is the path's, with `Allow`), an error is an RFC 9457 problem, and it
    carries X-Request-ID."""
    status = response.status_code
    assert response.headers.get("x-request-id"), f"{status} without X-Request-ID"
    if status == 405:
        assert response.headers.get("allow"), "405 without Allow"
    else:
        documented = case.operation.definition.raw.get("responses", {})
        assert str(status) in documented, f"{status} is not documented for {case.operation.label}"
    if status >= 400:
        content_type = ", ".join(response.headers.get("content-type", []))
        assert content_type == "application/problem+json", f"{status} answered as {content_type!r}"
        problem = response.json()
        assert problem["status"] == status and problem["title"] and problem["detail"], problem


# Every response check schemathesis has, but the stateful ones (use_after_free,
# ensure_resource_availability), which need its stateful phase; plus our own above.
CHECKS = [
    every_response_is_ours,
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_schema_conformance,
    schemathesis.checks.response_headers_conformance,
    schemathesis.checks.negative_data_rejection,
    schemathesis.checks.positive_data_acceptance,
    schemathesis.checks.missing_required_header,
    schemathesis.checks.unsupported_method,
    schemathesis.checks.allow_header_conformance,
    schemathesis.checks.ignored_auth,
]

# Operations that must have answered 2xx at least once in the run. The webhook receiver cannot:
# a valid delivery needs a signature, which generated bodies never carry.
MUST_SUCCEED = {
    "GET /health",
    "GET /ready",
    "GET /api/v1/users/me",
    "GET /api/v1/admin/users",
    "POST /api/v1/sessions",
    "GET /api/v1/sessions",
    "GET /api/v1/sessions/{session_id}",
    "PATCH /api/v1/sessions/{session_id}",
    "DELETE /api/v1/sessions/{session_id}",
    "POST /api/v1/sessions/{session_id}/scenarios",
    "GET /api/v1/sessions/{session_id}/scenarios",
    "GET /api/v1/scenarios/{scenario_id}",
    "PATCH /api/v1/scenarios/{scenario_id}",
    "DELETE /api/v1/scenarios/{scenario_id}",
    "GET /api/v1/scenarios/{scenario_id}/original",
    "POST /api/v1/scenarios/{scenario_id}/reset",
    "POST /api/v1/scenarios/{scenario_id}/solutions",
    "GET /api/v1/scenarios/{scenario_id}/solutions",
    "GET /api/v1/solutions/{solution_id}",
    "PATCH /api/v1/solutions/{solution_id}",
    "DELETE /api/v1/solutions/{solution_id}",
    "GET /dev/.well-known/jwks.json",
    "POST /dev/token",
    "POST /api/v1/webhook-endpoints",
    "GET /api/v1/webhook-endpoints",
}

# A solvable request, so that an operation added for solving meets a real one.
REQUEST = {
    "depots": [{"id": "d1", "location": {"lat": 52.52, "lon": 13.40}}],
    "stops": [
        {"id": "s1", "location": {"lat": 52.50, "lon": 13.35}, "demand": 3},
        {"id": "s2", "location": {"lat": 52.54, "lon": 13.42}, "demand": 2},
    ],
    "vehicle_types": [{"id": "van", "count": 1, "capacity": 10, "depot": "d1"}],
}
PAYLOAD = {"feasible": True, "distance": 1200, "routes": [], "unassigned": []}


def _settings(**overrides: Any) -> Settings:
    return Settings(
        _env_file=None,
        environment="test",
        auth_providers=["dev"],
        log_level="WARNING",
        db_pool_size=5,
        # Every receiver configured, so a generated delivery meets signature checking (401), never
        # the 503 of a receiver without its secret.
        clerk_webhook_secret="whsec_cm91dGVib29rLWNvbmZvcm1hbmNlLXNlY3JldA==",
        workos_webhook_secret="routebook-conformance-secret",
        supabase_webhook_secret="routebook-conformance-bearer-secret",
        # Generated solves pile up with no worker to run them; the per-user limit (429) has tests of
        # its own in tests/solving.
        solve_max_active_per_user=1_000_000,
        # The document admits http:// webhook URLs (development allows them); with the resolver
        # below, a generated URL then registers unless it is malformed.
        outbound_webhook_allow_private=True,
        **overrides,
    )


async def _public_resolver(host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    return [ipaddress.ip_address("93.184.215.14")]


class _AppUnderTest:
    """The ASGI app the schema is bound to at import: the real app, built by the fixture with the
    test database, stands behind it. Requests arrive from 127.0.0.1, as from a browser on the
    machine `make run` serves (the dev issuer mints only for loopback clients)."""

    app: FastAPI | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert self.app is not None, "the app_under_test fixture builds the app"
        if scope["type"] == "http":
            scope = {**scope, "client": ("127.0.0.1", 50000)}
            # Webhook URLs are checked against DNS: here every name resolves to one public
            # address, so a generated URL is refused only for what it says itself, never for the
            # network. Set on each request: each lifespan schemathesis runs builds its own state.
            app_state(self.app).webhook_targets.resolver = _public_resolver
        await self.app(scope, receive, send)


@dataclass
class _Run:
    """What the run needs across cases, and what it saw."""

    headers: dict[str, str] = field(default_factory=dict)
    selected: set[str] = field(default_factory=set)
    chains: dict[str, dict[str, str]] = field(default_factory=dict)
    statuses: collections.defaultdict[str, collections.Counter[int]] = field(
        default_factory=lambda: collections.defaultdict(collections.Counter)
    )


APP = _AppUnderTest()
RUN = _Run()
# The document as the app serves it, loaded at import so that pytest has one test per operation
# (schemathesis' fixture-loaded schema, `from_fixture`, fails on pytest 9.2: it sets Node._nodeid).
# The fixture checks that the app under test serves this very document.
DOCUMENT = create_app(_settings()).openapi()
schema = schemathesis.openapi.from_dict(
    DOCUMENT,
    config=schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "generation": {
                "max-examples": MAX_EXAMPLES,
                "deterministic": True,
                "mode": "all",
                # Strings PostgreSQL cannot store (NUL, unpaired surrogates) are documented as 422 in
                # words the schema cannot check; tests/planning/test_payloads.py sends them.
                "allow-x00": False,
                "codec": "utf-8",
            },
            "checks": {
                # 412: a generated If-Match is well formed, and names a version the row does not have.
                "positive_data_acceptance": {"expected-statuses": ["2xx", "401", "403", "404", "409", "412"]}
            },
            # An event stream is read for at most this many events, or until the timeout.
            "max-stream-events": 3,
            "request-timeout": 30,
        }
    ),
)
schema.app = APP


def _client() -> schemathesis_asgi.ASGIClient:
    return schemathesis_asgi.get_client(APP)


def _created(client: schemathesis_asgi.ASGIClient, path: str, body: dict[str, Any]) -> str:
    response = client.post(f"{API}{path}", json=body, headers=RUN.headers)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _chain(label: str) -> dict[str, str]:
    """A session, scenario and solution of this operation's own."""
    if label not in RUN.chains:
        with _client() as client:
            session_id = _created(client, "/sessions", {"name": f"conformance {label}"})
            scenario_id = _created(
                client, f"/sessions/{session_id}/scenarios", {"name": "s", "request": REQUEST}
            )
            solution_id = _created(
                client, f"/scenarios/{scenario_id}/solutions", {"status": "succeeded", "payload": PAYLOAD}
            )
        RUN.chains[label] = {"session_id": session_id, "scenario_id": scenario_id, "solution_id": solution_id}
    return RUN.chains[label]


def _streams(operation: Any) -> bool:
    for response in operation.definition.raw.get("responses", {}).values():
        if any(media_type.startswith("text/event-stream") for media_type in response.get("content", {})):
            return True
    return False


def _is_uuid(value: object) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


@schema.hook
def flatmap_path_parameters(context: Any, path_parameters: dict[str, Any]) -> Any:
    operation = context.operation
    if not path_parameters:
        return st.just(path_parameters)
    if "provider" in path_parameters:
        return st.sampled_from(
            [
                path_parameters,
                *({**path_parameters, "provider": name} for name in ("clerk", "workos", "supabase")),
            ]
        )
    ids = {name: value for name, value in path_parameters.items() if name.endswith("_id")}
    # A negated id (not a UUID) stays: that case is about the 422.
    if not ids or not all(_is_uuid(value) for value in ids.values()) or _streams(operation):
        return st.just(path_parameters)
    chain = _chain(operation.label)
    return st.just({**path_parameters, **{name: chain[name] for name in ids if name in chain}})


@schema.hook
def filter_failure(context: Any, failure: Any, case: Any, response: Any) -> bool:
    """A cursor is opaque: any string is schema-valid, and one the service did not issue is a 422
    (the API reference: a tampered or foreign cursor). That is the documented answer, not a rejected
    positive case."""
    if type(failure).__name__ == "RejectedPositiveData" and response.status_code == 422:
        errors = response.json().get("errors") or []
        # Likewise a time limit above SOLVE_MAX_TIME_LIMIT_S, a setting the document names but
        # cannot hold as a fixed maximum; and a seed written as a whole float (435.0), which JSON
        # Schema's integer admits and solve options, strict like the request document, refuse (the
        # document says so in words).
        return not all(
            error.get("type") == "cursor_invalid"
            or error.get("loc") == ["body", "time_limit_s"]
            or (error.get("loc") == ["body", "seed"] and error.get("type") == "int_type")
            # Whether a webhook URL is https and its host public is a fact of the URL's scheme
            # and of DNS, which the document states in words (the API reference: a 422 at /url).
            or error.get("type") == "url_refused"
            # Pins and the plan to start from are checked against the scenario's request and
            # solutions, which no schema of the body can know (the API reference lists the rules).
            or error.get("loc", [None, None])[:2] in (["body", "pins"], ["body", "from_solution"])
            # An imported file is any text to the document: whether its lines make stops is said in
            # words (every error names its line), as is which query parameters each format needs.
            or "line" in error
            or error.get("type") in {"required_for_csv", "not_for_this_format"}
            for error in errors
        )
    return True


@pytest.fixture(scope="module")
async def _empty_tables(admin_db: SqlAdmin) -> None:
    await truncate_all(admin_db)


@pytest.fixture(scope="module")
def app_under_test(
    _empty_tables: None, migrated_url: str, data_dir: Path, request: pytest.FixtureRequest
) -> Iterator[None]:
    """One app for every operation's test: built once, its lifespan run by schemathesis."""
    app = create_app(_settings(database_url=migrated_url, data_dir=data_dir))
    APP.app = app
    try:
        with _client() as client:  # starts the lifespan, in schemathesis' event loop thread
            assert client.get("/openapi.json").json() == DOCUMENT
        # Webhook URLs are checked against DNS: here every name resolves to one public address,
        # so a generated URL is refused only for what it says itself, never for the network.
        app_state(app).webhook_targets.resolver = _public_resolver
        token = app_state(app).dev_issuer.mint(
            subject="conformance", email="conformance@example.com", roles=["admin"]
        )
        RUN.headers = {"Authorization": f"Bearer {token}"}
        yield
        _report(request)
        never_succeeded = sorted(
            label
            for label in MUST_SUCCEED & RUN.selected
            if not any(200 <= status < 300 for status in RUN.statuses[label])
        )
        assert not never_succeeded, f"never answered 2xx: {never_succeeded}; statuses seen:\n{_table()}"
    finally:
        # The app's lifespan runs in schemathesis' portal until stopped: close its pool and listener.
        schemathesis_asgi.shutdown_lifespans()
        APP.app = None


def _report(request: pytest.FixtureRequest) -> None:
    """One line in the run's output (past pytest's capture): how much the document was held to."""
    calls = sum(sum(counter.values()) for counter in RUN.statuses.values())
    line = (
        f"schemathesis: {len(RUN.statuses)} operations, {calls} requests "
        f"(coverage cases + {MAX_EXAMPLES} generated per operation, seed {SEED})"
    )
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line(f"\n{line}")


def _table() -> str:
    return "\n".join(
        f"  {label}: {dict(sorted(counter.items()))}" for label, counter in sorted(RUN.statuses.items())
    )


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, derandomize=True, deadline=None)
def test_every_response_matches_the_document(case: schemathesis.Case, app_under_test: None) -> None:
    RUN.selected.add(case.operation.label)
    response = case.call_and_validate(headers=dict(RUN.headers), checks=CHECKS)
    RUN.statuses[case.operation.label][response.status_code] += 1
