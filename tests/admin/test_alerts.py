"""The alert admin: rules with a write-only webhook URL, and the alerts they sent, read-only."""

from __future__ import annotations

from django.utils import timezone

from updates import alerts
from updates.models import AlertEvent, AlertRule, SendAttempt

SECRET_URL = "https://hooks.example.com/services/T000/B000/SECRET-PART"


def test_the_webhook_url_is_write_only_and_kept_when_left_empty(client, admin_user, connection):
    client.force_login(admin_user)
    response = client.post("/admin/updates/alertrule/add/", {
        "connection": connection.pk, "kind": "token_refused", "threshold": "0",
        "window_minutes": "60", "min_requests": "20", "email_to": "ops@example.com",
        "webhook_url": SECRET_URL, "active": "on", "events-TOTAL_FORMS": "0",
        "events-INITIAL_FORMS": "0", "events-MIN_NUM_FORMS": "0", "events-MAX_NUM_FORMS": "0"})
    assert response.status_code == 302, response.content.decode()[:2000]
    rule = AlertRule.objects.get()
    assert rule.webhook_url == SECRET_URL
    page = client.get(f"/admin/updates/alertrule/{rule.pk}/change/").content.decode()
    assert "SECRET-PART" not in page and "set (hidden)" in page
    listing = client.get("/admin/updates/alertrule/").content.decode()
    assert "SECRET-PART" not in listing and "email, webhook" in listing

    client.post(f"/admin/updates/alertrule/{rule.pk}/change/", {
        "connection": connection.pk, "kind": "token_refused", "threshold": "0",
        "window_minutes": "60", "min_requests": "20", "email_to": "", "webhook_url": "",
        "active": "on", "events-TOTAL_FORMS": "0", "events-INITIAL_FORMS": "0",
        "events-MIN_NUM_FORMS": "0", "events-MAX_NUM_FORMS": "0"})
    rule.refresh_from_db()
    assert rule.webhook_url == SECRET_URL and rule.email_to == ""


def test_a_rules_page_lists_what_it_sent(client, admin_user, connection, stage):
    rule = AlertRule.objects.create(connection=connection, kind="token_refused")
    SendAttempt.objects.create(update=stage(), connection=connection, number=1,
                               started_at=timezone.now(), method="GET", request_bytes=1,
                               http_status=401, outcome="permanent")
    [event] = alerts.alerts_check()
    client.force_login(admin_user)
    page = client.get(f"/admin/updates/alertrule/{rule.pk}/change/").content.decode()
    assert "refused the bearer token (HTTP 401)" in page
    listing = client.get("/admin/updates/alertevent/").content.decode()
    assert "refused the bearer token" in listing
    assert client.get(f"/admin/updates/alertevent/{event.pk}/delete/").status_code == 403
    assert AlertEvent.objects.count() == 1


def _rule_form(connection, **overrides):
    data = {"connection": connection.pk, "kind": "token_refused", "threshold": "0",
            "window_minutes": "60", "min_requests": "20", "email_to": "", "webhook_url": "",
            "active": "on", "events-TOTAL_FORMS": "0", "events-INITIAL_FORMS": "0",
            "events-MIN_NUM_FORMS": "0", "events-MAX_NUM_FORMS": "0"}
    return {**data, **overrides}


def test_the_form_refuses_a_webhook_that_may_never_be_delivered_to(client, admin_user,
                                                                    connection):
    client.force_login(admin_user)
    for url in ("ftp://hooks.example.com/SECRET-PART", "http://169.254.169.254/SECRET-PART",
                "https://user:SECRET-PART@hooks.example.com/x"):
        response = client.post("/admin/updates/alertrule/add/",
                               _rule_form(connection, webhook_url=url))
        assert response.status_code == 200, url
        page = response.content.decode()
        assert "errorlist" in page and "SECRET-PART" not in page, url
    assert not AlertRule.objects.exists()


def test_send_a_test_alert_shows_the_receivers_status(client, admin_user, operator, connection):
    from tests.services.test_alerts import Receiver

    hook = Receiver(status=404)
    try:
        rule = AlertRule.objects.create(connection=connection, kind="token_refused",
                                        webhook_url=hook.url)
        client.force_login(admin_user)
        page = client.get(f"/admin/updates/alertrule/{rule.pk}/change/").content.decode()
        assert "Send a test alert" in page
        response = client.post(f"/admin/updates/alertrule/{rule.pk}/test/", follow=True)
        messages = [str(m) for m in response.context["messages"]]
        assert messages == ["Test alert sent: the webhook answered HTTP 404. Not delivered: "
                            "webhook: HTTP 404"]
        assert hook.bodies[0]["text"].startswith("Test alert — ")

        client.force_login(operator)
        assert client.post(f"/admin/updates/alertrule/{rule.pk}/test/").status_code == 403
        assert client.get(f"/admin/updates/alertrule/{rule.pk}/test/").status_code == 405
        assert len(hook.bodies) == 1
    finally:
        hook.close()


def test_the_rule_list_gives_thresholds_with_their_unit(client, admin_user, connection):
    # Before: "10.00" without a unit.
    AlertRule.objects.create(connection=connection, kind="failure_rate", threshold=10,
                             min_requests=5000, window_minutes=30)
    AlertRule.objects.create(connection=connection, kind="waiting", threshold=4)
    client.force_login(admin_user)
    listing = client.get("/admin/updates/alertrule/").content.decode()
    assert "10 % of at least 5,000 requests in 30 minutes" in listing
    assert "waiting 4 hours" in listing and "10.00" not in listing


def test_a_rule_saved_from_the_form_with_an_empty_threshold_takes_the_kinds_default(
        client, admin_user, connection):
    client.force_login(admin_user)
    add = client.get("/admin/updates/alertrule/add/").content.decode()
    assert 'name="threshold" value="0' not in add  # nothing pre-filled that would fire at once
    response = client.post("/admin/updates/alertrule/add/",
                           _rule_form(connection, kind="failure_rate", threshold=""))
    assert response.status_code == 302, response.content.decode()[:2000]
    assert AlertRule.objects.get().threshold == 10


def test_a_supervisor_sees_rules_and_events_read_only(client, supervisor, connection, stage):
    rule = AlertRule.objects.create(connection=connection, kind="token_refused",
                                    webhook_url=SECRET_URL, email_to="ops@example.com")
    SendAttempt.objects.create(update=stage(), connection=connection, number=1,
                               started_at=timezone.now(), method="GET", request_bytes=1,
                               http_status=401, outcome="permanent")
    [event] = alerts.alerts_check()
    client.force_login(supervisor)
    listing = client.get("/admin/updates/alertrule/").content.decode()
    assert "any refusal (HTTP 401 or 403)" in listing
    assert "/admin/updates/alertrule/add/" not in listing  # no add button
    page = client.get(f"/admin/updates/alertrule/{rule.pk}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "refused the bearer token (HTTP 401)" in html  # the events, inline
    assert "SECRET-PART" not in html and "set (hidden)" in html
    assert 'name="_save"' not in html and 'name="webhook_url"' not in html
    assert "Send a test alert" not in html and f"/{rule.pk}/test/" not in html
    events = client.get("/admin/updates/alertevent/").content.decode()
    assert "refused the bearer token" in events
    assert client.get(f"/admin/updates/alertevent/{event.pk}/change/").status_code == 200
    # Nothing changes through the admin either.
    before = AlertRule.objects.values().get(pk=rule.pk)
    assert client.post(f"/admin/updates/alertrule/{rule.pk}/change/",
                       _rule_form(connection, threshold="50")).status_code == 403
    assert client.post(f"/admin/updates/alertrule/{rule.pk}/test/").status_code == 403
    assert AlertRule.objects.values().get(pk=rule.pk) == before
