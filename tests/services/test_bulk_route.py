"""The bulk route end to end (routing.py, bulk_sending.py, bulk_polling.py, bulk_reconcile.py)
over real HTTP to the emulator's bulk twin (target_emulator/bulk.py).

Time moves through `now=` and the emulator's `advance()`; nothing sleeps except the bulk call
pacing, which the tests keep within its burst.
"""

from __future__ import annotations

import datetime as dt
import time
import zlib

import pytest
from django.utils import timezone

from updates import (bulk_polling, bulk_reconcile, bulk_sending, routing, sending,
                     verification, workflow)
from updates.models import (AuditEvent, BulkCall, BulkFile, BulkJob, DailyUsage, ProfileUpdate,
                            QuotaMinute, SendAttempt, SendRoute, UpdateStatus, VerificationState)

S, V = UpdateStatus, VerificationState


def _rows(n: int, *, start: int = 0, **attributes: str) -> list[dict]:
    attributes = attributes or {"loyaltyTier": "gold"}
    return [{"identity_type": "mbox3rdPartyId", "identity": f"c-{i}",
             "attributes": {k: f"{v}-{i}" for k, v in attributes.items()}}
            for i in range(start, start + n)]


def _through_target(emulator, now):
    """Upload, let the emulator process, poll: returns the job and the time after."""
    run = bulk_sending.bulk_send_due(now=now)
    assert run.jobs == 1
    emulator.advance(31)
    later = now + dt.timedelta(seconds=31)
    assert bulk_polling.bulk_poll_due(now=later) >= 1
    return BulkJob.objects.get(), later


def test_a_batch_over_the_threshold_goes_bulk_and_every_row_is_reconciled(
        decide, bulk_connection, bulk_target, supervisor):
    ids = decide(_rows(300))
    assert set(ProfileUpdate.objects.values_list("send_route", flat=True)) == {"bulk"}
    assert AuditEvent.objects.filter(action="routed_bulk").count() == 1
    now = timezone.now()
    # The single sender leaves bulk-route updates alone.
    assert sending.send_due(now=now).claimed == 0

    job, later = _through_target(bulk_target, now)
    assert job.state == BulkJob.State.COMPLETE and job.rows == 300
    file = job.files.get()
    assert (file.state, file.target_status, file.version) == ("complete", "complete", "v2")
    assert file.counts["successfulUpdates"] == 300
    assert "<success>true</success>" in file.answer
    assert f":{bulk_target.edge_port}/" in file.status_url  # verbatim, the edge's host
    assert list(BulkCall.objects.values_list("kind", flat=True)) == ["upload", "status"]
    lines = dict(ProfileUpdate.objects.values_list("id", "bulk_line"))
    assert sorted(lines.values()) == list(range(1, 301)) and lines[ids[0]] == 1
    # The single quota is untouched.
    assert not QuotaMinute.objects.exists() and not DailyUsage.objects.exists()
    assert not SendAttempt.objects.exists()

    verification.updates_verify_due(now=later + dt.timedelta(seconds=1))
    lost = set(bulk_target.bulk.summary()[0]["lost"])
    assert lost, "the emulator lost some rows silently"
    outcome = dict(ProfileUpdate.objects.values_list("identity", "verification_state"))
    assert {i for i, state in outcome.items() if state == V.NOT_APPLIED} == lost
    assert all(state == V.VERIFIED for i, state in outcome.items() if i not in lost)

    report = bulk_reconcile.job_reconciliation(job)
    assert report.target["failedUpdates"] == 0
    assert report.rows["not_applied"] == len(lost)
    assert not report.agrees and "reads say" in report.disagreements[0]

    requeued = bulk_reconcile.bulk_requeue_not_applied(job=job, by=supervisor)
    assert requeued.requeued == len(lost)
    again = ProfileUpdate.objects.filter(identity__in=lost)
    assert set(again.values_list("status", "send_route")) == {(S.APPROVED, "")}
    assert AuditEvent.objects.filter(action="requeued_single").count() == len(lost)
    run = sending.send_due(now=later + dt.timedelta(seconds=2))
    assert run.acknowledged == len(lost)
    assert sum(QuotaMinute.objects.values_list("requests", flat=True)) == len(lost)


def test_the_file_is_byte_exact(decide, bulk_target):
    rows = _rows(10, callNote="a,b&c=d%e+f g/ü")
    rows += [{"identity_type": "mbox3rdPartyId", "identity": "id,1 ü",
              "attributes": {"loyaltyTier": "Zürich, 1"}}]
    decide(rows, route=routing.BULK)
    bulk_sending.bulk_send_due(now=timezone.now())
    files = {tuple(f.attribute_names): zlib.decompress(f.body) for f in BulkFile.objects.all()}
    # Different attribute sets, different files; names sorted; everything encoded.
    assert files[("loyaltyTier",)] == (
        b"batch=thirdPartyId,loyaltyTier\nid%2C1%20%C3%BC,Z%C3%BCrich%2C%201\n")
    body = files[("callNote",)]
    assert body.startswith(b"batch=thirdPartyId,callNote\nc-0,a%2Cb%26c%3Dd%25e%2Bf%20g%2F%C3%BC-0\n")
    assert body.count(b"\n") == 11
    received = [b for b in bulk_target.bulk.summary()]
    assert {tuple(b["names"]) for b in received} == {("loyaltyTier",), ("callNote",)}


def test_files_are_split_at_the_row_limit(decide, bulk_target, settings):
    settings.PROFILEOPS = {**settings.PROFILEOPS, "BULK_FILE_MAX_ROWS": 40}
    decide(_rows(100), route=routing.BULK)
    bulk_sending.bulk_send_due(now=timezone.now())
    assert list(BulkFile.objects.values_list("rows", flat=True)) == [40, 40, 20]
    assert BulkFile.objects.filter(state="accepted").count() == 3


def test_empty_values_and_kept_single_mbox_pc_rows_go_single(decide, bulk_connection):
    rows = _rows(20)
    rows[0]["identity_type"] = "mboxPC"
    rows[0]["identity"] = "1368007744041-575948.01_00"
    decide(rows, route=routing.BULK)
    bulk_sending.bulk_send_due(now=timezone.now())
    single = ProfileUpdate.objects.get(identity_type="mboxPC")
    assert (single.status, single.send_route, single.bulk_file_id) == (S.APPROVED, "", None)
    assert "single route" in AuditEvent.objects.filter(update=single, action="released").get().comment
    assert BulkFile.objects.get().rows == 19
    bulk_connection.pc_id_bulk = "v1"
    bulk_connection.save()
    assert bulk_sending.bulk_send_due(now=timezone.now()).jobs == 0  # nothing bulk left


def test_a_changed_content_is_not_sent(decide):
    ids = decide(_rows(12), route=routing.BULK)
    ProfileUpdate.objects.filter(pk=ids[0]).update(attributes={"loyaltyTier": "forged"})
    bulk_sending.bulk_send_due(now=timezone.now())
    assert ProfileUpdate.objects.get(pk=ids[0]).status == S.FAILED
    assert BulkFile.objects.get().rows == 11


def test_a_503_is_retried_with_backoff_and_then_accepted(decide, bulk_target):
    decide(_rows(12), route=routing.BULK)
    bulk_target.bulk.configure(calls_per_minute=0)  # Target's admin APIs used the minute up
    now = timezone.now()
    run = bulk_sending.bulk_send_due(now=now)
    file = BulkFile.objects.get()
    assert (run.retried, file.state, file.attempts) == (1, "pending", 1)
    assert file.next_attempt_at > now
    assert BulkCall.objects.get().http_status == 503
    assert set(ProfileUpdate.objects.values_list("status", flat=True)) == {S.SENDING}
    assert bulk_sending.bulk_send_due(now=now).uploads == 0  # not before its time
    bulk_target.bulk.configure(calls_per_minute=50)
    assert bulk_sending.bulk_send_due(now=file.next_attempt_at).accepted == 1
    assert set(ProfileUpdate.objects.values_list("status", flat=True)) == {S.SENT}


def test_a_refused_file_fails_its_updates_with_targets_message(decide, bulk_target):
    decide(_rows(12), route=routing.BULK)
    bulk_target.bulk.configure(max_rows=5)
    bulk_sending.bulk_send_due(now=timezone.now())
    assert BulkFile.objects.get().state == "refused"
    failed = ProfileUpdate.objects.filter(status=S.FAILED)
    assert failed.count() == 12 and "at most 5" in failed.first().last_error


def test_a_stuck_file_ends_stuck_and_the_rule_fires(decide, bulk_connection, bulk_target):
    from updates.alerts import evaluate
    from updates.models import AlertRule

    decide(_rows(12), route=routing.BULK)
    bulk_target.bulk.configure(stuck=True)
    job, later = _through_target(bulk_target, timezone.now())
    assert job.state == BulkJob.State.STUCK
    rule = AlertRule.objects.create(connection=bulk_connection, kind=AlertRule.Kind.BULK_JOB)
    assert evaluate(rule, now=later).firing


def test_an_incomplete_file_is_polled_with_backoff_until_it_times_out(decide, bulk_target):
    decide(_rows(12), route=routing.BULK)
    bulk_target.bulk.configure(delay=10 ** 9)
    now = timezone.now()
    bulk_sending.bulk_send_due(now=now)
    file = BulkFile.objects.get()
    gaps = []
    at = file.next_poll_at
    for _ in range(3):
        bulk_polling.bulk_poll_due(now=at)
        file.refresh_from_db()
        gaps.append((file.next_poll_at - at).total_seconds())
        at = file.next_poll_at
    assert gaps == [60, 120, 240] and file.target_status == "incomplete"
    bulk_polling.bulk_poll_due(now=now + dt.timedelta(hours=25))
    file.refresh_from_db()
    assert file.state == "timed_out" and BulkJob.objects.get().state == "timed_out"


def test_a_bulk_sent_visitor_holds_back_its_next_single_update(decide, bulk_connection,
                                                              operator, supervisor):
    decide(_rows(12), route=routing.BULK)
    bulk_sending.bulk_send_due(now=timezone.now())
    later = workflow.update_stage(connection=bulk_connection, identity_type="mbox3rdPartyId",
                                  identity="c-3", attributes={"callNote": "after"}, by=operator)
    workflow.update_submit(update=later, by=operator)
    workflow.update_approve(update=later, by=supervisor)
    assert sending.send_due(now=timezone.now()).claimed == 0  # its file is still processing
    BulkFile.objects.update(state="complete")
    assert sending.send_due(now=timezone.now()).claimed == 1


@pytest.mark.parametrize("rule, rows, choice, expected", [
    (SendRoute.SINGLE, 500, routing.BULK, "single"),
    (SendRoute.THRESHOLD, 5, routing.BULK, "single"),  # small batches stay single
    (SendRoute.THRESHOLD, 99, routing.AUTOMATIC, "single"),
    (SendRoute.THRESHOLD, 100, routing.AUTOMATIC, "bulk"),
    (SendRoute.THRESHOLD, 500, routing.SINGLE, "single"),
    (SendRoute.HEADROOM, 500, routing.AUTOMATIC, "single"),
    (SendRoute.HEADROOM, 1001, routing.AUTOMATIC, "bulk"),
    (SendRoute.HEADROOM, 50, routing.BULK, "bulk"),
])
def test_route_rules(bulk_connection, rule, rows, choice, expected):
    bulk_connection.send_route = rule
    bulk_connection.quota_limit = 1000
    plan = routing.plan_route(connection=bulk_connection, rows=rows, choice=choice)
    assert plan.route == expected, plan.why
    assert plan.single_time.startswith("about")


def test_calls_are_paced_in_the_database_shared_by_every_worker(bulk_connection, settings):
    from updates import bulk_pacing
    from updates.models import BulkCallSlot

    settings.PROFILEOPS = {**settings.PROFILEOPS, "BULK_CALLS_PER_MINUTE": 45}
    taken = [bulk_pacing.take_call(bulk_connection.pk, wait=0) for _ in range(7)]
    # A burst of five (45 + 5 ≤ Target's 50 in any minute), then nothing free right now.
    assert taken == [True] * 5 + [False] * 2
    # Another worker sees the same row: no call is free for it either.
    slot = BulkCallSlot.objects.get(connection=bulk_connection)
    assert slot.next_free_at > time.time()
    assert bulk_pacing.take_call(bulk_connection.pk, wait=0) is False


def test_the_bearer_token_goes_with_uploads_and_polls(decide, bulk_connection, bulk_target):
    bulk_target._token = "s3cret-token"  # Target's "Require Authentication"
    bulk_connection.bearer_token = "s3cret-token"
    bulk_connection.save()
    decide(_rows(12), route=routing.BULK)
    job, _ = _through_target(bulk_target, timezone.now())
    assert job.state == BulkJob.State.COMPLETE
    assert bulk_target.bulk.summary()[0]["authorization"] == "Bearer s3cret-token"
    assert not any("s3cret" in a for a in BulkCall.objects.values_list("answer", flat=True))


def test_a_job_claims_in_chunks_and_holds_one_update_per_visitor(decide, monkeypatch):
    monkeypatch.setattr(bulk_sending, "CLAIM_CHUNK", 7)
    rows = _rows(20)
    decide(rows, route=routing.BULK)
    job = bulk_sending.bulk_job_start(connection=ProfileUpdate.objects.first().connection,
                                      owner="w", now=timezone.now())
    assert job.rows == 20
    assert BulkFile.objects.get().rows == 20
