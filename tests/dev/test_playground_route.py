"""The playground is served (with the dev issuer only), as static files that reference nothing
outside the page's own origin."""

from __future__ import annotations

import re

import httpx

from tests.conftest import AppFactory, client_for


async def test_the_playground_is_served_with_its_assets(client: httpx.AsyncClient) -> None:
    redirect = await client.get("/dev/playground")
    assert redirect.status_code == 308 and redirect.headers["location"] == "/dev/playground/"
    page = await client.get("/dev/playground/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert assets
    for asset in assets:
        assert not asset.startswith(("http:", "https:", "//")), asset  # nothing from a CDN
        if asset.startswith("data:"):
            continue
        assert (await client.get(f"/dev/playground/{asset.removeprefix('./')}")).status_code == 200, asset
    for example in ("berlin.json", "e-n22-k4.json"):
        assert (await client.get(f"/dev/playground/examples/{example}")).status_code == 200


async def test_no_playground_without_the_dev_issuer(app_factory: AppFactory) -> None:
    async with (
        app_factory(auth_providers=["workos"], workos_client_id="client_X") as app,
        client_for(app) as http,
    ):
        assert (await http.get("/dev/playground/")).status_code == 404
