"""`python -m scripts.worker` (`make worker`): a solve worker on DATABASE_URL (else the embedded
development database). Run as many as you like, on any host that reaches the database; each runs
SOLVE_WORKERS solves at once (default: its CPU count).

Imports happen inside `main()`, after the solver's fork server has been launched: the fork server
imports PyVRP on one core while this process imports its own modules on the other, and, as a
child of the fork server re-runs this main module, it re-runs nothing heavy.
"""

from __future__ import annotations


def main() -> None:
    from service.solver.process import start_fork_server

    start_fork_server()

    import asyncio
    import sys

    from pydantic import ValidationError

    from scripts.devenv import database_url
    from service.config import get_settings
    from service.core.observability import configure_logging
    from service.solving.worker import serve

    try:
        settings = get_settings()
    except ValidationError as exc:
        sys.exit(f"Invalid configuration:\n{exc}")
    configure_logging(settings.log_level, settings.log_format or "json")
    url, _embedded = database_url(settings)  # the embedded server, if any, stops when we exit
    settings = settings.model_copy(update={"database_url": url})
    asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
