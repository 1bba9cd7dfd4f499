"""The notebook shows the route a decision will take and approves onto it (routing.py)."""

from __future__ import annotations

import pytest

from updates import workflow
from updates.models import ProfileUpdate, SendRoute


@pytest.fixture
def pending_batch(connection, operator, settings):
    settings.PROFILEOPS = {**settings.PROFILEOPS, "BULK_MIN_BATCH_ROWS": 2}
    connection.send_route = SendRoute.THRESHOLD
    connection.bulk_row_threshold = 3
    connection.save()
    rows = [{"identity_type": "mbox3rdPartyId", "identity": f"nb-{i}",
             "attributes": {"loyaltyTier": "gold"}} for i in range(3)]
    workflow.updates_stage_many(connection=connection, rows=rows, by=operator, submit=True)
    return connection


@pytest.mark.django_db(transaction=True)
def test_routes_says_bulk_and_why_and_approve_takes_it(pending_batch, supervisor):
    from profileops import notebook

    session = notebook.as_user(supervisor.username)
    table = session.routes(connection=pending_batch.client_code)
    assert list(table["route"]) == ["bulk"]
    assert "bulk threshold of 3" in table["why"][0]
    assert table["single"][0].startswith("about") and table["bulk"][0].startswith("about")
    assert list(session.routes(connection=pending_batch.client_code, route="single")["route"]) \
        == ["single"]
    session.approve(connection=pending_batch.client_code, comment="ok")
    assert set(ProfileUpdate.objects.values_list("send_route", flat=True)) == {"bulk"}
