"""What people expect of any page, checked in Chromium at a laptop's 1366×768: every form field
has a label and a help text, every action answers with a message, no page logs a console error
(the `open_page` fixture fails the test on any) and no key page scrolls sideways.

The data is deliberately awkward where it is realistic: an unbroken 256-character identity and a
1,000-character value, which must wrap rather than widen the page.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import login, screenshot, sideways_overflow
from tests.conftest import make_connection, make_mapping, make_user
from updates import sending, workflow
from updates.models import AttributeMapping, ProfileUpdate, TargetConnection, UpdateStatus

S = UpdateStatus
Type = AttributeMapping.ValueType

pytestmark = [pytest.mark.browser,
              pytest.mark.django_db(transaction=True, serialized_rollback=True)]

LONG_IDENTITY = "x" * 200 + "-" + "7" * 55  # 256 characters, no space to break at
LONG_VALUE = "A" * 1000

# Every labelable control in the page's main content: (name, labelled?, described?). A control
# counts as labelled by a non-empty <label> (for= or wrapping), aria-label or aria-labelledby, and
# as described when aria-describedby points at non-empty text — which is how the admin ties a
# help text to its field, and what a screen reader reads. Row-selection checkboxes need a label
# but no help text.
FIELDS_JS = """
() => {
  const text = (ids) => (ids || "").split(/\\s+/).filter(Boolean)
      .some((id) => { const el = document.getElementById(id); return el && el.textContent.trim(); });
  const skip = new Set(["hidden", "submit", "button", "reset", "image"]);
  const selector = "input.queue-select, #queue-select-all, input.action-select, #action-toggle";
  return Array.from(document.querySelectorAll(
      "#content-main form input, #content-main form select, #content-main form textarea, " +
      // controls that belong to a form elsewhere on the page (form="…")
      "#content-main input[form], #content-main select[form], #content-main textarea[form]"))
    .filter((el) => !skip.has((el.getAttribute("type") || "").toLowerCase()))
    .map((el) => [
      el.name || el.id,
      Array.from(el.labels || []).some((l) => l.textContent.trim()) ||
        !!(el.getAttribute("aria-label") || "").trim() || text(el.getAttribute("aria-labelledby")),
      el.matches(selector) || text(el.getAttribute("aria-describedby")),
    ]);
}
"""


def form_fields(page: Any) -> list[tuple[str, bool, bool]]:
    return [tuple(row) for row in page.evaluate(FIELDS_JS)]


@pytest.fixture
def scene(emulator) -> dict[str, Any]:
    """Users of each role, a connection with one mapping of every value type, and updates in
    several states (one sent to the emulator, so its page has an attempt)."""
    connection = make_connection("acme", label="Acme loans", base_url=emulator.base_url)
    for value_type in Type.values:
        extra = {"choices": "applied\nfunded\ndeclined"} if value_type == Type.CHOICE else {}
        make_mapping(connection, f"{value_type}_field", f"{value_type}Attr", value_type=value_type,
                     **extra)
    make_mapping(connection, "note", "callNote", max_length=1000)
    operator = make_user("olivia", "Operators")
    supervisor = make_user("sam", "Supervisors")
    admin = make_user("ada", superuser=True)

    def stage(identity: str, **attributes: str) -> ProfileUpdate:
        return workflow.update_stage(connection=connection, by=operator,
                                     identity_type="mbox3rdPartyId", identity=identity,
                                     attributes=attributes or {"textAttr": "gold"})

    draft = stage("customer-draft")
    long = workflow.update_submit(update=stage(LONG_IDENTITY, callNote=LONG_VALUE), by=operator)
    sent = workflow.update_submit(update=stage("customer-sent"), by=operator)
    workflow.update_approve(update=sent, by=supervisor)
    assert sending.send_due(connection=connection).acknowledged == 1
    return {"connection": connection, "operator": operator, "supervisor": supervisor,
            "admin": admin, "draft": draft, "long": long, "sent": sent}


def change_url(update: ProfileUpdate) -> str:
    return f"/admin/updates/profileupdate/{update.pk}/change/"


def test_every_form_field_has_a_label_and_a_help_text(open_page, scene):
    connection = scene["connection"]
    forms = {
        "operator": [
            ("choose connection", "/admin/updates/profileupdate/add/"),
            ("staging form", f"/admin/updates/profileupdate/add/?connection={connection.pk}"),
            ("editing a draft", change_url(scene["draft"])),
            ("new mapping", "/admin/updates/attributemapping/add/"),
            ("import", "/admin/updates/importjob/import/"),
            ("export", "/admin/updates/importjob/export/"),
        ],
        "supervisor": [
            ("approval queue", "/admin/queue/"),
            ("pending update page", change_url(scene["long"])),
        ],
        "admin": [
            ("new connection", "/admin/updates/targetconnection/add/"),
            ("existing connection", f"/admin/updates/targetconnection/{connection.pk}/change/"),
        ],
    }
    unlabelled, undescribed, checked = [], [], {}
    for role, pages in forms.items():
        page = open_page()
        login(page, scene[role])
        for what, url in pages:
            page.goto(url)
            fields = form_fields(page)
            checked[what] = len(fields)
            unlabelled += [f"{what}: {name}" for name, labelled, _ in fields if not labelled]
            undescribed += [f"{what}: {name}" for name, _, described in fields if not described]

    assert all(checked.values()), f"a form without fields — wrong page? {checked}"
    # One field per mapping, so every value type's widget is among them.
    assert checked["staging form"] >= len(Type.values) + 4
    assert not unlabelled, "fields without a label:\n" + "\n".join(unlabelled)
    assert not undescribed, "fields without a help text:\n" + "\n".join(undescribed)


def test_the_key_pages_fit_a_laptop_screen_without_sideways_scrolling(open_page, scene):
    pages = {
        "operator": [
            ("update list", "/admin/updates/profileupdate/"),
            ("staging form", f"/admin/updates/profileupdate/add/?connection={scene['connection'].pk}"),
            ("draft update page", change_url(scene["draft"])),
            ("import", "/admin/updates/importjob/import/"),
            ("export", "/admin/updates/importjob/export/"),
        ],
        "supervisor": [
            ("approval queue", "/admin/queue/"),
            ("pending update page (long values)", change_url(scene["long"])),
            ("sent update page (timeline)", change_url(scene["sent"])),
            ("dashboard", "/admin/dashboard/"),
        ],
        "admin": [
            ("admin index", "/admin/"),
            ("connection list", "/admin/updates/targetconnection/"),
            ("mapping list", "/admin/updates/attributemapping/"),
        ],
    }
    too_wide = []
    for role, visits in pages.items():
        page = open_page()
        login(page, scene[role])
        for what, url in visits:
            response = page.goto(url)
            assert response is not None and response.status == 200, f"{what}: {url}"
            overflow = sideways_overflow(page)
            if overflow:
                too_wide.append(f"{what} ({url}): " + "; ".join(overflow))
                screenshot(page, "too-wide-" + re.sub(r"\W+", "-", what))
    assert not too_wide, "\n".join(too_wide)


def test_every_action_answers_with_a_message(open_page, scene):
    draft, long = scene["draft"], scene["long"]
    notice = "ul.messagelist"

    page = open_page()
    login(page, scene["operator"])
    # A list action with nothing selected.
    page.goto("/admin/updates/profileupdate/")
    page.locator('select[name="action"]').select_option("submit_selected")
    page.get_by_role("button", name="Go").click()
    expect(page.locator(notice)).to_contain_text(
        "Items must be selected in order to perform actions on them. No items have been changed.")
    # A staging form with a wrong value: the error note and the field's own message.
    page.goto(f"/admin/updates/profileupdate/add/?connection={scene['connection'].pk}")
    page.get_by_label("Visitor identity").fill("customer-9")
    page.get_by_label("integer_field").fill("twelve")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".errornote")).to_be_visible()
    expect(page.locator(".form-row.field-attr_" + str(
        scene["connection"].mappings.get(source_name="integer_field").pk) + " .errorlist")
    ).not_to_be_empty()
    # The change page's workflow button.
    page.goto(change_url(draft))
    page.get_by_role("button", name="Submit for approval").click()
    expect(page.locator(notice)).to_contain_text(f"Submitted 1 update: #{draft.pk}.")
    # A new mapping.
    page.goto("/admin/updates/attributemapping/add/")
    page.get_by_label("Connection").select_option(label=str(scene["connection"]))
    page.get_by_label("Source name").fill("segment")
    page.get_by_label("Target name").fill("segment")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(notice)).to_contain_text("was added successfully")

    page = open_page()
    login(page, scene["supervisor"])
    page.goto("/admin/queue/")
    page.locator(f"#queue-select-{long.pk}").check()
    page.get_by_role("button", name="Reject selected").click()
    expect(page.locator(notice)).to_contain_text(
        "A rejection needs a comment saying why; nothing was rejected.")
    assert ProfileUpdate.objects.get(pk=long.pk).status == S.PENDING
    page.locator(f"#queue-select-{long.pk}").check()
    page.get_by_label("Comment").fill("Value too long for the call centre screen.")
    page.get_by_role("button", name="Reject selected").click()
    expect(page.locator(notice)).to_contain_text(f"Rejected 1 update: #{long.pk}.")
    screenshot(page, "07-queue-after-reject")

    page = open_page()
    login(page, scene["admin"])
    page.goto("/admin/updates/targetconnection/add/")
    page.get_by_label("Label").fill("Beta shop")
    page.get_by_label("Client code").fill("beta")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(notice)).to_contain_text("was added successfully")
    assert TargetConnection.objects.filter(client_code="beta").exists()
