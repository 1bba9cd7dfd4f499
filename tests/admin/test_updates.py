"""The profile update admin, driven through Django's test client against the real database:
list, filters and search; bulk actions through the workflow services with every refusal named;
the staging form built from mappings; the change page's preview and timeline."""

from __future__ import annotations

import datetime as dt
import re
from urllib.parse import urlencode

from django.db import connection as db
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from tests.helpers import logged_in, shown, status_of, texts
from updates import workflow
from updates.forms import StagingForm
from updates.admin import updates as update_admin
from updates.models import AuditEvent, ProfileUpdate, SendAttempt, UpdateStatus

S = UpdateStatus
CHANGELIST = "admin:updates_profileupdate_changelist"


def changelist_url(**params) -> str:
    return reverse(CHANGELIST) + (f"?{urlencode(params)}" if params else "")


def change_url(update) -> str:
    return reverse("admin:updates_profileupdate_change", args=[update.pk])


def add_url(connection=None) -> str:
    url = reverse("admin:updates_profileupdate_add")
    return f"{url}?connection={connection.pk}" if connection else url


def act(client, action: str, updates, **extra):
    data = {"action": action, "_selected_action": [u.pk for u in updates], "index": 0, **extra}
    return client.post(changelist_url(), data, follow=True)


# --- the list ------------------------------------------------------------------------------

def test_anonymous_users_are_sent_to_the_login_page(client, stage):
    update = stage()
    for url in (changelist_url(), change_url(update), add_url()):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("admin:login"))


def test_the_list_renders_with_every_filter_applied(client, operator, stage, connection):
    draft = stage(identity="alice-1")
    submitted = workflow.update_submit(update=stage(identity="bob-2"), by=operator)
    client = logged_in(client, operator)
    midnight = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)
    response = client.get(changelist_url(
        status__exact="draft", connection__id__exact=connection.pk,
        identity_type__exact="mbox3rdPartyId", created_by=operator.pk,
        created_at__gte=str(midnight), created_at__lt=str(midnight + dt.timedelta(days=1))))
    assert response.status_code == 200
    content = response.content.decode()
    assert draft.identity in content
    assert submitted.identity not in content
    assert "By creator" in content or "creator" in content


def test_search_finds_an_identity_exactly_by_prefix_with_a_star_and_by_update_number(
        client, operator, stage):
    wanted = stage(identity="customer-77")
    other = stage(identity="customer-770")
    stranger = stage(identity="zeta-1")
    client = logged_in(client, operator)

    def found(q):
        content = client.get(changelist_url(q=q)).content.decode()
        return {u.identity for u in (wanted, other, stranger) if f">{u.identity}<" in content}

    assert found("customer-77") == {"customer-77"}
    assert found("customer-77*") == {"customer-77", "customer-770"}
    assert found("Customer-77") == set()  # identities are case-sensitive, like Target's
    assert found(f"#{stranger.pk}") == {"zeta-1"}


def test_the_list_never_counts_the_whole_table(client, operator, stage, monkeypatch):
    for _ in range(4):
        stage()
    monkeypatch.setattr(update_admin.CappedPaginator, "cap", 2)
    client = logged_in(client, operator)
    with CaptureQueriesContext(db) as queries:
        response = client.get(changelist_url())
    assert response.status_code == 200
    assert "More than 2 profile updates" in response.content.decode()
    counts = [q["sql"] for q in queries.captured_queries
              if "COUNT(" in q["sql"].upper() and "updates_profileupdate" in q["sql"]]
    assert counts, "the paginator should count (a bounded number of) rows"
    assert all("LIMIT" in sql.upper() for sql in counts), counts


def test_the_list_is_ordered_newest_first(client, operator, stage):
    first, second = stage(identity="first-one"), stage(identity="second-one")
    content = logged_in(client, operator).get(changelist_url()).content.decode()
    assert content.index(second.identity) < content.index(first.identity)


# --- bulk actions ----------------------------------------------------------------------------

def test_submit_action_submits_drafts_and_names_each_refused_update(client, operator, stage):
    draft = stage()
    already = workflow.update_submit(update=stage(), by=operator)
    response = act(logged_in(client, operator), "submit_selected", [draft, already])
    messages = texts(response)
    assert status_of(draft) == S.PENDING
    assert any("Submitted 1 update" in m and f"#{draft.pk}" in m for m in messages)
    assert any(f"Update #{already.pk} is pending approval" in m for m in messages), messages


def test_approve_action_names_the_four_eyes_refusal_of_a_superusers_own_update(
        client, admin_user, operator, stage):
    own = workflow.update_submit(update=stage(by=admin_user), by=admin_user)
    theirs = workflow.update_submit(update=stage(), by=operator)
    client = logged_in(client, admin_user)
    ask = act(client, "approve_selected", [own, theirs])  # the list shows no values: look first
    assert status_of(theirs) == S.PENDING
    assert f'id="decide-row-{theirs.pk}"' in ask.content.decode()
    response = act(client, "approve_selected", [own, theirs], apply="1",
                   shown=ask.context["shown"])
    messages = texts(response)
    assert status_of(own) == S.PENDING
    assert status_of(theirs) == S.APPROVED
    assert any(f"Update #{own.pk}" in m and "four-eyes" in m for m in messages), messages
    assert any("1 update was not approved" in m for m in messages)


def test_an_operator_gets_403_when_posting_the_approve_or_reject_action(client, operator, stage):
    pending = workflow.update_submit(update=stage(), by=operator)
    client = logged_in(client, operator)
    for action in ("approve_selected", "reject_selected"):
        response = client.post(changelist_url(), {"action": action, "index": 0,
                                                  "_selected_action": [pending.pk]})
        assert response.status_code == 403
    assert status_of(pending) == S.PENDING


def test_the_approve_action_is_not_offered_to_operators(client, operator, stage):
    stage()
    content = logged_in(client, operator).get(changelist_url()).content.decode()
    assert 'value="submit_selected"' in content
    assert 'value="approve_selected"' not in content
    assert 'value="delete_selected"' not in content


def test_reject_action_asks_for_a_comment_and_requires_one(client, supervisor, operator, stage):
    pending = workflow.update_submit(update=stage(), by=operator)
    client = logged_in(client, supervisor)

    ask = client.post(changelist_url(), {"action": "reject_selected", "index": 0,
                                         "_selected_action": [pending.pk]})
    assert ask.status_code == 200
    assert "Reason for rejecting" in ask.content.decode()
    assert status_of(pending) == S.PENDING

    empty = client.post(changelist_url(), {"action": "reject_selected", "apply": "1",
                                           "_selected_action": [pending.pk], "comment": "   "})
    assert empty.status_code == 200
    assert "A rejection needs a comment saying why." in empty.content.decode()
    assert status_of(pending) == S.PENDING

    done = client.post(changelist_url(), {"action": "reject_selected", "apply": "1",
                                          "_selected_action": [pending.pk],
                                          "shown": ask.context["shown"],
                                          "comment": "wrong customer"}, follow=True)
    assert status_of(pending) == S.REJECTED
    assert ProfileUpdate.objects.get(pk=pending.pk).decision_comment == "wrong customer"
    assert any("Rejected 1 update" in m for m in texts(done))


def test_reject_action_names_the_refusal_of_an_update_that_is_not_pending(
        client, supervisor, stage):
    draft = stage()
    client = logged_in(client, supervisor)
    response = client.post(changelist_url(), {"action": "reject_selected", "apply": "1",
                                              "_selected_action": [draft.pk], "comment": "no"},
                           follow=True)
    assert status_of(draft) == S.DRAFT
    assert any(f"Update #{draft.pk} is draft" in m for m in texts(response))


def test_cancel_action_cancels_and_names_each_refused_update(client, operator, stage):
    draft = stage()
    cancelled = workflow.update_cancel(update=stage(), by=operator)
    response = act(logged_in(client, operator), "cancel_selected", [draft, cancelled])
    messages = texts(response)
    assert status_of(draft) == S.CANCELLED
    assert any(f"Update #{cancelled.pk} is cancelled" in m for m in messages), messages


def test_requeue_action_requeues_failed_updates_and_names_each_refused_update(
        client, operator, supervisor, stage):
    failed = workflow.update_approve(update=workflow.update_submit(update=stage(), by=operator),
                                     by=supervisor)
    ProfileUpdate.objects.filter(pk=failed.pk).update(status=S.FAILED)  # as the sender would
    draft = stage()
    response = act(logged_in(client, operator), "requeue_selected", [failed, draft])
    messages = texts(response)
    assert status_of(failed) == S.APPROVED  # content unchanged: the approval still holds
    assert any("Re-queued 1 update" in m for m in messages)
    assert any(f"Update #{draft.pk} is draft" in m for m in messages), messages


def test_a_bulk_action_refuses_more_updates_than_its_limit_and_changes_nothing(
        client, operator, stage, monkeypatch):
    drafts = [stage() for _ in range(3)]
    monkeypatch.setattr(update_admin, "BULK_LIMIT", 2)
    response = act(logged_in(client, operator), "submit_selected", drafts)
    assert any("More than 2 updates are selected" in m for m in texts(response))
    assert {status_of(d) for d in drafts} == {S.DRAFT}


# --- staging and editing ----------------------------------------------------------------------

def test_adding_first_asks_for_the_connection(client, operator, connection):
    from tests.conftest import make_connection

    make_connection("second")
    response = logged_in(client, operator).get(add_url())
    content = response.content.decode()
    assert response.status_code == 200
    assert "Step 1 of 2" in content and connection.label in content


def test_with_one_active_connection_adding_skips_the_connection_step(client, operator,
                                                                     connection):
    from tests.conftest import make_connection

    make_connection("retired", active=False)
    response = logged_in(client, operator).get(add_url())
    assert response.status_code == 302 and response["Location"] == add_url(connection)


def test_a_mapping_label_names_the_staging_field_and_choices_have_no_length_hint(
        client, operator, connection):
    connection.mappings.filter(source_name="loan_status").update(label="Loan status")
    form = logged_in(client, operator).get(add_url(connection)).context["adminform"].form
    by_source = {m.source_name: form.fields[name] for name, m in form.mapping_fields.items()}
    assert by_source["loan_status"].label == "Loan status"
    assert "Column loan_status in import files." in by_source["loan_status"].help_text
    assert "characters" not in by_source["loan_status"].help_text  # a choice: no length limit
    assert by_source["tier"].label == "tier"  # no label: the source name
    assert "At most 256 characters." in by_source["tier"].help_text


def test_identity_and_attribute_errors_are_reported_in_one_pass(client, operator, connection):
    response = logged_in(client, operator).post(add_url(connection), {
        "identity_type": "mbox3rdPartyId", "identity": "a+b/c",
        **fields_for(connection, loan_status="funded", note="x" * 1001),
    })
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "identity" in errors and "may not contain" in " ".join(errors["identity"])
    assert next(iter(fields_for(connection, note=""))) in errors
    assert not ProfileUpdate.objects.exists()


def test_the_staging_form_has_a_labelled_field_with_help_for_every_active_mapping(
        client, operator, connection):
    response = logged_in(client, operator).get(add_url(connection))
    assert response.status_code == 200
    form = response.context["adminform"].form
    for name in ("loan_status", "tier", "note"):
        assert f">{name}" in response.content.decode()
    for name, field in form.fields.items():
        assert field.label, name
        assert field.help_text, name


def test_staging_through_the_form_stores_normalised_values_as_a_draft(client, operator, connection):
    response = logged_in(client, operator).post(add_url(connection), {
        "identity_type": "mbox3rdPartyId", "identity": "cust-9",
        **fields_for(connection, loan_status="funded", tier="  Gold  ", note=""),
        "reason": "loan funded — call centre",
    }, follow=True)
    update = ProfileUpdate.objects.get(identity="cust-9")
    assert update.status == S.DRAFT
    assert update.attributes == {"loanStatus": "funded", "loyaltyTier": "Gold"}
    assert update.created_by == operator
    assert AuditEvent.objects.filter(update=update, action="staged").count() == 1
    assert any("staged as a draft" in m for m in texts(response))


def fields_for(connection, **values) -> dict:
    by_source = {m.source_name: m for m in connection.mappings.filter(active=True)}
    return {StagingForm.field_name(by_source[k]): v for k, v in values.items()}


def test_validation_errors_from_the_service_are_shown_on_the_form(client, operator, connection):
    response = logged_in(client, operator).post(add_url(connection), {
        "identity_type": "mbox3rdPartyId", "identity": "a+b/c",
        **fields_for(connection, loan_status="funded"),
    })
    assert response.status_code == 200
    assert "may not contain" in response.content.decode()
    assert not ProfileUpdate.objects.exists()


def test_a_value_its_mapping_refuses_is_shown_on_that_field(client, operator, connection):
    response = logged_in(client, operator).post(add_url(connection), {
        "identity_type": "mbox3rdPartyId", "identity": "cust-1",
        **fields_for(connection, loan_status="funded", note="x" * 1001),
    })
    assert response.status_code == 200
    form = response.context["adminform"].form
    note_field = fields_for(connection, note="")
    assert form.errors.get(next(iter(note_field))), form.errors
    assert not ProfileUpdate.objects.exists()


def test_an_identity_is_not_trimmed_silently(client, operator, connection):
    response = logged_in(client, operator).post(add_url(connection), {
        "identity_type": "mbox3rdPartyId", "identity": " cust-1",
        **fields_for(connection, loan_status="funded"),
    })
    assert response.status_code == 200
    assert "starts or ends with whitespace" in response.content.decode()
    assert not ProfileUpdate.objects.exists()


def test_editing_the_values_of_a_pending_update_returns_it_to_draft(client, operator, stage,
                                                                    connection):
    pending = workflow.update_submit(update=stage(), by=operator)
    response = logged_in(client, operator).post(change_url(pending), {
        "identity_type": pending.identity_type, "identity": pending.identity,
        **fields_for(connection, loan_status="declined"), "reason": "",
    }, follow=True)
    pending.refresh_from_db()
    assert pending.status == S.DRAFT
    assert pending.attributes == {"loanStatus": "declined"}
    assert any("back in draft" in m for m in texts(response))


def test_a_sent_update_is_read_only_in_the_admin(client, operator, stage, connection):
    update = stage()
    ProfileUpdate.objects.filter(pk=update.pk).update(status=S.SENT)
    client = logged_in(client, operator)
    page = client.get(change_url(update))
    assert page.status_code == 200
    assert 'name="identity"' not in page.content.decode()
    post = client.post(change_url(update), {"identity_type": "mbox3rdPartyId", "identity": "x",
                                            **fields_for(connection, loan_status="declined")})
    assert post.status_code == 403
    assert ProfileUpdate.objects.get(pk=update.pk).identity == update.identity


def test_a_supervisor_sees_an_update_read_only(client, supervisor, stage):
    update = stage()
    page = logged_in(client, supervisor).get(change_url(update))
    assert page.status_code == 200
    assert 'name="identity"' not in page.content.decode()
    assert update.identity in page.content.decode()


# --- the change page: preview, next step, timeline ----------------------------------------------

def test_the_change_page_shows_what_will_be_sent_and_the_request(client, operator, stage):
    update = stage(attributes={"loanStatus": "funded", "callNote": "a&b c"})
    content = logged_in(client, operator).get(change_url(update)).content.decode()
    assert "profile.callNote" in content and "a&amp;b c" in content
    assert "profile.loanStatus" in content and "funded" in content
    assert "<strong>GET</strong>" in content
    assert "quota cost: <strong>1</strong>" in content


def test_the_change_page_shows_audit_events_and_attempts_in_time_order(
        client, operator, supervisor, stage, connection):
    update = stage()
    workflow.update_submit(update=update, by=operator)
    workflow.update_approve(update=update, by=supervisor, comment="looks right")
    later = timezone.now() + dt.timedelta(minutes=5)
    SendAttempt.objects.create(
        update=update, connection=connection, number=1, started_at=later, method="GET",
        request_bytes=120, http_status=503, response_body="Service Unavailable", latency_ms=40,
        outcome=SendAttempt.Outcome.TRANSIENT, error="HTTP 503")
    SendAttempt.objects.create(
        update=update, connection=connection, number=2, started_at=later + dt.timedelta(minutes=1),
        method="GET", request_bytes=120, http_status=200,
        response_body="trueRequest successfully submitted", latency_ms=35,
        outcome=SendAttempt.Outcome.ACKNOWLEDGED)
    AuditEvent.objects.create(at=later + dt.timedelta(minutes=2), actor=None, action="sent",
                              update=update, from_status="sending", to_status="sent")

    content = logged_in(client, supervisor).get(change_url(update)).content.decode()
    timeline = content[content.index('id="po-timeline-title"'):]
    order = [timeline.index(marker) for marker in (
        "<strong>staged</strong>", "<strong>submitted for approval</strong>",
        "<strong>approved</strong>",
        "<strong>attempt 1</strong>", "<strong>attempt 2</strong>", "<strong>sent</strong>")]
    assert order == sorted(order)
    assert "looks right" in timeline
    assert "Service Unavailable" in timeline and "trueRequest successfully submitted" in timeline
    assert "by the system" in timeline


def test_the_change_page_offers_the_next_steps_the_user_may_take(client, operator, supervisor,
                                                                  stage):
    draft = stage()
    content = logged_in(client, operator).get(change_url(draft)).content.decode()
    assert 'value="submit"' in content and 'value="approve"' not in content
    workflow.update_submit(update=draft, by=operator)
    client.force_login(supervisor)
    content = client.get(change_url(draft)).content.decode()
    assert 'value="approve"' in content and 'value="reject"' in content


def test_the_workflow_buttons_go_through_the_services(client, operator, supervisor, stage):
    update = stage()
    url = reverse("admin:updates_profileupdate_workflow", args=[update.pk])
    client = logged_in(client, operator)
    client.post(url, {"transition": "submit"})
    assert status_of(update) == S.PENDING
    assert client.post(url, {"transition": "approve"}).status_code == 403

    client.force_login(supervisor)
    refused = client.post(url, {"transition": "reject", "comment": ""}, follow=True)
    assert status_of(update) == S.PENDING
    assert any("needs a comment" in m for m in texts(refused))
    client.post(url, {"transition": "approve",
                      "shown": client.get(change_url(update)).context["shown"]})
    assert status_of(update) == S.APPROVED


def test_a_superuser_cannot_approve_their_own_update_from_its_page(client, admin_user, stage):
    update = workflow.update_submit(update=stage(by=admin_user), by=admin_user)
    url = reverse("admin:updates_profileupdate_workflow", args=[update.pk])
    response = logged_in(client, admin_user).post(url, {"transition": "approve"}, follow=True)
    assert status_of(update) == S.PENDING
    assert any("four-eyes" in m for m in texts(response))


def test_updates_cannot_be_deleted_from_the_admin(client, admin_user, stage):
    update = stage()
    response = logged_in(client, admin_user).get(
        reverse("admin:updates_profileupdate_delete", args=[update.pk]))
    assert response.status_code == 403
    assert ProfileUpdate.objects.filter(pk=update.pk).exists()


def test_messages_never_carry_profile_values(client, operator, stage):
    update = stage(attributes={"loanStatus": "funded", "callNote": "secret-note-value"})
    response = act(logged_in(client, operator), "submit_selected", [update])
    assert all("secret-note-value" not in m for m in texts(response))
    assert re.search(rf"#{update.pk}\b", " ".join(texts(response)))


def test_save_and_add_another_keeps_the_chosen_connection(client, operator, connection):
    response = logged_in(client, operator).post(add_url(connection), {
        "identity_type": "mbox3rdPartyId", "identity": "cust-5",
        **fields_for(connection, loan_status="applied"), "_addanother": "1"})
    assert response.status_code == 302
    assert f"connection={connection.pk}" in response["Location"]


def test_the_list_can_show_the_updates_of_one_reason_and_says_so(client, operator, stage):
    imported = stage(identity="from-file", reason="import #7")
    other = stage(identity="by-hand")
    content = logged_in(client, operator).get(changelist_url(reason="import #7")).content.decode()
    assert imported.identity in content and other.identity not in content
    assert "Only updates whose reason is “import #7”" in content


# --- no lost edits: the workflow buttons carry the form, one message per action -------------

def workflow_url(update) -> str:
    return reverse("admin:updates_profileupdate_workflow", args=[update.pk])


def change_form_data(connection, update, **values) -> dict:
    """What the change page posts: the stored fields, with `values` (by source name) edited."""
    by_target = {m.target_name: m.source_name for m in connection.mappings.filter(active=True)}
    stored = {by_target[name]: value for name, value in update.attributes.items()}
    return {"identity_type": update.identity_type, "identity": update.identity,
            "reason": update.reason, "not_before_0": "", "not_before_1": "",
            **fields_for(connection, **{name: "" for name in by_target.values()}),
            **fields_for(connection, **{**stored, **values})}


def test_submit_with_unsaved_changes_saves_them_first_and_says_so_once(client, operator, stage,
                                                                       connection):
    draft = stage(attributes={"loanStatus": "funded"})
    data = change_form_data(connection, draft, loan_status="declined", tier="gold")
    response = logged_in(client, operator).post(workflow_url(draft),
                                                {**data, "transition": "submit"}, follow=True)
    draft.refresh_from_db()
    assert draft.status == S.PENDING
    assert draft.attributes == {"loanStatus": "declined", "loyaltyTier": "gold"}
    assert texts(response) == [f"Saved your changes to update #{draft.pk} and submitted it."]
    actions = list(AuditEvent.objects.filter(update=draft).order_by("id")
                   .values_list("action", flat=True))
    assert actions == ["staged", "edited", "submitted"]


def test_submit_without_changes_just_submits(client, operator, stage, connection):
    draft = stage()
    response = logged_in(client, operator).post(
        workflow_url(draft), {**change_form_data(connection, draft), "transition": "submit"},
        follow=True)
    assert status_of(draft) == S.PENDING
    assert texts(response) == [f"Submitted 1 update: #{draft.pk}."]
    assert not AuditEvent.objects.filter(update=draft, action="edited").exists()


def test_submit_with_invalid_changes_saves_nothing_and_shows_the_errors(client, operator, stage,
                                                                        connection):
    draft = stage()
    data = change_form_data(connection, draft, note="x" * 1001)
    response = logged_in(client, operator).post(workflow_url(draft),
                                                {**data, "transition": "submit"})
    assert response.status_code == 200  # the page again, with the typed values and the errors
    assert response.context["adminform"].form.errors
    assert "x" * 1001 in response.content.decode()
    assert f'action="{change_url(draft)}"' in response.content.decode()
    assert status_of(draft) == S.DRAFT
    assert ProfileUpdate.objects.get(pk=draft.pk).attributes == {"loanStatus": "funded"}


def test_requeue_with_unsaved_content_changes_saves_them_and_explains_it_is_a_draft_now(
        client, operator, stage, connection):
    update = stage()
    ProfileUpdate.objects.filter(pk=update.pk).update(status=S.FAILED)
    update.refresh_from_db()
    data = change_form_data(connection, update, tier="silver")
    response = logged_in(client, operator).post(workflow_url(update),
                                                {**data, "transition": "requeue"}, follow=True)
    update.refresh_from_db()
    assert update.status == S.DRAFT and update.attributes["loyaltyTier"] == "silver"
    [message] = texts(response)
    assert message.startswith(f"Saved your changes to update #{update.pk}, but it was not "
                              "re-queued:")


def test_a_decision_with_unsaved_changes_is_refused_and_the_edits_stay_on_the_page(
        client, operator, supervisor, admin_user, stage, connection):
    pending = workflow.update_submit(update=stage(), by=operator)
    data = change_form_data(connection, pending, loan_status="declined")
    response = logged_in(client, admin_user).post(
        workflow_url(pending), {**data, "transition": "approve", "shown": shown(pending)})
    assert response.status_code == 200
    page = response.content.decode()
    assert "You have unsaved changes" in page and "was not approved" in page
    assert 'value="declined" selected' in page  # the typed value is still in the field
    pending.refresh_from_db()
    assert pending.status == S.PENDING and pending.attributes == {"loanStatus": "funded"}


def test_a_submitted_update_warns_beside_the_save_button_that_edits_return_it_to_draft(
        client, operator, stage):
    draft = stage()
    client = logged_in(client, operator)
    assert "po-draft-warning" not in client.get(change_url(draft)).content.decode()
    workflow.update_submit(update=draft, by=operator)
    page = client.get(change_url(draft)).content.decode()
    assert "sends it back to <strong>draft</strong>" in page
    assert page.index("po-draft-warning") < page.index('name="_save"')


def test_saving_a_change_gives_one_message(client, operator, stage, connection):
    pending = workflow.update_submit(update=stage(), by=operator)
    data = change_form_data(connection, pending, loan_status="declined")
    response = logged_in(client, operator).post(change_url(pending), data, follow=True)
    [message] = texts(response)
    assert "back in draft" in message
    draft = stage()
    response = client.post(change_url(draft), change_form_data(connection, draft, tier="x"),
                           follow=True)
    assert len(texts(response)) == 1


# --- the timeline in words ------------------------------------------------------------------------

def _timeline_of(client, update) -> str:
    content = client.get(change_url(update)).content.decode()
    return content[content.index('id="po-timeline-title"'):]


def test_the_timeline_shows_attributes_as_a_table_and_events_in_words(client, operator, stage,
                                                                      connection):
    update = stage(attributes={"loanStatus": "funded"})
    workflow.update_edit(update=update, by=operator,
                         attributes={"loanStatus": "declined", "loyaltyTier": "<b>gold</b>"})
    at = timezone.now()
    AuditEvent.objects.create(
        at=at, actor=None, action="retry_scheduled", update=update, from_status="sending",
        to_status="approved", comment="HTTP 503; attempt 1 of 8, next try in 43 s.",
        changes={"attempt": 1, "http_status": 503,
                 "next_attempt_at": (at + dt.timedelta(seconds=43)).isoformat()})
    timeline = _timeline_of(logged_in(client, operator), update)
    assert "{'" not in timeline and "{&#x27;" not in timeline  # no Python dict text
    assert '<table class="po-changes-table">' in timeline
    assert re.search(r"<code>profile.loanStatus</code></th>\s*<td[^>]*>funded</td>\s*"
                     r"<td[^>]*>declined</td>", timeline)
    assert "&lt;b&gt;gold&lt;/b&gt;" in timeline  # escaped like every operator-supplied value
    assert "<strong>attempt 1 not acknowledged; retry scheduled in 43 s</strong>" in timeline


def test_every_time_on_the_update_page_has_one_format_with_its_zone(client, operator, stage):
    update = stage()
    moment = dt.datetime(2024, 5, 1, 10, 30, 5, tzinfo=dt.timezone.utc)
    ProfileUpdate.objects.filter(pk=update.pk).update(created_at=moment)
    AuditEvent.objects.filter(update=update).update(at=moment)
    content = logged_in(client, operator).get(change_url(update)).content.decode()
    # The Life section and the timeline alike.
    assert content.count("2024-05-01 10:30:05 UTC") >= 2
    assert "May 1, 2024" not in content and "a.m." not in content


def test_a_sent_update_shows_its_timeline_above_the_form_and_history_links_to_it(
        client, operator, stage):
    update = stage()
    client = logged_in(client, operator)
    draft_page = client.get(change_url(update)).content.decode()
    assert draft_page.index('id="po-timeline-title"') > draft_page.index('id="profileupdate_form"')
    ProfileUpdate.objects.filter(pk=update.pk).update(status=S.SENT)
    sent_page = client.get(change_url(update)).content.decode()
    assert sent_page.index('id="po-timeline-title"') < sent_page.index('id="profileupdate_form"')
    assert '<a href="#po-timeline-title" class="historylink">Timeline</a>' in sent_page
    assert "/history/" not in sent_page


def test_rejecting_from_the_update_page_with_unsaved_changes_is_refused(
        client, operator, admin_user, stage, connection):
    pending = workflow.update_submit(update=stage(), by=operator)
    data = change_form_data(connection, pending, tier="edited")
    response = logged_in(client, admin_user).post(
        workflow_url(pending), {**data, "transition": "reject", "comment": "no",
                                "shown": shown(pending)})
    assert response.status_code == 200 and "You have unsaved changes" in response.content.decode()
    assert status_of(pending) == S.PENDING
    page = client.get(change_url(pending)).content.decode()
    assert 'form="profileupdate_form" formaction="' in page  # the reject button carries the form
