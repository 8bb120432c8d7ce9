"""One request header, read straight from the ASGI scope.

For what is read on every request (the bearer token, the workspace, the request id): header names
arrive lower-cased in the scope, while a Starlette Headers object lower-cases every name it passes
again to find one.
"""

from __future__ import annotations

from starlette.types import Scope


def header(scope: Scope, name: bytes) -> str | None:
    """The first value of the header `name` (lower-case bytes), as Headers.get answers it."""
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None
