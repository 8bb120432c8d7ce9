"""Two people plan together in the playground: two browser contexts signed in as two dev users, one
creates a workspace and adds the other by user id, both switch to it, and each sees the other's
scenario — and the solve one of them ran — in headless Chromium against the app and a real worker.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, BrowserContext, Page, expect

from tests.browser.test_in_chromium import FINAL, create_scenario, sign_in, start_solve
from tests.kit.browser import PageProblems, TcpServedApp
from tests.kit.worker import WorkerProcess

pytestmark = pytest.mark.xdist_group("browser")


@pytest.fixture
async def other_context(browser: Browser) -> AsyncIterator[BrowserContext]:
    ctx = await browser.new_context(viewport={"width": 1400, "height": 1000})
    ctx.set_default_timeout(15_000)
    try:
        yield ctx
    finally:
        await ctx.close()


async def switch_to(page: Page, workspace_id: str, shown: str) -> None:
    await page.click("#refresh-workspaces")
    await expect(page.locator(f'#workspace-select option[value="{workspace_id}"]')).to_have_count(1)
    await page.select_option("#workspace-select", workspace_id)
    await expect(page.locator("#workspace-current")).to_have_attribute("data-workspace-id", workspace_id)
    await expect(page.locator("#workspace-current")).to_have_text(shown)


async def test_two_members_see_each_others_scenarios_and_solves(
    page: Page,
    problems: PageProblems,
    other_context: BrowserContext,
    served: TcpServedApp,
    worker: WorkerProcess,
    tmp_path: Path,
) -> None:
    suffix = uuid.uuid4().hex[:8]
    alice_email, bob_email = f"alice-{suffix}@example.com", f"bob-{suffix}@example.com"
    bob_page = await other_context.new_page()
    bob_problems = PageProblems().watch(bob_page)
    await sign_in(page, served, alice_email)
    bob_token = await sign_in(bob_page, served, bob_email)
    # Each starts in their personal workspace.
    await expect(page.locator("#workspace-current")).to_contain_text("(personal, admin)")
    await expect(bob_page.locator("#workspace-current")).to_contain_text("(personal, admin)")
    bob_id = (await bob_page.locator("#my-user-id").text_content() or "").strip()
    assert uuid.UUID(bob_id)

    # Alice creates a workspace (and acts in it at once), then adds Bob by his user id.
    team = f"Dispatch {suffix}"
    await page.fill("#new-workspace-name", team)
    await page.click("#create-workspace")
    current = page.locator("#workspace-current")
    await expect(current).to_have_text(f"{team} (organization, admin)")
    workspace_id = await current.get_attribute("data-workspace-id")
    assert workspace_id
    await page.fill("#member-user-id", bob_id)
    await page.click("#add-member")
    await expect(page.locator(f'#member-list li[data-user-id="{bob_id}"]')).to_have_attribute(
        "data-role", "member"
    )

    # Bob switches to it: he sees the members, and Alice's work from now on.
    await switch_to(bob_page, workspace_id, f"{team} (organization, member)")
    await expect(bob_page.locator("#member-list li")).to_have_count(2)
    await expect(bob_page.locator("#session-list li.empty")).to_have_count(1)

    # Alice plans and solves in the workspace.
    alice_scenario = await create_scenario(page, f"Alice's Berlin {suffix}")
    solution_id = await start_solve(page, time_limit_s=2)
    await expect(page.locator("#solve-status")).to_have_attribute("data-status", FINAL, timeout=60_000)
    await expect(page.locator("#solve-status")).to_have_text("succeeded")

    # Bob sees her session, her scenario and her solve.
    await bob_page.click("#refresh-sessions")
    await bob_page.locator(
        "#session-list button[data-session-id]", has_text=f"Alice's Berlin {suffix} session"
    ).click()
    await bob_page.locator(f'#scenario-list button[data-scenario-id="{alice_scenario}"]').click()
    latest = bob_page.locator("#latest-solution")
    await expect(latest).to_have_attribute("data-status", "succeeded")
    await expect(latest).to_have_attribute("data-solution-id", solution_id)
    await expect(latest).to_contain_text(re.compile(r"succeeded, distance"))
    await expect(bob_page.locator("svg#plan polyline.route").first).to_be_visible()

    # Bob adds a scenario to her session; Alice sees it.
    await bob_page.select_option("#example-select", "berlin.json")
    await bob_page.click("#load-example")
    await expect(bob_page.locator("#scenario-json")).to_have_value(re.compile(r'"stops"'))
    await bob_page.fill("#new-scenario-name", f"Bob's variant {suffix}")
    await bob_page.click("#create-scenario")
    await expect(bob_page.locator('#scenario-list button[aria-current="true"]')).to_contain_text(
        "Bob's variant"
    )
    await page.click("#refresh-scenarios")
    await expect(
        page.locator("#scenario-list button[data-scenario-id]", has_text=f"Bob's variant {suffix}")
    ).to_have_count(1)

    # What the pages showed is what the API says, for Bob with the header, and not without it.
    solution = await read_in(served, bob_token, workspace_id, f"/solutions/{solution_id}")
    assert solution["status"] == "succeeded"
    async with served.client(bob_token) as api:
        assert (await api.get(f"/api/v1/solutions/{solution_id}")).status_code == 404  # personal
    shot = tmp_path / "playground-shared-workspace.png"
    await bob_page.screenshot(path=shot, full_page=True)
    print(f"\nscreenshot of the second member's playground: {shot}")
    problems.assert_none()
    bob_problems.assert_none()


async def read_in(served: TcpServedApp, token: str, workspace_id: str, path: str) -> dict[str, object]:
    async with served.client(token) as api:
        response = await api.get(f"/api/v1{path}", headers={"Routebook-Workspace": workspace_id})
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body
