"""One open change per visitor and attribute (updates/open_changes.py), path by path.

An update is open while draft, pending, approved, sending or failed. A second open update of the
same visitor (connection, identity type, identity) that sets the same attribute is refused
(`open_conflict`, naming the open update: id, state, creator) by every path that creates or
queues one — stage, import (file), notebook stage, edit, revert, submit, re-queue — unless the
caller supersedes: then the older one is cancelled in the same transaction, audited
`superseded` with the new one's id. A sending update is never superseded (`in_flight`).
The sender sends one update per visitor at a time, in approval order (claims.py).

The `connection` fixture (client code "acme") maps loan_status → loanStatus (applied, funded,
declined), tier → loyaltyTier, note → callNote. Rows the sender would move are put in place
directly, as the sender would (said where done).
"""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth.models import Permission
from django.core.exceptions import ValidationError
from django.utils import timezone

from tests.conftest import make_user
from updates import claims, importing, open_changes, verification, workflow
from updates.errors import IN_FLIGHT, OPEN_CONFLICT, Refused
from updates.models import AuditEvent, ImportJob, ProfileUpdate, UpdateStatus as S

pytestmark = pytest.mark.django_db

VISITOR = {"identity_type": "mbox3rdPartyId", "identity": "CUST-1"}
HEADER = "identity_type,identity,loan_status,tier,note"


@pytest.fixture
def stage_visitor(connection, operator):
    """stage_visitor(attributes, **overrides) -> a draft for VISITOR."""

    def _stage(attributes=None, **kwargs):
        kwargs = {**VISITOR, "connection": connection, "by": operator, **kwargs}
        return workflow.update_stage(attributes=attributes or {"loanStatus": "funded"}, **kwargs)

    return _stage


def as_sender(update: ProfileUpdate, status: str, **fields) -> ProfileUpdate:
    ProfileUpdate.objects.filter(pk=update.pk).update(status=status, **fields)
    update.refresh_from_db()
    return update


def bypassing_the_rule(connection, operator, attributes, **kwargs) -> ProfileUpdate:
    """A row written straight to the table: an open conflict staged before the rule existed."""
    now = timezone.now()
    fields = {**VISITOR, **kwargs}
    return ProfileUpdate.objects.create(
        connection=connection, attributes=attributes, created_by=operator, created_at=now,
        last_edited_by=operator, last_edited_at=now, **fields)


def superseded_events(update: ProfileUpdate) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(update=update, action="superseded"))


def assert_names(error: ValidationError, update: ProfileUpdate, state: str, who: str) -> None:
    message = " ".join(error.messages)
    assert f"#{update.pk} ({state}, created by {who})" in message, message


# --- stage ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("state", [S.DRAFT, S.PENDING, S.APPROVED, S.SENDING, S.FAILED])
def test_staging_the_same_visitor_and_attribute_is_refused_while_an_update_is_open(
        stage_visitor, operator, supervisor, state):
    first = stage_visitor()
    if state != S.DRAFT:
        workflow.update_submit(update=first, by=operator)
    if state in (S.APPROVED, S.SENDING, S.FAILED):
        workflow.update_approve(update=first, by=supervisor)
    if state in (S.SENDING, S.FAILED):
        as_sender(first, state)
    count = ProfileUpdate.objects.count()

    with pytest.raises(Refused) as refused:
        stage_visitor({"loanStatus": "declined", "loyaltyTier": "gold"})

    assert refused.value.code == OPEN_CONFLICT
    assert_names(refused.value, first, first.get_status_display().lower(), "operator")
    assert "profile.loanStatus" in refused.value.messages[0]
    assert "declined" not in refused.value.messages[0]  # names, never values
    assert ProfileUpdate.objects.count() == count
    assert ProfileUpdate.objects.get(pk=first.pk).status == state


@pytest.mark.parametrize("state", [S.SENT, S.REJECTED, S.CANCELLED, S.UNCHANGED])
def test_a_closed_update_does_not_block_the_visitor(stage_visitor, state):
    first = as_sender(stage_visitor(), state)
    second = stage_visitor({"loanStatus": "declined"})
    assert second.status == S.DRAFT and first.pk != second.pk


def test_different_attributes_of_one_visitor_do_not_conflict(stage_visitor, connection, operator):
    first = stage_visitor({"loanStatus": "funded"})
    second = stage_visitor({"loyaltyTier": "gold", "callNote": "x"})
    other_visitor = stage_visitor({"loanStatus": "declined"}, identity="CUST-2")
    other_type = stage_visitor({"loanStatus": "declined"}, identity_type="mboxPC",
                               identity="1368007744041-575948.01_00")
    assert len({first.pk, second.pk, other_visitor.pk, other_type.pk}) == 4
    assert not AuditEvent.objects.filter(action="superseded").exists()


def test_supersede_cancels_the_older_update_audited_with_the_new_ones_id(
        stage_visitor, operator, other_operator, supervisor):
    older = stage_visitor()
    workflow.update_submit(update=older, by=operator)
    workflow.update_approve(update=older, by=supervisor)

    newer = stage_visitor({"loanStatus": "declined"}, by=other_operator, supersede=True)

    older.refresh_from_db()
    assert older.status == S.CANCELLED
    (event,) = superseded_events(older)
    assert (event.actor, event.from_status, event.to_status) == (other_operator, "approved",
                                                                 "cancelled")
    assert event.changes == {"superseded_by": newer.pk}
    assert f"#{newer.pk}" in event.comment
    # The new one needs its own approval.
    assert newer.status == S.DRAFT and not newer.approved_hash


def test_supersede_is_one_transaction_a_failure_after_it_leaves_the_older_update_open(
        stage_visitor, monkeypatch):
    older = stage_visitor()
    real = workflow.supersede_open

    def failing(*args, **kwargs):
        real(*args, **kwargs)
        raise RuntimeError("the database went away")

    monkeypatch.setattr(workflow, "supersede_open", failing)
    with pytest.raises(RuntimeError):
        stage_visitor({"loanStatus": "declined"}, supersede=True)
    assert ProfileUpdate.objects.get(pk=older.pk).status == S.DRAFT
    assert ProfileUpdate.objects.count() == 1
    assert not AuditEvent.objects.filter(action="superseded").exists()


def test_a_failed_update_can_be_superseded(stage_visitor, operator, supervisor):
    older = stage_visitor()
    workflow.update_submit(update=older, by=operator)
    workflow.update_approve(update=older, by=supervisor)
    as_sender(older, S.FAILED)
    newer = stage_visitor({"loanStatus": "declined"}, supersede=True)
    assert ProfileUpdate.objects.get(pk=older.pk).status == S.CANCELLED
    assert superseded_events(older)[0].changes == {"superseded_by": newer.pk}


def test_a_sending_update_is_never_superseded(stage_visitor, operator, supervisor):
    older = stage_visitor()
    workflow.update_submit(update=older, by=operator)
    workflow.update_approve(update=older, by=supervisor)
    as_sender(older, S.SENDING)  # claimed by the sender
    with pytest.raises(Refused) as refused:
        stage_visitor({"loanStatus": "declined"}, supersede=True)
    assert refused.value.code == IN_FLIGHT
    assert ProfileUpdate.objects.get(pk=older.pk).status == S.SENDING
    assert ProfileUpdate.objects.count() == 1


def test_superseding_needs_the_cancel_permission(stage_visitor, connection):
    stager = make_user("stager")
    stager.user_permissions.add(Permission.objects.get(codename="add_profileupdate"))
    older = stage_visitor()
    with pytest.raises(Refused) as refused:
        stage_visitor({"loanStatus": "declined"}, by=stager, supersede=True)
    assert refused.value.code == "permission_denied"
    assert ProfileUpdate.objects.get(pk=older.pk).status == S.DRAFT
    # Without a conflict, supersede=True asks for nothing more.
    stage_visitor({"loanStatus": "declined"}, by=stager, supersede=True, identity="CUST-9")


# --- edit ----------------------------------------------------------------------------------------

def test_an_edit_into_an_open_visitor_and_attribute_is_refused_unless_superseding(
        stage_visitor, operator):
    first = stage_visitor({"loanStatus": "funded"})
    second = stage_visitor({"loyaltyTier": "gold"})
    elsewhere = stage_visitor({"loanStatus": "applied"}, identity="CUST-2")

    for edit in ({"attributes": {"loyaltyTier": "gold", "loanStatus": "declined"}},):
        with pytest.raises(Refused) as refused:
            workflow.update_edit(update=second, by=operator, **edit)
        assert refused.value.code == OPEN_CONFLICT
        assert_names(refused.value, first, "draft", "operator")
    with pytest.raises(Refused) as refused:
        workflow.update_edit(update=elsewhere, by=operator, identity="CUST-1")
    assert refused.value.code == OPEN_CONFLICT
    assert ProfileUpdate.objects.get(pk=elsewhere.pk).identity == "CUST-2"
    # Editing only the reason, or its own attribute's value, is no conflict.
    workflow.update_edit(update=first, by=operator, reason="call centre")
    workflow.update_edit(update=first, by=operator, attributes={"loanStatus": "declined"})

    workflow.update_edit(update=elsewhere, by=operator, identity="CUST-1", supersede=True)
    assert ProfileUpdate.objects.get(pk=first.pk).status == S.CANCELLED
    assert superseded_events(first)[0].changes == {"superseded_by": elsewhere.pk}


def test_editing_a_rejected_update_back_to_draft_is_refused_while_another_is_open(
        stage_visitor, operator, supervisor):
    rejected = stage_visitor()
    workflow.update_submit(update=rejected, by=operator)
    workflow.update_reject(update=rejected, by=supervisor, comment="no")
    open_one = stage_visitor({"loanStatus": "declined"})  # the rejected one is closed
    with pytest.raises(Refused) as refused:
        workflow.update_edit(update=rejected, by=operator, attributes={"loanStatus": "applied"})
    assert refused.value.code == OPEN_CONFLICT
    assert_names(refused.value, open_one, "draft", "operator")
    assert ProfileUpdate.objects.get(pk=rejected.pk).status == S.REJECTED


# --- submit and re-queue: conflicts staged before the rule ---------------------------------------

def test_submit_refuses_an_older_conflict_unless_superseding(stage_visitor, connection, operator):
    first = stage_visitor()
    legacy = bypassing_the_rule(connection, operator, {"loanStatus": "declined"})
    with pytest.raises(Refused) as refused:
        workflow.update_submit(update=legacy, by=operator)
    assert refused.value.code == OPEN_CONFLICT
    assert_names(refused.value, first, "draft", "operator")
    assert ProfileUpdate.objects.get(pk=legacy.pk).status == S.DRAFT

    workflow.update_submit(update=legacy, by=operator, supersede=True)
    assert ProfileUpdate.objects.get(pk=legacy.pk).status == S.PENDING
    assert ProfileUpdate.objects.get(pk=first.pk).status == S.CANCELLED
    assert superseded_events(first)[0].changes == {"superseded_by": legacy.pk}


@pytest.mark.parametrize("keeps_approval", [True, False])
def test_requeue_refuses_a_conflict_unless_superseding(
        stage_visitor, connection, operator, supervisor, keeps_approval):
    failed = stage_visitor()
    workflow.update_submit(update=failed, by=operator)
    workflow.update_approve(update=failed, by=supervisor)
    as_sender(failed, S.FAILED, **({} if keeps_approval else {"approved_hash": "other"}))
    legacy = bypassing_the_rule(connection, operator, {"loanStatus": "declined"},
                                status=S.PENDING)
    with pytest.raises(Refused) as refused:
        workflow.update_requeue(update=failed, by=supervisor)
    assert refused.value.code == OPEN_CONFLICT
    assert_names(refused.value, legacy, "pending approval", "operator")
    assert ProfileUpdate.objects.get(pk=failed.pk).status == S.FAILED

    # Supervisors may re-queue but not cancel: superseding is an operator's.
    with pytest.raises(Refused) as refused:
        workflow.update_requeue(update=failed, by=supervisor, supersede=True)
    assert refused.value.code == "permission_denied"
    workflow.update_requeue(update=failed, by=operator, supersede=True)
    assert ProfileUpdate.objects.get(pk=failed.pk).status == (
        S.APPROVED if keeps_approval else S.PENDING)
    assert ProfileUpdate.objects.get(pk=legacy.pk).status == S.CANCELLED


# --- revert --------------------------------------------------------------------------------------

def test_a_revert_is_refused_while_the_visitor_has_an_open_update_of_that_attribute(
        stage_visitor, operator, supervisor, other_operator):
    sent = stage_visitor({"loyaltyTier": "gold"})
    workflow.update_submit(update=sent, by=operator)
    workflow.update_approve(update=sent, by=supervisor)
    as_sender(sent, S.SENT, acknowledged_at=timezone.now(),
              prior_values={"loyaltyTier": {"value": "silver", "modifiedAt": None}})
    newer = stage_visitor({"loyaltyTier": "platinum"})

    with pytest.raises(Refused) as refused:
        verification.update_revert(update=sent, by=other_operator)
    assert refused.value.code == OPEN_CONFLICT
    assert_names(refused.value, newer, "draft", "operator")
    assert ProfileUpdate.objects.count() == 2
    assert not AuditEvent.objects.filter(action="revert_staged").exists()

    revert, _plan = verification.update_revert(update=sent, by=other_operator, supersede=True)
    assert revert.attributes == {"loyaltyTier": "silver"} and revert.status == S.DRAFT
    assert ProfileUpdate.objects.get(pk=newer.pk).status == S.CANCELLED
    assert superseded_events(newer)[0].changes == {"superseded_by": revert.pk}


# --- many rows at once ---------------------------------------------------------------------------

def test_rows_staged_live_at_once_are_refused_on_a_conflict_or_a_repeated_visitor_attribute(
        stage_visitor, connection, operator):
    stage_visitor()
    row = {**VISITOR, "attributes": {"loanStatus": "declined"}}
    with pytest.raises(Refused) as refused:
        workflow.updates_stage_many(connection=connection, rows=[row], by=operator)
    assert refused.value.code == OPEN_CONFLICT
    twice = [{**VISITOR, "identity": "CUST-5", "attributes": {"loyaltyTier": "a"}}] * 2
    with pytest.raises(Refused, match="same visitor as row 1"):
        workflow.updates_stage_many(connection=connection, rows=twice, by=operator)
    assert ProfileUpdate.objects.count() == 1


# --- import (file) -------------------------------------------------------------------------------

def csv(*rows: str) -> bytes:
    return ("\r\n".join([HEADER, *rows]) + "\r\n").encode()


def test_an_import_row_for_an_open_visitor_and_attribute_is_refused_naming_it(
        stage_visitor, connection, operator):
    first = stage_visitor()
    job = importing.import_job_create(connection=connection, file_name="u.csv", by=operator,
                                      file_data=csv("mbox3rdPartyId,CUST-2,funded,,",
                                                    "mbox3rdPartyId,CUST-1,declined,,",
                                                    "mbox3rdPartyId,CUST-1,,gold,"))
    assert job.status == ImportJob.Status.INVALID
    ((row, column, message),) = [(e["row"], e["column"], e["message"]) for e in job.errors
                                 if "open update" in e["message"]]
    assert (row, column) == (3, "loan_status")
    assert f"#{first.pk} (draft, created by operator) sets profile.loanStatus" in message
    assert ProfileUpdate.objects.count() == 1


def test_an_import_setting_other_attributes_of_an_open_visitor_is_accepted(
        stage_visitor, connection, operator):
    stage_visitor()
    job = importing.import_job_create(connection=connection, file_name="u.csv", by=operator,
                                      file_data=csv("mbox3rdPartyId,CUST-1,,gold,"))
    importing.import_job_start(job=job, by=operator)
    job.refresh_from_db()
    assert job.status == ImportJob.Status.DONE
    assert ProfileUpdate.objects.filter(status=S.DRAFT).count() == 2


def test_an_import_with_supersede_cancels_the_open_updates_when_it_saves(
        stage_visitor, connection, operator):
    first = stage_visitor()
    job = importing.import_job_create(connection=connection, file_name="u.csv", by=operator,
                                      file_data=csv("mbox3rdPartyId,CUST-1,declined,,"),
                                      supersede=True)
    assert job.status == ImportJob.Status.QUEUED and job.supersede_open
    assert ProfileUpdate.objects.get(pk=first.pk).status == S.DRAFT  # the preview saves nothing
    importing.import_job_start(job=job, by=operator)
    job.refresh_from_db()
    assert job.status == ImportJob.Status.DONE
    new = ProfileUpdate.objects.get(import_job=job)
    assert ProfileUpdate.objects.get(pk=first.pk).status == S.CANCELLED
    assert superseded_events(first)[0].changes == {"superseded_by": new.pk}


def test_an_update_staged_after_the_preview_refuses_the_whole_import(
        stage_visitor, connection, operator):
    job = importing.import_job_create(connection=connection, file_name="u.csv", by=operator,
                                      file_data=csv("mbox3rdPartyId,CUST-2,funded,,",
                                                    "mbox3rdPartyId,CUST-1,declined,,"))
    assert job.status == ImportJob.Status.QUEUED
    first = stage_visitor()  # between the preview and the confirmation
    importing.import_job_start(job=job, by=operator)
    job.refresh_from_db()
    assert job.status == ImportJob.Status.ERROR
    assert f"#{first.pk} (draft, created by operator)" in job.errors[0]["message"]
    assert "Nothing was saved" in job.errors[0]["message"]
    assert list(ProfileUpdate.with_pending_imports.values_list("pk", flat=True)) == [first.pk]


def test_an_import_never_supersedes_a_sending_update(stage_visitor, connection, operator,
                                                    supervisor):
    first = stage_visitor()
    workflow.update_submit(update=first, by=operator)
    workflow.update_approve(update=first, by=supervisor)
    as_sender(first, S.SENDING)
    job = importing.import_job_create(connection=connection, file_name="u.csv", by=operator,
                                      file_data=csv("mbox3rdPartyId,CUST-1,declined,,"),
                                      supersede=True)
    assert job.status == ImportJob.Status.INVALID
    assert "cannot be superseded" in job.errors[0]["message"]


# --- the sender: one in flight per visitor, in approval order ------------------------------------

def test_claim_sends_one_update_per_visitor_in_approval_order(
        stage_visitor, connection, operator, supervisor):
    tier = stage_visitor({"loyaltyTier": "gold"})  # lower id, approved second
    loan = stage_visitor({"loanStatus": "funded"})
    other = stage_visitor({"loanStatus": "funded"}, identity="CUST-2")
    for update in (loan, other, tier):
        workflow.update_submit(update=update, by=operator)
        workflow.update_approve(update=update, by=supervisor)
    now = timezone.now()

    def claim() -> list[int]:
        return [u.pk for u in claims.claim(conn=connection, owner="w", size=10, now=now,
                                           lease_until=now + dt.timedelta(minutes=5))]

    assert {u.pk for u in claims.due(now=now, connection_id=connection.pk)} == {loan.pk, other.pk}
    assert claim() == sorted([loan.pk, other.pk])  # tier waits: loan was approved first
    assert claim() == []  # loan is in flight: tier waits
    as_sender(loan, S.SENT)
    assert claim() == [tier.pk]


def test_every_open_state_but_sending_can_be_superseded():
    assert set(open_changes.OPEN_STATES) == {S.DRAFT, S.PENDING, S.APPROVED, S.SENDING, S.FAILED}
    assert set(workflow.T["supersede"].sources) == set(open_changes.OPEN_STATES) - {S.SENDING}


def test_the_import_command_refuses_the_row_or_supersedes_with_its_option(
        tmp_path, stage_visitor, connection, operator):
    from io import StringIO

    from django.core.management import CommandError, call_command

    first = stage_visitor()
    path = tmp_path / "u.csv"
    path.write_bytes(csv("mbox3rdPartyId,CUST-1,declined,,"))
    args = ["import_updates", str(path), "--connection", "acme", "--user", "operator"]
    err = StringIO()
    with pytest.raises(CommandError, match="1 problem"):
        call_command(*args, stdout=StringIO(), stderr=err)
    assert f"#{first.pk} (draft, created by operator)" in err.getvalue()

    call_command(*args, "--supersede", stdout=StringIO(), stderr=StringIO())
    assert ProfileUpdate.objects.get(pk=first.pk).status == S.CANCELLED
    assert superseded_events(first)[0].changes == {
        "superseded_by": ProfileUpdate.objects.get(import_job__isnull=False).pk}


def test_a_claim_looks_past_updates_held_back_to_fill_its_batch(
        stage_visitor, connection, operator, supervisor):
    tier = stage_visitor({"loyaltyTier": "gold"})  # the lowest id, held back by `loan`
    loan = stage_visitor({"loanStatus": "funded"})
    for update in (loan, tier):
        workflow.update_submit(update=update, by=operator)
        workflow.update_approve(update=update, by=supervisor)
    now = timezone.now()
    claimed = claims.claim(conn=connection, owner="w", size=1, now=now,
                           lease_until=now + dt.timedelta(minutes=5))
    assert [u.pk for u in claimed] == [loan.pk]
    assert ProfileUpdate.objects.get(pk=tier.pk).status == S.APPROVED
