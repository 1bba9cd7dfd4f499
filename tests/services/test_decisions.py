"""updates/decisions.py and workflow's `shown=`: a decision covers exactly the content shown
(issue 21, item 1). Real database; the admin and notebook paths are in
tests/hostile/test_stale_decisions.py."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from updates import decisions, workflow
from updates.errors import STALE, WRONG_STATE, StaleBatch
from updates.models import AuditEvent, ProfileUpdate, UpdateStatus

S = UpdateStatus
EVIL = {"loanStatus": "funded", "loyaltyTier": "EVIL"}


def pending(stage, by, **kwargs):
    return workflow.update_submit(update=stage(by=by, **kwargs), by=by)


def decided() -> int:
    return AuditEvent.objects.filter(action__in=("approved", "rejected")).count()


@pytest.mark.parametrize("decide, kwargs", [(workflow.update_approve, {}),
                                            (workflow.update_reject, {"comment": "no"})])
def test_a_decision_on_content_edited_and_resubmitted_since_it_was_shown_is_stale(
        stage, operator, supervisor, decide, kwargs):
    update = pending(stage, operator)
    seen = update.content_hash
    workflow.update_edit(update=update, by=operator, attributes=EVIL)
    workflow.update_submit(update=update, by=operator)
    with pytest.raises(ValidationError) as refused:
        decide(update=update, by=supervisor, shown=seen, **kwargs)
    assert refused.value.code == STALE
    fresh = ProfileUpdate.objects.get(pk=update.pk)
    assert fresh.status == S.PENDING and fresh.attributes == EVIL and fresh.decided_by is None
    assert decided() == 0


def test_a_decision_on_an_update_that_left_the_state_shown_is_stale(stage, operator,
                                                                    supervisor):
    update = pending(stage, operator)
    seen = update.content_hash
    workflow.update_cancel(update=update, by=operator)
    with pytest.raises(ValidationError) as refused:
        workflow.update_approve(update=update, by=supervisor, shown=seen)
    assert refused.value.code == STALE
    assert ProfileUpdate.objects.get(pk=update.pk).status == S.CANCELLED


def test_the_content_shown_is_approved_and_its_fingerprint_kept(stage, operator, supervisor):
    update = pending(stage, operator)
    workflow.update_approve(update=update, by=supervisor, shown=update.content_hash)
    fresh = ProfileUpdate.objects.get(pk=update.pk)
    assert fresh.status == S.APPROVED and fresh.approved_hash == update.content_hash


def test_a_decision_naming_no_content_is_stale_or_names_the_wrong_state(stage, operator,
                                                                        supervisor):
    waiting, draft = pending(stage, operator), stage()
    with pytest.raises(ValidationError) as refused:
        workflow.update_approve(update=waiting, by=supervisor, shown="")
    assert refused.value.code == STALE
    with pytest.raises(ValidationError) as refused:
        workflow.update_approve(update=draft, by=supervisor, shown="")
    assert refused.value.code == WRONG_STATE


def test_without_shown_a_decision_is_on_whatever_is_there_now(stage, operator, supervisor):
    update = pending(stage, operator)
    workflow.update_edit(update=update, by=operator, attributes=EVIL)
    workflow.update_submit(update=update, by=operator)
    workflow.update_approve(update=update, by=supervisor)  # the notebook's bare ids
    assert ProfileUpdate.objects.get(pk=update.pk).status == S.APPROVED


def test_four_eyes_is_refused_as_such_whatever_was_shown(stage, operator):
    update = pending(stage, operator)
    with pytest.raises(ValidationError) as refused:
        workflow.update_approve(update=update, by=operator, shown="")
    assert refused.value.code in ("own_update", "permission_denied")


# --- several at once ----------------------------------------------------------------------------

def test_a_set_with_one_changed_update_decides_nothing_and_says_what_changed(
        stage, operator, supervisor):
    smuggled = stage(attributes=EVIL)  # an older draft: lower id
    waiting = [pending(stage, operator) for _ in range(3)]
    shown = {u.pk: u.content_hash for u in waiting}
    scope = ProfileUpdate.objects.filter(status=S.PENDING)
    workflow.update_cancel(update=waiting[0], by=operator)
    workflow.update_submit(update=smuggled, by=operator)
    workflow.update_edit(update=waiting[1], by=operator, attributes=EVIL)
    workflow.update_submit(update=waiting[1], by=operator)
    with pytest.raises(StaleBatch) as refused:
        decisions.updates_decide_shown(shown=shown, decision="approve", by=supervisor,
                                       scope=scope)
    stale = refused.value
    assert stale.code == STALE
    assert (stale.left, stale.joined, stale.changed) == ([waiting[0].pk], [smuggled.pk],
                                                         [waiting[1].pk])
    assert "1 left" in stale.messages[0] and "1 joined" in stale.messages[0]
    assert ProfileUpdate.objects.get(pk=waiting[2].pk).status == S.PENDING  # rolled back
    assert decided() == 0


def test_a_set_is_decided_whole_with_the_viewers_own_updates_refused_one_by_one(
        stage, operator, admin_user):
    theirs = [pending(stage, operator) for _ in range(2)]
    own = pending(stage, admin_user)
    shown = {u.pk: u.content_hash for u in [*theirs, own]}
    outcome = decisions.updates_decide_shown(shown=shown, decision="approve", by=admin_user)
    assert [u.pk for u in outcome.done] == [u.pk for u in theirs]
    assert [u.pk for u, _ in outcome.refused] == [own.pk]
    assert ProfileUpdate.objects.get(pk=own.pk).status == S.PENDING


def test_newer_updates_of_the_scope_are_not_part_of_the_set(stage, operator, supervisor):
    waiting = pending(stage, operator)
    shown = {waiting.pk: waiting.content_hash}
    later = pending(stage, operator)
    decisions.updates_decide_shown(shown=shown, decision="approve", by=supervisor,
                                   scope=ProfileUpdate.objects.filter(status=S.PENDING))
    assert ProfileUpdate.objects.get(pk=waiting.pk).status == S.APPROVED
    assert ProfileUpdate.objects.get(pk=later.pk).status == S.PENDING


def test_a_set_rejection_needs_a_comment_before_anything_is_looked_at(stage, operator,
                                                                      supervisor):
    waiting = pending(stage, operator)
    with pytest.raises(ValidationError) as refused:
        decisions.updates_decide_shown(shown={waiting.pk: waiting.content_hash},
                                       decision="reject", by=supervisor, comment=" ")
    assert refused.value.code == "comment_required"


def test_a_token_reads_back_only_unaltered_and_for_its_own_scope(stage, operator):
    updates = [pending(stage, operator) for _ in range(2)]
    token = decisions.shown_token(updates, scope="import=7")
    assert decisions.read_token(token, scope="import=7") == {u.pk: u.content_hash
                                                             for u in updates}
    assert decisions.read_token(token, scope="") == {}
    assert decisions.read_token(token[:-1] + ("A" if token[-1] != "A" else "B"),
                                scope="import=7") == {}
    assert decisions.read_token(None) == {}


def test_deciding_each_refuses_per_update_and_decides_the_rest(stage, operator, supervisor):
    """updates_decide_each (the notebook's approve): a changed update is refused as stale and
    the rest are approved; a refusal before any update is looked at refuses every one."""
    kept, changed = pending(stage, operator), pending(stage, operator)
    shown = {kept.pk: kept.content_hash, changed.pk: changed.content_hash}
    workflow.update_edit(update=changed, by=operator, attributes=EVIL)
    workflow.update_submit(update=changed, by=operator)
    outcome = decisions.updates_decide_each(updates=[kept, changed], decision="approve",
                                            by=supervisor, shown=shown)
    assert [u.pk for u in outcome.done] == [kept.pk] and outcome.done[0].status == S.APPROVED
    [(refused, message)] = outcome.refused
    assert refused.pk == changed.pk and "not the ones you were shown" in message
    assert ProfileUpdate.objects.get(pk=changed.pk).status == S.PENDING
    waiting = [pending(stage, operator), pending(stage, operator)]
    none = decisions.updates_decide_each(updates=waiting, decision="reject", by=supervisor,
                                         comment="")
    assert none.done == [] and [m for _, m in none.refused] == [
        "A rejection needs a comment saying why."] * 2
