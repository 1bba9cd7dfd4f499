"""Claims and leases: which updates are due, and taking them for one run without a double send.

A claim marks a batch of due updates ``sending`` with this run's lease (owner + expiry) in one
UPDATE, with bulk audit rows. Due means approved with the earliest send time and the
next-attempt time reached, or ``sending`` with a lease that ran out (a crashed worker's). On
PostgreSQL the rows are picked with ``FOR NO KEY UPDATE SKIP LOCKED``, so workers on several
machines take disjoint batches; on SQLite the IMMEDIATE transaction mode serializes claims.
Claims that were not sent are released back to ``approved`` without an attempt.

One visitor at a time, in approval order: an approved update is not due while another update of
the same visitor (connection, identity type, identity) is sending, or approved earlier (by
decided_at, then id) and still approved — so a visitor never has two updates in flight, and
its updates reach Target in the order they were approved, whatever their ids (_one_per_visitor).
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import uuid

from django.db import connection as db, transaction
from django.db.models import CharField, Exists, F, OuterRef, Q, QuerySet, Value
from django.db.models.functions import Concat

from . import audit, workflow
from .models import ProfileUpdate, TargetConnection, UpdateStatus

S = UpdateStatus
# What the sender reads and writes of a claimed update (loading the rest costs CPU per row).
SENDER_FIELDS = (
    "connection", "identity_type", "identity", "attributes", "approved_hash", "status",
    "attempt_count", "attempts_total", "next_attempt_at", "lease_owner", "lease_expires_at",
    "acknowledged_at", "last_error",
    "unsent_unchanged",  # verification.before_send clears a retry's left-out list without a query
)
# Bulk files Target has not finished with (models.BulkFile.State), whose updates are in flight.
OPEN_BULK_FILE_STATES = ("pending", "accepted")
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


def _behind_another() -> Exists:
    """Another update of the same visitor is in flight, or was approved earlier and waits —
    for `due` (a preview); the claim asks the same in Python (_one_per_visitor), because as a
    correlated subquery a planner without statistics (SQLite always, PostgreSQL right after a
    large import) read every approved update for each due one."""
    ahead = (Q(status=S.SENDING)
             | Q(status=S.APPROVED, decided_at__lt=OuterRef("decided_at"))
             | Q(status=S.APPROVED, decided_at=OuterRef("decided_at"), id__lt=OuterRef("id")))
    return Exists(_by_identity().annotate(  # the type as an expression too: see _by_identity
        identity_type_plain=Concat("identity_type", Value(""), output_field=CharField()),
    ).filter(ahead, connection_plain=OuterRef("connection_id"),
             identity_type_plain=OuterRef("identity_type"),
             identity=OuterRef("identity")).exclude(id=OuterRef("id")))


def _by_identity() -> QuerySet[ProfileUpdate]:
    """Updates (live or not: an import's rows are never approved or sending) to be looked up by
    identity, through upd_identity: the connection is compared as an expression no index
    serves, or a planner without statistics walks the connection's whole history instead."""
    return ProfileUpdate.with_pending_imports.annotate(connection_plain=F("connection_id") + 0)


def _due_conditions(now: dt.datetime, route: str = "") -> tuple[Q, Q]:
    """(approved and due, lease ran out) of one route: "" the single sender's, "bulk" the bulk
    sender's (bulk_sending.py) — neither claims the other's updates."""
    approved_and_due = (
        Q(status=S.APPROVED, send_route=route)
        & (Q(not_before__isnull=True) | Q(not_before__lte=now))
        & (Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
    )
    lease_ran_out = Q(status=S.SENDING, lease_expires_at__lt=now, send_route=route)
    return approved_and_due, lease_ran_out


def approved_and_due(now: dt.datetime) -> Q:
    """Approved updates a run may claim at `now` (the earliest send time and the next-attempt
    time reached): also what the dashboard and the list call "deferred by quota" when their
    connection's window is full (attention.deferred_by_quota)."""
    return _due_conditions(now)[0]


def due(*, now: dt.datetime, connection_id: int) -> QuerySet[ProfileUpdate]:
    """Every update of the connection that a run may claim at `now`."""
    approved_and_due, lease_ran_out = _due_conditions(now)
    return ProfileUpdate.objects.filter((approved_and_due & ~_behind_another()) | lease_ran_out,
                                        connection_id=connection_id)


def _due_parts(*, now: dt.datetime, connection_id: int,
               route: str = "") -> list[QuerySet[ProfileUpdate]]:
    """`due` as two queries, each served in id order by the (connection, status, -id) index.
    The claim uses these: with the OR of `due`, SQLite walks every row of the connection —
    0.5–1.5 s per claim with a million sent updates in the history (bench/quota_check.py).
    They leave out no update behind another of its visitor; the claim does (_one_per_visitor)."""
    return [ProfileUpdate.objects.filter(condition, connection_id=connection_id)
            for condition in _due_conditions(now, route)]


def _one_per_visitor(window: list[tuple], *, connection_id: int) -> list[tuple]:
    """The rows of `window` (id, status, lease_owner, identity_type, identity, decided_at) that
    no other update of their visitor holds back: one that is sending, or approved earlier (by
    decided_at, then id) and still approved. One query for the window, by identity."""
    approved = [row for row in window if row[1] == S.APPROVED]
    if not approved:
        return window
    others: dict[tuple[str, str], list[tuple]] = {}
    identities = {row[4] for row in approved}
    for other in _by_identity().filter(
            connection_plain=connection_id, identity__in=identities,
            status__in=(S.APPROVED, S.SENDING)).order_by().values_list(
            "id", "status", "identity_type", "identity", "decided_at"):
        others.setdefault((other[2], other[3]), []).append(other)
    # A bulk-sent update is in flight until Target has processed its file (up to 24 h): the
    # visitor's later updates wait for it, as they wait for one that is sending.
    for other in _by_identity().filter(
            connection_plain=connection_id, identity__in=identities, status=S.SENT,
            bulk_file__state__in=OPEN_BULK_FILE_STATES).order_by().values_list(
            "id", "identity_type", "identity", "decided_at"):
        others.setdefault((other[1], other[2]), []).append(
            (other[0], S.SENDING, other[1], other[2], other[3]))
    floor = dt.datetime.min.replace(tzinfo=dt.timezone.utc)

    def held_back(row: tuple) -> bool:
        mine = (row[5] or floor, row[0])
        return any(o[0] != row[0] and (o[1] == S.SENDING or (o[4] or floor, o[0]) < mine)
                   for o in others.get((row[3], row[4]), []))

    return [row for row in window if row[1] != S.APPROVED or not held_back(row)]


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
          lease_until: dt.datetime, route: str = "") -> list[ProfileUpdate]:
    """Lease the first `size` due updates of `conn` (by id) on `route` to `owner`; returns
    them."""
    with transaction.atomic():
        # The first `size` due rows by id (the first `size` of each part, merged), window after
        # window, less those another update of their visitor holds back.
        picked: list[tuple] = []
        after = 0
        while len(picked) < size:
            window = sorted(
                row
                for part in _due_parts(now=now, connection_id=conn.pk, route=route)
                for row in locking(part.filter(id__gt=after), skip_locked=True, no_key=True)
                .order_by("id").values_list("id", "status", "lease_owner", "identity_type",
                                            "identity", "decided_at")[:size]
            )[:size]
            if not window:
                break
            after = window[-1][0]
            picked += _one_per_visitor(window, connection_id=conn.pk)
        picked = [row[:3] for row in picked[:size]]
        if not picked:
            return []
        ids = [row[0] for row in picked]
        claim_, reclaim = workflow.sender_transition("claim"), workflow.sender_transition("reclaim")
        ProfileUpdate.objects.by_ids(ids).update(
            status=claim_.target, lease_owner=owner, lease_expires_at=lease_until)
        audit.record_many([i for i, status, _ in picked if status == S.APPROVED], by=None,
                          action=claim_, at=now, connection_id=conn.pk, returning=False)
        audit.record_many(
            [i for i, status, _ in picked if status != S.APPROVED], by=None, action=reclaim,
            at=now, connection_id=conn.pk,
            comments={i: f"Lease of {previous_owner or 'a worker'} ran out; claimed again."
                      for i, status, previous_owner in picked if status != S.APPROVED},
            returning=False)
        updates = list(ProfileUpdate.objects.by_ids(ids).only(*SENDER_FIELDS).order_by("id"))
    for update in updates:
        update.connection = conn
    return updates


def still_mine(ids: list[int], *, owner: str) -> list[int]:
    """Lock, in id order (no deadlocks), the rows among `ids` still leased to `owner`.
    Call inside a transaction; a lease that ran out may have passed to another worker."""
    return list(
        locking(ProfileUpdate.objects.by_ids(ids).filter(lease_owner=owner, status=S.SENDING),
                no_key=True).order_by("id").values_list("id", flat=True)
    )


def release(updates: list[ProfileUpdate], *, owner: str, now: dt.datetime, reason: str) -> None:
    """Claims that were not sent go back to approved, without an attempt."""
    with transaction.atomic():
        mine = still_mine([u.pk for u in updates], owner=owner)
        release_ = workflow.sender_transition("release")
        ProfileUpdate.objects.by_ids(mine).update(
            status=release_.target, lease_owner="", lease_expires_at=None)
        audit.record_many(mine, by=None, action=release_, at=now,
                          connection_id=updates[0].connection_id,
                          comment=f"Not sent: {reason}.", returning=False)
