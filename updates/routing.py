"""Which route a decided batch takes — one request per update, or Target's Bulk API — and why.

The administrator sets a rule per connection (TargetConnection.send_route):

    single                  every update one request (the default; today's behaviour)
    threshold               bulk when the batch holds at least ``bulk_row_threshold`` updates
    headroom                bulk when the batch does not fit the single quota's headroom now
    threshold_or_headroom   either

At decision time a supervisor may also choose: "automatic" (the rule), "single", or "bulk" (on a
connection whose rule is not "single only"). A batch smaller than BULK_MIN_BATCH_ROWS always
stays single, whatever is chosen: small, urgent corrections are not held up by a bulk job's
processing time. `plan_route` says which route, why, and roughly how long each would take (the
batch page and the notebook show it); `route_approved` records the route on the updates just
approved, with one connection-level audit row per batch and connection. Within a bulk batch, the
bulk sender still sends single what bulk cannot carry (bulk_files.route_problem).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

from django.utils import timezone

from . import audit, quota
from .conf import setting
from .models import ProfileUpdate, SendRoute, TargetConnection, UpdateStatus

AUTOMATIC, SINGLE, BULK = "auto", "single", "bulk"
CHOICES = ((AUTOMATIC, "Automatic (the connection's rule)"), (SINGLE, "Single requests"),
           (BULK, "Bulk API"))
# The single route's pace within the headroom, for the estimate only: the sender's measured
# throughput (docs/benchmarks.md §1) is several hundred requests a second; Target's apply delay
# (usually within an hour) comes on top of either route.
SINGLE_ROWS_PER_MINUTE = 20_000
TARGET_APPLY_MINUTES = 60
_ID_CHUNK = 5000  # ids in one UPDATE (SQLite takes a bounded number of variables)


@dataclass(frozen=True)
class RoutePlan:
    route: str  # SINGLE or BULK
    why: str
    rows: int
    single_minutes: float
    bulk_minutes: float | None  # None where the connection sends single only

    @property
    def single_time(self) -> str:
        return duration_words(self.single_minutes)

    @property
    def bulk_time(self) -> str:
        return duration_words(self.bulk_minutes) if self.bulk_minutes is not None else "—"


def duration_words(minutes: float) -> str:
    if minutes < 90:
        return f"about {max(1, round(minutes))} min"
    if minutes < 48 * 60:
        return f"about {minutes / 60:.0f} h"
    return f"about {minutes / 1440:.1f} days"


def single_minutes(connection: TargetConnection, rows: int, headroom: int) -> float:
    """Rows within the headroom at the sender's pace; each further quota's worth waits a day."""
    beyond = max(0, rows - headroom)
    days = math.ceil(beyond / max(1, connection.quota_limit))
    return min(rows, headroom) / SINGLE_ROWS_PER_MINUTE + days * 1440 + TARGET_APPLY_MINUTES


def bulk_minutes(rows: int) -> float:
    """Files uploaded at the paced call rate, then Target's processing."""
    files = math.ceil(rows / max(1, setting("BULK_FILE_MAX_ROWS")))
    uploads = files / max(0.001, setting("BULK_CALLS_PER_MINUTE"))
    return uploads + rows / max(1.0, setting("BULK_ROWS_PER_MINUTE")) + TARGET_APPLY_MINUTES


def plan_route(*, connection: TargetConnection, rows: int, choice: str = AUTOMATIC,
               now: dt.datetime | None = None) -> RoutePlan:
    """The route a batch of `rows` updates of `connection` takes when decided now."""
    if choice not in (AUTOMATIC, SINGLE, BULK):
        raise ValueError(f"unknown route choice {choice!r}")
    headroom = quota.headroom(connection=connection, now=now or timezone.now())
    rule = connection.send_route
    single = single_minutes(connection, rows, headroom)
    bulk = None if rule == SendRoute.SINGLE else bulk_minutes(rows)

    def plan(route: str, why: str) -> RoutePlan:
        return RoutePlan(route, why, rows, single, bulk)

    smallest = setting("BULK_MIN_BATCH_ROWS")
    if rule == SendRoute.SINGLE:
        return plan(SINGLE, "the connection sends single requests only")
    if rows < smallest:
        return plan(SINGLE, f"fewer than {smallest:,} updates: small batches stay single")
    if choice == SINGLE:
        return plan(SINGLE, "single requests were chosen for this decision")
    if choice == BULK:
        return plan(BULK, "the bulk API was chosen for this decision")
    if rule in (SendRoute.THRESHOLD, SendRoute.THRESHOLD_OR_HEADROOM) \
            and rows >= connection.bulk_row_threshold:
        return plan(BULK, f"{rows:,} updates reach the connection's bulk threshold of "
                          f"{connection.bulk_row_threshold:,}")
    if rule in (SendRoute.HEADROOM, SendRoute.THRESHOLD_OR_HEADROOM) and rows > headroom:
        return plan(BULK, f"{rows:,} updates do not fit the single quota's headroom of "
                          f"{headroom:,}")
    return plan(SINGLE, "the batch fits the connection's rule for single requests")


def route_approved(*, update_ids: list[int], plans: dict[int, RoutePlan], by,
                   now: dt.datetime | None = None) -> int:
    """Record the bulk route on those of `update_ids` that are approved and belong to a
    connection whose plan (by connection id) says bulk; one audit row per connection. Call in
    the decision's transaction. Returns how many updates go bulk."""
    now = now or timezone.now()
    routed = 0
    for connection_id, plan in plans.items():
        if plan.route != BULK:
            continue
        count = sum(ProfileUpdate.objects.by_ids(update_ids[start:start + _ID_CHUNK]).filter(
            connection_id=connection_id, status=UpdateStatus.APPROVED, send_route=""
        ).update(send_route=BULK)
            for start in range(0, len(update_ids), _ID_CHUNK))
        if count:
            audit.record(
                audit.Action.ROUTED_BULK, at=now, by=by, connection=connection_id,
                comment=f"{count:,} approved updates take the bulk route: {plan.why}.",
                changes={"route": BULK, "updates": count, "why": plan.why})
        routed += count
    return routed
