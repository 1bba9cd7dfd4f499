"""A hostile operator racing a supervisor (issue 21, item 1): between the page a supervisor looks
at and their click, the operator cancels an update, submits an older draft (lower id, value
EVIL) or edits an update's content and resubmits it. On every path that decides — the list's
action, the queue (a selection and a row's button), the update page, the batch page, an
import's batch and the notebook — the decision is refused with code `stale` and nothing the
supervisor did not see is decided. Runs on SQLite and PostgreSQL (DATABASE_URL).
"""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.helpers import logged_in, texts
from updates import importing, workflow
from updates.models import AuditEvent, ProfileUpdate, UpdateStatus

S = UpdateStatus
RACES = ("cancel", "older_draft", "edit_resubmit")
EVIL = {"loanStatus": "funded", "loyaltyTier": "EVIL"}
CHANGELIST = "admin:updates_profileupdate_changelist"


@pytest.fixture
def board(stage, operator):
    """An older draft with EVIL content (lower id), then three pending updates."""
    smuggled = stage(attributes=EVIL)
    waiting = [workflow.update_submit(update=stage(), by=operator) for _ in range(3)]
    return smuggled, waiting


def race(kind: str, smuggled, waiting, operator) -> None:
    """What the operator does after the supervisor's page was shown."""
    if kind == "cancel":
        workflow.update_cancel(update=waiting[0], by=operator)
    elif kind == "older_draft":
        workflow.update_submit(update=smuggled, by=operator)
    else:
        workflow.update_edit(update=waiting[1], by=operator, attributes=EVIL)
        workflow.update_submit(update=waiting[1], by=operator)


def states() -> dict[int, tuple[str, dict]]:
    return {u.pk: (u.status, u.attributes) for u in ProfileUpdate.objects.all()}


def assert_nothing_decided() -> None:
    assert not AuditEvent.objects.filter(action__in=("approved", "rejected")).exists()
    assert not ProfileUpdate.objects.filter(status__in=(S.APPROVED, S.REJECTED)).exists()


def said_stale(response) -> bool:
    return any("What you were shown changed" in m or "not what you were shown" in m
               or "not the ones you were shown" in m for m in texts(response))


# --- several at once: all or nothing -----------------------------------------------------------

@pytest.mark.parametrize("kind", RACES)
def test_the_batch_page_refuses_when_anything_changed_after_it_was_shown(
        client, supervisor, operator, board, kind):
    smuggled, waiting = board
    client = logged_in(client, supervisor)
    page = client.get(reverse("updates_queue_batch"))
    assert page.context["count"] == 3
    race(kind, smuggled, waiting, operator)
    before = states()
    response = client.post(reverse("updates_queue_batch"),
                           {"decision": "approve", "shown": page.context["shown"]}, follow=True)
    assert said_stale(response)
    word = {"cancel": "1 left", "older_draft": "1 joined", "edit_resubmit": "1 changed"}[kind]
    assert any(word in m for m in texts(response)), texts(response)
    assert states() == before
    assert_nothing_decided()


def test_the_batch_page_names_every_kind_of_change_at_once(client, supervisor, operator, board):
    smuggled, waiting = board
    client = logged_in(client, supervisor)
    page = client.get(reverse("updates_queue_batch"))
    for kind in RACES:
        race(kind, smuggled, waiting, operator)
    response = client.post(reverse("updates_queue_batch"),
                           {"decision": "approve", "shown": page.context["shown"]}, follow=True)
    [summary] = [m for m in texts(response) if "What you were shown changed" in m]
    assert "1 left" in summary and "1 joined" in summary and "1 changed content" in summary
    assert f"#{smuggled.pk}" in summary
    assert_nothing_decided()


def test_a_batch_with_nothing_changed_is_decided_and_later_arrivals_stay_pending(
        client, supervisor, operator, board, stage):
    _, waiting = board
    client = logged_in(client, supervisor)
    page = client.get(reverse("updates_queue_batch"))
    later = workflow.update_submit(update=stage(), by=operator)  # newer than the page: not in it
    response = client.post(reverse("updates_queue_batch"),
                           {"decision": "approve", "shown": page.context["shown"]}, follow=True)
    assert any(m.startswith("Approved 3 updates") for m in texts(response))
    assert {u.status for u in ProfileUpdate.objects.filter(pk__in=[u.pk for u in waiting])} == {
        S.APPROVED}
    assert ProfileUpdate.objects.get(pk=later.pk).status == S.PENDING


def test_a_batch_token_of_another_scope_or_tampered_decides_nothing(client, supervisor, board,
                                                                    connection):
    client = logged_in(client, supervisor)
    page = client.get(reverse("updates_queue_batch"))
    for data in ({"connection": connection.pk, "shown": page.context["shown"]},
                 {"shown": page.context["shown"][:-2] + "xx"}, {}):
        response = client.post(reverse("updates_queue_batch"), {"decision": "approve", **data},
                               follow=True)
        assert any("did not say which updates it showed" in m for m in texts(response))
    assert_nothing_decided()


@pytest.mark.parametrize("kind", RACES)
def test_the_queues_selection_refuses_when_anything_it_showed_changed(
        client, supervisor, operator, board, kind):
    smuggled, waiting = board
    client = logged_in(client, supervisor)
    page = client.get(reverse("updates_queue"))
    race(kind, smuggled, waiting, operator)
    before = states()
    response = client.post(reverse("updates_queue"), {
        "decision": "approve", "update": [u.pk for u in waiting],
        "shown": page.context["shown"]}, follow=True)
    if kind == "older_draft":
        # Not on the page, not selected: the selection itself is intact and is decided.
        assert ProfileUpdate.objects.get(pk=smuggled.pk).status == S.PENDING
        assert ProfileUpdate.objects.filter(status=S.APPROVED).count() == 3
        return
    assert said_stale(response)
    assert states() == before
    assert_nothing_decided()


@pytest.mark.parametrize("kind", ("cancel", "edit_resubmit"))
def test_the_queues_row_button_refuses_a_row_that_changed(client, supervisor, operator, board,
                                                          kind):
    smuggled, waiting = board
    client = logged_in(client, supervisor)
    page = client.get(reverse("updates_queue"))
    race(kind, smuggled, waiting, operator)
    target = waiting[0] if kind == "cancel" else waiting[1]
    before = states()
    response = client.post(reverse("updates_queue"), {
        "approve_one": target.pk, "shown": page.context["shown"]}, follow=True)
    assert said_stale(response)
    assert states() == before
    assert_nothing_decided()


def test_the_queue_refuses_a_row_its_page_did_not_show(client, supervisor, operator, board):
    smuggled, _ = board
    client = logged_in(client, supervisor)
    page = client.get(reverse("updates_queue"))
    workflow.update_submit(update=smuggled, by=operator)
    response = client.post(reverse("updates_queue"), {
        "approve_one": smuggled.pk, "shown": page.context["shown"]}, follow=True)
    assert any("did not show its content" in m for m in texts(response))
    assert_nothing_decided()


@pytest.mark.parametrize("decision", ("approve", "reject"))
@pytest.mark.parametrize("kind", ("cancel", "edit_resubmit"))
def test_the_lists_action_decides_the_content_its_confirmation_page_listed(
        client, supervisor, operator, board, kind, decision):
    smuggled, waiting = board
    client = logged_in(client, supervisor)
    selected = {"action": f"{decision}_selected", "index": 0,
                "_selected_action": [u.pk for u in waiting]}
    ask = client.post(reverse(CHANGELIST), selected)
    assert ask.status_code == 200  # the content first: the list shows attribute names only
    listed = ask.content.decode()
    assert all(f'id="decide-row-{u.pk}"' in listed for u in waiting)
    assert "funded" in listed
    race(kind, smuggled, waiting, operator)
    before = states()
    response = client.post(reverse(CHANGELIST), {
        **selected, "apply": "1", "shown": ask.context["shown"], "comment": "no"}, follow=True)
    assert said_stale(response)
    assert states() == before
    assert_nothing_decided()


def test_the_lists_action_without_a_race_decides_what_it_listed(client, supervisor, board):
    _, waiting = board
    client = logged_in(client, supervisor)
    selected = {"action": "approve_selected", "index": 0,
                "_selected_action": [u.pk for u in waiting]}
    ask = client.post(reverse(CHANGELIST), selected)
    assert not ProfileUpdate.objects.filter(status=S.APPROVED).exists()
    client.post(reverse(CHANGELIST), {**selected, "apply": "1", "shown": ask.context["shown"]})
    assert ProfileUpdate.objects.filter(status=S.APPROVED).count() == 3


# --- one update: its page -----------------------------------------------------------------------

@pytest.mark.parametrize("decision", ("approve", "reject"))
@pytest.mark.parametrize("kind", ("cancel", "edit_resubmit"))
def test_the_update_page_refuses_a_decision_on_content_that_changed(
        client, supervisor, operator, board, kind, decision):
    smuggled, waiting = board
    target = waiting[0] if kind == "cancel" else waiting[1]
    client = logged_in(client, supervisor)
    page = client.get(reverse("admin:updates_profileupdate_change", args=[target.pk]))
    race(kind, smuggled, waiting, operator)
    before = states()
    response = client.post(
        reverse("admin:updates_profileupdate_workflow", args=[target.pk]),
        {"transition": decision, "comment": "no", "shown": page.context["shown"]}, follow=True)
    assert said_stale(response)
    assert states() == before
    assert_nothing_decided()


def test_the_update_page_says_stale_not_unsaved_when_the_stored_content_changed(
        client, supervisor, operator, board, connection):
    from tests.admin.test_updates import change_form_data

    _, waiting = board
    target = waiting[1]
    page_fields = change_form_data(connection, target)  # what the page's form holds
    client = logged_in(client, supervisor)
    page = client.get(reverse("admin:updates_profileupdate_change", args=[target.pk]))
    race("edit_resubmit", None, waiting, operator)
    response = client.post(
        reverse("admin:updates_profileupdate_workflow", args=[target.pk]),
        {**page_fields, "transition": "approve", "shown": page.context["shown"]}, follow=True)
    assert said_stale(response)
    assert_nothing_decided()


# --- an import's batch ------------------------------------------------------------------------

def _import(connection, by, n: int, *, submit: bool):
    rows = "".join(f"mbox3rdPartyId,imp-{i},funded\n" for i in range(n))
    job = importing.import_job_create(connection=connection, file_name="imp.csv",
                                      file_data=f"identity_type,identity,loan_status\n{rows}"
                                      .encode(), by=by, submit=submit)
    importing.import_job_start(job=job, by=by)
    job.refresh_from_db()
    return job, list(ProfileUpdate.objects.filter(import_job=job).order_by("id"))


@pytest.mark.parametrize("kind", RACES)
def test_an_imports_batch_refuses_when_anything_changed_after_it_was_shown(
        client, supervisor, operator, connection, kind):
    job, imported = _import(connection, operator, 4, submit=False)
    late = imported[0]  # a draft of the import, lowest id: submitted after the page
    for update in imported[1:]:
        workflow.update_submit(update=update, by=operator)
    client = logged_in(client, supervisor)
    page = client.get(reverse("updates_queue_batch"), {"import": job.pk})
    assert page.context["count"] == 3
    race(kind, late, imported[1:], operator)
    before = states()
    response = client.post(reverse("updates_queue_batch"), {
        "import": job.pk, "decision": "approve", "shown": page.context["shown"]}, follow=True)
    assert said_stale(response)
    assert states() == before
    assert_nothing_decided()


# --- the notebook -----------------------------------------------------------------------------

@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.parametrize("looked_with", ("preview", "updates", "records"))
def test_the_notebook_refuses_rows_whose_content_changed_since_it_was_shown(
        connection, operator, supervisor, looked_with):
    pytest.importorskip("pandas")
    from profileops import notebook

    try:
        stage = [workflow.update_stage(connection=connection, identity_type="mbox3rdPartyId",
                                       identity=f"nb-{i}", attributes={"loanStatus": "funded"},
                                       by=operator) for i in range(3)]
        waiting = [workflow.update_submit(update=u, by=operator) for u in stage]
        boss = notebook.as_user(supervisor.username)
        ids = [u.pk for u in waiting]
        if looked_with == "preview":
            looked = boss.preview(ids=ids)
        elif looked_with == "updates":
            looked = boss.updates(ids=ids)
        else:
            looked = boss.updates(ids=ids)[["id", "fingerprint"]].to_dict("records")
        race("edit_resubmit", None, waiting, operator)
        race("cancel", None, waiting, operator)
        decisions = boss.approve(ids=looked)
        table = decisions.table.set_index("update_id")
        assert table.loc[waiting[2].pk, "outcome"] == "done"
        for changed in waiting[:2]:
            assert table.loc[changed.pk, "outcome"] == "refused"
            assert "what you were shown" in table.loc[changed.pk, "message"] \
                or "not the ones you were shown" in table.loc[changed.pk, "message"]
        assert ProfileUpdate.objects.get(pk=waiting[1].pk).status == S.PENDING  # EVIL waits
        assert ProfileUpdate.objects.get(pk=waiting[0].pk).status == S.CANCELLED
        # Bare ids decide whatever is there now (documented).
        assert boss.approve(ids=[waiting[1].pk]).ids == [waiting[1].pk]
    finally:
        notebook.close()
