"""CORS, with a refused preflight logged: "blocked by CORS" in a browser is then diagnosable from
the server's log (the refused origin and what was refused; never a token — a preflight has none)."""

from __future__ import annotations

import logging

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response

log = logging.getLogger("routebook.cors")


class LoggedCORSMiddleware(CORSMiddleware):
    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code >= 400:
            origin = request_headers.get("origin", "")
            log.info(
                "CORS preflight refused for origin %r (%s); allowed origins come from CORS_ORIGINS",
                origin[:200],
                bytes(response.body).decode(errors="replace"),
            )
        return response
