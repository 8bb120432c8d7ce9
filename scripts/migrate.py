"""`make migrate` / `make revision`: the alembic CLI against DATABASE_URL or the embedded database."""

from __future__ import annotations

import sys

from alembic.config import main as alembic_main

from service.config import get_settings
from service.dev.devdb import database_url


def main() -> None:
    database_url(get_settings())  # exports DATABASE_URL for migrations/env.py
    alembic_main(argv=sys.argv[1:], prog="alembic")


if __name__ == "__main__":
    main()
