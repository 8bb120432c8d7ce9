"""`python -m service`: the production entrypoint — uvicorn with the timeouts and limits from settings.

`--workers N` overrides WEB_CONCURRENCY for this run. Everything else comes from the environment
(service/config.py), so the command is the same on every host: `HOST=0.0.0.0 PORT=$PORT python -m service`.
"""

from __future__ import annotations

import argparse
import sys

from pydantic import ValidationError

from service.config import get_settings
from service.core import metrics
from service.core.observability import configure_logging
from service.core.server import serve
from service.core.tracing import requested_exporters


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m service", description=__doc__)
    parser.add_argument("--workers", type=int, help="worker processes (default: WEB_CONCURRENCY, 1)")
    args = parser.parse_args(argv)
    if args.workers is not None and args.workers < 1:
        parser.error("--workers must be at least 1")
    try:
        settings = get_settings()
        requested_exporters()  # each server process installs tracing itself; refused here, once
    except (ValidationError, ValueError) as exc:
        sys.exit(f"Invalid configuration:\n{exc}")
    # Before uvicorn starts: its supervisor's own lines (workers > 1) go through our handler too.
    configure_logging(settings.log_level, settings.log_format or "json")
    # Before uvicorn's workers start: they inherit the metrics directory, this process serves it.
    metrics.start(settings)
    serve(settings, workers=args.workers)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        # Ctrl-C before uvicorn took over SIGINT (during start-up): no traceback.
        sys.exit(130)
