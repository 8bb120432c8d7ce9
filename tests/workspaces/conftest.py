"""Workspace tests run apps configured for mock providers (tests/users' fixtures)."""

from tests.users.conftest import provider_app

__all__ = ["provider_app"]
