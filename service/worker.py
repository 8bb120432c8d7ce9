"""`python -m service.worker` (`make worker`): a solve worker. Run as many as you like, on any host
that reaches the database; each runs SOLVE_WORKERS solves at once (default: its CPU count), and
sends the outbound webhooks that solves' ends queue.

Production names its database with DATABASE_URL (and DATABASE_DIRECT_URL behind a transaction-mode
pooler); in development an unset DATABASE_URL means the embedded database of `make run`.

Imports happen inside `main()`, after the solver's fork server has been launched: the fork server
imports PyVRP on one core while this process imports its own modules on the other, and, as the
children of the fork server re-run this main module, they re-run nothing heavy.
"""

from __future__ import annotations


def main() -> None:
    from service.solver.process import start_fork_server

    start_fork_server()

    import asyncio
    import sys

    from pydantic import ValidationError

    from service.config import get_settings
    from service.core import metrics
    from service.core.observability import configure_logging
    from service.core.tracing import configure_from_env
    from service.dev.devdb import database_url
    from service.outbound.dispatcher import Dispatcher
    from service.solving.worker import serve

    try:
        settings = get_settings()
    except ValidationError as exc:
        sys.exit(f"Invalid configuration:\n{exc}")
    configure_logging(settings.log_level, settings.log_format or "json")
    try:
        configure_from_env(service_name="routebook-worker")
    except ValueError as exc:
        sys.exit(f"Invalid configuration: {exc}")
    # Its own listener with METRICS_PORT; without one, into a directory another process serves
    # (`make run`'s server), when it was handed one.
    metrics.start(settings)
    metrics.record()
    url, _embedded = database_url(settings)  # an embedded server, if any, stops when we exit
    # Outbound webhooks are sent from the worker process, beside the solves whose ends they report.
    asyncio.run(serve(settings.model_copy(update={"database_url": url}), companions=[Dispatcher]))


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        # Ctrl-C before serve() took over SIGINT (during the imports, say): no traceback.
        raise SystemExit(130) from None
