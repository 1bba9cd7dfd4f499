"""django-q2 entry points: nothing but calls into the services."""

from __future__ import annotations

from . import health, sending
from .conf import setting


def send_due_updates() -> int:
    """Run by the "Send approved updates" schedule every minute; returns the SendRun id."""
    run = sending.send_due(
        trigger="schedule", time_budget=setting("RUN_TIME_BUDGET_SECONDS")
    )
    # Only a run that completed counts: a schedule that keeps failing makes /readyz go stale.
    health.heartbeat_beat(name=health.SEND_SCHEDULE)
    return run.pk


def verify_sent_updates() -> int:
    """Run by the "Verify sent updates" schedule every five minutes; returns the reads made."""
    from . import verification

    run = verification.updates_verify_due(
        time_budget=setting("RUN_TIME_BUDGET_SECONDS"))
    return run.checked
