"""One open change per visitor and attribute in the admin (updates/open_changes.py): the staging
form, the submit action, the revert button and the import page refuse a second open update for a
visitor and attribute, naming the open one, unless "Cancel the open update(s) and replace them"
is ticked."""

from __future__ import annotations

import io

import pytest
from django.urls import reverse
from django.utils import timezone

from tests.helpers import logged_in, texts
from tests.admin.test_updates import act, add_url, fields_for
from updates import workflow
from updates.models import AuditEvent, ImportJob, ProfileUpdate, UpdateStatus as S

pytestmark = pytest.mark.django_db


def post_stage(client, connection, supersede: bool = False):
    data = {"identity_type": "mbox3rdPartyId", "identity": "cust-1",
            **fields_for(connection, loan_status="declined")}
    if supersede:
        data["supersede"] = "on"
    return client.post(add_url(connection), data, follow=True)


def test_the_staging_form_names_the_open_update_and_supersedes_when_asked(
        client, operator, other_operator, connection, stage):
    first = stage(identity="cust-1")
    logged_in(client, other_operator)

    page = client.get(add_url(connection)).content.decode()
    assert "Cancel the open update(s) and replace them" in page
    response = post_stage(client, connection)
    assert response.status_code == 200
    assert f"#{first.pk} (draft, created by operator) sets profile.loanStatus" in (
        response.content.decode())
    assert ProfileUpdate.objects.count() == 1

    post_stage(client, connection, supersede=True)
    new = ProfileUpdate.objects.exclude(pk=first.pk).get()
    assert new.status == S.DRAFT and new.created_by == other_operator
    assert ProfileUpdate.objects.get(pk=first.pk).status == S.CANCELLED
    assert AuditEvent.objects.get(update=first, action="superseded").changes == {
        "superseded_by": new.pk}


def test_the_submit_action_names_the_conflict_of_a_legacy_draft(client, operator, connection,
                                                                 stage):
    first = stage(identity="cust-1")
    now = timezone.now()
    legacy = ProfileUpdate.objects.create(  # staged before the rule existed
        connection=connection, identity_type="mbox3rdPartyId", identity="cust-1",
        attributes={"loanStatus": "declined"}, created_by=operator, created_at=now,
        last_edited_by=operator, last_edited_at=now)
    response = act(logged_in(client, operator), "submit_selected", [legacy])
    assert any(f"#{first.pk} (draft, created by operator)" in t for t in texts(response))
    assert ProfileUpdate.objects.get(pk=legacy.pk).status == S.DRAFT


def test_the_revert_button_refuses_a_conflict_and_supersedes_when_ticked(
        client, operator, supervisor, other_operator, stage):
    sent = stage(identity="cust-1", attributes={"loyaltyTier": "gold"})
    workflow.update_submit(update=sent, by=operator)
    workflow.update_approve(update=sent, by=supervisor)
    ProfileUpdate.objects.filter(pk=sent.pk).update(  # as the sender would
        status=S.SENT, acknowledged_at=timezone.now(),
        prior_values={"loyaltyTier": {"value": "silver", "modifiedAt": None}})
    newer = stage(identity="cust-1", attributes={"loyaltyTier": "platinum"})
    logged_in(client, other_operator)

    page = client.get(reverse("admin:updates_profileupdate_change", args=[sent.pk]))
    assert 'name="supersede"' in page.content.decode()
    response = client.post(reverse("updates_revert", args=[sent.pk]), follow=True)
    assert any(f"#{newer.pk} (draft, created by operator)" in t for t in texts(response))
    assert ProfileUpdate.objects.count() == 2

    client.post(reverse("updates_revert", args=[sent.pk]), {"supersede": "1"})
    revert = ProfileUpdate.objects.exclude(pk__in=[sent.pk, newer.pk]).get()
    assert revert.attributes == {"loyaltyTier": "silver"}
    assert ProfileUpdate.objects.get(pk=newer.pk).status == S.CANCELLED


def test_the_import_page_refuses_the_row_or_supersedes_when_ticked(client, operator, connection,
                                                                   stage):
    first = stage(identity="cust-1")
    logged_in(client, operator)

    def upload(**extra):
        file = io.BytesIO(b"identity_type,identity,loan_status\r\n"
                          b"mbox3rdPartyId,cust-1,declined\r\n")
        file.name = "u.csv"
        response = client.post("/admin/updates/importjob/import/",
                               {"connection": connection.pk, "file": file, **extra})
        return ImportJob.objects.latest("id"), client.get(response["Location"]).content.decode()

    assert "Cancel the open update(s) and replace them" in client.get(
        "/admin/updates/importjob/import/").content.decode()
    job, page = upload()
    assert job.status == ImportJob.Status.INVALID
    assert f"#{first.pk} (draft, created by operator)" in page

    job, _page = upload(supersede="on")
    assert job.status == ImportJob.Status.QUEUED and job.supersede_open
    client.post(f"/admin/updates/importjob/{job.pk}/start/")
    assert ProfileUpdate.objects.get(pk=first.pk).status == S.CANCELLED
    assert ProfileUpdate.objects.get(import_job=job).status == S.DRAFT
