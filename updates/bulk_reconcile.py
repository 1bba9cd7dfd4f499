"""Reconcile a bulk job row by row: Target's counts beside what reading every row back found.

Target's batchStatus answers only with counts (``successfulUpdates``, ``profilesNotFound``,
``failedUpdates``); which rows were applied it never says, and up to 0.1 % of a large batch may be
lost while being counted as successful. ProfileOps reads each bulk-sent update back like a single
one (verification.py) and so knows each row's outcome. `job_reconciliation` puts both side by
side and flags where they disagree — more rows not applied than Target admits (``profilesNotFound``
+ ``failedUpdates``), or more verified than Target counts as successful.
`bulk_requeue_not_applied` puts the job's not-applied rows back on the single route in one action
(requeue permission; approval kept only where the content is still what was approved; audited
``requeued_single`` per update in the same transaction).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from . import audit, open_changes, workflow
from .bulk_files import COUNT_NAMES
from .errors import require_perm
from .models import (BulkCall, BulkFile, BulkJob, ProfileUpdate, UpdateStatus,
                     VerificationState)
from .permissions import PERM_REQUEUE, refusal

S, V = UpdateStatus, VerificationState
OPEN_STATES = (S.DRAFT, S.PENDING, S.APPROVED, S.SENDING)
_CHUNK = 5000  # ids or identities in one statement (SQLite takes a bounded number)


@dataclass
class Reconciliation:
    job: BulkJob
    target: dict[str, int]  # Target's counts, summed over the job's files
    rows: dict[str, int]  # ProfileOps' per-row outcomes: verified, not_applied, ...
    disagreements: list[str] = field(default_factory=list)

    @property
    def agrees(self) -> bool:
        return not self.disagreements


def job_reconciliation(job: BulkJob) -> Reconciliation:
    """Target's counts and the rows' outcomes of `job`, and where they disagree."""
    target = dict.fromkeys(COUNT_NAMES, 0)
    for counts in BulkFile.objects.filter(job=job).values_list("counts", flat=True):
        for name in COUNT_NAMES:
            target[name] += int((counts or {}).get(name, 0))
    rows = dict.fromkeys(("verified", "not_applied", "unverified", "verifying", "off",
                          "waiting", "requeued_single", "failed"), 0)
    for status, state, n in (ProfileUpdate.objects.filter(bulk_file__job=job)
                             .values_list("status", "verification_state")
                             .annotate(n=Count("id")).order_by()):
        rows[_row_outcome(status, state)] += n
    result = Reconciliation(job, target, rows)
    finished = job.state in (BulkJob.State.COMPLETE, BulkJob.State.STUCK,
                             BulkJob.State.TIMED_OUT)
    if finished:
        admitted = target["profilesNotFound"] + target["failedUpdates"]
        missing = rows["not_applied"] + rows["requeued_single"]
        if missing > admitted:
            result.disagreements.append(
                f"Target says {target['failedUpdates']:,} failed and "
                f"{target['profilesNotFound']:,} not found; reads say {missing:,} not applied.")
        if rows["verified"] > target["successfulUpdates"]:
            result.disagreements.append(
                f"Target counts {target['successfulUpdates']:,} successful; reads verified "
                f"{rows['verified']:,}.")
    return result


def _row_outcome(status: str, state: str) -> str:
    if status == S.SENT:
        return {V.VERIFIED: "verified", V.NOT_APPLIED: "not_applied", V.UNVERIFIED: "unverified",
                V.PENDING: "verifying", V.OFF: "off"}.get(state, "verifying")
    if status == S.FAILED:
        return "failed"
    if status == S.SENDING:
        return "waiting"
    return "requeued_single"  # back on the single route (approved, or sent again since)


@dataclass
class Requeued:
    requeued: int = 0
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (update id, why)


def bulk_requeue_not_applied(*, job: BulkJob, by, comment: str = "",
                             now: dt.datetime | None = None) -> Requeued:
    """Put every not-applied row of `job` back to approved on the single route, in one
    transaction. A row whose content no longer matches its approval, or whose visitor has
    another open update meanwhile, is left as it is and reported."""
    transition = workflow.T["requeue_single"]
    require_perm(by, PERM_REQUEUE, refusal(PERM_REQUEUE))
    now = now or timezone.now()
    result = Requeued()
    with transaction.atomic():
        candidates = list(ProfileUpdate.objects.filter(
            bulk_file__job=job, status=S.SENT, verification_state=V.NOT_APPLIED)
            .only("id", "connection_id", "identity_type", "identity", "attributes",
                  "approved_hash").order_by("id"))
        if not candidates:
            return result
        open_changes.lock_visitors(job.connection_id,
                                   ((u.identity_type, u.identity) for u in candidates))
        busy = _visitors_with_open_updates(job.connection_id, candidates)
        ids = []
        for update in candidates:
            if not update.matches_approval():
                result.skipped.append((update.pk, "its content differs from what was approved"))
            elif (update.identity_type, update.identity) in busy:
                result.skipped.append((update.pk, "the visitor has another open update"))
            else:
                ids.append(update.pk)
        for start in range(0, len(ids), _CHUNK):  # a stuck file's rows may all come back
            ProfileUpdate.objects.by_ids(ids[start:start + _CHUNK]).filter(status=S.SENT).update(
                status=transition.target, send_route="", attempt_count=0, next_attempt_at=None,
                acknowledged_at=None, last_error="", verification_state="",
                verification_checks=0, verification_next_at=None, verified_at=None)
        audit.record_many(ids, by=by, action=transition, at=now,
                            connection_id=job.connection_id, returning=False,
                            comment=comment or f"Not applied after bulk job #{job.pk}; "
                                               "re-queued on the single route.")
        audit.record(
            audit.Action.BULK_REQUEUED_SINGLE, at=now, by=by, connection=job.connection_id,
            comment=f"Bulk job #{job.pk}: {len(ids):,} not-applied updates re-queued single.",
            changes={"bulk_job": job.pk, "requeued": len(ids), "skipped": len(result.skipped)})
    result.requeued = len(ids)
    return result


def _visitors_with_open_updates(connection_id: int, updates: list[ProfileUpdate]
                                ) -> set[tuple[str, str]]:
    identities = sorted({u.identity for u in updates})
    return {visitor for start in range(0, len(identities), _CHUNK)
            for visitor in ProfileUpdate.objects.filter(
                connection_id=connection_id, identity__in=identities[start:start + _CHUNK],
                status__in=OPEN_STATES).values_list("identity_type", "identity")}


@dataclass(frozen=True)
class BulkUsage:
    """The bulk route of one connection beside its single quota (dashboard and /metrics)."""

    rows_in_flight: int  # in files not yet uploaded, or accepted and not finished by Target
    rows_verified: int
    rows_not_applied: int
    calls_last_minute: int  # uploads and status polls, of the 50 Target allows a minute
    open_jobs: int


def bulk_usage(*, connection_id: int, now: dt.datetime | None = None) -> BulkUsage:
    now = now or timezone.now()
    carried = ProfileUpdate.objects.filter(connection_id=connection_id, bulk_file__isnull=False)
    by_state = dict(carried.filter(status=S.SENT).values_list("verification_state")
                    .annotate(n=Count("id")).order_by())
    in_flight = carried.filter(bulk_file__state__in=("pending", "accepted")).count()
    return BulkUsage(
        rows_in_flight=in_flight, rows_verified=by_state.get(V.VERIFIED, 0),
        rows_not_applied=by_state.get(V.NOT_APPLIED, 0),
        calls_last_minute=BulkCall.objects.filter(
            connection_id=connection_id, at__gt=now - dt.timedelta(minutes=1)).count(),
        open_jobs=BulkJob.objects.filter(connection_id=connection_id, state__in=(
            BulkJob.State.SENDING, BulkJob.State.PROCESSING)).count())
