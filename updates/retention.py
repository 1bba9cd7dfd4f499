"""Retention: customer data is kept as long as each connection says, then purged.

Per connection (TargetConnection.retain_*_days; empty = kept for ever, which a system check
warns about in production):

    values   an update's identity and values, `retain_values_days` after it reached a final
             state — sent and verified / not applied / not verified, unchanged, rejected,
             cancelled, failed — measured from the latest of its recorded times; with them its
             reads, attempts' answer bodies, audit values and admin log names (purging.py);
             and import jobs' files and error texts, as long after the job finished
    reads    profile reads (what Target returned) and Target's answer bodies, `retain_reads_days`
             after they were made, whatever the update's state
    records  the non-personal record of a purged update (states, times, hashes, audit
             structure), deleted `retain_records_days` after its purge

and the bulk route's files (bulk_purging.py): a finished file's kept body and Target's answers
are emptied `retain_values_days` after it finished, once the values of every update it carried
are purged; the bulk job's record is deleted `retain_records_days` after that.

`retention_purge` (django-q2 runs it every hour, tasks.py; also `manage.py purge_retention`)
works in chunks of PROFILEOPS_RETENTION_CHUNK_SIZE rows, one short transaction each, so the
sender and the admin never wait long behind it; it starts no chunk after
PROFILEOPS_RETENTION_RUN_BUDGET_SECONDS and leaves the rest to the next run. Each run leaves a
RetentionRun per connection with counts per table — the evidence, without personal data.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter
from collections.abc import Callable

from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from . import bulk_purging, purging
from .conf import setting
from .models import (ImportJob, ProfileRead, ProfileUpdate, PurgeReason, RetentionRun,
                     SendAttempt, TargetConnection, UpdateStatus, VerificationState)

S = UpdateStatus
FINAL_STATUSES = (S.SENT, S.UNCHANGED, S.REJECTED, S.CANCELLED, S.FAILED)
# Every time an update records; it reached its final state no later than the latest of them.
_UPDATE_TIMES = ("created_at", "last_edited_at", "decided_at", "acknowledged_at", "verified_at",
                 "next_attempt_at", "lease_expires_at", "verification_next_at")
FINISHED_IMPORTS = (ImportJob.Status.DONE, ImportJob.Status.INVALID, ImportJob.Status.ERROR)


def _before(cutoff: dt.datetime, *names: str) -> Q:
    condition = Q()
    for name in names:
        condition &= Q(**{f"{name}__isnull": True}) | Q(**{f"{name}__lt": cutoff})
    return condition


def values_due(connection: TargetConnection, *, now: dt.datetime) -> QuerySet:
    """The connection's final updates whose values are due for purging."""
    if connection.retain_values_days is None:
        return ProfileUpdate.objects.none()
    cutoff = now - dt.timedelta(days=connection.retain_values_days)
    return (ProfileUpdate.objects
            .filter(connection=connection, purged_at__isnull=True, created_at__lt=cutoff,
                    status__in=FINAL_STATUSES)
            .exclude(verification_state=VerificationState.PENDING)
            .filter(_before(cutoff, *_UPDATE_TIMES)))


def _reads_due(connection: TargetConnection, now: dt.datetime) -> QuerySet:
    if connection.retain_reads_days is None:
        return ProfileRead.objects.none()
    cutoff = now - dt.timedelta(days=connection.retain_reads_days)
    return ProfileRead.objects.filter(connection=connection, purged_at__isnull=True, at__lt=cutoff)


def _attempts_due(connection: TargetConnection, now: dt.datetime) -> QuerySet:
    if connection.retain_reads_days is None:
        return SendAttempt.objects.none()
    cutoff = now - dt.timedelta(days=connection.retain_reads_days)
    return SendAttempt.objects.filter(connection=connection, purged_at__isnull=True,
                                      started_at__lt=cutoff)


def _imports_due(connection: TargetConnection, now: dt.datetime) -> QuerySet:
    if connection.retain_values_days is None:
        return ImportJob.objects.none()
    cutoff = now - dt.timedelta(days=connection.retain_values_days)
    return ImportJob.objects.filter(connection=connection, purged_at__isnull=True,
                                    status__in=FINISHED_IMPORTS, finished_at__lt=cutoff)


def _records_due(connection: TargetConnection, now: dt.datetime) -> QuerySet:
    if connection.retain_records_days is None:
        return ProfileUpdate.objects.none()
    cutoff = now - dt.timedelta(days=connection.retain_records_days)
    return ProfileUpdate.objects.filter(connection=connection, purged_at__lt=cutoff)


def _purge_values(ids: list[int], now: dt.datetime) -> Counter:
    # Locked and checked again: a failed update re-queued since the ids were read stays. By id
    # alone (by_ids): the ids are live updates in a final state, never an import's.
    final = list(ProfileUpdate.objects.by_ids(ids).select_for_update()
                 .filter(purged_at__isnull=True, status__in=FINAL_STATUSES)
                 .exclude(verification_state=VerificationState.PENDING)
                 .values_list("pk", flat=True))
    return purging.purge_updates(final, now=now, reason=PurgeReason.RETENTION)


def _delete_records(ids: list[int], now: dt.datetime) -> Counter:
    deleted = ProfileUpdate.objects.by_ids(ids).filter(purged_at__isnull=False).delete()[1]
    return Counter({purging.DELETED: deleted.get(ProfileUpdate._meta.label, 0)})


# (what is due, how one chunk of its ids is purged)
_Step = tuple[Callable[[TargetConnection, dt.datetime], QuerySet],
              Callable[[list[int], dt.datetime], Counter]]
STEPS: tuple[_Step, ...] = (
    (lambda c, now: values_due(c, now=now), _purge_values),
    (_reads_due, lambda ids, now: Counter({purging.READS: purging.purge_reads(
        ProfileRead.objects.filter(pk__in=ids), now=now)})),
    (_attempts_due, lambda ids, now: Counter({purging.ATTEMPTS: purging.purge_attempts(
        SendAttempt.objects.filter(pk__in=ids), now=now)})),
    (_imports_due, lambda ids, now: Counter({purging.IMPORTS: purging.purge_import_jobs(
        ImportJob.objects.filter(pk__in=ids), now=now)})),
    (bulk_purging.bodies_due, bulk_purging.purge_bodies),
    (_records_due, _delete_records),
    (bulk_purging.jobs_due, bulk_purging.delete_jobs),
)


def retention_purge(*, connection: TargetConnection | None = None, now: dt.datetime | None = None,
                    chunk_size: int | None = None, time_budget: float | None = None,
                    max_chunks: int | None = None) -> list[RetentionRun]:
    """Purge what is due on every connection (or one), chunk by chunk; one RetentionRun each.
    Stops starting chunks after `time_budget` seconds or `max_chunks` chunks in all."""
    now = now or timezone.now()
    chunk_size = chunk_size or setting("RETENTION_CHUNK_SIZE")
    budget = setting("RETENTION_RUN_BUDGET_SECONDS") if time_budget is None else time_budget
    deadline = time.monotonic() + budget
    left = [max_chunks if max_chunks is not None else float("inf")]
    connections = [connection] if connection else list(TargetConnection.objects.order_by("pk"))
    runs = []
    for conn in connections:
        run = RetentionRun.objects.create(connection=conn, started_at=timezone.now())
        counts: Counter = Counter()
        complete = True
        for due, purge in STEPS:
            complete &= _run_step(due, purge, conn, now, chunk_size, deadline, left, counts, run)
        run.counts = {k: v for k, v in sorted(counts.items()) if v}
        run.finished_at, run.complete = timezone.now(), complete
        run.save(update_fields=["counts", "finished_at", "complete", "chunks"])
        runs.append(run)
    return runs


def _run_step(due, purge, conn: TargetConnection, now: dt.datetime, chunk_size: int,
              deadline: float, left: list, counts: Counter, run: RetentionRun) -> bool:
    """Purge chunks of one step until nothing is due (True) or the budget ran out (False)."""
    while True:
        ids = list(due(conn, now).order_by("pk").values_list("pk", flat=True)[:chunk_size])
        if not ids:
            return True
        if left[0] <= 0 or time.monotonic() > deadline:
            return False
        with transaction.atomic():  # one short transaction per chunk
            counts.update(purge(ids, now))
        run.chunks += 1
        left[0] -= 1
        if len(ids) < chunk_size:
            return True
