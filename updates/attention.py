"""What needs an operator's attention now: reads for the dashboard's tiles and for the alerts.

Every count is bounded: through the status indexes with a cap (selectors.capped_count), the
partial index of approved updates by next attempt, the started_at index of attempts, and the
at most ~1,441 quota minute rows of a connection's rolling window.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from . import claims, quota
from .models import AuditEvent, ProfileUpdate, SendAttempt, SendRun, UpdateStatus
from .quota import MINUTE, WINDOW
from .selectors import capped_count

S = UpdateStatus
TILE_CAP = 10_000
HOUR = dt.timedelta(hours=1)


@dataclass(frozen=True)
class Tally:
    count: int
    capped: bool = False

    def __bool__(self) -> bool:
        return self.count > 0


# --- approved, but waiting: the dashboard's tiles and the update list's "waiting" filter ------
# Both count and list through these two functions, so a tile's count is its list's length.

WAITING = {"retrying": "Retrying", "deferred": "Deferred by quota"}


def retrying(updates: QuerySet[ProfileUpdate]) -> QuerySet[ProfileUpdate]:
    """Approved, with a retry scheduled after a temporary error: the retry policy sets
    next_attempt_at (and last_error); an acknowledgment, a give-up and a re-queue clear it."""
    return updates.filter(status=S.APPROVED, next_attempt_at__isnull=False)


def deferred_by_quota(updates: QuerySet[ProfileUpdate], *,
                      now: dt.datetime | None = None) -> QuerySet[ProfileUpdate]:
    """Approved and due now (what a run would claim: claims.approved_and_due), on an active
    connection whose rolling window is full (quota.full_connections): they wait for requests to
    leave the window. A retry whose time has come counts here too, and as retrying."""
    now = now or timezone.now()
    return updates.filter(claims.approved_and_due(now),
                          connection_id__in=quota.full_connections(now=now))


def waiting(updates: QuerySet[ProfileUpdate], key: str, *,
            now: dt.datetime | None = None) -> QuerySet[ProfileUpdate]:
    """`updates` narrowed to one of WAITING's keys."""
    return retrying(updates) if key == "retrying" else deferred_by_quota(updates, now=now)


@dataclass(frozen=True)
class Attention:
    failed: Tally          # gave up: need a re-queue (or a cancel)
    retrying: Tally        # approved with a retry scheduled
    deferred_by_quota: Tally  # approved and due, their connection's window full
    pending: Tally         # waiting for approval
    oldest_pending_since: dt.datetime | None
    last_run: SendRun | None


def _count(queryset) -> Tally:
    return Tally(*capped_count(queryset, cap=TILE_CAP))


def needs_attention(*, connection_id: int | None = None,
                    now: dt.datetime | None = None) -> Attention:
    updates = ProfileUpdate.objects.all()
    if connection_id is not None:
        updates = updates.filter(connection_id=connection_id)
    last_run = SendRun.objects.order_by("-started_at").first()
    oldest = (updates.filter(status=S.PENDING).order_by("id")
              .values_list("submitted_at", "created_at").first())
    return Attention(
        failed=_count(updates.filter(status=S.FAILED)),
        retrying=_count(retrying(updates)),
        deferred_by_quota=_count(deferred_by_quota(updates, now=now)),
        pending=_count(updates.filter(status=S.PENDING)),
        oldest_pending_since=(oldest[0] or oldest[1]) if oldest else None,
        last_run=last_run,
    )


@dataclass(frozen=True)
class Requests:
    """The requests of a period: first attempts and retries; failed requests (attempts Target
    did not acknowledge, most of them retried) apart from failed updates (given up)."""

    first_attempts: int
    retries: int
    acknowledged: int
    failed_requests: int
    failed_updates: int
    auth_refused: int  # HTTP 401/403: the bearer token is refused

    @property
    def total(self) -> int:
        return self.first_attempts + self.retries

    @property
    def failure_rate(self) -> float:
        return self.failed_requests / self.total if self.total else 0.0


def requests_between(*, since: dt.datetime, until: dt.datetime,
                     connection_id: int | None = None) -> Requests:
    """Attempts and give-ups in (since, until]."""
    attempts = SendAttempt.objects.started_between(since, until)
    events = AuditEvent.objects.filter(action=AuditEvent.Action.FAILED, at__gt=since,
                                       at__lte=until, update__isnull=False)
    if connection_id is not None:
        attempts = attempts.filter(connection_id=connection_id)
        events = events.filter(connection_id=connection_id)
    totals = attempts.aggregate(
        first=Count("id", filter=Q(number=1)), retries=Count("id", filter=Q(number__gt=1)),
        acknowledged=Count("id", filter=Q(outcome=SendAttempt.Outcome.ACKNOWLEDGED)),
        failed=Count("id", filter=~Q(outcome=SendAttempt.Outcome.ACKNOWLEDGED)),
        auth=Count("id", filter=Q(http_status__in=(401, 403))))
    return Requests(first_attempts=totals["first"] or 0, retries=totals["retries"] or 0,
                    acknowledged=totals["acknowledged"] or 0, failed_requests=totals["failed"] or 0,
                    failed_updates=events.count(), auth_refused=totals["auth"] or 0)


@dataclass(frozen=True)
class Hour:
    start: dt.datetime
    requests: int
    cumulative: int  # requests counted in the window up to the end of this hour

    @property
    def frees_at(self) -> dt.datetime:
        """When this hour's requests have all left the rolling window."""
        return self.start + HOUR + WINDOW


def hours_of(rows, *, now: dt.datetime) -> list[Hour]:
    """(minute, requests) rows of the window at `now` (quota.window_picture) as its 25 clock
    hours, the first and last partly inside the window, oldest first."""
    first_hour = (now - WINDOW - MINUTE).replace(minute=0, second=0, microsecond=0)
    buckets = {first_hour + HOUR * i: 0 for i in range(25)}
    for minute, requests in rows:
        hour = minute.replace(minute=0, second=0, microsecond=0)
        if hour in buckets:
            buckets[hour] += requests
    hours, running = [], 0
    for start, requests in sorted(buckets.items()):
        running += requests
        hours.append(Hour(start, requests, running))
    return hours


def quota_use(*, connection, now: dt.datetime | None = None) -> float:
    """The share of the rolling-24-hour limit in use, 0..1 (or more, after a limit cut)."""
    return quota.window_picture(connection=connection, now=now).percent_used / 100
