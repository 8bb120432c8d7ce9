"""require_permission / require_org_permission, and the OpenAPI document behind Swagger's Authorize."""

from __future__ import annotations

from typing import Annotated

import httpx
from fastapi import Depends, FastAPI

from service.users.gate import Principal, require_org_permission, require_permission
from tests.kit import MockProvider
from tests.users.conftest import ProviderAppFactory


def add_guarded_route(app: FastAPI) -> None:
    @app.get("/api/v1/_reports")
    async def reports(
        principal: Annotated[Principal, Depends(require_org_permission("reports:read"))],
    ) -> dict[str, str]:
        return {"subject": principal.subject}

    @app.get("/api/v1/_global_reports")
    async def global_reports(
        principal: Annotated[Principal, Depends(require_permission("reports:read"))],
    ) -> dict[str, str]:
        return {"subject": principal.subject}


async def test_require_org_permission(provider_app: ProviderAppFactory) -> None:
    workos = MockProvider.workos()
    async with provider_app(workos) as env:
        add_guarded_route(env.app)
        allowed = workos.token("user_p", permissions=["reports:read"])
        denied = workos.token("user_q", permissions=["reports:write"])
        ok = await env.client.get("/api/v1/_reports", headers={"Authorization": f"Bearer {allowed}"})
        forbidden = await env.client.get("/api/v1/_reports", headers={"Authorization": f"Bearer {denied}"})
        anonymous = await env.client.get("/api/v1/_reports")
    assert ok.status_code == 200 and ok.json() == {"subject": "user_p"}
    assert forbidden.status_code == 403
    assert anonymous.status_code == 401


async def test_an_organisation_permission_never_satisfies_a_global_one(
    provider_app: ProviderAppFactory,
) -> None:
    workos = MockProvider.workos()
    async with provider_app(workos) as env:
        add_guarded_route(env.app)
        token = workos.token("user_p", permissions=["reports:read"])
        response = await env.client.get(
            "/api/v1/_global_reports", headers={"Authorization": f"Bearer {token}"}
        )
    assert response.status_code == 403


async def test_openapi_declares_bearer_auth_on_protected_routes(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    scheme = document["components"]["securitySchemes"]["BearerAuth"]
    assert scheme == {**scheme, "type": "http", "scheme": "bearer"}
    assert document["paths"]["/api/v1/users/me"]["get"]["security"] == [{"BearerAuth": []}]
    assert "security" not in document["paths"]["/health"]["get"]
    assert (await client.get("/docs")).status_code == 200
