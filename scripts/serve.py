"""`make run`: database (embedded unless DATABASE_URL is set), migrations, then the server of `python -m service`."""

from __future__ import annotations

import sys

from pydantic import ValidationError

from scripts.devenv import database_url
from service.config import get_settings
from service.migrations import upgrade
from service.observability import configure_logging
from service.server import serve


def main() -> None:
    try:
        settings = get_settings()
    except ValidationError as exc:
        sys.exit(f"Invalid configuration:\n{exc}")
    url, embedded = database_url(settings)
    print("Applying migrations…", flush=True)
    upgrade(url)
    base = f"http://{settings.host}:{settings.port}"
    where = f"embedded PostgreSQL under {settings.data_dir / 'postgres'}" if embedded else "DATABASE_URL"
    print(
        f"\nRoutebook on {base}  (database: {where})\n"
        f"  API docs:   {base}/docs\n"
        f"  Health:     {base}/health   Ready: {base}/ready\n",
        flush=True,
    )
    if "dev" in settings.auth_providers:
        print(
            "  Dev token:  .venv/bin/python -m scripts.dev_token --email you@example.com\n"
            '              (then: curl -H "Authorization: Bearer $TOKEN" ' + base + "/api/v1/users/me)\n",
            flush=True,
        )
    # The production server (python -m service), its timeouts and limits included.
    configure_logging(settings.log_level, settings.log_format or "json")
    serve(settings)


if __name__ == "__main__":
    main()
