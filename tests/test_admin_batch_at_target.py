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


@pytest.fixture
def acme(connection, faithful_emulator):
    connection.base_url = faithful_emulator.base_url
    connection.save(update_fields=["base_url"])
    return connection


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
    job = imported(acme, operator, ['"' + hostile.replace('"', '""') + '"'])
    client = logged_in(client, supervisor)
    page = client.get(reverse(BATCH), {"import": job.pk, "sample": 5})
    [row] = page.context["sample"]
    assert row["update"].identity == hostile
    diff = client.get(reverse(DIFF, args=[row["update"].pk]))
    estimate = client.get(reverse(ESTIMATE), {"import": job.pk, "sample": row["update"].pk})
    content = client.get(reverse(BATCH), {"import": job.pk, "sample": 5}).content.decode()
    assert hostile not in content and "&lt;img src=x" in content
    assert "onerror" not in estimate.content.decode()  # no profile value in the estimate
    assert diff["Content-Type"] == "application/json"
