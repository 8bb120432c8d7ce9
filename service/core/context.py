"""Where a request finds the app's parts: the state its lifespan builds, installed on the app once.

The one module that touches Starlette's `app.state` (a structure test holds every other module to
that). The state's own type lives above the infrastructure (`service.state.AppState`); routes reach
its parts through the typed aliases of `service.deps`.
"""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.requests import HTTPConnection


def install(app: Starlette, state: object) -> None:
    """Make `state` the app's, for the requests it serves (the lifespan calls this)."""
    app.state.context = state


def uninstall(app: Starlette) -> None:
    app.state.context = None


def state_of(holder: Starlette | HTTPConnection) -> Any:
    """The installed state of an app, or of the app a request reached."""
    app = holder if isinstance(holder, Starlette) else holder.app
    state = getattr(app.state, "context", None)
    if state is None:
        raise RuntimeError("the app's lifespan has not started (or has ended)")
    return state
