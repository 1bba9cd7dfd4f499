"""The whole path in a real browser: an operator stages and submits an update, a supervisor
approves it in the queue, the sender delivers it to the emulator, and the update page and the
dashboard show the result. Screenshots of each key page go to test-artifacts/screenshots/.

The live server answers from another thread, so the data must be committed (transaction=True);
serialized_rollback brings back what the data migrations created (roles, the send schedule) for
the tests that follow.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import login, screenshot
from tests.conftest import make_connection, make_mapping, make_user
from updates import sending, workflow
from updates.models import ProfileUpdate, SendAttempt, UpdateStatus

S = UpdateStatus

pytestmark = [pytest.mark.browser,
              pytest.mark.django_db(transaction=True, serialized_rollback=True)]


@pytest.fixture
def acme(emulator):
    connection = make_connection("acme", label="Acme loans", base_url=emulator.base_url)
    make_mapping(connection, "loan_status", "loanStatus", value_type="choice",
                 choices="applied\nfunded\ndeclined", help_text="From the loan system.")
    make_mapping(connection, "tier", "loyaltyTier")
    return connection


def test_an_update_goes_from_staging_through_approval_to_acknowledgment_and_the_dashboard(
        open_page, acme, emulator):
    operator = make_user("olivia", "Operators")
    supervisor = make_user("sam", "Supervisors")

    # --- the operator stages the update through the add form ---------------------------
    page = open_page()
    login(page, operator)
    page.get_by_role("link", name="Stage an update").click()
    # The only active connection: the connection step is skipped.
    expect(page.get_by_label("Visitor identity")).to_be_visible()
    page.get_by_label("Identity type").select_option("mbox3rdPartyId")
    page.get_by_label("Visitor identity").fill("customer-4711")
    page.get_by_label("loan_status").select_option("funded")
    page.get_by_label("tier").fill("gold")
    page.get_by_label("Reason").fill("loan funded — call centre")
    screenshot(page, "01-add-form")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator("ul.messagelist")).to_contain_text(re.compile(
        r"Update #\d+ is staged as a draft\. Submit it for approval when it is ready"))

    update = ProfileUpdate.objects.get()
    assert (update.status, update.identity, update.attributes) == (
        S.DRAFT, "customer-4711", {"loanStatus": "funded", "loyaltyTier": "gold"})

    # --- and submits it with the list's action ------------------------------------------
    page.locator(f'input[name="_selected_action"][value="{update.pk}"]').check()
    page.locator('select[name="action"]').select_option("submit_selected")
    page.get_by_role("button", name="Go").click()
    expect(page.locator("ul.messagelist")).to_contain_text(f"Submitted 1 update: #{update.pk}.")
    screenshot(page, "02-update-list")
    update.refresh_from_db()
    assert update.status == S.PENDING

    # --- the supervisor approves it in the queue, seeing what will be sent -------------
    page = open_page()
    login(page, supervisor)
    page.get_by_role("link", name="Approval queue").first.click()
    row = page.locator(f"#queue-row-{update.pk}")
    expect(row).to_contain_text("customer-4711")
    expect(row).to_contain_text("profile.loanStatus")
    expect(row).to_contain_text("funded")
    expect(row).to_contain_text("quota cost 1")
    screenshot(page, "03-approval-queue")
    row.get_by_role("button", name="Approve").click()
    expect(page.locator("ul.messagelist")).to_contain_text(f"Approved 1 update: #{update.pk}.")
    update.refresh_from_db()
    assert update.status == S.APPROVED

    # --- the sender runs: the same service the django-q2 schedule calls ----------------
    run = sending.send_due()
    assert run.acknowledged == 1
    [received] = emulator.received
    assert (received["identity"], received["attributes"]) == (
        "customer-4711", {"loanStatus": "funded", "loyaltyTier": "gold"})

    # --- the update page shows it acknowledged, with its attempt on the timeline --------
    page.goto(f"/admin/updates/profileupdate/{update.pk}/change/")
    expect(page.locator(".po-state .po-status")).to_have_text("Sent (acknowledged)")
    attempt = page.locator(".po-timeline .po-attempt")
    expect(attempt).to_have_count(1)
    expect(attempt).to_contain_text("attempt 1")
    expect(attempt).to_contain_text("HTTP 200")
    expect(page.locator(".po-timeline")).to_contain_text("approved by sam pending → approved")
    acknowledged = page.locator(".po-timeline .po-event").filter(has_text="acknowledged by")
    expect(acknowledged).to_contain_text("acknowledged by Target (attempt 1) by the system")
    screenshot(page, "04-update-timeline")
    assert SendAttempt.objects.filter(update=update, http_status=200).count() == 1

    # --- and the dashboard counts the request -------------------------------------------
    page.get_by_role("link", name="Dashboard").first.click()
    card = page.locator(f"#connection-{acme.pk}")
    expect(card.locator(".po-window-requests")).to_have_text("1")
    expect(card).to_contain_text("totals: 1 request, 1 acknowledged, 0 failed")
    expect(page.locator('#status-counts td[data-status="sent"]')).to_have_text("1")
    screenshot(page, "05-dashboard")


def test_an_administrator_approving_their_own_update_is_refused_by_the_four_eyes_rule(
        open_page, acme):
    admin = make_user("ada", superuser=True)
    update = workflow.update_stage(connection=acme, by=admin, identity_type="mbox3rdPartyId",
                                   identity="customer-1", attributes={"loyaltyTier": "gold"})
    workflow.update_submit(update=update, by=admin)

    page = open_page()
    login(page, admin)
    page.goto("/admin/queue/")
    row = page.locator(f"#queue-row-{update.pk}")
    expect(row).to_contain_text("Yours: under the four-eyes rule someone else must decide.")
    # The row's own buttons are disabled, with the workflow's reason beside them…
    expect(row.get_by_role("button", name="Approve")).to_be_disabled()
    expect(row.locator(".po-blocker")).to_contain_text("four-eyes rule")
    # …and approving it with the selection is refused by the service, by name.
    row.locator("input.queue-select").check()
    page.get_by_role("button", name="Approve selected").click()

    expect(page.locator("ul.messagelist li.error")).to_contain_text([
        "1 update was not approved:",
        re.compile(rf"Update #{update.pk}: you created it or changed its identity or attributes, "
                   r"so someone else must decide on it \(four-eyes rule\)\."),
    ])
    screenshot(page, "06-four-eyes-refusal")
    assert ProfileUpdate.objects.get(pk=update.pk).status == S.PENDING
