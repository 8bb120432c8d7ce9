"""Re-planning on the playground in headless Chromium: a scenario opens on its existing solution,
stops are pinned by clicking the map, a re-solve from that plan is drawn, and a comparison of the
two plans marks the stops that moved — against the app under uvicorn and a real worker.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, expect

from tests.browser.test_in_chromium import (
    FINAL,
    assert_plan_drawn,
    mint,
    path_is,
    read,
    read_example,
    sign_in,
)
from tests.kit.browser import PageProblems, TcpServedApp
from tests.kit.waiting import eventually
from tests.kit.worker import WorkerProcess

pytestmark = pytest.mark.xdist_group("browser")


def poor_plan(request: dict[str, Any]) -> dict[str, Any]:
    """A recorded plan a dispatcher might have made by hand: the stops dealt out to the three vans
    in request order (no bike). A solve from it moves stops."""
    stops = [stop["id"] for stop in request["stops"]]
    routes = [
        {"vehicle_type": "van", "vehicle": v, "stops": stops[v::3], "distance": 0, "duration": 0}
        for v in range(3)
    ]
    return {"feasible": False, "distance": 0, "duration": 0, "routes": routes, "unassigned": []}


async def scenario_with_a_solution(served: TcpServedApp, token: str) -> tuple[str, str, dict[str, Any]]:
    """A session, a Berlin scenario and a recorded solution of it, made through the API."""
    request = await read_example(served)
    async with served.client(token) as api:
        session = await api.post("/api/v1/sessions", json={"name": "Re-planning"})
        assert session.status_code == 201, session.text
        scenario = await api.post(
            f"/api/v1/sessions/{session.json()['id']}/scenarios", json={"name": "Berlin", "request": request}
        )
        assert scenario.status_code == 201, scenario.text
        scenario_id = scenario.json()["id"]
        payload = poor_plan(request)
        solution = await api.post(
            f"/api/v1/scenarios/{scenario_id}/solutions", json={"status": "succeeded", "payload": payload}
        )
        assert solution.status_code == 201, solution.text
    return scenario_id, solution.json()["id"], payload


async def test_the_playground_pins_re_solves_from_a_plan_and_compares(
    page: Page,
    problems: PageProblems,
    served: TcpServedApp,
    worker: WorkerProcess,
    email: str,
    tmp_path: Path,
) -> None:
    token = await mint(served, email)
    scenario_id, earlier_id, earlier = await scenario_with_a_solution(served, token)
    await sign_in(page, served, email)
    await page.click("#session-list button[data-session-id]")
    await page.click(f'#scenario-list button[data-scenario-id="{scenario_id}"]')

    # The scenario opens on its solution: listed, current, and drawn.
    listed = page.locator("#solution-list button[data-solution-id]")
    await expect(listed).to_have_count(1)
    await expect(page.locator(f'#solution-list button[data-solution-id="{earlier_id}"]')).to_have_attribute(
        "aria-current", "true"
    )
    request = (await read(served, token, f"/scenarios/{scenario_id}"))["request"]
    await assert_plan_drawn(page, request, earlier)

    # Pin a stop to its van (a click), and the second van's route up to its second stop (a prefix).
    pinned_stop = earlier["routes"][0]["stops"][2]
    prefix = earlier["routes"][1]["stops"][:2]
    plan = page.locator("svg#plan")
    await plan.locator(f'g.stop[data-stop-id="{pinned_stop}"]').click()
    await page.select_option("#pin-mode", "prefix")
    await plan.locator(f'g.stop[data-stop-id="{prefix[-1]}"]').click()
    await expect(page.locator("#pin-list li")).to_have_count(2)
    await expect(plan.locator("g.stop.pinned")).to_have_count(3)

    # Re-solve from the shown plan with those pins.
    await page.fill("#time-limit", "2")
    await page.fill("#seed", "1")
    async with page.expect_response(
        lambda r: r.url.endswith("/solve") and r.request.method == "POST"
    ) as queued:
        await page.click("#resolve")
    response = await queued.value
    assert response.status == 202, await response.text()
    body = response.request.post_data_json
    assert body["from_solution"] == earlier_id
    assert body["pins"] == [
        {"stop": pinned_stop, "vehicle_type": "van", "vehicle": 0},
        {"vehicle_type": "van", "vehicle": 1, "prefix": prefix},
    ]
    later_id = str((await response.json())["id"])
    status = page.locator("#solve-status")
    await expect(status).to_have_attribute("data-status", FINAL, timeout=60_000)
    await expect(status).to_have_text("succeeded")

    # The new solution is listed, current and drawn; its pins held.
    await expect(listed).to_have_count(2)
    await expect(page.locator(f'#solution-list button[data-solution-id="{later_id}"]')).to_have_attribute(
        "aria-current", "true"
    )
    later = (await read(served, token, f"/solutions/{later_id}"))["payload"]
    await assert_plan_drawn(page, request, later)
    routes = {(route["vehicle_type"], route["vehicle"]): route["stops"] for route in later["routes"]}
    assert pinned_stop in routes[("van", 0)]
    assert routes[("van", 1)][: len(prefix)] == prefix
    assert later["pin_conflicts"] == []
    await expect(page.locator("#solution-origin")).to_contain_text(
        f"Re-solved from {earlier_id[-8:]} with 2 pins"
    )
    unassigned = page.locator("#unassigned-list li")
    await expect(unassigned).to_have_count(len(later["unassigned"]))

    # Compare the earlier plan with the new one: the moves the API finds are marked on the map.
    await page.select_option("#compare-with", earlier_id)
    async with page.expect_response(
        path_is(f"/api/v1/solutions/{earlier_id}/compare/{later_id}")
    ) as compared:
        await page.click("#compare")
    comparison = await (await compared.value).json()
    moved = {move["id"] for move in comparison["stops"]["moved"]}
    assert moved, comparison  # dealt out by hand, the earlier plan cannot survive a solve unchanged
    await expect(page.locator("#comparison-summary")).to_contain_text(re.compile(rf"\b{len(moved)} moved"))
    await expect(page.locator("#moved-stops li")).to_have_count(len(moved))
    marked = plan.locator("g.stop.moved")
    await expect(marked).to_have_count(len(moved))
    assert {await marker.get_attribute("data-stop-id") for marker in await marked.all()} == moved
    await expect(page.locator('#comparison tr[data-kpi="distance"]')).to_be_visible()

    shot = tmp_path / "playground-compared.png"
    await page.screenshot(path=shot, full_page=True)
    print(f"\nscreenshot of the re-planned and compared playground: {shot}")
    problems.assert_none()


async def test_a_plan_with_shipments_and_reloads_is_drawn_visit_by_visit(
    page: Page, problems: PageProblems, served: TcpServedApp, worker: WorkerProcess, email: str
) -> None:
    here = {"lat": 52.52, "lon": 13.40}

    def at(dlat: float, dlon: float) -> dict[str, float]:
        return {"lat": here["lat"] + dlat, "lon": here["lon"] + dlon}

    request = {
        "depots": [{"id": "hub", "location": here}],
        "stops": [{"id": f"s{i}", "location": at(0.01 * i, 0.01), "demand": 6} for i in range(1, 4)],
        "shipments": [
            {
                "id": "parcel",
                "amount": 2,
                "pickup": {"location": at(-0.02, -0.02)},
                "delivery": {"location": at(0.02, -0.03)},
            }
        ],
        "vehicle_types": [
            {"id": "van", "count": 1, "capacity": 10, "depot": "hub", "reload_depots": ["hub"]}
        ],
    }
    token = await mint(served, email)
    async with served.client(token) as api:
        session = await api.post("/api/v1/sessions", json={"name": "Visits"})
        assert session.status_code == 201, session.text
        created = await api.post(
            f"/api/v1/sessions/{session.json()['id']}/scenarios", json={"name": "Reloads", "request": request}
        )
        assert created.status_code == 201, created.text
        scenario_id = created.json()["id"]
        queued = await api.post(f"/api/v1/scenarios/{scenario_id}/solve", json={"time_limit_s": 1})
        assert queued.status_code == 202, queued.text
        solution_id = queued.json()["id"]

    async def solved() -> bool:
        return (await read(served, token, f"/solutions/{solution_id}"))["status"] == "succeeded"

    await eventually(solved, timeout=60)
    await sign_in(page, served, email)
    await page.click("#session-list button[data-session-id]")
    await page.click(f'#scenario-list button[data-scenario-id="{scenario_id}"]')
    # The scenario opens on its newest plan.
    await expect(page.locator(f'#solution-list button[data-solution-id="{solution_id}"]')).to_have_attribute(
        "aria-current", "true"
    )
    payload = (await read(served, token, f"/solutions/{solution_id}"))["payload"]
    (route,) = payload["routes"]
    kinds = [visit["kind"] for visit in route["visits"]]
    assert "reload" in kinds and "pickup" in kinds and "delivery" in kinds, kinds
    line = page.locator('svg#plan polyline.route[data-route-index="0"]')
    await expect(line).to_have_count(1)
    # Depot, every visit (stops, the parcel's two ends, the reload at the hub), depot.
    assert len((await line.get_attribute("points") or "").split()) == len(route["visits"]) + 2
    ends = page.locator('svg#plan g.shipment-end[data-shipment-id="parcel"]')
    await expect(ends).to_have_count(2)
    await expect(page.locator("#plan-legend li")).to_contain_text("trips")
    problems.assert_none()
