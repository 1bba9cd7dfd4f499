"""alerts.py: each rule kind fires once when its condition starts and once when it clears, by
email (Django's mail outbox) and by webhook (a real HTTP receiver on 127.0.0.1), recorded as
AlertEvents; texts carry no customer values and the webhook URL is never shown."""

from __future__ import annotations

import datetime as dt
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from django.core import mail
from django.utils import timezone

from updates import alerts, workflow
from updates.models import AlertEvent, AlertRule, ProfileUpdate, QuotaMinute, SendAttempt

Kind = AlertRule.Kind


class Receiver:
    """A webhook endpoint: records every JSON body it is sent, answers `status`."""

    def __init__(self, status: int = 200) -> None:
        self.bodies: list[dict] = []
        self.status = status
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - the http.server API
                length = int(self.headers["Content-Length"])
                outer.bodies.append(json.loads(self.rfile.read(length)))
                outer.content_type = self.headers["Content-Type"]
                self.send_response(outer.status)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/T000/SECRET-PART"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    hook = Receiver()
    yield hook
    hook.close()


def rule(connection, kind, **kwargs) -> AlertRule:
    kwargs.setdefault("email_to", "ops@example.com, lead@example.com")
    return AlertRule.objects.create(connection=connection, kind=kind, **kwargs)


def attempts(update, connection, outcomes, *, at=None, status=None):
    at = at or timezone.now()
    for number, outcome in enumerate(outcomes, start=1):
        SendAttempt.objects.create(
            update=update, connection=connection, number=number, started_at=at, method="GET",
            request_bytes=100, outcome=outcome,
            http_status=status or (200 if outcome == "acknowledged" else 503))


def test_a_failure_rate_alert_fires_once_and_says_when_it_clears(connection, stage, receiver):
    r = rule(connection, Kind.FAILURE_RATE, threshold=20, window_minutes=60, min_requests=5,
             webhook_url=receiver.url)
    update = stage(identity="customer-secret-77", attributes={"loanStatus": "funded"})
    now = timezone.now()
    attempts(update, connection, ["transient"] * 3 + ["acknowledged"] * 7, at=now)

    [fired] = alerts.alerts_check(now=now)
    assert fired.state == AlertEvent.State.FIRING
    assert "30.0 % of 10 requests in the last 60 minutes" in fired.text
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["ops@example.com", "lead@example.com"]
    assert mail.outbox[0].subject.startswith("[ProfileOps] ALERT")
    assert receiver.bodies == [{"text": fired.text}]  # Slack-compatible
    assert receiver.content_type == "application/json"
    fired.refresh_from_db()
    assert (fired.emailed, fired.webhook_status, fired.delivery_error) == (2, 200, "")

    # Still failing: nothing new is said.
    assert alerts.alerts_check(now=now + dt.timedelta(minutes=5)) == []
    assert len(mail.outbox) == 1 and len(receiver.bodies) == 1

    # An hour later the window holds only good requests: it clears, once.
    later = now + dt.timedelta(minutes=61)
    good = stage(identity="customer-2")
    attempts(good, connection, ["acknowledged"] * 6, at=later)
    [cleared] = alerts.alerts_check(now=later)
    assert cleared.state == AlertEvent.State.CLEARED and cleared.text.startswith("Cleared")
    assert len(mail.outbox) == 2 and len(receiver.bodies) == 2
    r.refresh_from_db()
    assert r.firing is False and r.changed_at == later
    # Customer values never reach an alert.
    for text in [m.body for m in mail.outbox] + [b["text"] for b in receiver.bodies]:
        assert "customer-secret-77" not in text and "funded" not in text


def test_too_few_requests_never_fire_a_failure_rate_alert(connection, stage):
    rule(connection, Kind.FAILURE_RATE, threshold=20, min_requests=20)
    attempts(stage(), connection, ["transient"] * 3)
    assert alerts.alerts_check() == []


@pytest.mark.parametrize("threshold,fires", [(80, True), (95, False)])
def test_quota_use_alerts_fire_per_threshold(connection, threshold, fires):
    rule(connection, Kind.QUOTA_USE, threshold=threshold)
    minute = timezone.now().replace(second=0, microsecond=0)
    QuotaMinute.objects.create(connection=connection, minute=minute, requests=850_000)
    events = alerts.alerts_check()
    assert bool(events) is fires
    if fires:
        assert "85.0 % of the 1,000,000-request rolling-24-hour quota" in events[0].text


def test_updates_waiting_too_long_fire_and_clear_once_decided(connection, stage, operator,
                                                             supervisor):
    rule(connection, Kind.WAITING, threshold=4)
    update = workflow.update_submit(update=stage(), by=operator)
    assert alerts.alerts_check() == []  # submitted just now
    ProfileUpdate.objects.filter(pk=update.pk).update(
        submitted_at=timezone.now() - dt.timedelta(hours=5))
    [fired] = alerts.alerts_check()
    assert "1 update waiting for approval longer than 4 hours" in fired.text
    workflow.update_approve(update=update, by=supervisor)
    [cleared] = alerts.alerts_check()
    assert cleared.state == AlertEvent.State.CLEARED


def test_a_refused_bearer_token_fires_until_target_accepts_it_again(connection, stage):
    rule(connection, Kind.TOKEN_REFUSED, email_to="ops@example.com")
    update = stage()
    now = timezone.now()
    SendAttempt.objects.create(update=update, connection=connection, number=1, started_at=now,
                               method="GET", request_bytes=1, http_status=401,
                               outcome="permanent")
    [fired] = alerts.alerts_check(now=now)
    assert "refused the bearer token (HTTP 401)" in fired.text
    SendAttempt.objects.create(update=update, connection=connection, number=2,
                               started_at=now + dt.timedelta(minutes=1), method="GET",
                               request_bytes=1, http_status=200, outcome="acknowledged")
    [cleared] = alerts.alerts_check(now=now + dt.timedelta(minutes=2))
    assert "accepts the bearer token again" in cleared.text
    assert [m.subject.split(" — ")[0] for m in mail.outbox] == ["[ProfileOps] ALERT",
                                                               "[ProfileOps] Cleared"]


def test_a_failed_webhook_is_recorded_without_its_secret_url(connection, stage, caplog):
    hook = Receiver(status=500)
    try:
        rule(connection, Kind.TOKEN_REFUSED, email_to="", webhook_url=hook.url)
        SendAttempt.objects.create(update=stage(), connection=connection, number=1,
                                   started_at=timezone.now(), method="GET", request_bytes=1,
                                   http_status=403, outcome="permanent")
        [event] = alerts.alerts_check()
    finally:
        hook.close()
    event.refresh_from_db()
    assert event.webhook_status == 500 and event.delivery_error == "webhook: HTTP 500"
    assert "SECRET-PART" not in caplog.text and "SECRET-PART" not in event.delivery_error


def test_an_unreachable_webhook_is_recorded_and_email_still_goes(connection, stage):
    hook = Receiver()
    url = hook.url
    hook.close()  # nothing listens there now
    rule(connection, Kind.TOKEN_REFUSED, webhook_url=url)
    SendAttempt.objects.create(update=stage(), connection=connection, number=1,
                               started_at=timezone.now(), method="GET", request_bytes=1,
                               http_status=401, outcome="permanent")
    [event] = alerts.alerts_check()
    event.refresh_from_db()
    assert event.delivery_error.startswith("webhook: URLError")
    assert "SECRET-PART" not in event.delivery_error and len(mail.outbox) == 1


def test_inactive_rules_and_connections_are_not_checked(connection, stage):
    rule(connection, Kind.TOKEN_REFUSED, active=False)
    SendAttempt.objects.create(update=stage(), connection=connection, number=1,
                               started_at=timezone.now(), method="GET", request_bytes=1,
                               http_status=401, outcome="permanent")
    assert alerts.alerts_check() == []


def test_the_migration_schedules_the_check_every_five_minutes(db):
    from django_q.models import Schedule

    schedule = Schedule.objects.get(name="Check alert rules")
    assert (schedule.func, schedule.minutes) == ("updates.tasks.check_alerts", 5)
    from updates.tasks import check_alerts

    assert check_alerts() == "0 alert state changes"


def _verdict(update, state, *, at):
    """What verification.py writes when its last check ends: the state and its audit row."""
    from updates.models import AuditEvent

    ProfileUpdate.objects.filter(pk=update.pk).update(verification_state=state)
    AuditEvent.objects.create(at=at, action=state, update=update,
                              connection_id=update.connection_id, from_status="sent",
                              to_status="sent", comment="Check 3 of 3: not applied.")


def test_updates_not_applied_after_verification_fire_at_the_threshold_and_clear(
        connection, stage, receiver):
    rule(connection, Kind.NOT_APPLIED, threshold=2, window_minutes=60,
         webhook_url=receiver.url)
    now = timezone.now()
    first = stage(identity="customer-secret-1", attributes={"loanStatus": "funded"})
    _verdict(first, "not_applied", at=now - dt.timedelta(minutes=10))
    _verdict(stage(identity="customer-3"), "verified", at=now)  # applied: does not count
    assert alerts.alerts_check(now=now) == []  # one is below the threshold of two

    _verdict(stage(identity="customer-2"), "not_applied", at=now)
    [fired] = alerts.alerts_check(now=now)
    assert fired.state == AlertEvent.State.FIRING
    assert "2 updates acknowledged by Target but not applied after verification in the " \
           "last 60 minutes (alert at 2)" in fired.text
    assert len(mail.outbox) == 1 and mail.outbox[0].subject.startswith("[ProfileOps] ALERT")
    assert receiver.bodies == [{"text": fired.text}]
    assert alerts.alerts_check(now=now + dt.timedelta(minutes=5)) == []  # stays quiet

    # Once the window has moved past both verdicts, it clears — once.
    later = now + dt.timedelta(minutes=61)
    [cleared] = alerts.alerts_check(now=later)
    assert cleared.state == AlertEvent.State.CLEARED
    assert "0 updates acknowledged by Target but not applied" in cleared.text
    assert alerts.alerts_check(now=later) == []
    assert len(mail.outbox) == 2 and len(receiver.bodies) == 2
    for text in [m.body for m in mail.outbox] + [b["text"] for b in receiver.bodies]:
        assert "customer-secret-1" not in text and "funded" not in text


def test_a_re_sent_update_that_verifies_no_longer_counts_as_not_applied(connection, stage):
    rule(connection, Kind.NOT_APPLIED, threshold=1, window_minutes=60)
    update = stage()
    _verdict(update, "not_applied", at=timezone.now())
    ProfileUpdate.objects.filter(pk=update.pk).update(verification_state="verified")
    assert alerts.alerts_check() == []
