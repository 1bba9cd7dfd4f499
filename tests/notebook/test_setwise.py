"""The notebook approves and rejects set-wise (issue 25, item 1): a large preview is decided by
updates/setwise.py a chunk per transaction — never one service call per update — with the
refusals still per row: a row changed since the preview is refused (stale), the rest decided."""

from __future__ import annotations

import pytest

from profileops import notebook
from tests.conftest import make_user
from tests.notebook.test_api import stage_pending
from updates import setwise, workflow
from updates.models import AuditEvent, ProfileUpdate

pytestmark = pytest.mark.django_db(transaction=True)


def test_approving_a_large_preview_uses_the_set_wise_path(connection, monkeypatch):
    make_user("operator", "Operators")
    make_user("supervisor", "Supervisors")
    operator = make_user("stager", "Operators")
    ids = stage_pending(connection, operator, n=25)
    boss = notebook.as_user("supervisor")
    looked = boss.preview(ids=ids)
    edited = ProfileUpdate.objects.get(pk=ids[7])
    workflow.update_edit(update=edited, by=operator, attributes={"loanStatus": "declined"})
    workflow.update_submit(update=edited, by=operator)

    calls = []
    real = setwise.decide_set

    def counted(**kwargs):
        calls.append(len(kwargs["shown"]))
        return real(**kwargs)

    def one_by_one(**kwargs):
        raise AssertionError("decided one update at a time")

    monkeypatch.setattr(setwise, "CHUNK", 10)
    monkeypatch.setattr(setwise, "decide_set", counted)
    monkeypatch.setattr(workflow, "update_approve", one_by_one)
    decisions = boss.approve(ids=looked, comment="checked")

    assert calls == [10, 10, 5]  # three chunks, one transaction each
    table = decisions.table.set_index("update_id")
    assert decisions.counts == {"done": 24, "refused": 1}
    assert table.loc[ids[7], "outcome"] == "refused"
    assert "not the ones you were shown" in table.loc[ids[7], "message"]
    assert ProfileUpdate.objects.get(pk=ids[7]).status == "pending"
    assert ProfileUpdate.objects.filter(status="approved").count() == 24
    assert AuditEvent.objects.filter(action="approved", comment="checked",
                                     actor__username="supervisor").count() == 24
