"""Where a request finds the app's parts: the state its lifespan builds, installed on the app once.

The one module that keeps the app's state (a structure test holds every other module away from
Starlette's `app.state`). The state's own type lives above the infrastructure
(`service.state.AppState`); routes reach its parts through the typed aliases of `service.deps`.
"""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.requests import HTTPConnection

# An attribute of the app itself rather than of `app.state`: Starlette's State answers every read
# through __getattr__ after a failed lookup, which costs more than the rest of a cached request's
# identity check, and the gate reads the state on every request.
_ATTRIBUTE = "_routebook_state"


def install(app: Starlette, state: object) -> None:
    """Make `state` the app's, for the requests it serves (the lifespan calls this)."""
    setattr(app, _ATTRIBUTE, state)


def uninstall(app: Starlette) -> None:
    setattr(app, _ATTRIBUTE, None)


def state_of(holder: Starlette | HTTPConnection) -> Any:
    """The installed state of an app, or of the app a request reached."""
    # Starlette first: HTTPConnection is a Mapping, and isinstance against an ABC costs a lookup.
    app = holder if isinstance(holder, Starlette) else holder.scope["app"]
    state = getattr(app, _ATTRIBUTE, None)
    if state is None:
        raise RuntimeError("the app's lifespan has not started (or has ended)")
    return state
