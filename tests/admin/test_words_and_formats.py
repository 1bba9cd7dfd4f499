"""Issue 24 item 4: the update page's timeline speaks people's words (verification events without
`read id 9`, Python lists or raw ISO moments; outcome events numbered like the attempts they
answer, also after a re-queue), a sent update's panel says "What was sent", and the admin's lists
use the app's one date format and thousands separators (connections, import jobs, alerts)."""

from __future__ import annotations

import datetime as dt

from django.urls import reverse
from django.utils import timezone

from tests.helpers import logged_in
from updates import importing
from updates.admin import timeline
from updates.models import AlertEvent, AlertRule, AuditEvent, ImportJob, ProfileUpdate, SendAttempt
from updates.selectors import update_timeline

AT = dt.datetime(2026, 12, 7, 1, 53, 16, tzinfo=dt.timezone.utc)


def change_url(update) -> str:
    return reverse("admin:updates_profileupdate_change", args=[update.pk])


def test_a_verification_event_reads_as_words(client, admin_user, stage):
    update = stage(attributes={"loanStatus": "funded"})
    AuditEvent.objects.create(
        at=AT, action="verified", update=update, connection_id=update.connection_id,
        from_status="sent", to_status="sent", comment="Check 1 of 3: Target shows every sent value.",
        changes={"read_id": 9, "check": 1, "read_outcome": "found",
                 "matching": ["loanStatus", "storeVisits"], "differing": [],
                 "at_target": "loanStatus: 'funded' (modified 2026-12-07T01:52:52.087Z)"})
    page = logged_in(client, admin_user).get(change_url(update)).content.decode()
    timeline_html = page[page.index('id="po-timeline-title"'):]
    for raw in ("read id", "read_id", "[&#x27;", "['", "[]", "2026-12-07T01:52:52", "read outcome"):
        assert raw not in timeline_html, raw
    assert "shows the sent value" in timeline_html
    assert "loanStatus, storeVisits" in timeline_html
    assert "does not show the sent value" in timeline_html and ">none<" in timeline_html
    assert "(modified 2026-12-07 01:52:52 UTC)" in timeline_html


def test_attribute_values_keep_their_exact_text_in_the_timeline():
    # A date-time attribute is shown as stored and sent, not rewritten into the page's format.
    rows = timeline._attribute_rows({}, {"lastCall": "2026-12-07T01:52:52Z"})
    assert rows[0].after == "2026-12-07T01:52:52Z"


def test_outcome_events_are_numbered_like_the_attempts_after_a_requeue(client, admin_user, stage):
    update = stage()
    AuditEvent.objects.filter(update=update).update(at=AT - dt.timedelta(hours=1))
    for number in (1, 2, 3, 4):
        SendAttempt.objects.create(
            update=update, connection_id=update.connection_id, number=number,
            started_at=AT + dt.timedelta(minutes=number), method="GET", request_bytes=300,
            http_status=200 if number == 4 else 503,
            outcome="acknowledged" if number == 4 else "transient")
    # The sender counts attempts since the last re-queue: the fourth attempt is its first. The
    # outcome event is written at the attempt's own instant (listed before it).
    AuditEvent.objects.create(at=AT + dt.timedelta(minutes=3, seconds=30), action="requeued",
                              update=update, connection_id=update.connection_id,
                              from_status="failed", to_status="approved")
    AuditEvent.objects.create(at=AT + dt.timedelta(minutes=4), action="acknowledged",
                              update=update, connection_id=update.connection_id,
                              from_status="sending", to_status="sent", changes={"attempt": 1})
    lines = timeline.timeline_lines(update_timeline(update=update))
    assert [line.title for line in lines if line.kind == "event"][-1] == \
        "acknowledged by Target (attempt 4)"
    page = logged_in(client, admin_user).get(change_url(update)).content.decode()
    assert "acknowledged by Target (attempt 4)" in page
    assert "(attempt 1)" not in page


def test_a_sent_updates_panel_says_what_was_sent(client, admin_user, stage):
    update = stage()
    client = logged_in(client, admin_user)
    assert "What will be sent" in client.get(change_url(update)).content.decode()
    ProfileUpdate.objects.filter(pk=update.pk).update(status="sent", acknowledged_at=AT)
    page = client.get(change_url(update)).content.decode()
    assert "What was sent" in page and "What will be sent" not in page


def test_lists_use_one_date_format_and_thousands_separators(client, admin_user, connection,
                                                            operator):
    connection.quota_limit = 1_000_000
    connection.save(update_fields=["quota_limit"])
    connection.mappings.filter(source_name="note").update(max_length=10_000)
    job = importing.import_job_create(
        connection=connection, file_name="bulk.csv", by=operator,
        file_data=b"identity_type,identity,loan_status\nmbox3rdPartyId,c-1,funded\n")
    ImportJob.objects.filter(pk=job.pk).update(created_at=AT, created_updates=12_345)
    rule = AlertRule.objects.create(connection=connection, kind=AlertRule.Kind.FAILURE_RATE,
                                    threshold=10)
    AlertEvent.objects.create(rule=rule, at=AT, state="firing", text="Failure rate 20%.")
    client = logged_in(client, admin_user)
    pages = {name: client.get(reverse(f"admin:updates_{name}_changelist")).content.decode()
             for name in ("targetconnection", "importjob", "alertevent", "alertrule",
                          "attributemapping")}
    assert "10,000" in pages["attributemapping"]
    assert "1,000,000" in pages["targetconnection"] and "1000000" not in pages["targetconnection"]
    assert "12,345" in pages["importjob"]
    assert "2026-12-07 01:53:16 UTC" in pages["importjob"]
    assert "2026-12-07 01:53:16 UTC" in pages["alertevent"]
    for name, html in pages.items():
        assert "a.m." not in html and "p.m." not in html, name


def test_the_quota_field_keeps_a_plain_number_and_saves(client, admin_user, connection):
    # Separators are for reading: the form's input must still parse (no localize on the field).
    connection.quota_limit = 1_000_000
    connection.save(update_fields=["quota_limit"])
    url = reverse("admin:updates_targetconnection_change", args=[connection.pk])
    page = logged_in(client, admin_user).get(url).content.decode()
    assert 'value="1000000"' in page
    assert "1,000,000" not in page.split('id="id_quota_limit"')[0][-200:]


def test_django_pages_write_dates_in_the_apps_format(client, admin_user, connection):
    # Read-only dates on a Django-rendered page (the connection's record) use it too.
    url = reverse("admin:updates_targetconnection_change", args=[connection.pk])
    page = logged_in(client, admin_user).get(url).content.decode()
    assert f"{timezone.now():%Y-%m-%d}" in page and " UTC" in page
    assert "a.m." not in page and "p.m." not in page


def test_recent_actions_number_attempts_like_the_update_page(client, operator, stage):
    update = stage()
    for number in (1, 2):
        SendAttempt.objects.create(
            update=update, connection_id=update.connection_id, number=number,
            started_at=timezone.now(), method="GET", request_bytes=300, http_status=200,
            outcome="acknowledged")
    AuditEvent.objects.create(at=timezone.now(), action="acknowledged", update=update,
                              connection_id=update.connection_id, from_status="sending",
                              to_status="sent", changes={"attempt": 1})
    html = logged_in(client, operator).get(reverse("admin:index")).content.decode()
    assert "acknowledged by Target (attempt 2)" in html
    assert "acknowledged by Target (attempt 1)" not in html
