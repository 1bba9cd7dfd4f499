"""{% recent_workflow_events as events %}: the admin index's *Recent actions* from the audit
trail (selectors.recent_workflow_events) — workflow events, not only admin form saves."""

from __future__ import annotations

from dataclasses import dataclass

from django import template
from django.db.models import Max
from django.urls import reverse

from updates import permissions, selectors
from updates.admin.timeline import _event_title, utc_text
from updates.models import AuditEvent, SendAttempt

register = template.Library()


@dataclass(frozen=True)
class RecentEvent:
    words: str  # "approved", "retry scheduled in 43 s", …
    update_id: int
    url: str
    actor: str
    when: str
    css: str  # Django's actionlist classes: addlink / changelink / deletelink


A = AuditEvent.Action
CSS = {A.STAGED: "addlink", A.IMPORTED: "addlink", A.CANCELLED: "deletelink",
       A.REJECTED: "deletelink", A.FAILED: "deletelink"}


@register.simple_tag(takes_context=True)
def recent_workflow_events(context) -> list[RecentEvent]:
    user = context.get("user")
    if user is None or not user.has_perm(permissions.PERM_VIEW):
        return []
    return [RecentEvent(
        words=_event_title(event, _attempt_number(event)), update_id=event.update_id,
        url=reverse("admin:updates_profileupdate_change", args=[event.update_id]),
        actor=event.actor.get_username() if event.actor else "the system",
        when=utc_text(event.at), css=CSS.get(event.action, "changelink"))
        for event in selectors.recent_workflow_events(user=user)]


def _attempt_number(event) -> int | None:
    """The number of the send attempt an outcome event answers, as the update page numbers it:
    the event's own count restarts at each re-queue. One small query per such event (the list
    shows a handful)."""
    if not isinstance((event.changes or {}).get("attempt"), int):
        return None
    return (SendAttempt.objects.filter(update_id=event.update_id, started_at__lte=event.at)
            .aggregate(n=Max("number"))["n"])
