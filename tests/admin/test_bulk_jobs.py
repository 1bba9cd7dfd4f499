"""The bulk job page (updates/admin/bulk.py) and the dashboard's bulk line: Target's counts
beside the per-row outcome, the disagreement flagged, the one-button re-queue on the single
route."""

from __future__ import annotations

from django.urls import reverse
from django.utils import timezone

from tests.helpers import logged_in
from updates.models import (AuditEvent, BulkCall, BulkFile, BulkJob, ProfileUpdate, SendRoute,
                            UpdateStatus, VerificationState)

S, V = UpdateStatus, VerificationState


def _finished_job(connection, approve, *, not_applied: int) -> BulkJob:
    """A complete job of four rows whose first `not_applied` were read back as not applied
    while Target counted all four successful."""
    now = timezone.now()
    job = BulkJob.objects.create(connection=connection, created_at=now, rows=4,
                                 state=BulkJob.State.COMPLETE, finished_at=now)
    file = BulkFile.objects.create(
        job=job, number=1, version="v2", id_column="thirdPartyId", attribute_names=["loanStatus"],
        rows=4, size_bytes=10, sha256="0" * 64, body=b"", state="complete",
        counts={"consumedCount": 4, "successfulUpdates": 4, "profilesNotFound": 0,
                "failedUpdates": 0})
    BulkCall.objects.create(connection=connection, file=file, kind="status", at=now,
                            http_status=200, target_status="complete", counts=file.counts,
                            answer="<response><status>complete</status></response>")
    for line in range(1, 5):
        update = approve(identity=f"<b>c-{line}<b>")
        state = V.NOT_APPLIED if line <= not_applied else V.VERIFIED
        ProfileUpdate.objects.filter(pk=update.pk).update(
            status=S.SENT, send_route="bulk", bulk_file=file, bulk_line=line,
            acknowledged_at=now, verification_state=state)
    return job


def test_the_page_shows_counts_beside_rows_and_requeues_in_one_action(client, acme, approve,
                                                                      supervisor):
    job = _finished_job(acme, approve, not_applied=2)
    logged_in(client, supervisor)
    page = client.get(reverse("admin:updates_bulkjob_change", args=[job.pk]))
    text = page.content.decode()
    assert "Disagreement: Target says 0 failed and 0 not found; reads say 2 not applied." in text
    assert "Re-queue the 2 not-applied updates on the single route" in text
    answer = client.post(reverse("admin:updates_bulkjob_requeue_single", args=[job.pk]))
    assert answer.status_code == 302
    back = ProfileUpdate.objects.filter(bulk_file__job=job, status=S.APPROVED)
    assert back.count() == 2 and set(back.values_list("send_route", flat=True)) == {""}
    assert AuditEvent.objects.filter(action="requeued_single", actor=supervisor).count() == 2


def test_an_operator_cannot_requeue(client, acme, approve, operator):
    job = _finished_job(acme, approve, not_applied=1)
    logged_in(client, operator)
    assert client.post(reverse("admin:updates_bulkjob_requeue_single",
                               args=[job.pk])).status_code == 403
    assert not ProfileUpdate.objects.filter(status=S.APPROVED).exists()


def test_the_dashboard_shows_the_bulk_route_beside_the_quota(client, acme, approve, supervisor):
    acme.send_route = SendRoute.THRESHOLD
    acme.save()
    _finished_job(acme, approve, not_applied=1)
    logged_in(client, supervisor)
    text = client.get(reverse("updates_dashboard")).content.decode()
    assert "Bulk route (outside the quota)" in text
    assert '<strong class="po-bulk-verified">3</strong> verified' in text
    assert "1 of 50 bulk API calls used in the last minute" in text


def test_the_batch_page_shows_the_route_and_the_choice_is_kept(client, acme, stage, operator,
                                                               supervisor, settings):
    from updates import workflow

    settings.PROFILEOPS = {**settings.PROFILEOPS, "BULK_MIN_BATCH_ROWS": 2}
    acme.send_route = SendRoute.THRESHOLD
    acme.bulk_row_threshold = 3
    acme.save()
    for _ in range(3):
        workflow.update_submit(update=stage(), by=operator)
    logged_in(client, supervisor)
    page = client.get(reverse("updates_queue_batch"))
    text = page.content.decode()
    assert "take the <strong class=\"po-route\">bulk API</strong>" in text
    assert "3 updates reach the connection&#x27;s bulk threshold of 3" in text
    assert 'name="route"' in text
    client.post(reverse("updates_queue_batch"), {"decision": "approve", "route": "single",
                                                  "shown": page.context["shown"]})
    assert set(ProfileUpdate.objects.values_list("status", "send_route")) == {(S.APPROVED, "")}


def test_the_page_says_what_was_erased_from_a_kept_file(client, acme, approve, admin_user):
    job = _finished_job(acme, approve, not_applied=0)
    now = timezone.now()
    BulkFile.objects.filter(job=job).update(
        purges=[{"at": now.isoformat(), "lines": 1, "privacy_request": 12}],
        body_purged_at=now)
    logged_in(client, admin_user)  # the files' table is shown to those who may see files
    text = client.get(reverse("admin:updates_bulkjob_change", args=[job.pk])).content.decode()
    assert (f"1 line(s) removed on {now:%Y-%m-%d} by privacy request #12; body and answers "
            f"emptied on {now:%Y-%m-%d} under the connection&#x27;s retention") in text
