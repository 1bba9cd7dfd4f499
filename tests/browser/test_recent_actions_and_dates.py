"""Issue 13's last daily-work items in a real browser, at 1366×768 and 390×844: the admin
index's *Recent actions* tells an operator what happened to their updates and links to them; the
update form's dates and times all use the admin's labelled date (+ time) inputs and their
shortcuts; the emulator's received list reads as a table, its values shown as text, never run.
Screenshots go to test-artifacts/screenshots/recent-*.png.
"""

from __future__ import annotations

import re

import pytest
import requests
from playwright.sync_api import expect

from tests.browser.conftest import VIEWPORTS, login, screenshot
from tests.conftest import make_connection, make_mapping, make_user
from updates import workflow
from updates.models import ProfileUpdate
from updates.target import build_request

pytestmark = [pytest.mark.browser,
              pytest.mark.django_db(transaction=True, serialized_rollback=True)]


@pytest.fixture(params=list(VIEWPORTS), ids=list(VIEWPORTS))
def viewport(request):
    return request.param, VIEWPORTS[request.param]


@pytest.fixture
def acme(db):
    connection = make_connection("acme", label="Acme loans")
    make_mapping(connection, "tier", "loyaltyTier")
    return connection


def test_recent_actions_show_what_happened_to_my_updates_and_open_them(open_page, acme,
                                                                       viewport):
    name, size = viewport
    operator = make_user("olivia", "Operators")
    supervisor = make_user("sam", "Supervisors")
    update = workflow.update_stage(connection=acme, identity_type="mbox3rdPartyId",
                                   identity="customer-1", attributes={"loyaltyTier": "gold"},
                                   by=operator)
    workflow.update_submit(update=update, by=operator)
    workflow.update_approve(update=update, by=supervisor)

    page = open_page(size)
    login(page, operator)
    items = page.locator("#recent-workflow-events li")
    expect(items).to_have_count(3)
    expect(items.first).to_contain_text(f"Update #{update.pk}: approved")
    expect(items.first).to_contain_text("sam")
    expect(items.nth(1)).to_contain_text("submitted for approval")
    page.locator("#recent-actions-module").scroll_into_view_if_needed()
    screenshot(page, f"recent-01-index-{name}")
    items.first.get_by_role("link", name=f"Update #{update.pk}").click()
    page.wait_for_url(re.compile(rf"/admin/updates/profileupdate/{update.pk}/change/$"))


def test_every_date_and_time_on_the_update_form_has_one_labelled_style(open_page, acme,
                                                                       viewport):
    name, size = viewport
    funded = make_mapping(acme, "funded_on", "fundedOn", value_type="date", label="Funded on")
    called = make_mapping(acme, "called_at", "calledAt", value_type="datetime",
                          label="Called at")
    operator = make_user("olivia", "Operators")
    page = open_page(size)
    login(page, operator)
    page.goto(f"/admin/updates/profileupdate/add/?connection={acme.pk}")
    page.get_by_label("Identity type").select_option("mbox3rdPartyId")
    page.get_by_label("Visitor identity").fill("customer-7")
    # Each input carries a label; the date and time inputs look and work alike everywhere.
    expect(page.locator("input[type=date], input[type=datetime-local]")).to_have_count(0)
    expect(page.locator("input.vDateField")).to_have_count(3)
    expect(page.locator("input.vTimeField")).to_have_count(2)
    expect(page.get_by_label("Funded on")).to_have_class(re.compile("vDateField"))
    expect(page.get_by_label("Called at")).to_have_class(re.compile("vDateField"))
    page.locator(f"#id_attr_{called.pk}_1").fill("10:30:05")
    page.get_by_label("Called at").fill("2026-05-01")
    # The admin's "Today" shortcut beside the date mapping works as on the earliest send time.
    page.locator(f"#id_attr_{funded.pk}").locator("xpath=..").get_by_role(
        "link", name="Today").click()
    expect(page.get_by_label("Funded on")).to_have_value(re.compile(r"^\d{4}-\d{2}-\d{2}$"))
    page.locator(".submit-row").scroll_into_view_if_needed()
    screenshot(page, f"recent-02-date-widgets-{name}")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator("ul.messagelist li")).to_have_count(1)
    update = ProfileUpdate.objects.get()
    assert update.attributes["calledAt"] == "2026-05-01T10:30:05Z"
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", update.attributes["fundedOn"])


def test_the_emulators_received_table_shows_hostile_values_as_text(open_page, emulator,
                                                                   viewport):
    name, size = viewport
    hostile = "<img src=x onerror=alert(1)>"
    req = build_request(base_url=emulator.base_url, client_code="acme",
                        identity_type="mbox3rdPartyId", identity=hostile,
                        attributes={"loyaltyTier": hostile})
    requests.request(req.method, req.url, data=req.body, headers=req.headers, timeout=5)

    page = open_page(size)
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(f"{emulator.base_url}/_emulator/received.html")
    row = page.locator("tbody tr")
    expect(row).to_have_count(1)
    expect(row.locator("td").nth(2)).to_have_text(hostile)
    expect(row.locator("td").nth(3)).to_have_text(f"loyaltyTier = {hostile}")
    expect(row.locator("td").nth(4)).to_have_text("acknowledged (HTTP 200)")
    expect(page.locator("img")).to_have_count(0)
    assert dialogs == []
    screenshot(page, f"recent-03-emulator-received-{name}")
