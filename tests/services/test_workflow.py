"""The workflow service (updates/workflow.py), as a specification.

    draft ──submit──▶ pending ──approve──▶ approved ──(sender)──▶ sending ──▶ sent | failed
                         └──reject──▶ rejected              failed ──requeue──▶ approved | pending
    cancel: from draft, pending or approved.

The sender's own moves (approved → sending → sent/failed) belong to sending.py; where a test needs
an update in `sending`, `sent` or `failed` it puts the row there directly, as the sender would, and
says so. Everything else goes through the services.
"""

from __future__ import annotations

import datetime as dt
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from tests.conftest import make_user
from updates import workflow
from updates.models import AuditEvent, ProfileUpdate, UpdateStatus as S
from updates.errors import Refused

pytestmark = pytest.mark.django_db

ALL_STATES = [s.value for s in S]
OTHER_CONTENT = {"loanStatus": "declined"}
CONTENT_EDITS = {
    "identity": {"identity": "customer-edited"},
    "identity_type": {"identity_type": "mboxPC"},
    "attributes": {"attributes": {"loanStatus": "funded", "loyaltyTier": "gold"}},
}


# --- helpers ---------------------------------------------------------------------------------

def row(update: ProfileUpdate) -> dict:
    """The update as stored, every column."""
    return ProfileUpdate.objects.filter(pk=update.pk).values().get()


def audit_rows(update: ProfileUpdate) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(update=update).order_by("at", "id"))


@contextmanager
def refused(update: ProfileUpdate, code: str):
    """The block must raise Refused(code) and leave the row and its audit trail as
    they were."""
    before, events = row(update), len(audit_rows(update))
    with pytest.raises(Refused) as info:
        yield info
    assert info.value.code == code, info.value.messages
    assert row(update) == before
    assert len(audit_rows(update)) == events


def as_sender(update: ProfileUpdate, status: str, **fields) -> ProfileUpdate:
    """Move the row where only the sender (sending.py) moves it, bypassing the workflow."""
    ProfileUpdate.objects.filter(pk=update.pk).update(status=status, **fields)
    update.refresh_from_db()
    return update


@pytest.fixture
def in_state(stage, operator, supervisor):
    """in_state(status, by=operator) -> an update created by `by` and brought to `status`."""

    def _in_state(status: str, by=None) -> ProfileUpdate:
        by = by or operator
        update = stage(by=by)
        if status == S.DRAFT:
            return update
        if status == S.CANCELLED:
            return workflow.update_cancel(update=update, by=by)
        workflow.update_submit(update=update, by=by)
        if status == S.PENDING:
            return update
        if status == S.REJECTED:
            return workflow.update_reject(update=update, by=supervisor, comment="wrong customer")
        workflow.update_approve(update=update, by=supervisor, comment="ok")
        if status == S.APPROVED:
            return update
        # The sender's moves, set directly (sending.py owns them).
        as_sender(update, S.SENDING, lease_owner="worker-1",
                  lease_expires_at=timezone.now() + dt.timedelta(minutes=2))
        if status == S.SENDING:
            return update
        if status == S.SENT:
            return as_sender(update, S.SENT, lease_owner="", lease_expires_at=None,
                             acknowledged_at=timezone.now(), attempt_count=1, attempts_total=1)
        if status == S.UNCHANGED:  # skip-unchanged (verification.py) ends it instead of sending
            return as_sender(update, S.UNCHANGED, lease_owner="", lease_expires_at=None)
        assert status == S.FAILED
        return as_sender(update, S.FAILED, lease_owner="", lease_expires_at=None,
                         attempt_count=8, attempts_total=8, last_error="HTTP 400 Bad Request",
                         next_attempt_at=timezone.now())

    return _in_state


# --- every allowed transition ----------------------------------------------------------------

def test_an_operator_stages_a_draft(stage, operator):
    update = stage(reason="loan funded — call centre")
    assert row(update)["status"] == S.DRAFT
    assert update.created_by == operator and update.last_edited_by == operator
    assert update.created_at == update.last_edited_at
    assert update.reason == "loan funded — call centre"


def test_submitting_a_draft_makes_it_pending_approval(in_state, operator):
    update = in_state(S.DRAFT)
    workflow.update_submit(update=update, by=operator)
    assert update.status == S.PENDING == row(update)["status"]
    assert update.submitted_at is not None


def test_approving_a_pending_update_records_who_decided_and_the_approved_content(
        in_state, supervisor):
    update = in_state(S.PENDING)
    workflow.update_approve(update=update, by=supervisor, comment="checked with the branch")
    stored = ProfileUpdate.objects.get(pk=update.pk)
    assert stored.status == S.APPROVED
    assert stored.decided_by == supervisor and stored.decided_at is not None
    assert stored.decision_comment == "checked with the branch"
    assert stored.approved_hash == stored.content_hash


def test_rejecting_a_pending_update_needs_a_comment_and_keeps_it(in_state, supervisor):
    update = in_state(S.PENDING)
    workflow.update_reject(update=update, by=supervisor, comment="  wrong customer  ")
    stored = ProfileUpdate.objects.get(pk=update.pk)
    assert stored.status == S.REJECTED
    assert stored.decided_by == supervisor
    assert stored.decision_comment == "wrong customer"
    assert stored.approved_hash == ""


@pytest.mark.parametrize("comment", ["", "   "])
def test_a_rejection_without_a_comment_is_refused(in_state, supervisor, comment):
    update = in_state(S.PENDING)
    with refused(update, "comment_required") as info:
        workflow.update_reject(update=update, by=supervisor, comment=comment)
    assert "comment" in info.value.messages[0]


def test_someone_who_may_not_reject_is_told_so_before_being_asked_for_a_comment(
        in_state, other_operator):
    update = in_state(S.PENDING)
    with refused(update, "permission_denied"):
        workflow.update_reject(update=update, by=other_operator, comment="")


@pytest.mark.parametrize("state", [S.DRAFT, S.PENDING, S.APPROVED])
def test_an_update_can_be_cancelled_while_draft_pending_or_approved(in_state, operator, state):
    update = in_state(state)
    workflow.update_cancel(update=update, by=operator, comment="customer withdrew")
    assert row(update)["status"] == S.CANCELLED


def test_requeueing_a_failed_update_with_unchanged_content_keeps_its_approval(
        in_state, operator, supervisor):
    update = in_state(S.FAILED)  # approved by supervisor, then failed in the sender (set directly)
    approved_hash = update.approved_hash
    workflow.update_requeue(update=update, by=operator, comment="Target was down")
    stored = ProfileUpdate.objects.get(pk=update.pk)
    assert stored.status == S.APPROVED
    assert stored.decided_by == supervisor and stored.approved_hash == approved_hash
    # A fresh attempt budget, due now; attempts over all time are history and stay.
    assert stored.attempt_count == 0 and stored.next_attempt_at is None
    assert stored.last_error == ""
    assert stored.attempts_total == 8


def test_requeueing_a_failed_update_whose_content_changed_since_approval_needs_a_new_approval(
        in_state, operator):
    update = in_state(S.FAILED)
    # Content can only differ from the approved fingerprint if something wrote the row outside
    # the workflow (an edit through update_edit would have sent it back to draft): simulate that.
    as_sender(update, S.FAILED, attributes={"loanStatus": "declined"})
    workflow.update_requeue(update=update, by=operator)
    stored = ProfileUpdate.objects.get(pk=update.pk)
    assert stored.status == S.PENDING
    assert stored.decided_by is None and stored.decided_at is None
    assert stored.approved_hash == "" and stored.decision_comment == ""
    assert stored.submitted_at is not None
    assert stored.attempt_count == 0 and stored.last_error == ""


def test_requeueing_a_failed_update_that_carries_no_approval_fingerprint_needs_a_new_approval(
        in_state, operator):
    update = as_sender(in_state(S.FAILED), S.FAILED, approved_hash="")
    workflow.update_requeue(update=update, by=operator)
    assert row(update)["status"] == S.PENDING


def test_the_callers_copy_reflects_the_stored_row_after_a_transition(in_state, supervisor):
    update = in_state(S.PENDING)
    returned = workflow.update_approve(update=update, by=supervisor)
    assert returned is update
    assert {f: getattr(update, f) for f in row(update)} == row(update)


# --- every refused transition ----------------------------------------------------------------

ALLOWED_FROM = {
    "submit": {S.DRAFT},
    "approve": {S.PENDING},
    "reject": {S.PENDING},
    "cancel": {S.DRAFT, S.PENDING, S.APPROVED},
    "requeue": {S.FAILED},
}
WRONG_STATE_CASES = [(action, state) for action, allowed in ALLOWED_FROM.items()
                     for state in ALL_STATES if state not in allowed]


def _move(action: str, update: ProfileUpdate, by):
    if action == "submit":
        return workflow.update_submit(update=update, by=by)
    if action == "approve":
        return workflow.update_approve(update=update, by=by)
    if action == "reject":
        return workflow.update_reject(update=update, by=by, comment="no")
    if action == "cancel":
        return workflow.update_cancel(update=update, by=by)
    if action == "requeue":
        return workflow.update_requeue(update=update, by=by)
    if action == "edit":
        return workflow.update_edit(update=update, by=by, attributes=OTHER_CONTENT)
    raise AssertionError(action)


@pytest.mark.parametrize(("action", "state"), WRONG_STATE_CASES)
def test_a_move_from_the_wrong_state_is_refused_and_changes_nothing(
        in_state, admin_user, action, state):
    # A superuser who neither created nor edited it: only the state can refuse the move.
    update = in_state(state)
    with refused(update, "wrong_state") as info:
        _move(action, update, admin_user)
    message = info.value.messages[0]
    assert f"#{update.pk}" in message and update.get_status_display().lower() in message


@pytest.mark.parametrize("state", [S.SENDING, S.SENT, S.CANCELLED])
@pytest.mark.parametrize("edit", [{"attributes": OTHER_CONTENT}, {"identity": "customer-x"},
                                  {"reason": "typo"}, {"not_before": None}],
                         ids=["attributes", "identity", "reason", "not_before"])
def test_sending_sent_and_cancelled_updates_are_immutable(in_state, operator, state, edit):
    update = in_state(state)
    with refused(update, "immutable") as info:
        workflow.update_edit(update=update, by=operator, **edit)
    assert "can no longer be changed" in info.value.messages[0]


def test_approving_twice_is_refused(in_state, supervisor, other_supervisor):
    update = in_state(S.APPROVED)
    with refused(update, "wrong_state"):
        workflow.update_approve(update=update, by=other_supervisor)


def test_a_stale_copy_cannot_move_an_update_that_moved_meanwhile(in_state, operator, supervisor):
    update = in_state(S.PENDING)
    stale = ProfileUpdate.objects.get(pk=update.pk)
    workflow.update_cancel(update=update, by=operator)
    # The decision is taken on the stored row, not on the caller's out-of-date copy.
    with refused(update, "wrong_state"):
        workflow.update_approve(update=stale, by=supervisor)


# --- the permission matrix -------------------------------------------------------------------

ACTIONS = ["stage", "edit", "submit", "approve", "reject", "cancel", "requeue"]
ROLES = {
    # role: (groups, superuser, active) and what it may do to someone else's update
    "operator": (("Operators",), False, True, {"stage", "edit", "submit", "cancel", "requeue"}),
    "supervisor": (("Supervisors",), False, True, {"approve", "reject", "requeue"}),
    "superuser": ((), True, True, set(ACTIONS)),
    "operator_and_supervisor": (("Operators", "Supervisors"), False, True, set(ACTIONS)),
    "staff_without_group": ((), False, True, set()),
    "inactive_operator": (("Operators",), False, False, set()),
    "inactive_superuser": ((), True, False, set()),
}
EXPECTED_AFTER = {"edit": S.DRAFT, "submit": S.PENDING, "approve": S.APPROVED,
                  "reject": S.REJECTED, "cancel": S.CANCELLED, "requeue": S.APPROVED}


def person(role: str):
    groups, superuser, active, _ = ROLES[role]
    user = make_user(f"u-{role}", *groups, superuser=superuser)
    if not active:
        user.is_active = False
        user.save(update_fields=["is_active"])
    return user


def precondition(in_state, action: str, creator) -> ProfileUpdate:
    state = {"approve": S.PENDING, "reject": S.PENDING, "requeue": S.FAILED}.get(action, S.DRAFT)
    return in_state(state, by=creator)


@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("role", list(ROLES))
def test_permission_matrix_on_someone_elses_update(in_state, connection, operator, role, action):
    user = person(role)
    allowed = action in ROLES[role][3]
    if action == "stage":
        kwargs = dict(connection=connection, identity_type="mboxPC", identity="abc.01_00",
                      attributes={"loanStatus": "funded"}, by=user)
        if allowed:
            update = workflow.update_stage(**kwargs)
            assert update.created_by == user and row(update)["status"] == S.DRAFT
        else:
            with pytest.raises(Refused) as info:
                workflow.update_stage(**kwargs)
            assert info.value.code == "permission_denied"
            assert not ProfileUpdate.objects.exists() and not AuditEvent.objects.exists()
        return
    update = precondition(in_state, action, operator)  # created by someone else
    if allowed:
        _move(action, update, user)
        assert row(update)["status"] == EXPECTED_AFTER[action]
        assert audit_rows(update)[-1].actor == user
    else:
        with refused(update, "permission_denied") as info:
            _move(action, update, user)
        assert "You do not have permission to" in info.value.messages[0]


OWN_CASES = {
    # role: what it may do to an update it created itself
    "operator": {"edit": None, "submit": None, "cancel": None, "requeue": None,
                 "approve": "permission_denied", "reject": "permission_denied"},
    "superuser": {"edit": None, "submit": None, "cancel": None, "requeue": None,
                  "approve": "own_update", "reject": "own_update"},
    "operator_and_supervisor": {"edit": None, "submit": None, "cancel": None, "requeue": None,
                                "approve": "own_update", "reject": "own_update"},
}


@pytest.mark.parametrize(("role", "action"),
                         [(r, a) for r, cases in OWN_CASES.items() for a in cases])
def test_permission_matrix_on_ones_own_update(in_state, role, action):
    user = person(role)
    update = precondition(in_state, action, user)
    refusal = OWN_CASES[role][action]
    if refusal is None:
        _move(action, update, user)
        assert row(update)["status"] == EXPECTED_AFTER[action]
    else:
        with refused(update, refusal):
            _move(action, update, user)


def test_an_operator_may_work_on_another_operators_update(in_state, operator, other_operator):
    update = in_state(S.DRAFT, by=operator)
    workflow.update_edit(update=update, by=other_operator, reason="corrected by a colleague")
    workflow.update_submit(update=update, by=other_operator)
    workflow.update_cancel(update=update, by=other_operator)
    assert row(update)["status"] == S.CANCELLED


# --- four eyes: nobody decides on an update whose content they wrote ------------------------
# The content is the identity type, the identity and the attributes: what is sent. Its authors
# are the creator and everyone who ever changed any of them; the reason and the earliest send
# time are notes about the content, and editing them does not make someone an author.

def authors(update: ProfileUpdate) -> set[str]:
    return set(ProfileUpdate.objects.get(pk=update.pk).content_authors
               .values_list("username", flat=True))


@pytest.mark.parametrize("decide", ["approve", "reject"])
def test_a_superuser_cannot_decide_on_an_update_they_created(in_state, admin_user, decide):
    update = in_state(S.PENDING, by=admin_user)
    with refused(update, "own_update") as info:
        _move(decide, update, admin_user)
    assert "four-eyes" in info.value.messages[0]


@pytest.mark.parametrize("decide", ["approve", "reject"])
def test_a_user_in_both_groups_cannot_decide_on_an_update_they_created(in_state, decide):
    both = person("operator_and_supervisor")
    update = in_state(S.PENDING, by=both)
    with refused(update, "own_update"):
        _move(decide, update, both)


def test_the_creator_stays_barred_after_someone_else_edits_their_update(
        in_state, other_operator):
    both = person("operator_and_supervisor")
    update = in_state(S.PENDING, by=both)
    workflow.update_edit(update=update, by=other_operator, reason="clarified")
    with refused(update, "own_update"):
        workflow.update_approve(update=update, by=both)
    workflow.update_edit(update=update, by=other_operator, attributes=OTHER_CONTENT)
    workflow.update_submit(update=update, by=other_operator)
    with refused(update, "own_update"):
        workflow.update_approve(update=update, by=both)


@pytest.mark.parametrize("decide", ["approve", "reject"])
@pytest.mark.parametrize("edit", list(CONTENT_EDITS))
def test_whoever_changed_the_content_cannot_decide_even_after_someone_else_edits_the_note(
        in_state, operator, other_operator, edit, decide):
    # The hole this rule closes: a dual-role user edits the content, a colleague then touches
    # only the reason (so the colleague is the "last editor"), and the first user approves.
    both = person("operator_and_supervisor")
    update = in_state(S.PENDING)  # created by the operator
    workflow.update_edit(update=update, by=both, **CONTENT_EDITS[edit])
    workflow.update_submit(update=update, by=operator)
    workflow.update_edit(update=update, by=other_operator, reason="typo in the reason")
    workflow.update_edit(update=update, by=other_operator,
                         not_before=dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc))
    assert row(update)["last_edited_by_id"] == other_operator.pk
    with refused(update, "own_update"):
        _move(decide, update, both)


@pytest.mark.parametrize("decide", ["approve", "reject"])
@pytest.mark.parametrize("edit", [{"reason": "clarified"},
                                  {"not_before": dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)}],
                         ids=["reason", "not_before"])
def test_editing_only_the_reason_or_send_time_does_not_make_you_an_author(
        in_state, operator, edit, decide):
    # Rule changed (issue 10.2): this used to be refused as "last edited".
    both = person("operator_and_supervisor")
    update = in_state(S.PENDING)  # created by the operator
    workflow.update_edit(update=update, by=both, **edit)
    assert row(update)["status"] == S.PENDING
    assert authors(update) == {operator.username}
    _move(decide, update, both)
    assert row(update)["status"] == EXPECTED_AFTER.get(decide, S.REJECTED)
    assert row(update)["decided_by_id"] == both.pk


def test_a_content_edit_makes_you_an_author_and_the_creator_stays_one(in_state, operator,
                                                                      other_operator):
    update = in_state(S.DRAFT)
    assert authors(update) == {operator.username}
    workflow.update_edit(update=update, by=other_operator, reason="why")
    assert authors(update) == {operator.username}
    workflow.update_edit(update=update, by=other_operator, identity="customer-other")
    assert authors(update) == {operator.username, other_operator.username}


def test_an_edit_that_changes_nothing_does_not_make_you_an_author(in_state):
    both = person("operator_and_supervisor")
    update = in_state(S.PENDING)
    workflow.update_edit(update=update, by=both, reason=update.reason,
                         attributes=dict(update.attributes))
    workflow.update_approve(update=update, by=both)
    assert row(update)["status"] == S.APPROVED


def test_submitting_someone_elses_update_does_not_bar_you_from_deciding_on_it(in_state):
    both = person("operator_and_supervisor")
    update = in_state(S.DRAFT)  # created by the operator
    workflow.update_submit(update=update, by=both)
    workflow.update_approve(update=update, by=both)
    assert row(update)["status"] == S.APPROVED


def test_a_requeued_update_back_in_pending_keeps_its_authors(in_state, operator, supervisor):
    both = person("operator_and_supervisor")
    update = in_state(S.DRAFT)
    workflow.update_edit(update=update, by=both, attributes=OTHER_CONTENT)
    workflow.update_submit(update=update, by=operator)
    workflow.update_approve(update=update, by=supervisor)
    # The sender's moves, set directly; no fingerprint, so the re-queue needs a new approval.
    as_sender(update, S.FAILED, approved_hash="", last_error="HTTP 400")
    workflow.update_requeue(update=update, by=both)
    assert row(update)["status"] == S.PENDING
    assert authors(update) == {operator.username, both.username}
    with refused(update, "own_update"):
        workflow.update_approve(update=update, by=both)
    workflow.update_approve(update=update, by=supervisor)
    assert row(update)["status"] == S.APPROVED


def test_what_a_dual_role_user_imported_with_submit_they_cannot_decide(connection, supervisor):
    both = person("operator_and_supervisor")
    workflow.updates_stage_many(connection=connection, rows=_rows(2), by=both, submit=True)
    updates = list(ProfileUpdate.objects.order_by("id"))
    assert [authors(u) for u in updates] == [{both.username}] * 2
    outcome = workflow.apply_to_each(workflow.update_approve, updates, by=both)
    assert outcome.done == [] and len(outcome.refused) == 2
    assert all("four-eyes" in message for _, message in outcome.refused)
    assert workflow.apply_to_each(workflow.update_approve, updates, by=supervisor).refused == []


def test_authored_by_answers_for_a_page_of_updates_in_one_query(
        in_state, operator, django_assert_num_queries):
    both = person("operator_and_supervisor")
    created, edited, untouched = in_state(S.PENDING, by=both), in_state(S.DRAFT), in_state(S.DRAFT)
    workflow.update_edit(update=edited, by=both, identity="customer-edited")
    workflow.update_edit(update=untouched, by=both, reason="note only")
    with django_assert_num_queries(1):
        mine = workflow.authored_by(both, [created, edited, untouched])
    assert mine == {created.pk, edited.pk}


# --- the declared table, and what it offers --------------------------------------------------

def names(transitions) -> list[str]:
    return [t.name for t in transitions]


@pytest.mark.parametrize(("state", "role", "offered"), [
    (S.DRAFT, "operator", ["submit", "cancel"]),
    (S.DRAFT, "supervisor", []),
    (S.PENDING, "operator", ["cancel"]),
    (S.PENDING, "supervisor", ["approve", "reject"]),
    (S.APPROVED, "supervisor", []),
    (S.FAILED, "supervisor", ["requeue"]),
    (S.FAILED, "operator", ["requeue"]),
    (S.SENDING, "superuser", []),
    (S.SENT, "superuser", []),
    (S.CANCELLED, "superuser", []),
    (S.PENDING, "inactive_superuser", []),
])
def test_available_transitions_follow_the_state_and_the_permissions(in_state, state, role,
                                                                    offered):
    update = in_state(state)  # created by the operator fixture, not by `role`
    assert names(workflow.available_transitions(update, person(role))) == offered


def test_an_author_is_not_offered_a_decision_but_another_supervisor_is(in_state, supervisor):
    both = person("operator_and_supervisor")
    own = in_state(S.PENDING, by=both)
    assert names(workflow.available_transitions(own, both)) == ["cancel"]
    assert not workflow.may_decide(own, both)
    assert names(workflow.available_transitions(own, supervisor)) == ["approve", "reject"]
    assert workflow.may_decide(own, supervisor)


def test_the_offered_requeue_is_the_one_the_service_will_make(in_state, operator):
    update = in_state(S.FAILED)
    (offered,) = workflow.available_transitions(update, operator)
    assert (offered.name, offered.target) == ("requeue", S.APPROVED)
    as_sender(update, S.FAILED, approved_hash="")
    (offered,) = workflow.available_transitions(update, operator)
    assert (offered.name, offered.target) == ("requeue_for_approval", S.PENDING)
    workflow.update_requeue(update=update, by=operator)
    assert row(update)["status"] == offered.target
    assert audit_rows(update)[-1].action == offered.action


def test_every_offer_the_table_makes_is_one_the_service_accepts(in_state, admin_user):
    # For a superuser who did not write the content, every offered move succeeds.
    services = {"submit": workflow.update_submit, "approve": workflow.update_approve,
                "cancel": workflow.update_cancel, "requeue": workflow.update_requeue,
                "requeue_for_approval": workflow.update_requeue}
    for state in ALL_STATES:
        for transition in workflow.available_transitions(in_state(state), admin_user):
            update = in_state(state)
            if transition.name == "reject":
                workflow.update_reject(update=update, by=admin_user, comment="no")
            else:
                services[transition.name](update=update, by=admin_user)
            assert row(update)["status"] == transition.target
            assert audit_rows(update)[-1].action == transition.action


def test_the_sender_moves_are_declared_and_checked():
    claim = workflow.sender_transition("claim", from_status=S.APPROVED)
    assert (claim.target, claim.action) == (S.SENDING, "claimed")
    assert workflow.sender_transition("acknowledge").target == S.SENT
    with pytest.raises(ValueError):
        workflow.sender_transition("acknowledge", from_status=S.APPROVED)
    with pytest.raises(ValueError):
        workflow.sender_transition("approve")
    assert {t.name for t in workflow.TRANSITIONS if t.by_sender} == {
        "claim", "reclaim", "release", "acknowledge", "retry", "fail", "skip_unchanged"}


def _docs_workflow_table() -> list[tuple[str, ...]]:
    page = Path(__file__).resolve().parents[2] / "docs" / "reference" / "workflow.md"
    section = page.read_text(encoding="utf-8").split("<!-- workflow-table -->", 2)[1]
    lines = [line.strip() for line in section.strip().splitlines() if line.strip()]
    cells = [tuple(c.strip().strip("`") for c in line.strip("|").split("|")) for line in lines]
    return [c for c in cells[2:]]  # without the header and the |---| line


def test_the_docs_show_the_declared_workflow_table():
    assert _docs_workflow_table() == workflow.transition_table_rows()


# --- editing ---------------------------------------------------------------------------------

@pytest.mark.parametrize("state", [S.PENDING, S.APPROVED, S.REJECTED, S.FAILED])
@pytest.mark.parametrize("edit", list(CONTENT_EDITS))
def test_editing_the_identity_or_values_of_a_submitted_update_returns_it_to_draft_and_clears_the_decision(  # noqa: E501
        in_state, other_operator, state, edit):
    update = in_state(state)
    workflow.update_edit(update=update, by=other_operator, **CONTENT_EDITS[edit])
    stored = ProfileUpdate.objects.get(pk=update.pk)
    assert stored.status == S.DRAFT
    assert (stored.decided_by, stored.decided_at, stored.decision_comment) == (None, None, "")
    assert stored.approved_hash == "" and stored.submitted_at is None
    assert stored.last_edited_by == other_operator
    for field, value in CONTENT_EDITS[edit].items():
        assert getattr(stored, field) == value


def test_an_update_edited_back_to_draft_needs_a_fresh_submit_and_approval(
        in_state, operator, supervisor):
    update = in_state(S.APPROVED)
    workflow.update_edit(update=update, by=operator, attributes=OTHER_CONTENT)
    with refused(update, "wrong_state"):
        workflow.update_approve(update=update, by=supervisor)
    workflow.update_submit(update=update, by=operator)
    workflow.update_approve(update=update, by=supervisor)
    stored = ProfileUpdate.objects.get(pk=update.pk)
    assert stored.approved_hash == stored.content_hash
    assert stored.attributes == OTHER_CONTENT


@pytest.mark.parametrize("state", [S.DRAFT, S.PENDING, S.APPROVED, S.REJECTED, S.FAILED])
@pytest.mark.parametrize("edit", [{"reason": "loan funded — branch 12"},
                                  {"not_before": dt.datetime(2030, 1, 1, 9, tzinfo=dt.timezone.utc)}],
                         ids=["reason", "not_before"])
def test_editing_only_the_reason_or_send_time_keeps_the_state_and_the_decision(
        in_state, other_operator, state, edit):
    update = in_state(state)
    before = row(update)
    workflow.update_edit(update=update, by=other_operator, **edit)
    after = row(update)
    assert after["status"] == state
    for field in ("decided_by_id", "decided_at", "decision_comment", "approved_hash",
                  "submitted_at", "identity", "attributes"):
        assert after[field] == before[field]
    (field, value), = edit.items()
    assert after[field] == value and after["last_edited_by_id"] == other_operator.pk


def test_editing_the_content_of_a_draft_keeps_it_a_draft(in_state, operator):
    update = in_state(S.DRAFT)
    workflow.update_edit(update=update, by=operator, attributes=OTHER_CONTENT)
    assert row(update)["status"] == S.DRAFT and row(update)["attributes"] == OTHER_CONTENT


def test_an_edit_that_changes_nothing_writes_no_audit_row(in_state, other_operator):
    update = in_state(S.PENDING)
    before, events = row(update), len(audit_rows(update))
    workflow.update_edit(update=update, by=other_operator, identity=update.identity,
                         identity_type=update.identity_type, attributes=dict(update.attributes),
                         reason=update.reason, not_before=update.not_before)
    assert row(update) == before
    assert len(audit_rows(update)) == events


def test_an_edit_with_invalid_content_is_refused_and_changes_nothing(in_state, other_operator):
    update = in_state(S.APPROVED)
    before, events = row(update), len(audit_rows(update))
    with pytest.raises(ValidationError) as info:
        workflow.update_edit(update=update, by=other_operator, identity="has/slash")
    assert "identity" in info.value.message_dict
    assert row(update) == before and len(audit_rows(update)) == events


def test_only_the_editable_fields_can_be_edited(in_state, operator, supervisor):
    update = in_state(S.DRAFT)
    with pytest.raises(ValueError, match="status"):
        workflow.update_edit(update=update, by=operator, status=S.APPROVED)
    with pytest.raises(ValueError, match="decided_by"):
        workflow.update_edit(update=update, by=operator, decided_by=supervisor)
    assert row(update)["status"] == S.DRAFT


# --- the audit trail -------------------------------------------------------------------------

def test_staging_writes_a_staged_audit_row_with_the_new_content(stage, operator, connection):
    update = stage(identity="customer-7", attributes={"loanStatus": "funded"}, reason="loan")
    (event,) = audit_rows(update)
    assert (event.action, event.actor, event.from_status, event.to_status) == (
        "staged", operator, "", S.DRAFT)
    assert event.connection_id == connection.pk
    assert event.changes["identity"] == {"before": None, "after": "customer-7"}
    assert event.changes["attributes"] == {"before": None, "after": {"loanStatus": "funded"}}
    assert event.changes["reason"] == {"before": None, "after": "loan"}


def test_every_transition_writes_one_audit_row_with_who_from_to_and_comment(
        stage, operator, other_operator, supervisor, other_supervisor):
    update = stage()
    workflow.update_submit(update=update, by=operator, comment="please check")
    workflow.update_reject(update=update, by=supervisor, comment="wrong tier")
    workflow.update_edit(update=update, by=other_operator, attributes=OTHER_CONTENT)
    workflow.update_submit(update=update, by=other_operator)
    workflow.update_approve(update=update, by=other_supervisor, comment="fine now")
    as_sender(update, S.FAILED, last_error="HTTP 400")  # the sender's moves, set directly
    workflow.update_requeue(update=update, by=operator, comment="retry")
    workflow.update_cancel(update=update, by=operator, comment="customer withdrew")
    trail = [(e.action, e.actor, e.from_status, e.to_status, e.comment)
             for e in audit_rows(update)]
    assert trail == [
        ("staged", operator, "", S.DRAFT, ""),
        ("submitted", operator, S.DRAFT, S.PENDING, "please check"),
        ("rejected", supervisor, S.PENDING, S.REJECTED, "wrong tier"),
        ("edited", other_operator, S.REJECTED, S.DRAFT, ""),
        ("submitted", other_operator, S.DRAFT, S.PENDING, ""),
        ("approved", other_supervisor, S.PENDING, S.APPROVED, "fine now"),
        ("requeued", operator, S.FAILED, S.APPROVED, "retry"),
        ("cancelled", operator, S.APPROVED, S.CANCELLED, "customer withdrew"),
    ]
    assert all(e.connection_id == update.connection_id for e in audit_rows(update))


def test_an_edit_audit_row_holds_before_and_after_of_the_changed_fields_only(
        in_state, other_operator):
    update = in_state(S.PENDING)
    old_identity, old_attributes = update.identity, update.attributes
    workflow.update_edit(update=update, by=other_operator, identity="customer-new",
                         attributes=OTHER_CONTENT, reason=update.reason)
    event = audit_rows(update)[-1]
    assert (event.action, event.actor, event.from_status, event.to_status) == (
        "edited", other_operator, S.PENDING, S.DRAFT)
    assert event.changes == {
        "identity": {"before": old_identity, "after": "customer-new"},
        "attributes": {"before": old_attributes, "after": OTHER_CONTENT},
    }


def test_a_send_time_edit_is_audited_as_iso_text(in_state, operator):
    update = in_state(S.DRAFT)
    when = dt.datetime(2030, 1, 1, 9, tzinfo=dt.timezone.utc)
    workflow.update_edit(update=update, by=operator, not_before=when)
    assert audit_rows(update)[-1].changes == {
        "not_before": {"before": None, "after": "2030-01-01T09:00:00+00:00"}}


def _failing_audit(*args, **kwargs):
    raise RuntimeError("audit table unavailable")


def test_a_transition_whose_audit_row_cannot_be_written_does_not_happen(
        in_state, operator, monkeypatch):
    update = in_state(S.DRAFT)
    before = row(update)
    monkeypatch.setattr(AuditEvent.objects, "create", _failing_audit)
    with pytest.raises(RuntimeError):
        workflow.update_submit(update=update, by=operator)
    with pytest.raises(RuntimeError):
        workflow.update_edit(update=update, by=operator, attributes=OTHER_CONTENT)
    assert row(update) == before


def test_staging_whose_audit_row_cannot_be_written_saves_nothing(stage, monkeypatch):
    monkeypatch.setattr(AuditEvent.objects, "create", _failing_audit)
    with pytest.raises(RuntimeError):
        stage()
    assert not ProfileUpdate.objects.exists()


# --- many at once ----------------------------------------------------------------------------

def test_a_bulk_move_applies_each_allowed_one_and_reports_each_refusal_with_its_reason(
        in_state, supervisor):
    theirs = [in_state(S.PENDING), in_state(S.PENDING)]
    draft = in_state(S.DRAFT)
    own = in_state(S.PENDING, by=make_user("both", "Operators", "Supervisors"))
    mine = [own, draft]
    outcome = workflow.apply_to_each(workflow.update_approve, theirs + mine,
                                     by=ProfileUpdate.objects.get(pk=own.pk).created_by)
    assert [u.pk for u in outcome.done] == [u.pk for u in theirs]
    assert [u.pk for u, _ in outcome.refused] == [own.pk, draft.pk]
    assert "four-eyes" in outcome.refused[0][1]
    assert "draft" in outcome.refused[1][1]
    assert [row(u)["status"] for u in theirs] == [S.APPROVED, S.APPROVED]
    assert row(own)["status"] == S.PENDING and row(draft)["status"] == S.DRAFT


def test_a_bulk_rejection_carries_its_comment_to_every_update(in_state, supervisor):
    updates = [in_state(S.PENDING), in_state(S.PENDING)]
    outcome = workflow.apply_to_each(workflow.update_reject, updates, by=supervisor,
                                     comment="duplicate")
    assert len(outcome.done) == 2 and outcome.refused == []
    assert {audit_rows(u)[-1].comment for u in updates} == {"duplicate"}


def _rows(n: int) -> list[dict]:
    return [{"identity_type": "mbox3rdPartyId", "identity": f"bulk-{i}",
             "attributes": {"loanStatus": "funded"}} for i in range(n)]


@pytest.mark.parametrize(("submit", "status"), [(False, S.DRAFT), (True, S.PENDING)])
def test_staging_many_creates_drafts_or_pending_updates_each_with_an_audit_row(
        connection, operator, submit, status):
    created = workflow.updates_stage_many(connection=connection, rows=_rows(3), by=operator,
                                          submit=submit, reason="import of 3 rows")
    assert created == 3
    updates = list(ProfileUpdate.objects.order_by("identity"))
    assert [u.status for u in updates] == [status] * 3
    assert {u.reason for u in updates} == {"import of 3 rows"}
    assert all(u.created_by == operator == u.last_edited_by for u in updates)
    assert all((u.submitted_at is not None) == submit for u in updates)
    events = AuditEvent.objects.filter(action="imported")
    assert sorted(e.update.identity for e in events) == ["bulk-0", "bulk-1", "bulk-2"]
    assert {(e.actor_id, e.from_status, e.to_status) for e in events} == {
        (operator.pk, "", status)}


def test_staging_many_needs_the_permissions_of_each_step(connection, supervisor):
    both_missing = make_user("viewer")
    for user, submit in ((supervisor, False), (both_missing, True)):
        with pytest.raises(Refused) as info:
            workflow.updates_stage_many(connection=connection, rows=_rows(1), by=user,
                                        submit=submit)
        assert info.value.code == "permission_denied"
    assert not ProfileUpdate.objects.exists() and not AuditEvent.objects.exists()


def test_staging_many_refuses_a_reason_the_database_cannot_hold_and_saves_nothing(
        connection, operator):
    rows = _rows(2)
    rows[1]["reason"] = "r" * 201
    with pytest.raises(ValidationError) as info:
        workflow.updates_stage_many(connection=connection, rows=rows, by=operator)
    assert info.value.message_dict == {
        "reason": ["Row 2: The reason has 201 characters; at most 200 are allowed."]}
    assert not ProfileUpdate.objects.exists()
    with pytest.raises(ValidationError) as info:
        workflow.updates_stage_many(connection=connection, rows=_rows(1), by=operator,
                                    reason="import\x00")
    assert "NUL character" in info.value.message_dict["reason"][0]
    assert not ProfileUpdate.objects.exists()


def test_a_reason_only_edit_is_checked_too(in_state, operator):
    update = in_state(S.PENDING)
    before = row(update)
    with pytest.raises(ValidationError) as info:
        workflow.update_edit(update=update, by=operator, reason="r" * 201)
    assert set(info.value.message_dict) == {"reason"}
    assert row(update) == before


def test_staging_many_is_refused_for_an_inactive_connection(connection, operator):
    connection.active = False
    connection.save(update_fields=["active"])
    with pytest.raises(ValidationError) as info:
        workflow.updates_stage_many(connection=connection, rows=_rows(1), by=operator)
    assert "inactive" in info.value.message_dict["connection"][0]
    assert not ProfileUpdate.objects.exists()


# --- the migration that introduced content authors -------------------------------------------

def test_the_migration_backfills_authors_from_creators_and_content_edits(in_state, operator,
                                                                        other_operator):
    import importlib
    from types import SimpleNamespace

    from django.apps import apps
    from django.db import connection as db

    both = person("operator_and_supervisor")
    content = in_state(S.DRAFT)
    workflow.update_edit(update=content, by=both, attributes=OTHER_CONTENT)
    workflow.update_edit(update=content, by=other_operator, reason="note only")
    note_only = in_state(S.DRAFT)
    workflow.update_edit(update=note_only, by=both, reason="note only",
                         not_before=dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc))
    ProfileUpdate.content_authors.through.objects.all().delete()  # as before the migration

    migration = importlib.import_module("updates.migrations.0005_content_authors")
    migration.backfill_content_authors(apps, SimpleNamespace(connection=db))
    assert authors(content) == {operator.username, both.username}
    assert authors(note_only) == {operator.username}
    migration.backfill_content_authors(apps, SimpleNamespace(connection=db))  # re-runnable
    assert ProfileUpdate.content_authors.through.objects.count() == 3


# --- comments: checked by the service whoever calls it --------------------------------------------

UNSTORABLE_COMMENTS = {
    "nul": "fine\x00but not storable",  # PostgreSQL refuses NUL in text; SQLite would keep it
    "surrogate": "half a character \udcff",  # valid in Python, not UTF-8: no database holds it
    "not text": 12345,
    "too long": "x" * 2001,
}


@pytest.mark.parametrize("comment", UNSTORABLE_COMMENTS.values(), ids=UNSTORABLE_COMMENTS.keys())
@pytest.mark.parametrize("decide", [workflow.update_approve, workflow.update_reject],
                         ids=["approve", "reject"])
def test_a_comment_the_database_cannot_hold_is_refused_naming_the_comment_and_changes_nothing(
        in_state, supervisor, decide, comment):
    update = in_state(S.PENDING)
    events = AuditEvent.objects.filter(update=update).count()
    with pytest.raises(ValidationError) as refused:
        decide(update=update, by=supervisor, comment=comment)
    assert "comment" in refused.value.message_dict
    fresh = ProfileUpdate.objects.get(pk=update.pk)
    assert (fresh.status, fresh.decided_by, fresh.decision_comment) == (S.PENDING, None, "")
    assert AuditEvent.objects.filter(update=update).count() == events


def test_every_transition_checks_its_comment(in_state, operator):
    draft = in_state(S.DRAFT)
    for move in (workflow.update_submit, workflow.update_cancel):
        with pytest.raises(ValidationError, match="NUL"):
            move(update=draft, by=operator, comment="\x00")
    assert ProfileUpdate.objects.get(pk=draft.pk).status == S.DRAFT
    workflow.update_submit(update=draft, by=operator, comment="x" * 2000)  # the limit itself


def test_matches_approval_is_the_content_the_approval_fingerprinted(in_state):
    """The one answer to "is the content what was approved" (sender, verifier, re-queue)."""
    update = in_state(S.APPROVED)
    assert update.approved_hash == update.content_hash
    assert update.matches_approval() and update.matches_approval(unapproved=True)
    update.attributes = {**update.attributes, **OTHER_CONTENT}
    assert not update.matches_approval() and not update.matches_approval(unapproved=True)
    update.approved_hash = ""  # never approved, or written straight into the database
    assert not update.matches_approval() and update.matches_approval(unapproved=True)


def test_read_only_states_are_those_no_person_moves_an_update_out_of():
    """The admin's read-only states follow from the transition table: an update in one of
    them is moved only by the sender, or not at all; every other state is editable."""
    # requeue_single moves a sent update only as part of its bulk job's reconciliation
    # (bulk_reconcile.py): a sent update stays read-only.
    moved_by_people = {s for t in workflow.TRANSITIONS if not t.by_sender
                       and t.name != "requeue_single" for s in t.sources}
    assert workflow.EDITABLE_STATES == moved_by_people
    assert workflow.READ_ONLY_STATES == set(S) - moved_by_people
    assert workflow.READ_ONLY_STATES == {S.SENDING, S.SENT, S.CANCELLED, S.UNCHANGED}
