"""The live diff in a real browser: the queue appears at once with "reading…", then shows per
attribute what Target holds and whether the update changes it — read over real HTTP from the
faithful emulator, and customer values rendered as text, never as markup."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import login, screenshot
from tests.conftest import make_connection, make_mapping, make_user
from updates import reading, workflow

pytestmark = [pytest.mark.browser,
              pytest.mark.django_db(transaction=True, serialized_rollback=True)]


def test_the_queue_shows_what_each_update_changes_at_target(open_page, faithful_emulator):
    reading.read_limiter.reset()
    connection = make_connection("acme", label="Acme loans", base_url=faithful_emulator.base_url)
    make_mapping(connection, "tier", "loyaltyTier")
    make_mapping(connection, "note", "callNote")
    operator, supervisor = make_user("olivia", "Operators"), make_user("sam", "Supervisors")
    faithful_emulator.seed_profile(identity="known", attributes={
        "loyaltyTier": "gold", "callNote": "<img src=x onerror=alert(1)>"})
    known = workflow.update_stage(connection=connection, identity_type="mbox3rdPartyId",
                                  identity="known", by=operator,
                                  attributes={"loyaltyTier": "gold", "callNote": "called back"})
    unknown = workflow.update_stage(connection=connection, identity_type="mbox3rdPartyId",
                                    identity="stranger", by=operator,
                                    attributes={"loyaltyTier": "silver"})
    for update in (known, unknown):
        workflow.update_submit(update=update, by=operator)

    page = open_page()
    login(page, supervisor)
    page.goto(page.url.split("/admin/")[0] + "/admin/queue/")

    known_row = page.locator(f"#queue-row-{known.pk} .po-live-diff")
    unknown_row = page.locator(f"#queue-row-{unknown.pk} .po-live-diff")
    expect(unknown_row).to_contain_text("Target has no profile for this visitor — the update "
                                        "will be acknowledged but not applied.")
    expect(known_row).to_contain_text("1 of 2 attribute(s) change.")
    expect(known_row.locator(".po-diff-same")).to_contain_text("already holds it")
    expect(known_row.locator(".po-diff-changes")).to_contain_text("<img src=x onerror=alert(1)>")
    assert known_row.locator("img").count() == 0
    screenshot(page, "live-diff-queue")
