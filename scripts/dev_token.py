"""Print a dev-issuer access token: `python -m scripts.dev_token --email a@example.com [--role admin]`.

Development only. The key lives in .data/dev-issuer.pem, shared with `make run`'s server.
"""

from __future__ import annotations

import argparse
import sys

from pydantic import ValidationError

from service.config import get_settings
from service.dev.routes import DevTokenCreate, mint_dev_token
from service.providers.dev import DevIssuer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--email", required=True)
    parser.add_argument("--subject", help="defaults to one derived from the email")
    parser.add_argument("--role", action="append", default=[], help="repeatable")
    parser.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds")
    args = parser.parse_args(argv)

    settings = get_settings()
    if settings.is_production or "dev" not in settings.auth_providers:
        print(
            "The dev issuer is enabled only outside production with AUTH_PROVIDERS including dev.",
            file=sys.stderr,
        )
        return 2
    try:
        body = DevTokenCreate(email=args.email, subject=args.subject, roles=args.role, ttl_seconds=args.ttl)
    except ValidationError as exc:
        print(f"Invalid arguments: {exc}", file=sys.stderr)
        return 2
    issuer = DevIssuer.load_or_create(settings.dev_key_path, settings.dev_issuer)
    print(mint_dev_token(issuer, body).access_token)
    return 0


if __name__ == "__main__":
    sys.exit(main())
