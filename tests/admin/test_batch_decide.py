"""The batch page's decisions at scale (issue 25, item 1): a batch of one chunk is decided in the
request, set-wise; a larger one (here with small limits) keeps its (id, fingerprint) pairs
server side when the page is rendered, posts the job's id and digest, and is decided by
django-q2 chunk by chunk with the progress and each chunk's outcome on the page."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tests.helpers import logged_in, texts
from updates import setwise, tasks, workflow
from updates.admin import batch as batch_page
from updates.models import AuditEvent, DecisionJob, ProfileUpdate, UpdateStatus

S = UpdateStatus
BATCH, STATUS = "updates_queue_batch", "updates_queue_batch_decision_status"
EVIL = {"loanStatus": "funded", "loyaltyTier": "EVIL"}


@pytest.fixture
def large(monkeypatch):
    """A batch of more than INLINE_LIMIT (4) updates, in chunks of 3."""
    monkeypatch.setattr(batch_page, "INLINE_LIMIT", 4)
    monkeypatch.setattr(setwise, "CHUNK", 3)


def waiting(stage, operator, n: int) -> list[ProfileUpdate]:
    return [workflow.update_submit(update=stage(), by=operator) for _ in range(n)]


def test_a_large_batch_page_keeps_its_pairs_server_side_and_decides_in_the_background(
        client, supervisor, operator, stage, large, django_capture_on_commit_callbacks):
    from django_q.models import OrmQ

    updates = waiting(stage, operator, 8)
    client = logged_in(client, supervisor)
    page = client.get(reverse(BATCH))
    content = page.content.decode()
    assert page.context["count"] == 8 and page.context["large"]
    assert 'name="shown_job"' in content and 'name="shown"' not in content
    assert "in 3 chunks of at most 3 updates" in content
    assert "Reading the whole batch from Target is offered for batches of up to" in content
    [kept] = DecisionJob.objects.all()
    assert (kept.status, kept.total, kept.created_by) == ("shown", 8, supervisor)
    workflow.update_cancel(update=updates[4], by=operator)  # the second chunk changes
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(reverse(BATCH), {"decision": "approve",
                                                "shown_job": page.context["shown_job"]})
    assert response.status_code == 302 and f"decision={kept.pk}" in response["Location"]
    assert OrmQ.objects.count() == 1  # queued for a worker; nothing decided in the request
    assert not ProfileUpdate.objects.filter(status=S.APPROVED).exists()
    progress = client.get(response["Location"]).content.decode()
    assert 'id="batch-decision-running"' in progress and "(waiting for a worker)" in progress
    assert client.get(reverse(STATUS), {"decision": kept.pk}).json()["status"] == "queued"

    assert tasks.decide_batch(kept.pk).startswith(f"batch decision #{kept.pk}: done, 5 of 8")
    status = client.get(reverse(STATUS), {"decision": kept.pk}).json()
    assert (status["chunks_done"], status["decided"], status["refused"]) == (3, 5, 3)
    assert [e["outcome"] for e in status["report"]] == ["decided", "refused", "decided"]
    report = client.get(response["Location"]).content.decode()
    assert 'id="chunk-2" class="po-chunk-refused"' in report and "1 left" in report
    assert {u.pk for u in ProfileUpdate.objects.filter(status=S.APPROVED)} == {
        u.pk for u in updates[:3] + updates[6:]}
    assert AuditEvent.objects.filter(action="approved").count() == 5
    # The same page cannot be decided twice.
    again = client.post(reverse(BATCH), {"decision": "approve",
                                         "shown_job": page.context["shown_job"]}, follow=True)
    assert any("already decided" in m for m in texts(again))


def test_a_kept_batch_is_bound_to_its_scope_and_viewer(client, supervisor, other_supervisor,
                                                       operator, stage, connection, large):
    waiting(stage, operator, 6)
    logged_in(client, supervisor).get(reverse(BATCH))
    page = client.get(reverse(BATCH))  # reloaded: the first page's copy is gone
    assert DecisionJob.objects.count() == 1
    token = page.context["shown_job"]
    other = logged_in(client, other_supervisor)
    response = other.post(reverse(BATCH), {"decision": "approve", "shown_job": token},
                          follow=True)
    assert any("did not say which updates it showed" in m for m in texts(response))
    response = other.post(reverse(BATCH), {"decision": "approve", "shown_job": token,
                                           "connection": connection.pk}, follow=True)
    assert any("did not say which updates it showed" in m for m in texts(response))
    assert not ProfileUpdate.objects.filter(status=S.APPROVED).exists()


def test_a_posted_batch_larger_than_a_chunk_is_decided_in_the_background(
        client, supervisor, operator, stage, monkeypatch):
    monkeypatch.setattr(setwise, "CHUNK", 2)
    waiting(stage, operator, 5)
    client = logged_in(client, supervisor)
    page = client.get(reverse(BATCH))
    assert page.context["shown"]  # small enough to post its pairs
    response = client.post(reverse(BATCH), {"decision": "reject", "comment": "no",
                                            "shown": page.context["shown"]})
    job = DecisionJob.objects.get()
    assert (job.status, job.chunks, job.decision, job.comment) == ("queued", 3, "reject", "no")
    assert f"decision={job.pk}" in response["Location"]
    tasks.decide_batch(job.pk)
    assert ProfileUpdate.objects.filter(status=S.REJECTED).count() == 5


def test_a_one_chunk_batch_is_still_decided_in_the_request(client, supervisor, operator, stage):
    waiting(stage, operator, 3)
    client = logged_in(client, supervisor)
    page = client.get(reverse(BATCH))
    response = client.post(reverse(BATCH), {"decision": "approve",
                                            "shown": page.context["shown"]}, follow=True)
    assert any(m.startswith("Approved 3 updates") for m in texts(response))
    assert not DecisionJob.objects.exists()


def test_the_batch_cap_is_a_million():
    assert batch_page.BATCH_LIMIT == 1_000_000
