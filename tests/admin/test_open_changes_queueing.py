"""Submit and re-queue in the admin under one open change per visitor and attribute
(updates/open_changes.py): the update page names the open update that refuses the move and
offers "Cancel the open update(s) and replace them", which supersedes it in the move's own
transaction — for someone who may cancel updates; the list's actions never supersede and point
to the update's page. Conflicts like these exist only among updates staged before the rule
(nothing creates one now), so the tests write the second update directly."""

from __future__ import annotations

import pytest
from django.utils import timezone

from tests.helpers import logged_in, status_of, texts
from tests.admin.test_updates import act, change_form_data, change_url, workflow_url
from updates import workflow
from updates.errors import Refused
from updates.models import AuditEvent, ProfileUpdate, UpdateStatus as S

pytestmark = pytest.mark.django_db

OFFER = "Cancel the open update(s) and replace them"


def legacy(connection, by, status=S.DRAFT, **fields) -> ProfileUpdate:
    """An update of cust-1 written as before the rule: no look at the visitor's open updates."""
    now = timezone.now()
    fields.setdefault("attributes", {"loanStatus": "declined"})
    update = ProfileUpdate.objects.create(
        connection=connection, identity_type="mbox3rdPartyId", identity="cust-1", created_by=by,
        created_at=now, last_edited_by=by, last_edited_at=now, status=status, **fields)
    update.content_authors.add(by)
    return update


def failed_update(connection, operator, supervisor, *, approval_holds: bool) -> ProfileUpdate:
    """A failed update of cust-1, approved for its content (or, if not `approval_holds`, for
    content it no longer has)."""
    update = legacy(connection, operator, status=S.FAILED, decided_by=supervisor,
                    decided_at=timezone.now(), last_error="HTTP 503 from Target")
    approved = update.content_hash if approval_holds else "0" * 64
    ProfileUpdate.objects.filter(pk=update.pk).update(approved_hash=approved)
    return update


def superseded_by(update) -> int | None:
    event = AuditEvent.objects.filter(update=update, action="superseded").first()
    return event.changes["superseded_by"] if event else None


# --- submit on the update page ---------------------------------------------------------------

def test_submit_is_refused_naming_the_open_update_and_the_page_offers_to_replace_it(
        client, operator, connection, stage):
    first = stage(identity="cust-1")
    second = legacy(connection, operator)
    logged_in(client, operator)

    response = client.post(workflow_url(second), {"transition": "submit"}, follow=True)
    assert any(f"#{first.pk} (draft, created by operator) sets profile.loanStatus" in t
               for t in texts(response)), texts(response)
    assert status_of(second) == S.DRAFT and status_of(first) == S.DRAFT
    page = response.content.decode()  # the update's page again
    assert f"{OFFER}: submit for approval" in page
    assert f'formaction="{workflow_url(second)}?supersede=1"' in page

    # Updates of the visitor setting other attributes do not conflict: no offer.
    ProfileUpdate.objects.filter(pk=first.pk).update(attributes={"loyaltyTier": "gold"})
    assert "?supersede=1" not in client.get(change_url(second)).content.decode()


def test_the_offer_submits_and_cancels_the_open_update_in_the_same_transaction(
        client, operator, other_operator, connection, stage):
    first = stage(identity="cust-1")
    second = legacy(connection, operator)
    logged_in(client, other_operator)

    # The page's confirm button: the page's own form, posted to ?supersede=1.
    response = client.post(f"{workflow_url(second)}?supersede=1",
                           {**change_form_data(connection, second), "transition": "submit"},
                           follow=True)
    assert texts(response) == [f"Submitted 1 update: #{second.pk}."]
    assert status_of(second) == S.PENDING  # it needs its own approval
    assert status_of(first) == S.CANCELLED
    assert superseded_by(first) == second.pk
    event = AuditEvent.objects.get(update=first, action="superseded")
    assert event.actor == other_operator and event.from_status == S.DRAFT


def test_a_failure_after_the_supersede_undoes_it_with_the_submit(client, operator, connection,
                                                                 stage, monkeypatch):
    first = stage(identity="cust-1")
    second = legacy(connection, operator)
    real = workflow.supersede_open

    def then_fail(older, *, by, new):
        real(older, by=by, new=new)
        raise Refused("failed after superseding", code="test")

    monkeypatch.setattr(workflow, "supersede_open", then_fail)
    response = logged_in(client, operator).post(
        workflow_url(second), {"transition": "submit", "supersede": "1"}, follow=True)
    assert any("failed after superseding" in t for t in texts(response))
    assert status_of(first) == S.DRAFT and status_of(second) == S.DRAFT
    assert superseded_by(first) is None


def test_the_forms_own_checkbox_supersedes_with_the_submit_button(client, operator, connection,
                                                                  stage):
    first = stage(identity="cust-1")
    second = legacy(connection, operator)
    data = {**change_form_data(connection, second), "supersede": "on", "transition": "submit"}
    logged_in(client, operator).post(workflow_url(second), data)
    assert status_of(second) == S.PENDING and status_of(first) == S.CANCELLED


# --- re-queue on the update page -------------------------------------------------------------

@pytest.mark.parametrize("approval_holds, transition, after", [
    (True, "requeue", S.APPROVED),
    (False, "requeue_for_approval", S.PENDING),
])
def test_requeue_of_a_failed_update_is_refused_then_supersedes_when_chosen(
        client, operator, supervisor, connection, approval_holds, transition, after):
    failed = failed_update(connection, operator, supervisor, approval_holds=approval_holds)
    draft = legacy(connection, operator, attributes={"loanStatus": "funded", "callNote": "x"})
    logged_in(client, operator)

    page = client.get(change_url(failed)).content.decode()
    assert f"#{draft.pk} (draft, created by operator) sets profile.loanStatus" in page
    assert f'name="transition" value="{transition}"' in page

    response = client.post(workflow_url(failed), {"transition": transition}, follow=True)
    assert any(f"#{draft.pk} (draft, created by operator)" in t for t in texts(response))
    assert status_of(failed) == S.FAILED and status_of(draft) == S.DRAFT

    response = client.post(f"{workflow_url(failed)}?supersede=1", {"transition": transition},
                           follow=True)
    assert texts(response) == [f"Re-queued 1 update: #{failed.pk}."]
    assert status_of(failed) == after
    assert status_of(draft) == S.CANCELLED and superseded_by(draft) == failed.pk


def test_without_the_cancel_permission_nobody_supersedes(client, operator, supervisor,
                                                         connection):
    # Supervisors may re-queue but not cancel: the page names the conflict without the button,
    # and a forged post is refused by the service.
    failed = failed_update(connection, operator, supervisor, approval_holds=True)
    draft = legacy(connection, operator)
    logged_in(client, supervisor)

    page = client.get(change_url(failed)).content.decode()
    assert f"#{draft.pk} (draft, created by operator)" in page
    assert "?supersede=1" not in page
    assert "needs the permission to cancel updates" in page

    response = client.post(f"{workflow_url(failed)}?supersede=1", {"transition": "requeue"},
                           follow=True)
    assert any("was not re-queued" in t for t in texts(response)), texts(response)
    assert status_of(failed) == S.FAILED and status_of(draft) == S.DRAFT
    assert superseded_by(draft) is None


def test_a_sending_update_is_named_and_never_offered_for_replacing(client, operator, supervisor,
                                                                   connection):
    failed = failed_update(connection, operator, supervisor, approval_holds=True)
    sending = legacy(connection, operator, status=S.SENDING)
    logged_in(client, operator)
    page = client.get(change_url(failed)).content.decode()
    assert f"#{sending.pk} is being sent to Target now and cannot be superseded" in page
    assert "?supersede=1" not in page
    client.post(workflow_url(failed), {"transition": "requeue", "supersede": "1"})
    assert status_of(failed) == S.FAILED and status_of(sending) == S.SENDING


# --- the list's actions ----------------------------------------------------------------------

@pytest.mark.parametrize("action", ["submit_selected", "requeue_selected"])
def test_the_list_actions_never_supersede_and_point_to_the_update_page(
        client, operator, supervisor, connection, stage, action):
    if action == "submit_selected":
        other, chosen = stage(identity="cust-1"), legacy(connection, operator)
    else:
        chosen = failed_update(connection, operator, supervisor, approval_holds=True)
        other = legacy(connection, operator)
    response = act(logged_in(client, operator), action, [chosen], supersede="1")
    messages = texts(response)
    assert any(f"#{other.pk} (draft, created by operator)" in m for m in messages), messages
    assert any(f'<a href="{change_url(chosen)}">#{chosen.pk}</a>' in m and OFFER in m
               for m in messages), messages
    assert f'<a href="{change_url(chosen)}">#{chosen.pk}</a>' in response.content.decode()
    assert status_of(other) == S.DRAFT
    assert status_of(chosen) in (S.DRAFT, S.FAILED)
