"""What a browser does with the service: the playground end to end (sign-in, a solve streamed and
drawn, a cancel), a single-page app on another origin (CORS with Bearer, both ways of streaming),
an origin CORS does not list, and /docs working offline with a dev token — in headless Chromium,
against the app under uvicorn and a real worker, on the suite's PostgreSQL.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.async_api import BrowserContext, Page, Response, Route, expect

from tests.kit.browser import PageProblems, StaticSite, TcpServedApp
from tests.kit.waiting import eventually
from tests.kit.worker import WorkerProcess

# One browser, one served app and one worker for the module: all its tests on one test process.
pytestmark = pytest.mark.xdist_group("browser")

FINAL = re.compile(r"^(succeeded|failed|cancelled)$")
# What the page shows for each value of the progress figures, whatever the timing of its events.
RECORD_PROGRESS = """() => {
  window.seen = { elapsed: [], iterations: [] };
  for (const name of Object.keys(window.seen)) {
    const node = document.querySelector(`#progress [data-field="${name}"]`);
    new MutationObserver(() => window.seen[name].push(node.textContent))
      .observe(node, { childList: true, characterData: true, subtree: true });
  }
}"""


def path_is(path: str) -> Callable[[Response], bool]:
    return lambda response: urlsplit(response.url).path == path


async def mint(served: TcpServedApp, email: str) -> str:
    async with served.client() as http:
        response = await http.post("/dev/token", json={"email": email})
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


async def sign_in(page: Page, served: TcpServedApp, email: str) -> str:
    """Signs in on the playground with the dev issuer; the token the page received."""
    await page.goto(f"{served.origin}/dev/playground/")
    await page.fill("#email", email)
    async with page.expect_response(path_is("/dev/token")) as minted:
        await page.click("#sign-in")
    token = (await (await minted.value).json())["access_token"]
    await expect(page.locator("#whoami")).to_contain_text(email)
    await expect(page.locator("#sign-out")).to_be_visible()
    return str(token)


async def create_scenario(page: Page, name: str, example: str = "berlin.json") -> str:
    """A new session, selected; a scenario in it from a built-in example, selected; its id."""
    await page.fill("#new-session-name", f"{name} session")
    await page.click("#create-session")
    await expect(page.locator('#session-list button[data-session-id][aria-current="true"]')).to_contain_text(
        f"{name} session"
    )
    await page.select_option("#example-select", example)
    await page.click("#load-example")
    await expect(page.locator("#scenario-json")).to_have_value(re.compile(r'"stops"'))
    await page.fill("#new-scenario-name", name)
    await page.click("#create-scenario")
    selected = page.locator('#scenario-list button[data-scenario-id][aria-current="true"]')
    await expect(selected).to_contain_text(name)
    scenario_id = await selected.get_attribute("data-scenario-id")
    assert scenario_id
    return scenario_id


async def start_solve(page: Page, time_limit_s: int) -> str:
    await page.fill("#time-limit", str(time_limit_s))
    await page.fill("#seed", "1")
    async with page.expect_response(
        lambda r: r.url.endswith("/solve") and r.request.method == "POST"
    ) as queued:
        await page.click("#solve")
    response = await queued.value
    assert response.status == 202, await response.text()
    return str((await response.json())["id"])


async def read(served: TcpServedApp, token: str, path: str) -> dict[str, Any]:
    async with served.client(token) as api:
        response = await api.get(f"/api/v1{path}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def read_example(served: TcpServedApp) -> dict[str, Any]:
    async with served.client() as http:
        response = await http.get("/dev/playground/examples/berlin.json")
    assert response.status_code == 200
    example: dict[str, Any] = response.json()
    return example


async def assert_plan_drawn(page: Page, request: dict[str, Any], payload: dict[str, Any] | None) -> None:
    """The SVG holds one polyline per route of the payload and one marker per stop of the request."""
    plan = page.locator("svg#plan")
    routes = [] if payload is None else payload["routes"]
    await expect(plan.locator("polyline.route")).to_have_count(len(routes))
    await expect(page.locator("#plan-legend li[data-route-index]")).to_have_count(len(routes))
    for index, route in enumerate(routes):
        line = plan.locator(f'polyline.route[data-route-index="{index}"]')
        # Depot, its stops in order, depot: every point of the route is drawn.
        assert len((await line.get_attribute("points") or "").split()) == len(route["stops"]) + 2
    await expect(plan.locator("rect.depot[data-depot-id]")).to_have_count(len(request["depots"]))
    markers = plan.locator("g.stop[data-stop-id]")
    await expect(markers).to_have_count(len(request["stops"]))
    drawn = {await marker.get_attribute("data-stop-id") for marker in await markers.all()}
    assert drawn == {stop["id"] for stop in request["stops"]}
    unassigned = {
        await m.get_attribute("data-stop-id") for m in await plan.locator("g.stop.unassigned").all()
    }
    assert unassigned == {entry["id"] for entry in ([] if payload is None else payload["unassigned"])}


async def test_the_playground_signs_in_solves_streams_and_draws_the_plan(
    page: Page,
    problems: PageProblems,
    served: TcpServedApp,
    worker: WorkerProcess,
    email: str,
    tmp_path: Path,
) -> None:
    token = await sign_in(page, served, email)
    scenario_id = await create_scenario(page, "Berlin")
    await page.evaluate(RECORD_PROGRESS)
    solution_id = await start_solve(page, time_limit_s=3)

    status = page.locator("#solve-status")
    await expect(status).to_have_attribute("data-status", FINAL, timeout=60_000)
    await expect(status).to_have_text("succeeded")
    await expect(page.locator("#cancel")).to_be_disabled()
    seen = await page.evaluate("window.seen")
    for name, values in seen.items():
        shown = [value for value in values if value != "—"]
        assert len(set(shown)) >= 2, f"{name} never changed while solving: {values}"
    chart = page.locator("svg#progress-chart polyline.best-distance")
    await expect(chart).to_have_count(1)
    assert len((await chart.get_attribute("points") or "").split()) >= 2

    # The API, with the token the page signed in with, is what the drawing must match.
    solution = await read(served, token, f"/solutions/{solution_id}")
    assert solution["status"] == "succeeded"
    request = (await read(served, token, f"/scenarios/{scenario_id}"))["request"]
    payload = solution["payload"]
    assert payload["routes"]
    await assert_plan_drawn(page, request, payload)
    await expect(page.locator("#plan-summary")).to_contain_text(f"{len(payload['routes'])} routes")

    stop_id = payload["routes"][0]["stops"][0]
    await page.locator(f'svg#plan g.stop[data-stop-id="{stop_id}"]').hover()
    tooltip = page.locator("#plan-tooltip")
    await expect(tooltip).to_be_visible()
    await expect(tooltip).to_contain_text(f"Stop {stop_id}")
    await expect(tooltip).to_contain_text("Arrival")

    shot = tmp_path / "playground-solved.png"
    await page.screenshot(path=shot, full_page=True)
    print(f"\nscreenshot of the solved playground: {shot}")
    problems.assert_none()


async def test_the_playground_cancels_a_running_solve(
    page: Page, problems: PageProblems, served: TcpServedApp, worker: WorkerProcess, email: str
) -> None:
    token = await sign_in(page, served, email)
    scenario_id = await create_scenario(page, "Berlin, cancelled")
    solution_id = await start_solve(page, time_limit_s=120)
    # A progress figure on the page: the solve is running (and has a solution to keep).
    await expect(page.locator('#progress [data-field="iterations"]')).to_have_text(
        re.compile(r"^\d+$"), timeout=30_000
    )
    await expect(page.locator("#solve-status")).to_have_attribute("data-status", "running")

    async with page.expect_response(path_is(f"/api/v1/solutions/{solution_id}/cancel")) as answered:
        await page.click("#cancel")
    assert (await answered.value).status == 202
    status = page.locator("#solve-status")
    # The page shows the end its stream reports (the solve itself stops within a second).
    await expect(status).to_have_attribute("data-status", re.compile(r"^(cancelled|failed)$"), timeout=20_000)
    await expect(page.locator("#cancel")).to_be_disabled()
    await expect(page.locator("#solve")).to_be_enabled()

    # The best solution so far is kept with `cancelled`, `failed` when none was found.
    solution = await read(served, token, f"/solutions/{solution_id}")
    assert await status.get_attribute("data-status") == solution["status"]
    if solution["status"] == "cancelled":
        assert solution["payload"]["routes"] and solution["payload"]["solver"]["runtime_s"] < 60
    else:
        assert solution["payload"] is None
    request = (await read(served, token, f"/scenarios/{scenario_id}"))["request"]
    await assert_plan_drawn(page, request, solution["payload"])
    problems.assert_none()


async def test_a_listed_origin_calls_the_api_with_bearer_and_streams_both_ways(
    page: Page,
    problems: PageProblems,
    served: TcpServedApp,
    worker: WorkerProcess,
    listed_site: StaticSite,
    email: str,
) -> None:
    token = await mint(served, email)
    await page.goto(f"{listed_site.origin}/")
    await expect(page.locator("#ready")).to_have_text("ready")
    api = served.origin

    async def call(method: str, path: str, body: Any = None, request_id: str | None = None) -> Any:
        return await page.evaluate(
            "([api, token, method, path, body, id]) => client.call(api, token, method, path, body ?? undefined, id)",
            [api, token, method, path, body, request_id],
        )

    session = await call("POST", "/sessions", {"name": "cross-origin"}, "browser-cors-1")
    assert session["status"] == 201, session
    # Exposed by CORS, so readable from JavaScript; a header not exposed stays hidden.
    assert session["headers"]["Location"] == f"/api/v1/sessions/{session['body']['id']}"
    assert session["headers"]["ETag"]
    assert session["headers"]["X-Request-ID"] == "browser-cors-1"
    assert session["headers"]["Server"] is None
    request = await read_example(served)
    scenario = await call(
        "POST", f"/sessions/{session['body']['id']}/scenarios", {"name": "b", "request": request}
    )
    assert scenario["status"] == 201 and scenario["headers"]["ETag"], scenario
    solve = await call("POST", f"/scenarios/{scenario['body']['id']}/solve", {"time_limit_s": 2, "seed": 1})
    assert solve["status"] == 202, solve
    solution_id = solve["body"]["id"]
    assert solve["headers"]["Location"] == f"/api/v1/solutions/{solution_id}"
    assert re.fullmatch(r"[0-9a-f]{32}", solve["headers"]["X-Request-ID"])

    # Both at once, on the same solve: the fetch stream (Bearer) and an EventSource (ticket).
    streamed = await page.evaluate(
        """async ([api, token, id]) => {
          const [viaFetch, viaEventSource] = await Promise.all([
            client.streamWithFetch(api, token, id), client.streamWithEventSource(api, token, id),
          ]);
          return { viaFetch, viaEventSource };
        }""",
        [api, token, solution_id],
    )
    event_source = streamed["viaEventSource"]
    assert event_source["expiresIn"] == 60 and event_source["readyState"] == 2  # CLOSED, by the page
    for events in (streamed["viaFetch"], event_source["events"]):
        assert [event["type"] for event in events][-1:] == ["status"], events
        assert events[-1]["data"] == {"status": "succeeded"}
        progress = [event for event in events if event["type"] == "progress"]
        assert progress, events
        assert {"elapsed_s", "iterations", "best_distance", "feasible"} <= set(progress[-1]["data"])
        ids = [int(event["id"]) for event in progress]
        assert ids == sorted(set(ids))

    # The preflights (Authorization, a JSON body) were answered 200 and reached the access log.
    async def preflights_logged() -> bool:
        answered = {
            record["msg"]
            for record in served.log_records()
            if record.get("logger") == "routebook.access" and record.get("status") == 200
        }
        return {
            "OPTIONS /api/v1/sessions",
            f"OPTIONS /api/v1/solutions/{solution_id}/events",
            f"OPTIONS /api/v1/solutions/{solution_id}/events/ticket",
        } <= answered

    await eventually(preflights_logged, timeout=5)
    problems.assert_none()


async def test_an_unlisted_origin_is_refused_and_the_refusal_is_logged(
    page: Page, problems: PageProblems, served: TcpServedApp, unlisted_site: StaticSite, email: str
) -> None:
    token = await mint(served, email)
    await page.goto(f"{unlisted_site.origin}/")
    await expect(page.locator("#ready")).to_have_text("ready")
    outcome = await page.evaluate(
        "([api, token]) => client.attempt(api, token, '/users/me')", [served.origin, token]
    )
    assert outcome["resolved"] is False and outcome["name"] == "TypeError", outcome

    async def refusal_logged() -> bool:
        return any(
            record.get("logger") == "routebook.cors"
            and record.get("level") == "INFO"
            and repr(unlisted_site.origin) in record["msg"]
            for record in served.log_records()
        )

    await eventually(refusal_logged, timeout=5)
    # What the browser reported, and nothing else: the CORS error and the request it failed.
    blocked, failed = problems.console_errors
    assert "blocked by CORS policy" in blocked and "preflight" in blocked, blocked
    assert failed.startswith("Failed to load resource: net::ERR_FAILED"), failed
    assert [entry.split(": ")[0] for entry in problems.failed_requests] == [
        f"GET {served.origin}/api/v1/users/me"
    ]
    assert not problems.page_errors and not problems.error_responses


async def test_docs_render_offline_and_authorize_a_dev_token(
    context: BrowserContext,
    page: Page,
    problems: PageProblems,
    served: TcpServedApp,
    email: str,
    tmp_path: Path,
) -> None:
    outside: list[str] = []

    async def only_the_server(route: Route) -> None:
        if route.request.url.startswith(f"{served.origin}/"):
            await route.continue_()
        else:
            outside.append(route.request.url)
            await route.abort()

    await context.route("**/*", only_the_server)
    token = await mint(served, email)
    await page.goto(f"{served.origin}/docs")
    await expect(page.locator(".swagger-ui .info .title")).to_contain_text("Routebook")

    await page.locator(".auth-wrapper button.authorize").click()
    dialog = page.locator(".modal-ux")
    await dialog.locator("input#auth-bearer-value").fill(token)
    await dialog.get_by_role("button", name="Apply credentials").click()
    # Swagger UI's authorized state: the scheme marked Authorized, the token masked, a Logout.
    await expect(dialog.get_by_role("heading", name="Authorized")).to_be_visible()
    await expect(dialog.get_by_role("button", name="Remove authorization")).to_be_visible()
    await dialog.locator("button.btn-done").click()
    await expect(page.locator(".auth-wrapper button.authorize.locked")).to_be_visible()

    operation = page.locator(".opblock-get").filter(
        has=page.locator('.opblock-summary-path[data-path="/api/v1/users/me"]')
    )
    await operation.locator(".opblock-summary").first.click()
    await operation.locator("button.try-out__btn").click()
    async with page.expect_response(path_is("/api/v1/users/me")) as answered:
        await operation.locator("button.execute").click()
    response = await answered.value
    assert response.status == 200
    assert await response.request.header_value("authorization") == f"Bearer {token}"
    assert (await response.json())["email"] == email
    await expect(operation.locator(".live-responses-table tr.response td.response-col_status")).to_have_text(
        "200"
    )

    # The whole page is metres tall: its top (title, the locked Authorize) and the operation tried.
    top, tried = tmp_path / "docs-authorized.png", tmp_path / "docs-users-me-200.png"
    await operation.screenshot(path=tried)
    await page.evaluate("window.scrollTo(0, 0)")
    await page.screenshot(path=top)
    print(f"\nscreenshots of /docs: {top} and {tried}")
    assert outside == [], f"/docs tried to reach outside the server: {outside}"
    problems.assert_none()
