"""Who may start a send or verification run (workflow.may_start_runs): a person with a part in
the workflow — the submit or the approve permission. The services enforce it for every caller
where a person acts (the notebook, the commands given --user); the schedule acts as nobody."""

from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth.models import Permission
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command

from tests.conftest import make_user
from updates import sending, verification, workflow
from updates.models import SendRun

pytestmark = pytest.mark.django_db


@pytest.fixture
def viewer(db):
    """Sees the updates, has no part in the workflow."""
    user = make_user("viewer")
    user.user_permissions.add(Permission.objects.get(codename="view_profileupdate"))
    return type(user).objects.get(pk=user.pk)


def test_a_part_in_the_workflow_is_what_starting_a_run_takes(operator, supervisor, viewer):
    assert workflow.may_start_runs(operator)  # submit
    assert workflow.may_start_runs(supervisor)  # approve
    assert not workflow.may_start_runs(viewer)
    operator.is_active = False
    assert not workflow.may_start_runs(operator)


def test_the_send_service_refuses_a_person_without_a_part(viewer, connection):
    with pytest.raises(ValidationError) as refused:
        sending.send_due(by=viewer)
    assert refused.value.code == "permission_denied"
    assert refused.value.messages == [
        "viewer has no part in the workflow (neither submit nor approve permission), so may not "
        "start a send run."]
    assert not SendRun.objects.exists()  # refused before anything was recorded


def test_the_verification_service_refuses_a_person_without_a_part(viewer, connection):
    with pytest.raises(ValidationError, match="so may not run verification") as refused:
        verification.updates_verify_due(by=viewer)
    assert refused.value.code == "permission_denied"


def test_a_person_with_a_part_starts_runs_and_the_schedule_needs_nobody(operator, connection):
    assert sending.send_due(by=operator).claimed == 0
    assert sending.send_due().claimed == 0
    assert verification.updates_verify_due(by=operator).checked == 0


def test_send_updates_given_a_user_applies_their_rights(viewer, supervisor, connection):
    with pytest.raises(CommandError, match="viewer has no part in the workflow"):
        call_command("send_updates", "--user", "viewer", stdout=StringIO())
    assert not SendRun.objects.exists()
    with pytest.raises(CommandError, match="No user 'nobody'"):
        call_command("send_updates", "--user", "nobody", stdout=StringIO())
    call_command("send_updates", "--user", "supervisor", stdout=StringIO())
    assert SendRun.objects.get().worker.startswith("send_updates:supervisor/")


def test_verify_updates_given_a_user_applies_their_rights(viewer, operator, connection):
    with pytest.raises(CommandError, match="so may not run verification"):
        call_command("verify_updates", "--user", "viewer", stdout=StringIO())
    out = StringIO()
    call_command("verify_updates", "--user", "operator", stdout=out)
    assert out.getvalue().startswith("Checked 0")
