"""The batch page says what Target will do before a supervisor decides: each sampled update's
live diff verdict (changes / unchanged / no profile at Target) and an estimate for the whole
batch, read over real HTTP from the faithful emulator (404 for visitors it does not know)."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from tests.helpers import logged_in
from updates import importing, reading
from updates.models import ProfileRead

BATCH, ESTIMATE, DIFF = "updates_queue_batch", "updates_queue_batch_estimate", "updates_live_diff"


@pytest.fixture(autouse=True)
def _fresh_limiter():
    reading.read_limiter.reset()


def imported(connection, operator, identities: list[str]):
    rows = "".join(f"mbox3rdPartyId,{identity},funded\n" for identity in identities)
    job = importing.import_job_create(connection=connection, file_name="batch.csv",
                                      file_data=f"identity_type,identity,loan_status\n{rows}"
                                      .encode(), by=operator, submit=True)
    importing.import_job_start(job=job, by=operator)
    job.refresh_from_db()
    return job


@pytest.fixture
def batch(acme, operator, faithful_emulator):
    """Ten visitors: 6 unknown to Target, 3 holding another value, 1 already holding it."""
    for n in range(3):
        faithful_emulator.seed_profile(identity=f"known-{n}", attributes={"loanStatus": "applied"})
    faithful_emulator.seed_profile(identity="same-0", attributes={"loanStatus": "funded"})
    return imported(acme, operator, [f"new-{n}" for n in range(6)]
                    + [f"known-{n}" for n in range(3)] + ["same-0"])


def verdict_cells(content: str) -> dict[str, str]:
    return dict(re.findall(r'id="verdict-(\d+)" data-update="\d+">([^<]*)<', content))


def test_the_batch_page_shows_each_sampled_rows_verdict_and_the_estimate_once_read(
        client, supervisor, batch):
    client = logged_in(client, supervisor)
    page = client.get(reverse(BATCH), {"import": batch.pk, "sample": 10})
    content = page.content.decode()
    # Never waits for Target: nothing is read yet, the script reads through the live diff.
    assert ProfileRead.objects.count() == 0
    assert set(verdict_cells(content).values()) == {"not read yet"}
    assert "Reading the sample from Target: 0 of 10 read so far" in content
    sample = [row["update"] for row in page.context["sample"]]
    assert content.count("data-live-diff-url=") == 10
    estimate_url = re.search(r'data-estimate-url="([^"]+)"', content).group(1).replace("&amp;", "&")

    for update in sample:  # what live_diff.js does, two at a time
        assert client.get(reverse(DIFF, args=[update.pk])).status_code == 200
    answer = client.get(estimate_url)

    assert answer["Content-Type"] == "application/json"
    data = answer.json()
    by_identity = {u.identity: data["rows"][str(u.pk)]["label"] for u in sample}
    assert by_identity == {**{f"new-{n}": "no profile at Target" for n in range(6)},
                           **{f"known-{n}": "changes" for n in range(3)},
                           "same-0": "unchanged"}
    shares = {s["verdict"]: s for s in data["estimate"]["shares"]}
    assert data["estimate"]["complete"] and data["estimate"]["batch_size"] == 10
    assert shares["no_profile"]["text"] == (
        "6 of 10 (60%) have no profile at Target (acknowledged, not applied) — every update of "
        "the batch was read.")

    # Shown again within the live diff's max age: the reads are reused, not repeated.
    reads = ProfileRead.objects.count()
    again = client.get(reverse(BATCH), {"import": batch.pk, "sample": 10}).content.decode()
    assert ProfileRead.objects.count() == reads == 10
    assert sorted(verdict_cells(again).values()) == sorted(by_identity.values())
    assert "6 of 10 (60%) have no profile at Target" in again


def test_a_partial_sample_estimates_the_batch_with_its_range(client, supervisor, batch):
    client = logged_in(client, supervisor)
    page = client.get(reverse(BATCH), {"import": batch.pk, "sample": 5})
    for row in page.context["sample"]:
        client.get(reverse(DIFF, args=[row["update"].pk]))
    again = client.get(reverse(BATCH), {"import": batch.pk, "sample": 5})
    estimate = again.context["estimate"]
    # Each load draws a new sample: only the rows read before count.
    assert estimate.batch_size == 10 and estimate.sampled == 5
    for share in estimate.shares:
        assert share.low <= share.share <= share.high
        assert "95 % confidence" in share.text or share.exact


def test_the_estimate_answers_only_for_updates_of_the_batch(client, supervisor, batch, stage,
                                                           operator):
    from updates import workflow

    outsider = workflow.update_submit(update=stage(identity="outsider"), by=operator)
    client = logged_in(client, supervisor)
    answer = client.get(reverse(ESTIMATE), {"import": batch.pk,
                                            "sample": f"{outsider.pk},abc,²,99999999999999999999"})
    assert answer.status_code == 200
    assert answer.json()["rows"] == {}
    assert client.post(reverse(ESTIMATE), {"import": batch.pk}).status_code == 405


def test_values_on_the_batch_page_and_the_estimate_are_escaped(client, supervisor, acme,
                                                              operator, faithful_emulator):
    hostile = '<img src=x onerror="alert(1)">'
    faithful_emulator.seed_profile(identity=hostile, attributes={"loanStatus": hostile})
    quoted = '"' + hostile.replace('"', '""') + '"'
    job = imported(acme, operator, [quoted, quoted.replace("alert(1)", "alert(2)")])
    client = logged_in(client, supervisor)
    page = client.get(reverse(BATCH), {"import": job.pk, "sample": 5})
    [row, _] = page.context["sample"]
    assert row["update"].identity == hostile
    diff = client.get(reverse(DIFF, args=[row["update"].pk]))
    estimate = client.get(reverse(ESTIMATE), {"import": job.pk, "sample": row["update"].pk})
    content = client.get(reverse(BATCH), {"import": job.pk, "sample": 5}).content.decode()
    assert hostile not in content and "&lt;img src=x" in content
    assert "onerror" not in estimate.content.decode()  # no profile value in the estimate
    assert diff["Content-Type"] == "application/json"
    # The whole-batch read's left-out list (the unknown visitor) and its progress.
    from updates import batch_reads
    from updates.models import ProfileUpdate

    read = batch_reads.batch_read_start(
        update_ids=list(ProfileUpdate.objects.filter(import_job=job).values_list("id", flat=True)),
        connection=None, import_job=job, by=supervisor, background=False)
    content = client.get(reverse(BATCH), {"import": job.pk}).content.decode()
    assert 'id="batch-left-out"' in content and "alert(2)" in content
    assert "<img" not in content.split('id="batch-read"')[1]
    status = client.get(reverse("updates_queue_batch_read_status"), {"read": read.pk})
    assert "onerror" not in status.content.decode()


# --- the whole batch, read in the background -------------------------------------------------

READ, READ_STATUS = "updates_queue_batch_read", "updates_queue_batch_read_status"


def narrow_form(content: str) -> dict[str, str]:
    form = re.search(r'<form method="post" class="po-decide" id="batch-narrow-form".*?</form>',
                     content, re.S).group(0)
    return dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', form))


def test_the_whole_batch_is_read_in_the_background_then_only_changing_rows_are_decided(
        client, supervisor, operator, batch, django_capture_on_commit_callbacks, settings):
    settings.PROFILEOPS = {**settings.PROFILEOPS, "READS_PER_SECOND": 10}  # 10 reads: 1 s
    from django_q.models import OrmQ

    from updates import tasks, workflow
    from updates.models import AuditEvent, BatchRead, ProfileUpdate

    client = logged_in(client, supervisor)
    page = client.get(reverse(BATCH), {"import": batch.pk, "sample": 5}).content.decode()
    assert "Read the whole batch from Target" in page
    with django_capture_on_commit_callbacks(execute=True):
        started = client.post(reverse(READ), {"import": batch.pk})
    assert started.status_code == 302
    job = BatchRead.objects.get()
    assert (job.status, job.total, job.import_job_id) == ("queued", 10, batch.pk)
    assert OrmQ.objects.count() == 1  # the ORM broker's queue holds the task
    # A second click while it is queued starts nothing new.
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse(READ), {"import": batch.pk})
    assert BatchRead.objects.count() == 1 and OrmQ.objects.count() == 1

    waiting = client.get(reverse(BATCH), {"import": batch.pk}).content.decode()
    assert 'id="batch-read-running"' in waiting
    assert "0 of 10 read (0%); about 1 s left (waiting for a worker)." in waiting
    status = client.get(reverse(READ_STATUS), {"read": job.pk}).json()
    assert (status["status"], status["done"], status["total"]) == ("queued", 0, 10)

    assert tasks.read_batch(job.pk) == f"batch read #{job.pk}: done, 10 of 10 read"  # the worker
    assert ProfileRead.objects.count() == 10
    assert client.get(reverse(READ_STATUS), {"read": job.pk}).json()["status"] == "done"

    # One update changes after the read (edited, resubmitted): it is left out, not decided.
    edited = ProfileUpdate.objects.get(identity="known-2")
    workflow.update_edit(update=edited, by=operator, attributes={"loanStatus": "declined"})
    workflow.update_submit(update=edited, by=operator)
    before = {u.pk: u.status for u in ProfileUpdate.objects.all()}
    content = client.get(reverse(BATCH), {"import": batch.pk}).content.decode()
    assert '<strong id="batch-changing">2</strong> of the 10 change something' in content
    assert '<strong id="batch-left-out-count">8</strong>' in content
    for identity, why in [("new-0", "no profile at Target: it would be acknowledged but not "
                                     "applied"),
                          ("same-0", "unchanged: Target already holds every staged value"),
                          ("known-2", "its content changed since the read")]:
        pk = ProfileUpdate.objects.get(identity=identity).pk
        assert re.search(rf'<tr id="left-out-{pk}">.*?<td>{re.escape(why)}</td></tr>', content)
    fields = narrow_form(content)
    changing = {ProfileUpdate.objects.get(identity=f"known-{n}").pk for n in range(2)}
    assert {int(pk) for pk in fields["only"].split(",")} == changing

    response = client.post(reverse(BATCH), {**fields, "decision": "approve"}, follow=True)

    assert any("Approved 2 updates" in m for m in (str(m) for m in response.context["messages"]))
    after = {u.pk: u.status for u in ProfileUpdate.objects.all()}
    assert {pk for pk, status in after.items() if status == "approved"} == changing
    assert {pk: s for pk, s in after.items() if pk not in changing} == {
        pk: s for pk, s in before.items() if pk not in changing}  # left out: untouched
    assert AuditEvent.objects.filter(action="approved").count() == 2


def test_a_narrowed_decision_is_refused_when_the_changing_rows_are_not_the_ones_shown(
        client, supervisor, operator, batch):
    from updates import batch_reads
    from updates.models import BatchRead, ProfileUpdate

    client = logged_in(client, supervisor)
    ids = list(ProfileUpdate.objects.filter(import_job=batch).values_list("id", flat=True))
    job = batch_reads.batch_read_start(update_ids=ids, connection=None, import_job=batch,
                                       by=supervisor, background=False)
    assert job.status == BatchRead.Status.DONE and job.counts == {
        "no_profile": 6, "changes": 3, "unchanged": 1}
    fields = narrow_form(client.get(reverse(BATCH), {"import": batch.pk}).content.decode())
    unchanged = ProfileUpdate.objects.get(identity="same-0").pk
    for only in (f"{fields['only']},{unchanged}", fields["only"].split(",")[0], ""):
        response = client.post(reverse(BATCH), {**fields, "only": only, "decision": "approve"},
                               follow=True)
        assert any("not the ones the page showed" in str(m) for m in response.context["messages"])
    assert not ProfileUpdate.objects.exclude(status="pending").exists()
    # Another batch's read, or one not finished, decides nothing either.
    other = BatchRead.objects.create(created_by=supervisor, created_at=job.created_at,
                                     import_job=batch, status=BatchRead.Status.RUNNING)
    response = client.post(reverse(BATCH), {**fields, "batch_read": other.pk,
                                            "decision": "approve"}, follow=True)
    assert any("not finished or not this batch's" in str(m) for m in response.context["messages"])
    assert not ProfileUpdate.objects.exclude(status="pending").exists()


def test_a_whole_batch_read_reuses_fresh_reads_and_marks_updates_decided_meanwhile(
        client, supervisor, operator, batch, other_supervisor):
    from updates import batch_reads, workflow
    from updates.models import ProfileUpdate

    client = logged_in(client, supervisor)
    first, second = ProfileUpdate.objects.filter(import_job=batch).order_by("id")[:2]
    client.get(reverse(DIFF, args=[first.pk]))  # a fresh read on record
    workflow.update_approve(update=second, by=other_supervisor)  # decided before its turn
    ids = list(ProfileUpdate.objects.filter(import_job=batch).values_list("id", flat=True))
    ids.append(second.pk) if second.pk not in ids else None
    job = batch_reads.batch_read_start(update_ids=ids, connection=None, import_job=batch,
                                       by=supervisor, background=False)
    assert ProfileRead.objects.count() == 1 + 8  # first's read reused, second not read
    assert job.verdicts[str(second.pk)][0] == batch_reads.GONE
    assert job.done == job.total == 10


def test_the_read_status_answers_json_to_supervisors_only(client, operator, supervisor, batch):
    from updates.models import BatchRead

    job = BatchRead.objects.create(created_by=supervisor, created_at=batch.created_at,
                                   import_job=batch, total=5)
    assert logged_in(client, operator).get(reverse(READ_STATUS), {"read": job.pk}).status_code == 403
    assert client.post(reverse(READ), {"import": batch.pk}).status_code == 403
    assert not BatchRead.objects.exclude(pk=job.pk).exists()
