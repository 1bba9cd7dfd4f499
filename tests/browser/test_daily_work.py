"""An operator's and a supervisor's everyday pages in a real browser, at a laptop's 1366×768 and
a phone's 390×844: no edit is lost to a workflow button, a submitted update warns before an edit
sends it back to draft, the export round-trips through the import, and the timeline reads as
prose. Screenshots go to test-artifacts/screenshots/daily-*.png.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import VIEWPORTS, login, screenshot, sideways_overflow
from tests.conftest import make_connection, make_mapping, make_user
from updates import workflow
from updates.models import ProfileUpdate, UpdateStatus

S = UpdateStatus

pytestmark = [pytest.mark.browser,
              pytest.mark.django_db(transaction=True, serialized_rollback=True)]


@pytest.fixture
def acme(db):
    connection = make_connection("acme", label="Acme loans")
    make_mapping(connection, "loan_status", "loanStatus", value_type="choice",
                 choices="applied\nfunded\ndeclined")
    make_mapping(connection, "tier", "loyaltyTier")
    return connection


@pytest.fixture(params=list(VIEWPORTS), ids=list(VIEWPORTS))
def viewport(request):
    return request.param, VIEWPORTS[request.param]


def test_submit_saves_the_unsaved_edit_first_with_one_message(open_page, acme, viewport):
    name, size = viewport
    operator = make_user("olivia", "Operators")
    draft = workflow.update_stage(connection=acme, identity_type="mbox3rdPartyId",
                                  identity="customer-1", attributes={"loanStatus": "funded"},
                                  by=operator)
    page = open_page(size)
    login(page, operator)
    page.goto(f"/admin/updates/profileupdate/{draft.pk}/change/")
    expect(page.locator("#po-unsaved-note")).to_be_hidden()
    page.get_by_label("tier").fill("gold")  # typed, not saved
    expect(page.locator("#po-unsaved-note")).to_be_visible()
    page.get_by_role("button", name="Submit for approval").click()
    messages = page.locator("ul.messagelist li")
    expect(messages).to_have_count(1)
    expect(messages).to_have_text(f"Saved your changes to update #{draft.pk} and submitted it.")
    draft.refresh_from_db()
    assert (draft.status, draft.attributes) == (
        S.PENDING, {"loanStatus": "funded", "loyaltyTier": "gold"})

    # Pending now: the page says, beside the save button, what an edit would do.
    warning = page.locator("#po-draft-warning")
    expect(warning).to_contain_text("sends it back to draft")
    warning.scroll_into_view_if_needed()
    screenshot(page, f"daily-01-submitted-with-edit-{name}")
    assert sideways_overflow(page) == []


def test_a_decision_with_an_unsaved_edit_is_refused_and_keeps_the_edit(open_page, acme, viewport):
    name, size = viewport
    operator = make_user("olivia", "Operators")
    boss = make_user("root", superuser=True)
    pending = workflow.update_submit(update=workflow.update_stage(
        connection=acme, identity_type="mbox3rdPartyId", identity="customer-2",
        attributes={"loanStatus": "funded"}, by=operator), by=operator)
    page = open_page(size)
    login(page, boss)
    page.goto(f"/admin/updates/profileupdate/{pending.pk}/change/")
    page.get_by_label("tier").fill("platinum")
    page.get_by_role("button", name="Approve").click()
    expect(page.locator(".errornote, ul.errorlist").first).to_be_visible()
    expect(page.locator("ul.errorlist").get_by_text("You have unsaved changes")).to_be_visible()
    expect(page.locator("#po-unsaved-note")).to_be_visible()  # the edits are still unsaved
    expect(page.get_by_label("tier")).to_have_value("platinum")
    screenshot(page, f"daily-02-decision-refused-{name}")
    pending.refresh_from_db()
    assert pending.status == S.PENDING and "loyaltyTier" not in pending.attributes


def test_an_export_of_the_filtered_list_is_edited_and_imported_again(open_page, acme, viewport,
                                                                     tmp_path):
    name, size = viewport
    operator = make_user("olivia", "Operators")
    old = workflow.update_stage(connection=acme, identity_type="mbox3rdPartyId",
                                identity="customer-9", by=operator,
                                attributes={"loanStatus": "funded", "loyaltyTier": "gold"})
    workflow.update_stage(connection=acme, identity_type="mbox3rdPartyId", identity="other-1",
                          attributes={"loanStatus": "applied"}, by=operator)
    page = open_page(size)
    login(page, operator)
    page.goto("/admin/updates/profileupdate/?q=customer-9")
    page.get_by_role("link", name="Export these updates").click()
    expect(page.locator("#po-export-list-filters")).to_contain_text('search: "customer-9"')
    page.get_by_label("To edit and import again: identity and values only").check()
    screenshot(page, f"daily-03-export-page-{name}")
    with page.expect_download() as download:
        page.get_by_role("button", name="Download").click()
    exported = tmp_path / "export.csv"
    download.value.save_as(exported)
    text = exported.read_text("utf-8-sig")
    assert text.splitlines() == ["identity_type,identity,loan_status,tier",
                                 "mbox3rdPartyId,customer-9,funded,gold"]

    workflow.update_cancel(update=old, by=operator)
    edited = tmp_path / "edited.csv"
    edited.write_text(text.replace(",gold", ",platinum"), "utf-8-sig")
    page.goto("/admin/updates/importjob/import/")
    page.get_by_label("Target connection").select_option(label=str(acme))
    page.get_by_label("File (CSV or XLSX)").set_input_files(str(edited))
    page.get_by_role("button", name="Check the file").click()
    page.get_by_role("button", name="Import 1 update").click()
    expect(page.get_by_role("link", name="See the imported updates")).to_be_visible()
    new = ProfileUpdate.objects.exclude(pk=old.pk).get(identity="customer-9")
    assert new.attributes == {"loanStatus": "funded", "loyaltyTier": "platinum"}
    assert sideways_overflow(page) == []


def test_a_sent_updates_timeline_reads_as_words_above_the_form(open_page, acme, viewport):
    import datetime as dt

    from django.utils import timezone

    from updates.models import AuditEvent, SendAttempt

    name, size = viewport
    operator = make_user("olivia", "Operators")
    supervisor = make_user("sam", "Supervisors")
    update = workflow.update_stage(connection=acme, identity_type="mbox3rdPartyId",
                                   identity="customer-5", attributes={"loanStatus": "applied"},
                                   by=operator)
    workflow.update_edit(update=update, by=operator,
                         attributes={"loanStatus": "funded", "loyaltyTier": "gold"})
    workflow.update_submit(update=update, by=operator)
    workflow.update_approve(update=update, by=supervisor, comment="checked with the loan file")
    at = timezone.now()
    SendAttempt.objects.create(update=update, connection=acme, number=1, started_at=at,
                               method="GET", request_bytes=120, http_status=503,
                               response_body="Service Unavailable", latency_ms=40,
                               outcome=SendAttempt.Outcome.TRANSIENT, error="HTTP 503")
    AuditEvent.objects.create(
        at=at, action="retry_scheduled", update=update, from_status="sending",
        to_status="approved", changes={"attempt": 1, "http_status": 503, "next_attempt_at": (
            at + dt.timedelta(seconds=43)).isoformat()})
    SendAttempt.objects.create(update=update, connection=acme, number=2,
                               started_at=at + dt.timedelta(seconds=44), method="GET",
                               request_bytes=120, http_status=200, latency_ms=30,
                               response_body="trueRequest successfully submitted",
                               outcome=SendAttempt.Outcome.ACKNOWLEDGED)
    AuditEvent.objects.create(at=at + dt.timedelta(seconds=44), action="acknowledged",
                              update=update, from_status="sending", to_status="sent",
                              changes={"attempt": 2, "http_status": 200})
    ProfileUpdate.objects.filter(pk=update.pk).update(status=S.SENT)

    page = open_page(size)
    login(page, operator)
    page.goto(f"/admin/updates/profileupdate/{update.pk}/change/")
    timeline = page.locator(".po-timeline")
    expect(timeline).to_contain_text("retry scheduled in 43 s")
    expect(timeline).to_contain_text("acknowledged by Target (attempt 2)")
    expect(timeline).to_contain_text("submitted for approval")
    expect(timeline.locator("table.po-changes-table").first).to_be_visible()
    assert "{'" not in timeline.inner_text()
    form_top = page.locator("#profileupdate_form").bounding_box()["y"]
    assert timeline.bounding_box()["y"] < form_top  # sent: what happened comes first
    page.get_by_role("link", name="Timeline").click()
    screenshot(page, f"daily-04-timeline-sent-{name}")
    assert sideways_overflow(page) == []


def test_the_staging_form_uses_labels_skips_the_only_connection_and_shows_every_error(
        open_page, acme, viewport):
    name, size = viewport
    acme.mappings.filter(source_name="loan_status").update(label="Loan status")
    acme.mappings.filter(source_name="tier").update(pattern="[a-z]+")
    operator = make_user("olivia", "Operators")
    page = open_page(size)
    login(page, operator)
    page.goto("/admin/updates/profileupdate/add/")
    expect(page.get_by_label("Loan status")).to_be_visible()  # no connection step: only one
    help_text = page.locator(".form-row", has=page.get_by_label("Loan status")).locator(".help")
    expect(help_text).to_contain_text("Column loan_status in import files.")
    expect(help_text).not_to_contain_text("characters")
    page.get_by_label("Identity type").select_option("mbox3rdPartyId")
    page.get_by_label("Visitor identity").fill("a+b/c")
    page.get_by_label("Loan status").select_option("funded")
    page.get_by_label("tier").fill("Gold 1")  # not [a-z]+
    page.get_by_role("button", name="Save", exact=True).click()
    errors = page.locator("ul.errorlist")
    expect(errors.filter(has_text="may not contain")).to_have_count(1)
    expect(errors.filter(has_text="does not match the required pattern")).to_have_count(1)
    screenshot(page, f"daily-05-staging-errors-{name}")
    assert not ProfileUpdate.objects.exists()


def test_the_dashboard_shows_what_needs_attention_on_a_laptop_and_a_phone(open_page, acme,
                                                                          viewport):
    import datetime as dt

    from django.utils import timezone

    from updates.models import QuotaMinute, SendAttempt

    name, size = viewport
    operator = make_user("olivia", "Operators")
    supervisor = make_user("sam", "Supervisors")
    failed = workflow.update_stage(connection=acme, identity_type="mbox3rdPartyId",
                                   identity="customer-f", attributes={"loanStatus": "funded"},
                                   by=operator)
    ProfileUpdate.objects.filter(pk=failed.pk).update(status=S.FAILED)
    workflow.update_submit(update=workflow.update_stage(
        connection=acme, identity_type="mbox3rdPartyId", identity="customer-p",
        attributes={"loanStatus": "funded"}, by=operator), by=operator)
    now = timezone.now().replace(second=0, microsecond=0)
    for hours_ago, n in ((20, 300_000), (8, 250_000), (1, 120_000)):
        QuotaMinute.objects.create(connection=acme, minute=now - dt.timedelta(hours=hours_ago),
                                   requests=n)
    SendAttempt.objects.create(update=failed, connection=acme, number=1, started_at=now,
                               method="GET", request_bytes=100, http_status=503,
                               outcome=SendAttempt.Outcome.TRANSIENT)

    page = open_page(size)
    login(page, supervisor)
    page.goto("/admin/dashboard/")
    expect(page.locator("#tile-failed.po-tile-alert")).to_contain_text("1")
    expect(page.locator("#tile-pending.po-tile-alert")).to_contain_text("Waiting for approval")
    expect(page.locator("#po-asof")).to_contain_text("UTC")
    expect(page.locator(".po-window-chart").first).to_be_visible()
    expect(page.locator(".po-frees-up").first).to_contain_text("Quota frees up")
    screenshot(page, f"daily-06-dashboard-{name}")
    assert sideways_overflow(page) == []
    page.locator("#tile-pending a.po-tile-main").click()
    page.wait_for_url("**/admin/queue/")  # a supervisor goes straight to the queue


def test_a_supervisor_samples_an_import_and_approves_it_as_one_batch(open_page, acme, viewport):
    from updates import importing

    name, size = viewport
    operator = make_user("olivia", "Operators")
    supervisor = make_user("root", superuser=True)  # may stage too: has an own update
    own = workflow.update_submit(update=workflow.update_stage(
        connection=acme, identity_type="mbox3rdPartyId", identity="sams-own",
        attributes={"loanStatus": "funded"}, by=supervisor), by=supervisor)
    rows = "".join(f"mbox3rdPartyId,imp-{i},funded\n" for i in range(200))
    job = importing.import_job_create(
        connection=acme, file_name="funded.csv", by=operator, submit=True,
        file_data=f"identity_type,identity,loan_status\n{rows}".encode())
    importing.import_job_start(job=job, by=operator)

    page = open_page(size)
    login(page, supervisor)
    page.goto("/admin/queue/")
    # A row the viewer may not decide: buttons disabled, the reason beside them.
    row = page.locator(f"#queue-row-{own.pk}")
    expect(row.get_by_role("button", name="Approve")).to_be_disabled()
    expect(row.locator(".po-blocker")).to_contain_text("four-eyes")
    expect(page.locator(".po-age").first).to_contain_text("waiting")
    screenshot(page, f"daily-07-queue-{name}")

    page.get_by_label("or one import").select_option(str(job.pk))
    page.get_by_role("button", name="Decide this import…").click()
    expect(page.locator("#batch-count")).to_have_text("200")
    expect(page.locator("#batch-cost")).to_have_text("200")
    page.get_by_label("Sample size").select_option("5")
    page.get_by_role("button", name="Draw another sample").click()
    expect(page.locator("#batch-sample tbody > tr[id^=sample-row]")).to_have_count(5)
    screenshot(page, f"daily-08-batch-{name}")
    assert sideways_overflow(page) == []
    page.get_by_role("button", name="Approve all 200").click()
    expect(page.locator("ul.messagelist")).to_contain_text("Approved 200 updates")
    assert ProfileUpdate.objects.filter(status=S.APPROVED).count() == 200
    assert ProfileUpdate.objects.get(pk=own.pk).status == S.PENDING


def test_a_row_is_rejected_with_its_own_reason_in_the_queue(open_page, acme, viewport):
    name, size = viewport
    operator = make_user("olivia", "Operators")
    supervisor = make_user("sam", "Supervisors")
    update = workflow.update_submit(update=workflow.update_stage(
        connection=acme, identity_type="mbox3rdPartyId", identity="customer-r",
        attributes={"loanStatus": "funded"}, by=operator), by=operator)
    page = open_page(size)
    login(page, supervisor)
    page.goto("/admin/queue/")
    row = page.locator(f"#queue-row-{update.pk}")
    row.get_by_text("Reason for this row…").click()
    row.get_by_label(f"Reason to reject #{update.pk}").fill("tier is wrong")
    screenshot(page, f"daily-09-row-reason-{name}")
    row.get_by_role("button", name="Reject").click()
    expect(page.locator("ul.messagelist")).to_contain_text(f"Rejected 1 update: #{update.pk}.")
    update.refresh_from_db()
    assert (update.status, update.decision_comment) == (S.REJECTED, "tier is wrong")


def test_an_administrator_sees_which_alert_fired_and_what_it_said(open_page, acme, viewport):
    from django.utils import timezone

    from updates import alerts
    from updates.models import AlertRule, SendAttempt

    name, size = viewport
    boss = make_user("root", superuser=True)
    operator = make_user("olivia", "Operators")
    rule = AlertRule.objects.create(connection=acme, kind="token_refused",
                                    email_to="ops@example.com")
    update = workflow.update_stage(connection=acme, identity_type="mbox3rdPartyId",
                                   identity="customer-a", attributes={"loanStatus": "funded"},
                                   by=operator)
    SendAttempt.objects.create(update=update, connection=acme, number=1,
                               started_at=timezone.now(), method="GET", request_bytes=1,
                               http_status=401, outcome="permanent")
    alerts.alerts_check()
    page = open_page(size)
    login(page, boss)
    page.goto("/admin/updates/alertrule/")
    expect(page.locator("#result_list")).to_contain_text("firing")
    page.goto(f"/admin/updates/alertrule/{rule.pk}/change/")
    expect(page.get_by_text("refused the bearer token (HTTP 401)")).to_be_visible()
    screenshot(page, f"daily-10-alert-rule-{name}")
    assert "customer-a" not in page.content()


# Each chart text's size in CSS px as drawn: its font-size times the SVG's scale.
_CHART_LABEL_SIZES_JS = """() => [...document.querySelectorAll('svg.po-chart')].flatMap(svg => {
  const scale = svg.getBoundingClientRect().width / svg.viewBox.baseVal.width;
  return [...svg.querySelectorAll('text')].map(
    t => [t.textContent.trim(), parseFloat(t.getAttribute('font-size')) * scale]);
})"""


def test_the_dashboard_fits_a_phone_with_readable_chart_labels(open_page, acme):
    import datetime as dt

    from django.utils import timezone

    from tests.browser.conftest import PHONE
    from updates.models import QuotaMinute

    supervisor = make_user("sam", "Supervisors")
    now = timezone.now().replace(second=0, microsecond=0)
    for hours_ago, n in ((20, 2031), (8, 1000), (1, 57)):  # 3,088 of 1,000,000
        QuotaMinute.objects.create(connection=acme, minute=now - dt.timedelta(hours=hours_ago),
                                   requests=n)
    sent = workflow.update_stage(connection=acme, identity_type="mbox3rdPartyId",
                                 identity="customer-s", attributes={"loanStatus": "funded"},
                                 by=make_user("olivia", "Operators"))
    ProfileUpdate.objects.filter(pk=sent.pk).update(status=S.SENT, acknowledged_at=now)

    page = open_page(PHONE)
    login(page, supervisor)
    page.goto("/admin/dashboard/")
    chart = page.locator(".po-window-chart").first
    expect(chart).to_be_visible()
    expect(chart.locator(".po-limit-off")).to_have_text("limit 1,000,000 — off the scale")
    assert chart.bounding_box()["height"] >= 150
    sizes = page.evaluate(_CHART_LABEL_SIZES_JS)
    assert sizes and min(size for _, size in sizes) >= 11, sizes
    expect(page.locator(".po-frees-up").first).to_contain_text("2,031 on ")
    expect(page.locator("#verification .po-scroll table")).to_be_visible()
    screenshot(page, "daily-07-dashboard-quota-phone")
    assert sideways_overflow(page) == []
