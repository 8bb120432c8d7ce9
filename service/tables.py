"""Imports every table model, so `metadata` is complete for Alembic and the app."""

from service.planning.models import PlanningSession, Scenario, Solution
from service.users.models import User

__all__ = ["PlanningSession", "Scenario", "Solution", "User"]
