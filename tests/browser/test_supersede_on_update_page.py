"""The update page's "Cancel the open update(s) and replace them" (issue 21 item 3), clicked in
Chromium on a phone: the conflict and the offer fit the screen, and the button — part of the
page's own form, posted to ?supersede=1 — submits the update and cancels the open one."""

from __future__ import annotations

import re

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from tests.browser.conftest import PHONE, login, screenshot, sideways_overflow
from tests.conftest import make_connection, make_mapping, make_user
from updates import workflow
from updates.models import AuditEvent, ProfileUpdate, UpdateStatus as S

pytestmark = [pytest.mark.browser,
              pytest.mark.django_db(transaction=True, serialized_rollback=True)]


def test_the_offer_fits_a_phone_and_supersedes_when_clicked(open_page, emulator):
    connection = make_connection("acme", base_url=emulator.base_url)
    make_mapping(connection, "loan_status", "loanStatus", value_type="choice",
                 choices="applied\nfunded\ndeclined")
    operator = make_user("operator", "Operators")
    first = workflow.update_stage(connection=connection, identity_type="mbox3rdPartyId",
                                  identity="cust-1", attributes={"loanStatus": "funded"},
                                  by=operator)
    now = timezone.now()
    second = ProfileUpdate.objects.create(  # staged before the rule: no look at open updates
        connection=connection, identity_type="mbox3rdPartyId", identity="cust-1",
        attributes={"loanStatus": "declined"}, created_by=operator, created_at=now,
        last_edited_by=operator, last_edited_at=now)

    page = open_page(PHONE)
    login(page, operator)
    page.goto(f"/admin/updates/profileupdate/{second.pk}/change/")
    offer = page.get_by_role("button", name=re.compile("Cancel the open update"))
    expect(page.locator(".po-supersede-offer")).to_contain_text(f"#{first.pk} (draft")
    screenshot(page, "supersede-offer-phone")
    assert sideways_overflow(page) == []

    offer.click()
    expect(page.locator(".messagelist")).to_contain_text(f"Submitted 1 update: #{second.pk}.")
    assert ProfileUpdate.objects.get(pk=second.pk).status == S.PENDING
    assert ProfileUpdate.objects.get(pk=first.pk).status == S.CANCELLED
    assert AuditEvent.objects.get(update=first, action="superseded").changes == {
        "superseded_by": second.pk}
