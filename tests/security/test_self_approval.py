"""Four eyes, for everyone: nobody approves — or rejects — an update whose content they wrote
(created it, imported it, or changed its identity type, identity or attributes at any time),
superusers and people in both groups included, whichever way they try.

The paths: the service itself, the list's bulk action, the approval queue (one button per row,
and the checked-rows form), the update's own page, a forged status field on the change form, an
update the user only edited, one they imported (with submit), one re-queued back to pending. The
pages offer an author no Approve/Reject; a forged request is refused by the service all the same.
Each attempt must leave the update pending with no decision recorded, and say why. Editing only
the reason or the earliest send time does not make someone an author: the controls at the end.
"""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.messages import get_messages
from django.core.exceptions import ValidationError
from django.urls import reverse

from tests.conftest import make_user
from tests.helpers import shown
from updates import importing, workflow
from updates.forms import StagingForm
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


def offers_a_decision(page: str) -> bool:
    return ('name="transition" value="approve"' in page
            or 'name="transition" value="reject"' in page)


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
        "action": "approve_selected", "_selected_action": [own_pending.pk], "index": 0,
        "apply": "1"}, follow=True)
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
    assert f'name="approve_one" value="{own_pending.pk}"' not in page  # and offered no decision
    data = {k: v.format(pk=own_pending.pk) for k, v in data.items()}
    response = client.post(queue, data, follow=True)
    assert said_four_eyes(response)
    assert_undecided(own_pending)


@pytest.mark.parametrize("transition", ["approve", "reject"])
def test_the_update_page_refuses_the_superusers_own_decision(client, own_pending, superuser,
                                                             transition):
    client.force_login(superuser)
    change = reverse("admin:updates_profileupdate_change", args=[own_pending.pk])
    page = client.get(change).content.decode()
    assert "four-eyes rule" in page  # the page warns
    assert not offers_a_decision(page)
    response = client.post(
        reverse("admin:updates_profileupdate_workflow", args=[own_pending.pk]),
        {"transition": transition, "comment": "mine"}, follow=True)
    assert said_four_eyes(response)
    assert_undecided(own_pending)


def test_a_status_field_forged_into_the_change_form_is_ignored(client, connection, own_pending,
                                                               superuser):
    client.force_login(superuser)
    fields = {StagingForm.field_name(m): "" for m in connection.mappings.all()}
    fields[StagingForm.field_name(connection.mappings.get(target_name="loanStatus"))] = \
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
        "action": "approve_selected", "_selected_action": [imported.pk], "index": 0,
        "apply": "1"}, follow=True)
    assert said_four_eyes(response)
    assert_undecided(imported)


def test_another_superuser_may_decide_so_the_refusals_above_are_about_authorship(
        client, own_pending):
    # The control: the same request by a second superuser goes through.
    client.force_login(make_user("root2", superuser=True))
    client.post(reverse("updates_queue"), {"approve_one": own_pending.pk,
                                           "shown": shown(own_pending)})
    fresh = ProfileUpdate.objects.get(pk=own_pending.pk)
    assert fresh.status == S.APPROVED and fresh.decided_by.username == "root2"


# --- people in both groups (Operators and Supervisors) ----------------------------------------

CONTENT_EDITS = [{"attributes": {"loanStatus": "funded"}}, {"identity": "customer-edited"},
                 {"identity_type": "mboxPC"}]


@pytest.fixture
def both(db):
    return make_user("both", "Operators", "Supervisors")


@pytest.fixture
def content_edited_by_both(connection, both, operator, other_operator):
    """The hole of issue 10.2: `both` changes the attributes of the operator's update, a
    colleague then touches only the reason, and the operator submits it."""
    update = workflow.update_stage(connection=connection, identity_type="mbox3rdPartyId",
                                   identity="customer-9", attributes={"loanStatus": "applied"},
                                   by=operator)
    workflow.update_edit(update=update, by=both, attributes={"loanStatus": "funded"})
    workflow.update_edit(update=update, by=other_operator, reason="clarified by a colleague")
    return workflow.update_submit(update=update, by=operator)


@pytest.mark.parametrize("edit", CONTENT_EDITS, ids=["attributes", "identity", "identity_type"])
def test_the_service_refuses_whoever_changed_the_content_even_when_someone_edited_last(
        connection, both, operator, other_operator, edit):
    update = workflow.update_stage(connection=connection, identity_type="mbox3rdPartyId",
                                   identity="customer-8", attributes={"loanStatus": "applied"},
                                   by=operator)
    workflow.update_edit(update=update, by=both, **edit)
    workflow.update_edit(update=update, by=other_operator, reason="touched last")
    workflow.update_submit(update=update, by=operator)
    for decide, kwargs in ((workflow.update_approve, {}), (workflow.update_reject, {"comment": "x"})):
        with pytest.raises(ValidationError) as refused:
            decide(update=update, by=both, **kwargs)
        assert refused.value.code == "own_update"
    assert_undecided(update)


def test_a_dual_role_content_editor_is_refused_by_the_bulk_action(client, both,
                                                                  content_edited_by_both):
    client.force_login(both)
    response = client.post(reverse("admin:updates_profileupdate_changelist"), {
        "action": "approve_selected", "_selected_action": [content_edited_by_both.pk],
        "index": 0, "apply": "1"}, follow=True)
    assert said_four_eyes(response)
    assert_undecided(content_edited_by_both)


def test_a_dual_role_content_editor_gets_no_decision_in_the_queue_and_a_forged_one_is_refused(
        client, both, content_edited_by_both):
    client.force_login(both)
    queue = reverse("updates_queue")
    pk = content_edited_by_both.pk
    page = client.get(queue).content.decode()
    assert f'id="queue-row-{pk}" class="po-own"' in page
    assert f'name="approve_one" value="{pk}"' not in page
    response = client.post(queue, {"approve_one": pk}, follow=True)
    assert said_four_eyes(response)
    assert_undecided(content_edited_by_both)


def test_a_dual_role_content_editor_is_offered_no_decision_on_the_update_page(
        client, both, content_edited_by_both):
    client.force_login(both)
    pk = content_edited_by_both.pk
    page = client.get(reverse("admin:updates_profileupdate_change", args=[pk])).content.decode()
    assert not offers_a_decision(page) and "four-eyes rule" in page
    response = client.post(reverse("admin:updates_profileupdate_workflow", args=[pk]),
                           {"transition": "approve"}, follow=True)
    assert said_four_eyes(response)
    assert_undecided(content_edited_by_both)


def test_a_dual_role_user_cannot_decide_what_they_imported_with_submit(client, connection, both):
    job = importing.import_job_create(
        connection=connection, file_name="mine.csv", by=both, submit=True,
        file_data=b"identity_type,identity,loan_status\r\nmbox3rdPartyId,c-78,funded\r\n")
    importing.import_job_start(job=job, by=both)
    imported = ProfileUpdate.objects.get(identity="c-78")
    assert imported.status == S.PENDING
    client.force_login(both)
    page = client.get(reverse("updates_queue")).content.decode()
    assert f'name="approve_one" value="{imported.pk}"' not in page
    response = client.post(reverse("updates_queue"), {"approve_one": imported.pk}, follow=True)
    assert said_four_eyes(response)
    assert_undecided(imported)


def test_a_requeued_update_back_in_pending_keeps_its_authors(client, both, supervisor,
                                                            content_edited_by_both):
    update = workflow.update_approve(update=content_edited_by_both, by=supervisor)
    # The sender failed it (set directly, as sending.py would); without an approval fingerprint
    # the re-queue needs a fresh decision.
    ProfileUpdate.objects.filter(pk=update.pk).update(status=S.FAILED, approved_hash="")
    workflow.update_requeue(update=update, by=both)
    assert ProfileUpdate.objects.get(pk=update.pk).status == S.PENDING
    client.force_login(both)
    response = client.post(reverse("updates_queue"), {"approve_one": update.pk}, follow=True)
    assert said_four_eyes(response)
    fresh = ProfileUpdate.objects.get(pk=update.pk)
    assert fresh.status == S.PENDING and fresh.decided_by is None  # the earlier approval is gone
    assert not AuditEvent.objects.filter(update=update, actor=both, action__in=DECISIONS).exists()


@pytest.mark.parametrize("edit", [
    {"reason": "clarified"},
    {"not_before": dt.datetime(2031, 5, 1, 8, tzinfo=dt.timezone.utc)},
], ids=["reason", "not_before"])
def test_editing_only_the_reason_or_send_time_leaves_a_dual_role_user_free_to_decide(
        client, connection, both, operator, edit):
    # Rule changed (issue 10.2): these editors used to be barred as "last edited by".
    update = workflow.update_stage(connection=connection, identity_type="mbox3rdPartyId",
                                   identity="customer-10", attributes={"loanStatus": "funded"},
                                   by=operator)
    workflow.update_submit(update=update, by=operator)
    workflow.update_edit(update=update, by=both, **edit)
    client.force_login(both)
    page = client.get(reverse("admin:updates_profileupdate_change", args=[update.pk]))
    assert offers_a_decision(page.content.decode())
    assert f'name="approve_one" value="{update.pk}"' in \
        client.get(reverse("updates_queue")).content.decode()
    client.post(reverse("updates_queue"), {"approve_one": update.pk, "shown": shown(update)})
    fresh = ProfileUpdate.objects.get(pk=update.pk)
    assert fresh.status == S.APPROVED and fresh.decided_by == both
