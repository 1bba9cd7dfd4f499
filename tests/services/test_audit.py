"""updates/audit.py: every audit row is written through it, and only with an action that
AuditEvent.Action names (so the timeline can say it). That no other module constructs an
AuditEvent is checked in tests/test_architecture.py."""

from __future__ import annotations

import pytest

from tests.conftest import approve_via_workflow
from updates import audit, workflow
from updates.admin.timeline import action_words
from updates.models import AuditEvent, UpdateStatus as S

Action = AuditEvent.Action


def test_every_transition_writes_an_action_of_the_choices():
    assert {t.action for t in workflow.TRANSITIONS} <= set(Action.values)
    # And the table's actions are the Action members themselves, not copies of their text.
    assert all(isinstance(t.action, Action) for t in workflow.TRANSITIONS)


def test_every_action_has_words_of_its_own_for_the_timeline():
    for action in Action:
        assert action.label and action.label == action_words(action.value)
    assert len(set(Action.labels)) == len(Action.labels)


@pytest.mark.django_db
def test_record_writes_one_row_and_refuses_an_action_not_in_the_choices(connection, operator):
    event = audit.record(Action.CONNECTION_CHANGED, by=operator, connection=connection,
                         changes={"label": {"before": "a", "after": "b"}})
    stored = AuditEvent.objects.get(pk=event.pk)
    assert (stored.action, stored.actor, stored.connection_id, stored.changes) == (
        "connection_changed", operator, connection.pk, {"label": {"before": "a", "after": "b"}})
    count = AuditEvent.objects.count()
    with pytest.raises(ValueError, match="not an AuditEvent.Action"):
        audit.record("connection_renamed", by=operator, connection=connection)
    with pytest.raises(ValueError):
        audit.unsaved("made_up", by=None)
    with pytest.raises(ValueError):
        audit.save([AuditEvent(at=stored.at, action="made_up")])
    assert AuditEvent.objects.count() == count


@pytest.mark.django_db
def test_record_many_writes_one_row_per_update_in_bulk_and_checks_the_table(
        stage, operator, supervisor):
    updates = [approve_via_workflow(stage, operator, supervisor) for _ in range(2)]
    written = audit.record_many(
        [u.pk for u in updates], by=None, action=workflow.T["claim"],
        connection_id=updates[0].connection_id, comments={updates[1].pk: "second"})
    assert [(e.action, e.from_status, e.to_status, e.comment) for e in written] == [
        ("claimed", S.APPROVED, S.SENDING, ""), ("claimed", S.APPROVED, S.SENDING, "second")]
    assert [AuditEvent.objects.filter(update=u).last().action for u in updates] == [
        "claimed", "claimed"]
    with pytest.raises(ValueError):
        audit.record_many(updates, by=None, action=workflow.T["acknowledge"],
                          from_status=S.APPROVED)
    with pytest.raises(ValueError, match="not an AuditEvent.Action"):
        audit.record_many(updates, by=None, action="made_up", to_status=S.APPROVED)
