"""Retention per connection (updates/retention.py, purging.py): values past their time are
replaced by keyed hashes in short chunks, reads and answers on their own clock, records deleted
last — and sending goes on meanwhile."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from tests.helpers import seed_history
from updates import errors, retention, sending, workflow
from updates.hashing import keyed_hash
from updates.models import (AuditEvent, ImportJob, ProfileRead, ProfileUpdate, PurgeReason,
                            RetentionRun, SendAttempt, UpdateStatus, VerificationState)

S = UpdateStatus
DAY = dt.timedelta(days=1)


def test_values_past_retention_become_keyed_hashes_and_the_rest_stays(connection, operator):
    connection.retain_values_days, connection.retain_reads_days = 90, None
    connection.save()
    old = seed_history(connection, operator, count=5, age_days=100)
    recent = seed_history(connection, operator, count=2, age_days=10)

    [run] = retention.retention_purge(chunk_size=2)

    assert run.complete and run.chunks == 3  # 5 updates in chunks of 2
    assert run.counts["profile updates"] == 5 and run.counts["send attempts"] == 5
    for before in old:
        update = ProfileUpdate.objects.get(pk=before.pk)
        assert update.identity == keyed_hash(before.identity)
        assert update.purge_reason == PurgeReason.RETENTION
        assert update.attributes == {"loyaltyTier": keyed_hash(before.attributes["loyaltyTier"])}
    assert ProfileUpdate.objects.filter(pk__in=[u.pk for u in recent], purged_at=None).count() == 2
    event = AuditEvent.objects.filter(update=old[0]).get()
    assert event.changes["identity"]["after"] == keyed_hash(old[0].identity)  # structure stays
    assert SendAttempt.objects.filter(update=old[0]).get().response_body == ""


def test_the_same_value_sent_twice_keeps_one_hash(connection, operator):
    seed_history(connection, operator, count=6, age_days=100)
    retention.retention_purge()
    hashes = list(ProfileUpdate.objects.values_list("attributes__loyaltyTier", flat=True))
    assert len(set(hashes)) == 3 and keyed_hash("tier-0") in hashes


def test_reads_and_answers_go_on_their_own_shorter_clock(connection, operator, stage):
    open_update = stage()
    ProfileRead.objects.create(update=open_update, connection=connection,
                               at=timezone.now() - 40 * DAY, purpose="diff", outcome="found",
                               attributes={"loyaltyTier": {"value": "secret-tier"}})
    retention.retention_purge()
    read = ProfileRead.objects.get()
    assert read.purged_at and "secret-tier" not in str(read.attributes)
    assert ProfileUpdate.objects.get(pk=open_update.pk).purged_at is None  # still open


def test_open_updates_and_pending_verifications_are_never_purged(connection, operator):
    seed_history(connection, operator, count=2, age_days=400, status=S.APPROVED)
    seed_history(connection, operator, count=2, age_days=400,
                 verification_state=VerificationState.PENDING)
    retention.retention_purge()
    assert not ProfileUpdate.objects.filter(purged_at__isnull=False).exists()


def test_retention_off_keeps_everything(connection, operator):
    connection.retain_values_days = connection.retain_reads_days = None
    connection.retain_records_days = None
    connection.save()
    seed_history(connection, operator, count=2, age_days=3000)
    [run] = retention.retention_purge()
    assert run.counts == {} and not ProfileUpdate.objects.filter(purged_at__isnull=False).exists()


def test_the_non_personal_record_is_deleted_after_its_own_time(connection, operator):
    connection.retain_records_days = 30
    connection.save()
    seed_history(connection, operator, count=3, age_days=100)
    retention.retention_purge()  # purged now: the record stays 30 days more
    assert ProfileUpdate.objects.count() == 3
    retention.retention_purge(now=timezone.now() + 31 * DAY)
    assert ProfileUpdate.objects.count() == 0
    assert sum(r.counts.get("records deleted", 0) for r in RetentionRun.objects.all()) == 3


def test_a_failed_update_once_purged_cannot_be_requeued(connection, operator):
    [failed] = seed_history(connection, operator, count=1, age_days=100, status=S.FAILED,
                            verification_state="")
    retention.retention_purge()
    with pytest.raises(errors.Refused) as refused:
        workflow.update_requeue(update=ProfileUpdate.objects.get(pk=failed.pk), by=operator)
    assert refused.value.code == errors.PURGED


def test_import_files_are_emptied_after_the_values_retention(connection, operator):
    job = ImportJob.objects.create(
        connection=connection, created_by=operator, file_name="x.csv", file_format="csv",
        file_data=b"identity_type,identity\r\nmbox3rdPartyId,in-the-file\r\n",
        status=ImportJob.Status.DONE, finished_at=timezone.now() - 100 * DAY,
        errors=[{"row": 2, "column": "tier", "message": "'in-the-file' is not allowed"}])
    retention.retention_purge()
    job.refresh_from_db()
    assert bytes(job.file_data) == b"" and job.errors == [
        {"row": 2, "column": "tier", "message": "(purged)"}]


def test_a_seeded_history_is_purged_in_chunks_while_sending_goes_on(acme, approve, operator):
    """Each chunk is its own short transaction: between two chunks the sender claims, sends and
    records, and nothing waits for the purge to end."""
    seed_history(acme, operator, count=60, age_days=200)
    waiting = [approve(identity=f"live-{n}") for n in range(6)]
    chunks, sent = 0, 0
    while True:
        [run] = retention.retention_purge(connection=acme, chunk_size=10, max_chunks=1)
        chunks += run.chunks
        if waiting[sent:]:  # one send run between two chunks
            sent += sending.send_due(limit=2).acknowledged
        if run.complete and sent >= len(waiting):
            break
        assert chunks < 50
    assert chunks >= 6
    assert ProfileUpdate.objects.filter(purged_at__isnull=False).count() == 60
    live = ProfileUpdate.objects.filter(pk__in=[u.pk for u in waiting])
    assert {u.status for u in live} == {S.SENT} and all(u.purged_at is None for u in live)
    assert all(not u.identity.startswith("hmac:") for u in live)


def test_an_upgrade_keeps_the_history_of_connections_that_existed_before(connection, operator):
    """Migration 0029 gives new connections the defaults, but never starts deleting the history
    of a connection that existed before the upgrade: its retention is left empty (for ever)."""
    import importlib

    from django.apps import apps

    migration = importlib.import_module("updates.migrations.0029_lifecycle")
    assert connection.retain_values_days == 90  # what a new connection gets
    seed_history(connection, operator, count=3, age_days=400)
    migration.existing_connections_keep_everything(apps, None)
    connection.refresh_from_db()
    assert (connection.retain_values_days, connection.retain_reads_days,
            connection.retain_records_days) == (None, None, None)
    retention.retention_purge()
    assert not ProfileUpdate.objects.filter(connection=connection, purged_at__isnull=False).exists()
