"""django-q2 entry point for the alert check (migration 0010 schedules it every five minutes):
nothing but a call into alerts.py."""

from __future__ import annotations

from .alerts import alerts_check


def check_alerts() -> str:
    events = alerts_check()
    return f"{len(events)} alert state change{'s' if len(events) != 1 else ''}"
