"""/docs is Swagger UI served from this process: every URL it names is ours, and each one answers."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import httpx

from service.core.docs import ASSETS_DIR

CONTENT_TYPES = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".png": "image/png",
    ".json": "application/json",
}


class _References(HTMLParser):
    """Every URL the page makes the browser load: src/href attributes and Swagger UI's `url:`."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._in_script = tag == "script"
        self.urls.extend(value for name, value in attrs if name in ("src", "href") and value)

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts.append(data)


def _references(html: str) -> _References:
    parser = _References()
    parser.feed(html)
    for script in parser.scripts:
        parser.urls.extend(re.findall(r"""\burl:\s*['"]([^'"]+)['"]""", script))
    return parser


async def test_docs_page_names_only_same_origin_urls_and_each_is_served(client: httpx.AsyncClient) -> None:
    page = await client.get("/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    references = _references(page.text)
    # The stylesheet, the favicon, the bundle and the OpenAPI document.
    assert len(references.urls) == 4, references.urls
    assert "/openapi.json" in references.urls
    # Nothing absolute anywhere on the page: no CDN, no online validator, no protocol-relative URL.
    assert not re.search(r"https?:|//[a-z0-9]", page.text, re.IGNORECASE), page.text
    assert '"validatorUrl": null' in page.text
    for url in references.urls:
        assert url.startswith("/") and not url.startswith("//"), url
        asset = await client.get(url)
        assert asset.status_code == 200, url
        suffix = url[url.rfind(".") :]
        assert asset.headers["content-type"].split(";")[0] == CONTENT_TYPES[suffix], url
        assert asset.content, url


async def test_docs_keep_the_bearer_authorize_button_and_the_browser_to_this_origin(
    client: httpx.AsyncClient,
) -> None:
    page = await client.get("/docs")
    # The token given to Authorize survives a reload.
    assert '"persistAuthorization": true' in page.text
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "connect-src 'self'" in policy
    document = (await client.get("/openapi.json")).json()
    assert document["components"]["securitySchemes"]["BearerAuth"]["scheme"] == "bearer"


async def test_the_assets_are_swagger_ui_5_from_fastapi_offline(client: httpx.AsyncClient) -> None:
    bundle = (ASSETS_DIR / "swagger-ui-bundle.js").read_bytes()
    # Swagger UI 5 is the first to render OpenAPI 3.1, which this document is.
    assert b"OpenAPI31" in bundle
    assert (await client.get("/openapi.json")).json()["openapi"].startswith("3.1")
    served = await client.get("/docs/assets/swagger-ui-bundle.js")
    assert served.content == bundle


async def test_docs_assets_are_not_in_the_api_document(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert not [path for path in paths if path.startswith("/docs")]
