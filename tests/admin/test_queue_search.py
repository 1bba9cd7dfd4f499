"""The queue at 2,000+ rows (issue 24, item 6): search by identity, filter by connection and
reason, and an import picker that shows what still waits per import (one grouped count), never
fully decided imports."""

from __future__ import annotations

import pytest
from django.db import connection as db
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from tests.conftest import make_connection, make_mapping
from tests.helpers import logged_in
from updates import importing, selectors, workflow
from updates.models import ImportJob, ProfileUpdate

pytestmark = pytest.mark.django_db

QUEUE = "updates_queue"


def pending(stage, by, **kwargs):
    return workflow.update_submit(update=stage(by=by, **kwargs), by=by)


def shown_ids(page) -> set[int]:
    return {row.update.pk for row in page.context["rows"]}


def imported(connection, operator, name: str, identities: list[str]) -> ImportJob:
    rows = "".join(f"mbox3rdPartyId,{i},funded\n" for i in identities)
    job = importing.import_job_create(connection=connection, file_name=name,
                                      file_data=f"identity_type,identity,loan_status\n{rows}"
                                      .encode(), by=operator, submit=True)
    importing.import_job_start(job=job, by=operator)
    job.refresh_from_db()
    return job


def test_the_queue_searches_by_identity_exactly_by_prefix_and_by_number(
        client, supervisor, operator, stage):
    a = pending(stage, operator, identity="cust-120")
    b = pending(stage, operator, identity="cust-121")
    c = pending(stage, operator, identity="other-1")
    client = logged_in(client, supervisor)
    url = reverse(QUEUE)
    assert shown_ids(client.get(url, {"q": "cust-12*"})) == {a.pk, b.pk}
    assert shown_ids(client.get(url, {"q": "cust-120"})) == {a.pk}
    assert shown_ids(client.get(url, {"q": f"#{c.pk}"})) == {c.pk}
    page = client.get(url, {"q": "nobody"})
    assert not page.context["rows"]
    assert "matches the search" in page.content.decode()


def test_the_queue_filters_by_reason_and_keeps_every_filter_across_pages(
        client, supervisor, operator, stage, monkeypatch):
    from updates.admin import queue
    monkeypatch.setattr(queue, "QUEUE_PAGE_SIZE", 1)
    other = make_connection("other")
    make_mapping(other, "tier", "loyaltyTier")
    wanted = [pending(stage, operator, reason="Spring Campaign", identity=f"s-{i}")
              for i in range(2)]
    pending(stage, operator, reason="winter", identity="s-9")
    pending(stage, operator, connection=other, reason="spring campaign", identity="s-8",
            attributes={"loyaltyTier": "gold"})
    client = logged_in(client, supervisor)
    query = {"connection": wanted[0].connection_id, "reason": "spring", "q": "s-*"}
    first = client.get(reverse(QUEUE), query)
    assert first.context["paginator"].count == 2
    assert "p=2" in first.content.decode()
    second = client.get(reverse(QUEUE), {**query, "p": 2})
    assert shown_ids(first) | shown_ids(second) == {u.pk for u in wanted}
    # A search is not a batch scope: the one-step batch link would decide more than is shown.
    assert "Decide all of these in one step" not in first.content.decode()


def test_the_import_picker_shows_what_still_waits_and_drops_decided_imports(
        client, supervisor, operator, connection):
    partly = imported(connection, operator, "partly.csv", ["p-1", "p-2", "p-3"])
    decided = imported(connection, operator, "decided.csv", ["d-1"])
    for update in ProfileUpdate.objects.filter(import_job=decided):
        workflow.update_approve(update=update, by=supervisor)
    workflow.update_approve(update=ProfileUpdate.objects.filter(import_job=partly).order_by("id").first(),
                            by=supervisor)
    content = logged_in(client, supervisor).get(reverse(QUEUE)).content.decode()
    assert f"#{partly.pk} partly.csv (2 waiting, " in content
    assert "decided.csv" not in content


def test_the_pending_counts_per_import_are_one_query_however_many_imports(
        connection, operator):
    for n in range(3):
        imported(connection, operator, f"f{n}.csv", [f"f{n}-{i}" for i in range(n + 1)])
    with CaptureQueriesContext(db) as captured:
        waiting = selectors.imports_waiting()
    assert [n for _, n in waiting] == [3, 2, 1]  # newest import first
    assert len(captured.captured_queries) == 2  # the grouped count, then the imports
