"""Bookkeeping of one sent batch, in one transaction and a constant number of queries.

The SendAttempt rows, the new states (decided by the retry policy), audit rows, daily
acknowledgments and failures, and the run's totals. Only rows still leased to this run are
touched: if a lease ran out and another worker took the update, that worker owns its state now
(this run's attempt is still recorded). Daily *requests* are not counted here but when quota is
reserved (quota.reserve), so the day's figure always equals what counted against the window,
even after a worker died between sending and this step.
"""

from __future__ import annotations

import datetime as dt
import logging

from django.db import transaction
from django.db.models import F

from . import audit, claims, quota, rows, workflow
from .delivery import Sent
from .models import (AuditEvent, ProfileUpdate, SendAttempt, SendRun, TargetConnection,
                     UpdateStatus)
from .retry_policy import LAST_ERROR_CHARS, Decision, RetryPolicy, fail
from .target import Outcome

S = UpdateStatus
logger = logging.getLogger(__name__)
RUN_TOTALS = ["claimed", "requests_sent", "acknowledged", "retried", "failed", "deferred_by_quota"]


def record_batch(*, run: SendRun, owner: str, conn: TargetConnection, sent: list[Sent],
                 unsendable: list[tuple[ProfileUpdate, str]], policy: RetryPolicy,
                 now: dt.datetime) -> None:
    """Record a batch's answers (and the updates that could not be sent) and the run's totals."""
    run.requests_sent += len(sent)
    ids = sorted({s.update.pk for s in sent} | {u.pk for u, _ in unsendable})
    if not ids:
        run.save(update_fields=RUN_TOTALS)
        return
    with transaction.atomic():
        # Lock before inserting attempts (which reference the rows), in id order: no deadlocks.
        mine = set(claims.still_mine(ids, owner=owner))
        rows.insert_rows(SendAttempt, (_attempt(s, conn=conn, owner=owner) for s in sent))
        decisions = _decide_all(sent, unsendable, mine, policy, now)
        lost = len(ids) - len(mine)
        if lost:
            logger.warning("send run %s: %d update(s) were claimed again by another worker after "
                           "their lease ran out; their outcome is left to that worker", run.pk, lost,
                           extra={"run_id": run.pk, "connection": conn.client_code})
        _apply(decisions, conn=conn, now=now)
        failed = sum(1 for d in decisions if d.to_status == S.FAILED)
        quota.record_daily(rows=[quota.DailyRow(
            connection_id=conn.pk, day=now.date(), failed=failed,
            acknowledged=sum(1 for s in sent if s.answer.outcome == Outcome.ACKNOWLEDGED),
        )])
        run.acknowledged += sum(1 for d in decisions if d.to_status == S.SENT)
        run.retried += sum(1 for d in decisions if d.to_status == S.APPROVED)
        run.failed += failed
        run.save(update_fields=RUN_TOTALS)


def _attempt(s: Sent, *, conn: TargetConnection, owner: str) -> dict:
    """A SendAttempt row (rows.insert_rows)."""
    return {
        "update_id": s.update.pk, "connection_id": conn.pk, "number": s.update.attempts_total + 1,
        "started_at": s.started_at, "method": s.method, "request_bytes": s.size,
        "http_status": s.answer.http_status, "response_body": s.answer.body,
        "latency_ms": s.latency_ms, "outcome": s.answer.outcome.value,
        "error": s.answer.error[:LAST_ERROR_CHARS], "worker": owner,
    }


def _decide_all(sent: list[Sent], unsendable: list[tuple[ProfileUpdate, str]], mine: set[int],
                policy: RetryPolicy, now: dt.datetime) -> list[Decision]:
    unexpected_so_far = _unexpected_answers_since_requeue(
        [s.update for s in sent if s.update.pk in mine and s.answer.outcome == Outcome.UNEXPECTED])
    decisions = [policy.decide(s, now=now, unexpected_so_far=unexpected_so_far.get(s.update.pk, 1))
                 for s in sent if s.update.pk in mine]
    decisions.extend(fail(update, problem) for update, problem in unsendable if update.pk in mine)
    return decisions


def _apply(decisions: list[Decision], *, conn: TargetConnection, now: dt.datetime) -> None:
    """Write the decided states and their audit rows."""
    # The common case, acknowledgments, share every new value: one plain UPDATE. Retries and
    # failures differ per row (next-attempt time, reason): one bulk UPDATE … CASE.
    acknowledged_ids = [d.update.pk for d in decisions if d.to_status == S.SENT]
    if acknowledged_ids:
        ProfileUpdate.objects.by_ids(acknowledged_ids).update(
            status=workflow.T["acknowledge"].target, acknowledged_at=now, next_attempt_at=None,
            last_error="",
            attempt_count=F("attempt_count") + 1, attempts_total=F("attempts_total") + 1,
            lease_owner="", lease_expires_at=None)
    others = [d.update for d in decisions if d.to_status != S.SENT]
    for update in others:
        update.lease_owner = ""
        update.lease_expires_at = None
    # Being sent, so live; by id alone (ProfileUpdate.objects.by_ids says why).
    ProfileUpdate.with_pending_imports.bulk_update(others, fields=[
        "status", "attempt_count", "attempts_total", "next_attempt_at", "lease_owner",
        "lease_expires_at", "last_error",
    ])
    for transition in dict.fromkeys(d.transition for d in decisions):
        decided = [d for d in decisions if d.transition is transition]
        audit.record_many(
            [d.update.pk for d in decided], by=None, action=transition, at=now,
            connection_id=conn.pk,
            comments={d.update.pk: d.comment[:LAST_ERROR_CHARS] for d in decided},
            changes_by_update={d.update.pk: d.changes for d in decided}, returning=False)


def _unexpected_answers_since_requeue(updates: list[ProfileUpdate]) -> dict[int, int]:
    """Unexpected answers per update since its last (re-)queue, this batch's included."""
    if not updates:
        return {}
    first_counted = {u.pk: u.attempts_total - u.attempt_count for u in updates}
    counts = dict.fromkeys(first_counted, 0)
    for update_id, number in SendAttempt.objects.filter(
        update_id__in=list(first_counted), outcome=Outcome.UNEXPECTED
    ).values_list("update_id", "number"):
        if number > first_counted[update_id]:
            counts[update_id] += 1
    return counts


def record_before_send_failure(updates: list[ProfileUpdate], *, owner: str,
                               conn: TargetConnection, error: Exception,
                               now: dt.datetime) -> list[ProfileUpdate]:
    """Reading before sending failed for a claimed batch: the updates still leased to `owner`
    are sent whole (the values Target held are not kept this time), each with an audit row saying
    why. Returns them, in their order."""
    with transaction.atomic():
        mine = set(claims.still_mine([u.pk for u in updates], owner=owner))
        audit.record_many(
            [update.pk for update in updates if update.pk in mine], by=None,
            action=AuditEvent.Action.READ_BEFORE_SEND_FAILED, from_status=S.SENDING,
            to_status=S.SENDING, at=now, connection_id=conn.pk, returning=False,
            comment=f"Reading Target before sending failed ({type(error).__name__}); "
            "sent with every attribute.")
    kept = [u for u in updates if u.pk in mine]
    for update in kept:
        update.send_attributes = None
    return kept
