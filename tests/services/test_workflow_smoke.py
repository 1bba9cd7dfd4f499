from updates import workflow
from updates.models import UpdateStatus


def test_operator_stages_and_submits_supervisor_approves(stage, operator, supervisor):
    update = stage()
    workflow.update_submit(update=update, by=operator)
    workflow.update_approve(update=update, by=supervisor)
    assert update.status == UpdateStatus.APPROVED
    assert [e.action for e in update.audit_events.all()] == ["staged", "submitted", "approved"]
