"""Recover from missed webhook deliveries: `python -m scripts.reconcile_users --provider clerk [--dry-run]`.

Pages through the provider's user list (Clerk GET /v1/users, WorkOS GET /user_management/users,
Supabase GET /auth/v1/admin/users), upserts every user under the webhook rules, and tombstones
local users the provider confirms it no longer has. Progress goes to stderr, the summary to stdout.
API keys come from settings only (CLERK_SECRET_KEY, WORKOS_API_KEY, SUPABASE_SERVICE_ROLE_KEY);
the database is DATABASE_URL, else the embedded development database.

Exit status: 0 done, 1 the provider's API failed, 2 configuration missing, 3 mass tombstone refused.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import httpx

from service import providers
from service.config import Settings, get_settings
from service.core.db import Database
from service.dev.devdb import database_url
from service.main import identity_for
from service.providers.api import ProviderAPIError
from service.providers.events import MalformedPayload
from service.webhooks.reconcile import MassTombstoneRefused, ReconcileSummary, reconcile_users

HTTP_TIMEOUT_SECONDS = 30.0


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def _run(args: argparse.Namespace, settings: Settings, url: str) -> ReconcileSummary:
    db = Database.from_settings(settings, url)
    try:
        # Provider APIs answer directly; a redirect would carry the API key somewhere else.
        async with httpx.AsyncClient(timeout=HTTP_TIMEOUT_SECONDS, follow_redirects=False) as http:
            return await reconcile_users(
                args.provider,
                settings,
                db,
                identity_for(db, settings),
                http,
                dry_run=args.dry_run,
                allow_mass_tombstone=args.allow_mass_tombstone,
                progress=_progress,
            )
    finally:
        await db.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.reconcile_users", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--provider", required=True, choices=providers.names())
    parser.add_argument("--dry-run", action="store_true", help="count what would change; write nothing")
    parser.add_argument(
        "--allow-mass-tombstone",
        action="store_true",
        help="tombstone even when most local users seem gone (check the API key first)",
    )
    args = parser.parse_args(argv)

    settings = get_settings()
    url, _embedded = database_url(settings)  # the embedded server, if any, stops when we exit
    try:
        summary = asyncio.run(_run(args, settings, url))
    except ValueError as exc:  # a missing API key or provider URL, named by its variable
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (ProviderAPIError, MalformedPayload) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except MassTombstoneRefused as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 3
    counts = " ".join(f"{name}={value}" for name, value in summary.as_dict().items())
    print(f"{args.provider}: {counts}" + (" (dry run: nothing written)" if args.dry_run else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
