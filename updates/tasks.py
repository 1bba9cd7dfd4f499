"""django-q2 entry points: nothing but calls into the services."""

from __future__ import annotations

from . import sending
from .conf import setting


def send_due_updates() -> int:
    """Run by the "Send approved updates" schedule every minute; returns the SendRun id."""
    run = sending.send_due(
        trigger="schedule", time_budget=setting("RUN_TIME_BUDGET_SECONDS")
    )
    return run.pk
