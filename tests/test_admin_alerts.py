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
