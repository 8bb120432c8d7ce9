"""Workspaces: who owns planning data (a user's personal workspace, or an organisation's) and who
may act in it (memberships with roles, kept true by provider webhooks and checked on every request)."""
