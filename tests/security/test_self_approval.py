"""Four eyes, for everyone: nobody approves — or rejects — an update they created or last edited,
superusers included, whichever way they try.

The paths: the service itself, the list's bulk action, the approval queue (one button per row,
and the checked-rows form), the update's own page (which does show the buttons to a superuser —
the refusal is the service's), a forged status field on the change form, an update the superuser
only edited, and one they imported. Each attempt must leave the update pending with no decision
recorded, and say why.
"""

from __future__ import annotations

import pytest
from django.contrib.messages import get_messages
from django.core.exceptions import ValidationError
from django.urls import reverse

from tests.conftest import make_user
from updates import importing, workflow
from updates.forms import StagingFormMixin
from updates.models import AuditEvent, ProfileUpdate, UpdateStatus

S = UpdateStatus
DECISIONS = ("approved", "rejected")


@pytest.fixture
def superuser(db):
    return make_user("root", superuser=True)


@pytest.fixture
def own_pending(connection, superuser):
    """A pending update the superuser staged and submitted."""
    update = workflow.update_stage(connection=connection, identity_type="mbox3rdPartyId",
                                   identity="customer-1", attributes={"loanStatus": "funded"},
                                   by=superuser)
    return workflow.update_submit(update=update, by=superuser)


def assert_undecided(update: ProfileUpdate) -> None:
    fresh = ProfileUpdate.objects.get(pk=update.pk)
    assert fresh.status == S.PENDING
    assert fresh.decided_by is None and fresh.approved_hash == ""
    assert not AuditEvent.objects.filter(update=update, action__in=DECISIONS).exists()


def said_four_eyes(response) -> bool:
    return any("four-eyes" in str(m) for m in get_messages(response.wsgi_request))


@pytest.mark.parametrize("decide, kwargs", [(workflow.update_approve, {}),
                                            (workflow.update_reject, {"comment": "no"})])
def test_the_service_refuses_a_superusers_decision_on_their_own_update(
        own_pending, superuser, decide, kwargs):
    with pytest.raises(ValidationError) as refused:
        decide(update=own_pending, by=superuser, **kwargs)
    assert refused.value.code == "own_update"
    assert_undecided(own_pending)


def test_the_bulk_approve_action_refuses_the_superusers_own_update(client, own_pending,
                                                                   superuser):
    client.force_login(superuser)
    response = client.post(reverse("admin:updates_profileupdate_changelist"), {
        "action": "approve_selected", "_selected_action": [own_pending.pk], "index": 0},
        follow=True)
    assert said_four_eyes(response)
    assert_undecided(own_pending)


def test_the_bulk_reject_action_refuses_the_superusers_own_update(client, own_pending, superuser):
    client.force_login(superuser)
    response = client.post(reverse("admin:updates_profileupdate_changelist"), {
        "action": "reject_selected", "_selected_action": [own_pending.pk], "index": 0,
        "apply": "1", "comment": "mine anyway"}, follow=True)
    assert said_four_eyes(response)
    assert_undecided(own_pending)


@pytest.mark.parametrize("data", [
    {"approve_one": "{pk}"},
    {"reject_one": "{pk}", "comment": "mine"},
    {"decision": "approve", "update": "{pk}"},
    {"decision": "reject", "update": "{pk}", "comment": "mine"},
], ids=["approve button", "reject button", "approve checked", "reject checked"])
def test_the_approval_queue_refuses_the_superusers_own_update(client, own_pending, superuser,
                                                              data):
    client.force_login(superuser)
    queue = reverse("updates_queue")
    page = client.get(queue).content.decode()
    assert f'id="queue-row-{own_pending.pk}" class="po-own"' in page  # marked as theirs
    data = {k: v.format(pk=own_pending.pk) for k, v in data.items()}
    response = client.post(queue, data, follow=True)
    assert said_four_eyes(response)
    assert_undecided(own_pending)


@pytest.mark.parametrize("transition", ["approve", "reject"])
def test_the_update_page_refuses_the_superusers_own_decision(client, own_pending, superuser,
                                                             transition):
    client.force_login(superuser)
    change = reverse("admin:updates_profileupdate_change", args=[own_pending.pk])
    assert "four-eyes rule" in client.get(change).content.decode()  # the page warns
    response = client.post(
        reverse("admin:updates_profileupdate_workflow", args=[own_pending.pk]),
        {"transition": transition, "comment": "mine"}, follow=True)
    assert said_four_eyes(response)
    assert_undecided(own_pending)


def test_a_status_field_forged_into_the_change_form_is_ignored(client, connection, own_pending,
                                                               superuser):
    client.force_login(superuser)
    fields = {StagingFormMixin.field_name(m): "" for m in connection.mappings.all()}
    fields[StagingFormMixin.field_name(connection.mappings.get(target_name="loanStatus"))] = \
        "funded"
    client.post(reverse("admin:updates_profileupdate_change", args=[own_pending.pk]), {
        "identity_type": "mbox3rdPartyId", "identity": "customer-1", "reason": "",
        "not_before_0": "", "not_before_1": "", **fields,
        "status": "approved", "decided_by": superuser.pk, "approved_hash": "x" * 64})
    assert_undecided(own_pending)


def test_a_superuser_who_edited_someone_elses_update_cannot_then_decide_on_it(
        client, connection, superuser, operator):
    update = workflow.update_stage(connection=connection, identity_type="mbox3rdPartyId",
                                   identity="customer-2", attributes={"loanStatus": "applied"},
                                   by=operator)
    update = workflow.update_edit(update=update, by=superuser, attributes={"loanStatus": "funded"})
    update = workflow.update_submit(update=update, by=operator)  # submitted by its creator
    client.force_login(superuser)
    response = client.post(reverse("updates_queue"), {"approve_one": update.pk}, follow=True)
    assert said_four_eyes(response)
    assert_undecided(update)


def test_a_superuser_cannot_approve_what_they_imported(client, connection, superuser):
    job = importing.import_job_create(
        connection=connection, file_name="mine.csv", by=superuser, submit=True,
        file_data=b"identity_type,identity,loan_status\r\nmbox3rdPartyId,c-77,funded\r\n")
    importing.import_job_start(job=job, by=superuser)
    imported = ProfileUpdate.objects.get(identity="c-77")
    assert imported.status == S.PENDING
    client.force_login(superuser)
    response = client.post(reverse("admin:updates_profileupdate_changelist"), {
        "action": "approve_selected", "_selected_action": [imported.pk], "index": 0}, follow=True)
    assert said_four_eyes(response)
    assert_undecided(imported)


def test_another_superuser_may_decide_so_the_refusals_above_are_about_authorship(
        client, own_pending):
    # The control: the same request by a second superuser goes through.
    client.force_login(make_user("root2", superuser=True))
    client.post(reverse("updates_queue"), {"approve_one": own_pending.pk})
    fresh = ProfileUpdate.objects.get(pk=own_pending.pk)
    assert fresh.status == S.APPROVED and fresh.decided_by.username == "root2"
