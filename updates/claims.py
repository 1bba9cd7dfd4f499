"""Claims and leases: which updates are due, and taking them for one run without a double send.

A claim marks a batch of due updates ``sending`` with this run's lease (owner + expiry) in one
UPDATE, with bulk audit rows. Due means approved with the earliest send time and the
next-attempt time reached, or ``sending`` with a lease that ran out (a crashed worker's). On
PostgreSQL the rows are picked with ``FOR NO KEY UPDATE SKIP LOCKED``, so workers on several
machines take disjoint batches; on SQLite the IMMEDIATE transaction mode serializes claims.
Claims that were not sent are released back to ``approved`` without an attempt.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import uuid

from django.db import connection as db, transaction
from django.db.models import Q, QuerySet

from . import workflow
from .models import ProfileUpdate, TargetConnection, UpdateStatus

S = UpdateStatus
# What the sender reads and writes of a claimed update (loading the rest costs CPU per row).
SENDER_FIELDS = (
    "connection", "identity_type", "identity", "attributes", "approved_hash", "status",
    "attempt_count", "attempts_total", "next_attempt_at", "lease_owner", "lease_expires_at",
    "acknowledged_at", "last_error",
    "unsent_unchanged",  # verification.before_send clears a retry's left-out list without a query
)
# Requests are started only while the lease still covers a full request plus this margin.
LEASE_SAFETY_SECONDS = 5.0


def lease_owner(worker: str | None) -> str:
    """Unique per run, so two runs in one process (threads) never share a lease."""
    base = worker or f"{socket.gethostname()}:{os.getpid()}"
    return f"{base[:55]}/{uuid.uuid4().hex[:8]}"


def dispatch_deadline(*, claimed_at: float, lease_seconds: float, run_deadline: float | None,
                      worst_request_seconds: float) -> float:
    """Start no request that could still be running when the lease ends (or the run's budget)."""
    worst = worst_request_seconds + LEASE_SAFETY_SECONDS
    lease_bound = claimed_at + max(lease_seconds - worst, lease_seconds / 2)
    return lease_bound if run_deadline is None else min(lease_bound, run_deadline)


def _due_conditions(now: dt.datetime) -> tuple[Q, Q]:
    approved_and_due = (
        Q(status=S.APPROVED)
        & (Q(not_before__isnull=True) | Q(not_before__lte=now))
        & (Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
    )
    lease_ran_out = Q(status=S.SENDING, lease_expires_at__lt=now)
    return approved_and_due, lease_ran_out


def approved_and_due(now: dt.datetime) -> Q:
    """Approved updates a run may claim at `now` (the earliest send time and the next-attempt
    time reached): also what the dashboard and the list call "deferred by quota" when their
    connection's window is full (attention.deferred_by_quota)."""
    return _due_conditions(now)[0]


def due(*, now: dt.datetime, connection_id: int) -> QuerySet[ProfileUpdate]:
    """Every update of the connection that a run may claim at `now`."""
    approved_and_due, lease_ran_out = _due_conditions(now)
    return ProfileUpdate.objects.filter(approved_and_due | lease_ran_out,
                                        connection_id=connection_id)


def _due_parts(*, now: dt.datetime, connection_id: int) -> list[QuerySet[ProfileUpdate]]:
    """`due` as two queries, each served in id order by the (connection, status, -id) index.
    The claim uses these: with the OR of `due`, SQLite walks every row of the connection —
    0.5–1.5 s per claim with a million sent updates in the history (bench/quota_check.py)."""
    return [ProfileUpdate.objects.filter(condition, connection_id=connection_id)
            for condition in _due_conditions(now)]


def count_due(*, now: dt.datetime, connection_id: int, at_most: int) -> int:
    """How many updates are due, counting no further than `at_most` (cheap on a long history)."""
    return min(at_most, sum(part[:at_most].count()
                            for part in _due_parts(now=now, connection_id=connection_id)))


def locking(qs: QuerySet, **options) -> QuerySet:
    """Row locks where the database has them (PostgreSQL); SQLite's IMMEDIATE mode serializes."""
    if not db.features.has_select_for_update:
        return qs
    if options.get("skip_locked") and not db.features.has_select_for_update_skip_locked:
        options.pop("skip_locked")
    if not db.features.has_select_for_no_key_update:
        options.pop("no_key", None)
    return qs.select_for_update(**options)


def claim(*, conn: TargetConnection, owner: str, size: int, now: dt.datetime,
          lease_until: dt.datetime) -> list[ProfileUpdate]:
    """Lease the first `size` due updates of `conn` (by id) to `owner`; returns them."""
    with transaction.atomic():
        # The first `size` due rows by id: the first `size` of each part, merged.
        picked = sorted(
            row
            for part in _due_parts(now=now, connection_id=conn.pk)
            for row in locking(part, skip_locked=True, no_key=True)
            .order_by("id").values_list("id", "status", "lease_owner")[:size]
        )[:size]
        if not picked:
            return []
        ids = [row[0] for row in picked]
        claim_, reclaim = workflow.sender_transition("claim"), workflow.sender_transition("reclaim")
        ProfileUpdate.objects.filter(id__in=ids).update(
            status=claim_.target, lease_owner=owner, lease_expires_at=lease_until)
        workflow.audit_rows([i for i, status, _ in picked if status == S.APPROVED], by=None,
                            action=claim_, at=now, connection_id=conn.pk, returning=False)
        workflow.audit_rows(
            [i for i, status, _ in picked if status != S.APPROVED], by=None, action=reclaim,
            at=now, connection_id=conn.pk,
            comments={i: f"Lease of {previous_owner or 'a worker'} ran out; claimed again."
                      for i, status, previous_owner in picked if status != S.APPROVED},
            returning=False)
        updates = list(ProfileUpdate.objects.filter(id__in=ids).only(*SENDER_FIELDS).order_by("id"))
    for update in updates:
        update.connection = conn
    return updates


def still_mine(ids: list[int], *, owner: str) -> list[int]:
    """Lock, in id order (no deadlocks), the rows among `ids` still leased to `owner`.
    Call inside a transaction; a lease that ran out may have passed to another worker."""
    return list(
        locking(ProfileUpdate.objects.filter(id__in=ids, lease_owner=owner, status=S.SENDING),
                no_key=True).order_by("id").values_list("id", flat=True)
    )


def release(updates: list[ProfileUpdate], *, owner: str, now: dt.datetime, reason: str) -> None:
    """Claims that were not sent go back to approved, without an attempt."""
    with transaction.atomic():
        mine = still_mine([u.pk for u in updates], owner=owner)
        release_ = workflow.sender_transition("release")
        ProfileUpdate.objects.filter(id__in=mine).update(
            status=release_.target, lease_owner="", lease_expires_at=None)
        workflow.audit_rows(mine, by=None, action=release_, at=now,
                            connection_id=updates[0].connection_id,
                            comment=f"Not sent: {reason}.", returning=False)
