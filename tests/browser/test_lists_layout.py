"""Lists at a laptop's 1366×768 and a phone's 390×844: nothing clipped on the mapping, import job
and schedule lists, the quota field holds a million, the update list has sent-at and next-attempt
columns and keeps status beside identity on a phone, and an identity search that finds nothing
says the search is case-sensitive. Screenshots: test-artifacts/screenshots/lists-*.png."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import PHONE, login, screenshot, sideways_overflow
from tests.conftest import make_connection, make_mapping, make_user
from updates import importing, workflow

pytestmark = [pytest.mark.browser,
              pytest.mark.django_db(transaction=True, serialized_rollback=True)]


@pytest.fixture
def scene(db):
    connection = make_connection("acme-long-client-code", label="Acme consumer loans (production)")
    for i in range(4):
        make_mapping(connection, f"loan_status_with_a_long_source_name_{i}",
                     f"loanStatusWithALongTargetAttributeName{i}", value_type="choice",
                     choices="applied\nfunded", help_text="From the loan system, nightly.")
    operator = make_user("olivia", "Operators")
    importing.import_job_create(
        connection=connection, file_name="a-rather-long-file-name-from-the-loan-system-2026.csv",
        by=operator, file_data=b"identity_type,identity,loan_status_with_a_long_source_name_0\n"
                               b"mbox3rdPartyId,c-1,funded\n")
    workflow.update_stage(connection=connection, identity_type="mbox3rdPartyId",
                          identity="Customer-ABC", by=operator,
                          attributes={"loanStatusWithALongTargetAttributeName0": "funded"})
    return {"connection": connection, "operator": operator,
            "admin": make_user("root", superuser=True)}


def test_the_admin_lists_fit_a_laptop_screen(open_page, scene):
    page = open_page()
    login(page, scene["admin"])
    too_wide = []
    for what, url in [("mappings", "/admin/updates/attributemapping/"),
                      ("import jobs", "/admin/updates/importjob/"),
                      ("schedules", "/admin/django_q/schedule/"),
                      ("updates", "/admin/updates/profileupdate/")]:
        page.goto(url)
        screenshot(page, f"lists-{what.replace(' ', '-')}-laptop")
        if overflow := sideways_overflow(page):
            too_wide.append(f"{what}: " + "; ".join(overflow))
    assert not too_wide, "\n".join(too_wide)


def test_the_quota_field_shows_a_million(open_page, scene):
    page = open_page()
    login(page, scene["admin"])
    page.goto(f"/admin/updates/targetconnection/{scene['connection'].pk}/change/")
    field = page.locator("#id_quota_limit")
    field.fill("1000000")
    fits = field.evaluate("el => el.scrollWidth <= el.clientWidth")
    screenshot(page, "lists-quota-field-laptop")
    assert fits


def test_the_update_list_has_sent_and_next_attempt_columns_and_a_case_hint(open_page, scene):
    page = open_page()
    login(page, scene["operator"])
    page.goto("/admin/updates/profileupdate/")
    headers = page.locator("#result_list thead")
    expect(headers).to_contain_text(re.compile("sent at", re.I))
    expect(headers).to_contain_text(re.compile("next attempt", re.I))
    page.goto("/admin/updates/profileupdate/?q=customer-abc")
    expect(page.locator(".po-search-hint")).to_contain_text("case-sensitive")
    screenshot(page, "lists-search-hint-laptop")


def test_on_a_phone_the_update_list_keeps_status_beside_identity(open_page, scene):
    page = open_page(PHONE)
    login(page, scene["operator"])
    page.goto("/admin/updates/profileupdate/")
    row = page.locator("#result_list tbody tr").first
    identity = row.locator(".po-value").first
    status = row.locator(".po-status:visible").first
    expect(status).to_be_visible()
    id_box, status_box = identity.bounding_box(), status.bounding_box()
    assert status_box["x"] + status_box["width"] <= PHONE["width"]  # on screen, no scrolling
    assert abs(status_box["y"] - id_box["y"]) < 60  # beside (or just under) the identity
    screenshot(page, "lists-updates-phone")
