from __future__ import annotations

import httpx
from fastapi import FastAPI


async def test_dev_token_reaches_users_me(app: FastAPI, client: httpx.AsyncClient) -> None:
    token = app.state.dev_issuer.mint(subject="dev|a", email="a@example.com")
    response = await client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    assert response.json()["email"] == "a@example.com"
