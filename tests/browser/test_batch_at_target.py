"""The batch page in a real browser against the faithful emulator: the sample is read through the
live diff after the page is shown, each row then says what Target will do, and the estimate for
the whole batch appears. Screenshots: test-artifacts/screenshots/batch-at-target-*.png."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import login, screenshot
from tests.conftest import make_connection, make_mapping, make_user
from updates import importing, reading

pytestmark = [pytest.mark.browser,
              pytest.mark.django_db(transaction=True, serialized_rollback=True)]


@pytest.fixture
def batch(faithful_emulator):
    reading.read_limiter.reset()
    connection = make_connection("acme", label="Acme loans", base_url=faithful_emulator.base_url)
    make_mapping(connection, "loan_status", "loanStatus", value_type="choice",
                 choices="applied\nfunded\ndeclined")
    faithful_emulator.seed_profile(identity="known-0", attributes={"loanStatus": "applied"})
    faithful_emulator.seed_profile(identity="same-0", attributes={"loanStatus": "funded"})
    operator = make_user("olivia", "Operators")
    identities = ["known-0", "same-0"] + [f"new-{n}" for n in range(3)]
    rows = "".join(f"mbox3rdPartyId,{i},funded\n" for i in identities)
    job = importing.import_job_create(
        connection=connection, file_name="funded.csv", by=operator, submit=True,
        file_data=f"identity_type,identity,loan_status\n{rows}".encode())
    importing.import_job_start(job=job, by=operator)
    return job


def test_the_sample_is_read_after_the_page_shows_and_the_estimate_follows(open_page, batch):
    page = open_page()
    login(page, make_user("sam", "Supervisors"))
    page.goto(f"/admin/queue/batch/?import={batch.pk}&sample=5")
    status = page.locator("#batch-estimate-status")
    expect(status).to_contain_text("From the 5 sampled update(s)")
    verdicts = page.locator(".po-verdict")
    expect(verdicts).to_have_count(5)
    assert sorted(verdicts.all_text_contents()) == [
        "changes", "no profile at Target", "no profile at Target", "no profile at Target",
        "unchanged"]
    expect(page.locator("#batch-estimate-shares")).to_contain_text(
        "3 of 5 (60%) have no profile at Target")
    screenshot(page, "batch-at-target-sample")


def test_the_whole_batch_read_shows_progress_then_offers_the_changing_rows_only(open_page, batch):
    from updates import tasks
    from updates.models import BatchRead, ProfileUpdate

    page = open_page()
    login(page, make_user("sam", "Supervisors"))
    page.goto(f"/admin/queue/batch/?import={batch.pk}&sample=5")
    page.get_by_role("button", name="Read the whole batch from Target").click()
    expect(page.locator("#batch-read-progress-text")).to_contain_text("0 of 5 read")
    screenshot(page, "batch-at-target-reading")
    job = BatchRead.objects.get()
    tasks.read_batch(job.pk)  # the django-q2 worker's part
    # The page follows the read and shows what it found once it has ended.
    expect(page.locator("#batch-changing")).to_have_text("1", timeout=15_000)
    expect(page.locator("#batch-left-out summary")).to_contain_text("Left out: 4 updates")
    screenshot(page, "batch-at-target-read")
    page.get_by_role("button", name="Approve only the 1 that change something").click()
    expect(page.locator("ul.messagelist")).to_contain_text("Approved 1 update")
    assert list(ProfileUpdate.objects.filter(status="approved").values_list(
        "identity", flat=True)) == ["known-0"]
    assert ProfileUpdate.objects.filter(status="pending").count() == 4
