"""The notebook's stage and revert keep one open change per visitor and attribute
(updates/open_changes.py): a DataFrame row for a visitor with an open update setting the same
attribute is a bad row naming that update, unless `supersede=True`."""

from __future__ import annotations

import pandas as pd
import pytest
from django.contrib.auth.models import Permission
from django.core.exceptions import ValidationError

from profileops import notebook
from tests.conftest import make_user
from updates import workflow
from updates.models import AuditEvent, ImportJob, ProfileUpdate, UpdateStatus as S

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def operator(db):
    return make_user("operator", "Operators")


def frame(*identities: str, status: str = "declined") -> pd.DataFrame:
    return pd.DataFrame({"identity_type": "mbox3rdPartyId", "identity": list(identities),
                         "loan_status": [status] * len(identities)})


def open_draft(connection, by, identity: str = "CUST-1", **attributes) -> ProfileUpdate:
    return workflow.update_stage(connection=connection, identity_type="mbox3rdPartyId",
                                 identity=identity, by=by,
                                 attributes=attributes or {"loanStatus": "funded"})


def test_a_row_for_an_open_visitor_and_attribute_is_a_bad_row_naming_the_open_update(
        connection, operator):
    first = open_draft(connection, operator)
    result = notebook.as_user("operator").stage(frame("CUST-2", "CUST-1"), connection="acme")

    assert not result.ok
    assert list(result.table["status"]) == ["not saved", "invalid"]
    assert f"#{first.pk} (draft, created by operator)" in result.table["errors"][1]
    assert list(result.errors_table["column"]) == ["loan_status"]
    assert ProfileUpdate.objects.count() == 1  # all or nothing, as an import

    kept = notebook.as_user("operator").stage(frame("CUST-2", "CUST-1"), connection="acme",
                                               keep_good=True)
    assert list(kept.table["status"]) == ["draft", "invalid"]
    assert ProfileUpdate.objects.get(pk=first.pk).status == S.DRAFT


def test_other_attributes_of_an_open_visitor_are_staged(connection, operator):
    open_draft(connection, operator, loyaltyTier="gold")
    result = notebook.as_user("operator").stage(frame("CUST-1"), connection="acme")
    assert result.ok and list(result.table["status"]) == ["draft"]


def test_supersede_cancels_the_open_update_audited_with_the_rows_update(connection, operator):
    first = open_draft(connection, operator)
    result = notebook.as_user("operator").stage(frame("CUST-1"), connection="acme",
                                                supersede=True)
    assert result.ok
    (new_id,) = result.ids
    assert ProfileUpdate.objects.get(pk=first.pk).status == S.CANCELLED
    event = AuditEvent.objects.get(update=first, action="superseded")
    assert event.changes == {"superseded_by": new_id}
    assert ImportJob.objects.get().supersede_open


def test_supersede_needs_the_cancel_permission(connection, operator):
    importer = make_user("importer")
    importer.user_permissions.add(*Permission.objects.filter(
        codename__in=["add_profileupdate", "import_profileupdate", "view_profileupdate"]))
    with pytest.raises(ValidationError) as refused:
        notebook.as_user("importer").stage(frame("CUST-1"), connection="acme", supersede=True)
    assert refused.value.code == "permission_denied"
    assert "cancel" in refused.value.messages[0]
    assert notebook.as_user("importer").stage(frame("CUST-1"), connection="acme").ok


def test_a_revert_names_the_open_update_per_row_and_supersedes_with_the_keyword(
        connection, operator):
    other = make_user("other", "Operators")
    supervisor = make_user("supervisor", "Supervisors")
    sent = open_draft(connection, operator, loyaltyTier="gold")
    workflow.update_submit(update=sent, by=operator)
    workflow.update_approve(update=sent, by=supervisor)
    ProfileUpdate.objects.filter(pk=sent.pk).update(  # as the sender would
        status=S.SENT, prior_values={"loyaltyTier": {"value": "silver", "modifiedAt": None}})
    newer = open_draft(connection, operator, loyaltyTier="platinum")

    refused = notebook.as_user("other").revert(ids=[sent.pk])
    assert list(refused.table["outcome"]) == ["refused"]
    assert f"#{newer.pk} (draft, created by operator)" in refused.table["message"][0]

    done = notebook.as_user("other").revert(ids=[sent.pk], supersede=True)
    assert list(done.table["outcome"]) == ["done"]
    assert ProfileUpdate.objects.get(pk=newer.pk).status == S.CANCELLED
    assert ProfileUpdate.objects.get(pk=done.ids[0]).created_by == other
