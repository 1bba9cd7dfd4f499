"""The bulk route's customer data under retention and forgetting (updates/bulk_purging.py):
finished files' kept bodies and Target's answers emptied after the values retention, bulk job
records deleted after the records retention, the visitor's lines cut out of a body. Real HTTP
to the emulator's bulk twin (tests/fixtures_bulk.py); time moves through `now=`."""

from __future__ import annotations

import datetime as dt
import zlib

import pytest
from django.utils import timezone

from updates import bulk_polling, bulk_purging, bulk_sending, retention, verification
from updates.models import BulkCall, BulkFile, BulkJob, ProfileUpdate

DAY = dt.timedelta(days=1)


def _rows(n: int) -> list[dict]:
    # Two attribute sets: two files.
    return [{"identity_type": "mbox3rdPartyId", "identity": f"c-{i}",
             "attributes": {"loyaltyTier": f"gold-{i}"} if i % 2 else {"callNote": f"n {i}"}}
            for i in range(n)]


@pytest.fixture
def finished_job(decide, bulk_connection, bulk_target):
    """A bulk job of two files, complete at Target, polled and verified: every update final."""
    decide(_rows(120))
    now = timezone.now()
    assert bulk_sending.bulk_send_due(now=now).accepted == 2
    bulk_target.advance(31)
    assert bulk_polling.bulk_poll_due(now=now + dt.timedelta(seconds=31)) == 2
    verification.updates_verify_due(now=now + dt.timedelta(seconds=32))
    assert not ProfileUpdate.objects.filter(verification_state="pending").exists()
    return BulkJob.objects.get()


def _retention(connection, *, days_later: float, **limits):
    [run] = retention.retention_purge(connection=connection,
                                      now=timezone.now() + days_later * DAY, **limits)
    return run


def test_bodies_and_answers_stay_until_the_values_retention_has_passed(
        finished_job, bulk_connection):
    bulk_connection.retain_values_days, bulk_connection.retain_reads_days = 90, None
    bulk_connection.save()
    sent = {f.pk: (bytes(f.body), f.sha256) for f in BulkFile.objects.all()}

    run = _retention(bulk_connection, days_later=80)

    assert "bulk files" not in run.counts
    assert {f.pk: (bytes(f.body), f.sha256) for f in BulkFile.objects.all()} == sent


def test_after_the_values_retention_bodies_and_answers_are_emptied_in_chunks(
        finished_job, bulk_connection):
    bulk_connection.retain_values_days, bulk_connection.retain_reads_days = 90, None
    bulk_connection.save()
    sent = dict(BulkFile.objects.values_list("pk", "sha256"))
    assert BulkCall.objects.exclude(answer="").count() == 4  # two uploads, two polls

    run = _retention(bulk_connection, days_later=100, chunk_size=1)

    assert run.complete
    assert (run.counts["bulk files"], run.counts["bulk answers"]) == (2, 4)
    assert run.counts["profile updates"] == 120  # the updates' values went first
    for file in BulkFile.objects.all():
        assert (bytes(file.body), file.answer) == (b"", "")
        assert file.sha256 == sent[file.pk] and file.body_purged_at is not None
        assert "emptied on" in file.purge_note
    assert not BulkCall.objects.exclude(answer="").exists()
    assert BulkCall.objects.count() == 4  # the calls' record (times, counts) stays
    assert _retention(bulk_connection, days_later=101).counts.get("bulk files") is None


def test_a_file_not_finished_keeps_its_body_whatever_its_age(decide, bulk_connection):
    bulk_connection.retain_values_days = 1
    bulk_connection.save()
    decide(_rows(120))
    bulk_sending.bulk_job_start(connection=bulk_connection, owner="test-run",
                                now=timezone.now())

    _retention(bulk_connection, days_later=400)

    for file in BulkFile.objects.all():
        assert file.state == BulkFile.State.PENDING
        assert zlib.decompress(bytes(file.body)).startswith(b"batch=thirdPartyId,")


def test_a_file_keeps_its_body_while_one_of_its_updates_keeps_its_values(
        finished_job, bulk_connection):
    bulk_connection.retain_values_days = 90
    bulk_connection.save()
    kept = ProfileUpdate.objects.filter(bulk_file__number=1).first()
    ProfileUpdate.objects.filter(pk=kept.pk).update(status="approved", send_route="")  # re-queued

    _retention(bulk_connection, days_later=100)

    assert bytes(kept.bulk_file.body) != b"" and kept.bulk_file.body_purged_at is None
    assert bytes(BulkFile.objects.get(number=2).body) == b""


def test_bulk_job_records_go_after_the_records_retention(finished_job, bulk_connection):
    bulk_connection.retain_values_days, bulk_connection.retain_records_days = 90, 30
    bulk_connection.save()
    _retention(bulk_connection, days_later=100)
    assert _retention(bulk_connection, days_later=120).counts.get("bulk jobs deleted") is None
    assert BulkJob.objects.exists()

    run = _retention(bulk_connection, days_later=131)

    assert run.counts["records deleted"] == 120 and run.counts["bulk jobs deleted"] == 1
    assert not (BulkJob.objects.exists() or BulkFile.objects.exists()
                or BulkCall.objects.exists())


def test_a_visitors_lines_are_cut_out_and_no_other():
    body = (b"batch=thirdPartyId,callNote\n"
            b"c-1,a\n" b"c-10,b\n" b"c%2C1,c\n" b"c-1,d\n")
    assert bulk_purging.lines_without(body, "c-1") == (
        b"batch=thirdPartyId,callNote\nc-10,b\nc%2C1,c\n", 2)
    assert bulk_purging.lines_without(body, "c,1") == (
        b"batch=thirdPartyId,callNote\nc-1,a\nc-10,b\nc-1,d\n", 1)
    assert bulk_purging.lines_without(body, "nobody") == (body, 0)
